#!/usr/bin/env bash
# The recipe of the shipped default model (models/, MODEL_CARD.md): corpus, tokenizer, ArxivQA-style
# QA, base LM pretraining, the 12 compressors (kv/icae x N=16,4,1 x regeneration, then QA from it),
# the evaluations, and the bf16 export into models/.
#
# Usage: scripts/default-model.sh [STAGE...]   stages: corpus tokenizer qa pretrain base-eval
#        compressors [extend-regen extend-qa] [anneal] eval [eval-qa-large] [eval-decoding] export
#        (default: all but the two extend stages, anneal, eval-qa-large and eval-decoding, in that
#        order; the shipped
#        compressors went through the extend stages on a GPU, and the regeneration ones through
#        anneal on this CPU). Every stage is idempotent and
#        resumable: finished outputs are kept, interrupted training continues from its checkpoint,
#        so the script can be rerun across sessions until everything is done.
# Environment: XCOMP_DATA_DIR (../shared/data), WORK (build/default: all intermediate files),
#   DEVICE (cpu | cuda), THREADS (0: all cores; per concurrent job on the CPU),
#   DTYPE (the base's compute dtype in training and evaluation; auto, the default: bf16 on CUDA and
#   on CPUs that compute bf16 natively, else f32. The shipped models were made in bf16, on an
#   AVX512-BF16 Xeon VM and on GPUs; an AVX2-only CPU emulates bf16, 10-35x slower than f32),
#   POSITIONS (compact | paper | fixed: the encoder's layout. paper pads every text with EOS to the
#   context length (496) before the memory tokens, as the reference code; compact puts the memory
#   right after the text; fixed keeps the paper's memory positions without the padding. On this
#   CPU (kv N=4, LoRA, batch 8, one core) compact ran 5 steps/s on 16-token texts and 1 step/s on
#   96-token ones, padded one step per ~6 s: that decides whether compression emerges within a
#   session at all, so the shipped compressors use it; a GPU run can afford paper. With compact,
#   the last regeneration stage's length becomes kv's decoder anchor (docs/COMPRESSOR.md)),
#   REGEN_CURRICULUM (regeneration stages "TOKENS:SECONDS ...": each stage trains on the texts'
#   first TOKENS tokens (0: whole texts) for SECONDS, starting from the previous stage; the last
#   stage's folder is the regeneration compressor; default "16:120 48:300 96:900"),
#   REGEN_STEPS / QA_STEPS (optimizer steps cap per stage / QA run), QA_TIME (seconds per QA run, 480;
#   0: no limit; the lr is constant after warm-up, so a time-limited run is a shorter run, and a
#   finished run continues from its checkpoint for another period once its folder's
#   recipe_done marker is deleted), QA_PER_CONTEXT (4: a QA step compresses 8 abstracts and
#   decodes up to 4 of each one's questions from its prompt; 1: one question per compression),
#   NS ("16 4 1"), METHODS ("kv icae"), QA_LIMIT (questions per QA data set in the evaluations, 500),
#   REGEN_LIMIT (texts per length in the regeneration evaluation, 200), LENGTHS (96,192,288,384,480),
#   JOBS (compressor runs side by side on the CPU; default 2), MIN_GAIN (export ships a compressor
#   only if its prompt lowers the base's loss on validation data by this many nats/token; 0.1),
#   XCOMP (the xcomp binary to use; set, nothing is built: GPU hosts build their own),
#   Stage eval-decoding: the regeneration compressors' 96-token ROUGE-L / BLEU-4 under greedy
#   decoding (the paper's) and Hugging Face's alternatives (no repeated 3-grams, repetition
#   penalty 1.2, 4 beams, 4 beams without repeated 3-grams), REGEN_LIMIT test abstracts; tables
#   and a bar chart in $WORK/eval/decoding (decoding.md, regen_by_decoding.png).
#   QA_LARGE (6003: questions of stage eval-qa-large, which reads the quality bar's QA comparisons:
#   the first QA_LARGE ArxivQA-style test questions, split in two halves evaluated side by side
#   with one thread each (~50 minutes on this 2-core CPU for 6,003), pooled by scripts/qa-paired.py
#   into $WORK/eval/qa-large/qa-large.md with intervals clustered by abstract),
#   EXTEND_* for the extend stages (below).
# Stages extend-regen and extend-qa (run after compressors, before eval and export; meant for a
#   GPU: scripts/device/extend.sh runs them there): every regeneration compressor continues from
#   EXTEND_FROM ($WORK/compressors) on all EXTEND_TOKENS-token chunks of the training abstracts
#   (96; --text-chunks; chunks start every EXTEND_STRIDE tokens: 0, the default, is EXTEND_TOKENS,
#   no overlap) with batch EXTEND_BATCH (64) for EXTEND_REGEN_TIME seconds (150), then QA starts
#   again from it (batch EXTEND_QA_BATCH (32) contexts, EXTEND_QA_TIME seconds (120)), or, with
#   EXTEND_QA_FROM set, continues that folder's QA compressor of the same name instead;
#   EXTEND_JOBS (6) runs share the device. EXTEND_LR_SCHEDULE (constant; linear or cosine: the lr
#   decays to 0 over EXTEND_REGEN_TIME x EXTEND_REGEN_RATE steps, and EXTEND_QA_TIME x EXTEND_QA_RATE
#   for QA: the steps per second of one run, 6 side by side, 5 and 2.4 by default as measured on an
#   H100 at batch 128 and 64, and again on an H200; the lr follows steps, so an overestimated rate stops partway down).
#   Results go to $WORK/extended/NAME; eval and export take a compressor from there when it
#   finished, else from $WORK/compressors.
# Stage anneal (after the extend stages): every compressor of ANNEAL_OBJECTIVES ("regen"; "regen
#   qa" for both) continues from its folder so far (extended, else compressors) with the lr decaying
#   linearly from ANNEAL_LR (2e-4 regeneration, 1e-4 QA) to 0 (`--lr-schedule linear`) over
#   ANNEAL_STEPS (600) steps of ANNEAL_BATCH (16) on the 96-token windows every 48 tokens
#   (regeneration), JOBS side by side with THREADS each (~20 minutes a run on one core here).
#   The lr suits the small batch: kv N=16 from the GPU's 1e-3 at batch 128 first lost ground
#   (validation 1.343 -> 1.377 after 250 steps) and ended at 1.328 after 1,000; from 2e-4 it
#   was at 1.330 after 300, from 4e-4 at 1.339.
#   Results go to $WORK/annealed/NAME, which eval and export then prefer.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${XCOMP_DATA_DIR:-../shared/data}"
work="${WORK:-build/default}"
device="${DEVICE:-cpu}"
dtype="${DTYPE:-auto}"
threads="${THREADS:-0}"
regen_steps="${REGEN_STEPS:-100000}"
qa_steps="${QA_STEPS:-100000}"
qa_time="${QA_TIME:-480}"
qa_per_context="${QA_PER_CONTEXT:-4}"
positions="${POSITIONS:-compact}"
regen_curriculum="${REGEN_CURRICULUM:-16:120 48:300 96:900}"
ns="${NS:-16 4 1}"
methods="${METHODS:-kv icae}"
jobs="${JOBS:-2}"
qa_limit="${QA_LIMIT:-500}"
regen_limit="${REGEN_LIMIT:-200}"
lengths="${LENGTHS:-96,192,288,384,480}"
min_gain="${MIN_GAIN:-0.1}"
x="${XCOMP:-build/release/xcomp}"
mkdir -p "$work"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

stage_corpus() {
  scripts/corpus/fetch.sh "$work/corpus"
}

stage_tokenizer() {
  [ -s "$work/tokenizer.json" ] && return 0
  # arXiv weighted twice, as in the pretraining mix.
  $x tokenizer train --input "$data/arxiv/train.jsonl.gz" "$data/arxiv/train.jsonl.gz" "$work"/corpus/{sotu,moby_dick,brown,bible,austen}.jsonl \
    --vocab-size 8192 --out "$work/tokenizer.json"
}

stage_qa() {
  mkdir -p "$work/qa"
  for split in train val test; do
    [ -s "$work/qa/arxivqa_$split.jsonl" ] && continue
    $x data make-qa --input "$data/arxiv/$split.jsonl.gz" --out "$work/qa/arxivqa_$split.jsonl" --report "$work/qa/${split}_report"
  done
  # Two questions per training abstract go into the base's pretraining mix (with their context).
  [ -s "$work/qa/pretrain_qa.jsonl" ] || python3 - "$work/qa" <<'EOF'
import collections, json, random, sys
d = sys.argv[1]
random.seed(0)
by = collections.defaultdict(list)
for line in open(f"{d}/arxivqa_train.jsonl"):
    by[json.loads(line)["context"]].append(line)
out = []
for lines in by.values():
    random.shuffle(lines)
    out += lines[:2]
random.shuffle(out)
open(f"{d}/pretrain_qa.jsonl.tmp", "w").writelines(out)
import os; os.replace(f"{d}/pretrain_qa.jsonl.tmp", f"{d}/pretrain_qa.jsonl")
EOF
}

stage_pretrain() {
  [ -s "$work/base/model.safetensors" ] && return 0
  cat > "$work/config.json" <<'EOF'
{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":256,"intermediate_size":768,"num_hidden_layers":6,"num_attention_heads":4,"num_key_value_heads":4,"head_dim":64,"hidden_act":"silu","max_position_embeddings":512,"rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true,"vocab_size":8192,"bos_token_id":8190,"eos_token_id":8191,"torch_dtype":"bfloat16"}
EOF
  local resume=()
  [ -f "$work/base/checkpoint/state.json" ] && resume=(--resume)
  local c="$work/corpus"
  $x pretrain --config "$work/config.json" --tokenizer "$work/tokenizer.json" \
    --train "$data/arxiv/train.jsonl.gz" "$data/arxiv/train.jsonl.gz" "$c/sotu.jsonl" "$c/moby_dick.jsonl" "$c/brown.jsonl" \
    "$c/bible.jsonl" "$c/austen.jsonl" "$work/qa/pretrain_qa.jsonl" --val "$data/arxiv/val.jsonl.gz" \
    --out "$work/base" --dtype "$dtype" --seq-len 512 --batch-size 8 --steps 6000 --lr 2.5e-3 --warmup 200 \
    --copy-fraction 0.2 --eval-every 500 --save-every 250 --device "$device" --threads "$threads" "${resume[@]}"
}

stage_base_eval() {
  local out="$work/eval/base"
  mkdir -p "$out"
  if [ ! -s "$out/copy.txt" ]; then
    $x eval copy --model "$work/base" --data "$data/arxiv/val.jsonl.gz" --length 96 --limit 100 --dtype "$dtype" --device "$device" > "$out/copy.txt.tmp"
    mv "$out/copy.txt.tmp" "$out/copy.txt"
  fi
  [ -s "$out/qa/qa.md" ] || $x eval qa --model "$work/base" --data "$work/qa/arxivqa_test.jsonl" \
    "$data/qa/squad_dev_mrqa.jsonl.gz" --limit "$qa_limit" --out "$out/qa" --dtype "$dtype" --device "$device"
}

# One compressor: regeneration (a curriculum of text lengths), or QA from the regeneration
# compressor (the paper's two stages). A run that finished gets a recipe_done marker in its folder.
done_marker() { echo "$1/recipe_done"; }  # written by this script when a run has finished
run_train() {  # out log args...
  local out=$1 log_file=$2
  shift 2
  [ -f "$(done_marker "$out")" ] && return 0
  local args=("$@")
  [ -f "$out/checkpoint/state.json" ] && args+=(--resume)
  log "train $(basename "$out")"
  $x train "${args[@]}" --out "$out" >> "$log_file" 2>&1 || { log "FAILED $(basename "$out") (see $log_file)"; return 1; }
  touch "$(done_marker "$out")"
}

train_one() {
  local method=$1 n=$2 objective=$3 out="$work/compressors/$1-$3-n$2"
  [ -f "$(done_marker "$out")" ] && return 0
  local common=(--model "$work/base" --memory-lr-scale 10 --warmup 50 --batch-size 8 --eval-every 250 --save-every 50
    --val-examples 128 --dtype "$dtype" --device "$device" --threads "$threads")
  if [ "$objective" = regen ]; then
    local stages=($regen_curriculum) init=() i
    for i in "${!stages[@]}"; do
      local tokens=${stages[$i]%%:*} secs=${stages[$i]##*:} dir="$out-t${stages[$i]%%:*}"
      [ "$i" -eq $((${#stages[@]} - 1)) ] && dir="$out"
      local args=("${common[@]}" --objective regen --train "$data/arxiv/train.jsonl.gz" --val "$data/arxiv/val.jsonl.gz"
        --lr 1e-3 --steps "$regen_steps" --time-limit "$secs" --text-tokens "$tokens")
      if [ ${#init[@]} -gt 0 ]; then
        args+=("${init[@]}")
      else
        args+=(--method "$method" --tokens "$n" --context-length 496 --overflow truncate --positions "$positions"
          --encoder lora --lora-r 32 --lora-alpha 64 --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
          --memory-init embeddings)
      fi
      # The last stage's length anchors kv's decoder (compact positions): longer texts (QA
      # contexts, long regeneration) keep the decoder-to-memory offset it was trained with.
      [ "$dir" = "$out" ] && [ "$method" = kv ] && [ "$positions" = compact ] && [ "$tokens" -gt 0 ] &&
        args+=(--decoder-anchor "$tokens")
      run_train "$dir" "$dir.log" "${args[@]}" || return 1
      init=(--init "$dir")
    done
  else
    run_train "$out" "$out.log" "${common[@]}" --objective qa --train "$work/qa/arxivqa_train.jsonl" \
      --val "$work/qa/arxivqa_val.jsonl" --lr 5e-4 --steps "$qa_steps" --time-limit "$qa_time" \
      --questions-per-context "$qa_per_context" --init "$work/compressors/$method-regen-n$n"
  fi
}

stage_compressors() {
  mkdir -p "$work/compressors"
  local running=0
  for n in $ns; do
    for method in $methods; do
      ( train_one "$method" "$n" regen && train_one "$method" "$n" qa ) &
      running=$((running + 1))
      if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    done
  done
  wait
}

# The folder a compressor continues from before annealing: its extended run when that finished.
extended_dir() {  # name
  if [ -f "$(done_marker "$work/extended/$1")" ]; then echo "$work/extended/$1"; else echo "$work/compressors/$1"; fi
}

# The folder a compressor is evaluated and shipped from: its annealed run when that finished.
final_dir() {  # name
  if [ -f "$(done_marker "$work/annealed/$1")" ]; then echo "$work/annealed/$1"; else extended_dir "$1"; fi
}

# The finished compressor folders of one objective (regen | qa), one per line, in NS x METHODS order.
finished_dirs() {  # objective
  local n method d
  for n in $ns; do for method in $methods; do
    d="$(final_dir "$method-$1-n$n")"
    [ -f "$(done_marker "$d")" ] && echo "$d"
  done; done
  return 0
}

extend_one() {  # method n objective
  local method=$1 n=$2 objective=$3 out="$work/extended/$1-$3-n$2" from="${EXTEND_FROM:-$work/compressors}"
  local schedule="${EXTEND_LR_SCHEDULE:-constant}" steps=1000000 rate secs
  if [ "$schedule" != constant ]; then
    if [ "$objective" = regen ]; then rate="${EXTEND_REGEN_RATE:-5}" secs="${EXTEND_REGEN_TIME:-150}"
    else rate="${EXTEND_QA_RATE:-2.4}" secs="${EXTEND_QA_TIME:-120}"; fi
    steps=$(awk -v r="$rate" -v t="$secs" 'BEGIN { s = int(r * t); print (s > 100 ? s : 100) }')
  fi
  local common=(--model "$work/base" --memory-lr-scale 10 --warmup 50 --eval-every 200 --save-every 200
    --val-examples 128 --dtype "$dtype" --device "$device" --threads "$threads" --steps "$steps" --lr-schedule "$schedule")
  if [ "$objective" = regen ]; then
    run_train "$out" "$out.log" "${common[@]}" --init "$from/$method-regen-n$n" --objective regen \
      --train "$data/arxiv/train.jsonl.gz" --val "$data/arxiv/val.jsonl.gz" --text-tokens "${EXTEND_TOKENS:-96}" \
      --text-chunks --text-chunk-stride "${EXTEND_STRIDE:-0}" --lr 1e-3 --batch-size "${EXTEND_BATCH:-64}" \
      --time-limit "${EXTEND_REGEN_TIME:-150}"
  else
    local init="$work/extended/$method-regen-n$n"
    [ -n "${EXTEND_QA_FROM:-}" ] && init="$EXTEND_QA_FROM/$method-qa-n$n"
    run_train "$out" "$out.log" "${common[@]}" --init "$init" --objective qa \
      --train "$work/qa/arxivqa_train.jsonl" --val "$work/qa/arxivqa_val.jsonl" --questions-per-context "$qa_per_context" \
      --lr 5e-4 --batch-size "${EXTEND_QA_BATCH:-32}" --time-limit "${EXTEND_QA_TIME:-120}"
  fi
}

# Runs FUNCTION METHOD N OBJECTIVE for every N and method, at most MAX_JOBS at a time; fails when
# any run failed, after all of them ended.
run_grid() {  # max_jobs function objective
  local max=$1 fn=$2 objective=$3 running=0 failed=0 n method
  for n in $ns; do
    for method in $methods; do
      "$fn" "$method" "$n" "$objective" &
      running=$((running + 1))
      if [ "$running" -ge "$max" ]; then wait -n || failed=1; running=$((running - 1)); fi
    done
  done
  while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
  return $failed
}

extend_all() {  # objective
  mkdir -p "$work/extended"
  run_grid "${EXTEND_JOBS:-6}" extend_one "$1"
}
stage_extend_regen() { extend_all regen; }
stage_extend_qa() { extend_all qa; }

anneal_one() {  # method n objective
  local method=$1 n=$2 objective=$3 name="$1-$3-n$2" out="$work/annealed/$1-$3-n$2"
  local from
  from="$(extended_dir "$name")"
  [ -f "$(done_marker "$from")" ] || { log "anneal: $name has no finished run to continue"; return 1; }
  local args=(--model "$work/base" --init "$from" --memory-lr-scale 10 --warmup 50 --lr-schedule linear
    --steps "${ANNEAL_STEPS:-600}" --batch-size "${ANNEAL_BATCH:-16}" --eval-every 150 --save-every 100 --val-examples 128
    --dtype "$dtype" --device "$device" --threads "$threads" --objective "$objective")
  if [ "$objective" = regen ]; then
    args+=(--train "$data/arxiv/train.jsonl.gz" --val "$data/arxiv/val.jsonl.gz" --text-tokens 96 --text-chunks
      --text-chunk-stride 48 --lr "${ANNEAL_LR:-2e-4}")
  else
    args+=(--train "$work/qa/arxivqa_train.jsonl" --val "$work/qa/arxivqa_val.jsonl"
      --questions-per-context "$qa_per_context" --lr "${ANNEAL_LR:-1e-4}")
  fi
  run_train "$out" "$out.log" "${args[@]}"
}

stage_anneal() {
  mkdir -p "$work/annealed"
  local objective failed=0
  for objective in ${ANNEAL_OBJECTIVES:-regen}; do run_grid "$jobs" anneal_one "$objective" || failed=1; done
  return $failed
}

stage_eval() {
  local cs=() out="$work/eval"
  mapfile -t cs < <(finished_dirs regen)
  [ ${#cs[@]} -gt 0 ] && $x eval regen --model "$work/base" --compressors "${cs[@]}" --data "$data/arxiv/test.jsonl.gz" \
    --lengths "$lengths" --limit "$regen_limit" --out "$out/regen" --dtype "$dtype" --device "$device"
  mapfile -t cs < <(finished_dirs qa)
  if [ ${#cs[@]} -gt 0 ]; then
    $x eval qa --model "$work/base" --compressors "${cs[@]}" --data "$work/qa/arxivqa_test.jsonl" \
      "$data/qa/squad_dev_mrqa.jsonl.gz" --limit "$qa_limit" --out "$out/qa" --dtype "$dtype" --device "$device"
    $x eval efficiency --model "$work/base" --compressors "${cs[@]}" --data "$data/arxiv/test.jsonl.gz" \
      --lengths 64,128,256 --limit 20 --out "$out/efficiency" --dtype "$dtype" --device "$device"
  fi
  return 0
}

stage_eval_qa_large() {
  local cs=() out="$work/eval/qa-large" k half pooled=()
  mapfile -t cs < <(finished_dirs qa)
  [ ${#cs[@]} -gt 0 ] || { log "eval-qa-large: no finished QA compressor"; return 1; }
  local total="${QA_LARGE:-6003}"
  half=$(( (total + 1) / 2 ))
  mkdir -p "$out"
  sed -n "1,${half}p" "$work/qa/arxivqa_test.jsonl" > "$out/part1.jsonl"
  sed -n "$(( half + 1 )),${total}p" "$work/qa/arxivqa_test.jsonl" > "$out/part2.jsonl"
  for k in 1 2; do
    $x eval qa --model "$work/base" --compressors "${cs[@]}" --data "$out/part$k.jsonl" --out "$out/part$k" \
      --dtype "$dtype" --device "$device" --threads 1 > "$out/part$k.log" 2>&1 &
  done
  local failed=0
  wait -n || failed=1
  wait -n || failed=1
  [ "$failed" = 0 ] || { log "eval-qa-large: an eval qa run failed (see $out/part*.log)"; return 1; }
  for k in 1 2; do pooled+=("$out/part$k:$out/part$k.jsonl"); done
  python3 scripts/qa-paired.py "${pooled[@]}" > "$out/qa-large.md"
  log "eval-qa-large: $out/qa-large.md"
  cat "$out/qa-large.md" >&2
}

stage_eval_decoding() {
  local cs=() out="$work/eval/decoding" spec name flags runs=()
  mapfile -t cs < <(finished_dirs regen)
  [ ${#cs[@]} -gt 0 ] || { log "eval-decoding: no finished regeneration compressor"; return 1; }
  mkdir -p "$out"
  for spec in "greedy:" "no-repeat 3:--no-repeat-ngram-size 3" "repetition 1.2:--repetition-penalty 1.2" \
      "beam 4:--num-beams 4" "beam 4 + no-repeat 3:--num-beams 4 --no-repeat-ngram-size 3"; do
    name="${spec%%:*}" flags="${spec#*:}"
    local dir="${name// + /+}"
    dir="$out/${dir// /-}"
    # shellcheck disable=SC2086  # flags are words
    $x eval regen --model "$work/base" --compressors "${cs[@]}" --data "$data/arxiv/test.jsonl.gz" --lengths 96 \
      --limit "$regen_limit" --out "$dir" --dtype "$dtype" --device "$device" --threads "$threads" $flags > /dev/null
    runs+=("$name=$dir")
  done
  python3 scripts/decoding-figure.py "$out/regen_by_decoding.png" "${runs[@]}" > "$out/decoding.md"
  log "eval-decoding: $out/decoding.md"
  cat "$out/decoding.md" >&2
}

stage_export() {
  mkdir -p models/base models/compressors
  cp "$work/base/config.json" "$work/base/model.safetensors" "$work/base/tokenizer.json" models/base/
  # The shipping rule: a compressor ships when its prompt lowers the frozen base's loss by at
  # least MIN_GAIN nats/token on validation data (`xcomp eval gain`: regeneration on 128 val
  # abstracts cut to 96 tokens, QA on the first 128 ArxivQA-style val pairs). One that does not is
  # left out, and removed from models/ if an earlier export put it there.
  # tests/eval/shipped_models_test.cpp checks the same on test abstracts.
  local regen=() qa=() d name g
  mapfile -t regen < <(finished_dirs regen)
  mapfile -t qa < <(finished_dirs qa)
  local gain_args=(--model "$work/base" --limit 128 --dtype "$dtype" --device "$device")
  if [ ${#regen[@]} -gt 0 ]; then
    $x eval gain "${gain_args[@]}" --compressors "${regen[@]}" --objective regen --length 96 \
      --data "$data/arxiv/val.jsonl.gz" --out "$work/eval/gain-regen" > /dev/null
  fi
  if [ ${#qa[@]} -gt 0 ]; then
    $x eval gain "${gain_args[@]}" --compressors "${qa[@]}" --objective qa \
      --data "$work/qa/arxivqa_val.jsonl" --out "$work/eval/gain-qa" > /dev/null
  fi
  for d in "${regen[@]}" "${qa[@]}"; do
    name="$(basename "$d")"
    case "$name" in *-qa-*) g="$work/eval/gain-qa/gain.tsv" ;; *) g="$work/eval/gain-regen/gain.tsv" ;; esac
    g="$(awk -F'\t' -v n="$name" 'NR > 1 && $1 == n { print $7 }' "$g")"
    if awk -v g="$g" -v m="$min_gain" 'BEGIN { exit !(g != "" && g + 0 >= m + 0) }'; then
      log "ship $name (gain $g nats/token on validation)"
      $x compressor export "$d" --model models/base --out "models/compressors/$name" --storage-dtype bf16 \
        --base-name xcomp-default-base
    else
      log "not shipped: $name (gain ${g:-unknown} < $min_gain nats/token on validation)"
      rm -rf "models/compressors/$name"
    fi
  done
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(corpus tokenizer qa pretrain base-eval compressors eval export)
[ -n "${XCOMP:-}" ] || scripts/build.sh release xcomp >&2
for s in "${stages[@]}"; do
  log "stage $s"
  "stage_${s//-/_}"
done
