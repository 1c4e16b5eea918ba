#!/usr/bin/env bash
# The paper's protocol (500xCompressor, arXiv 2408.03094) with xcomp, for a real Hugging Face
# checkpoint (the paper's: Meta-Llama-3-8B-Instruct) on GPUs: for every method (kv = 500x,
# icae = the baseline) and N, regeneration pretraining on abstracts, QA fine-tuning initialised
# from it, then the paper's evaluations (regeneration ROUGE-L by text length, QA F1/EM with
# zero-shot and full-context rows, retained capability, kv - icae paired). The reference code's
# settings are the defaults (docs/DESIGN.md): LoRA r 64, alpha 32, dropout 0.05 on q_proj and
# v_proj; randn memory; texts right-padded with EOS to 500 tokens before the memory ("paper"
# positions); AdamW, constant lr after 300 warm-up steps, 1e-4 for 3 epochs of regeneration and
# 5e-5 for 10 epochs of QA; the QA prompt "Question: {q} Answer: " tokenized apart from the
# answer; greedy decoding.
#
# Usage: MODEL=DIR REGEN_TRAIN=F REGEN_VAL=F QA_TRAIN=F QA_VAL=F REGEN_TEST=F QA_TEST="F..." \
#          scripts/paper.sh [STAGE...]        stages: regen qa eval (default: all three)
# Data (JSONL, .gz or not): REGEN_* one text per line ({"text"} or {"abstract"}: the paper's 2.35M
#   arXiv abstracts); QA_TRAIN/QA_VAL {"context","question","answers"} per line (ArxivQA);
#   REGEN_TEST texts; QA_TEST one or more QA files ({"context","question","answers"} or MRQA:
#   ArxivQA, SQuAD, RelationExtraction, HotpotQA, RACE), each a column of the QA table.
# Environment: OUT (paper-run: one folder per compressor, reports in OUT/eval), METHODS ("kv icae"),
#   NS ("16 4 1"), DEVICE (cuda), DTYPE (bf16), NPROC (1: processes, one GPU each, data parallel
#   for training and evaluation; or run the script's commands under torchrun), BATCH (1, per
#   process, as the reference code; raise it with the lr in mind), GRAD_ACCUM (1),
#   REGEN_EPOCHS (3), QA_EPOCHS (10), REGEN_STEPS / QA_STEPS (override the steps the epochs give),
#   REGEN_LR (1e-4), QA_LR (5e-5), WARMUP (300), CONTEXT (500), POSITIONS (paper), LORA_R (64),
#   LORA_ALPHA (32), LORA_TARGETS (q_proj,v_proj), QUESTION_TEMPLATE ("Question: {question} Answer: ",
#   the reference's; recorded by the regeneration compressors, kept by QA), ICAE_REGENERATION_PREFIX
#   (ae: icae regenerates right after its AE embedding, the reference's; ae_bos: after [AE, BOS]), SAVE_EVERY (1000 steps: checkpoints to resume
#   from), EVAL_LIMIT (0: every test text/question), LENGTHS (96,192,288,384,480),
#   XCOMP (the binary; default build/release/xcomp, built if missing). Also any extra flags for
#   every train command in TRAIN_FLAGS (e.g. "--encoder full", "--time-limit 3600", or
#   "--activation-checkpointing": layers recomputed in backward, for a larger BATCH or a smaller GPU).
# Every stage resumes: a finished folder (its compressor.json and a paper_done marker) is kept; an
# interrupted run continues from its checkpoint (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MODEL:?MODEL: the base model folder (e.g. Meta-Llama-3-8B-Instruct)}"
OUT="${OUT:-paper-run}"
METHODS="${METHODS:-kv icae}"
NS="${NS:-16 4 1}"
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-bf16}"
NPROC="${NPROC:-1}"
BATCH="${BATCH:-1}"
GRAD_ACCUM="${GRAD_ACCUM:-1}"
REGEN_EPOCHS="${REGEN_EPOCHS:-3}"
QA_EPOCHS="${QA_EPOCHS:-10}"
REGEN_LR="${REGEN_LR:-1e-4}"
QA_LR="${QA_LR:-5e-5}"
WARMUP="${WARMUP:-300}"
CONTEXT="${CONTEXT:-500}"
POSITIONS="${POSITIONS:-paper}"
LORA_R="${LORA_R:-64}"
LORA_ALPHA="${LORA_ALPHA:-32}"
LORA_TARGETS="${LORA_TARGETS:-q_proj,v_proj}"
QUESTION_TEMPLATE="${QUESTION_TEMPLATE:-Question: {question\} Answer: }"
ICAE_REGENERATION_PREFIX="${ICAE_REGENERATION_PREFIX:-ae}"
SAVE_EVERY="${SAVE_EVERY:-1000}"
EVAL_LIMIT="${EVAL_LIMIT:-0}"
LENGTHS="${LENGTHS:-96,192,288,384,480}"
TRAIN_FLAGS="${TRAIN_FLAGS:-}"
XCOMP="${XCOMP:-build/release/xcomp}"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(regen qa eval)
for s in "${stages[@]}"; do
  case "$s" in regen | qa | eval) ;; *) echo "error: unknown stage '$s' (regen, qa, eval)" >&2; exit 2 ;; esac
done
[ -x "$XCOMP" ] || scripts/build.sh release xcomp
[ -f "$MODEL/config.json" ] || { echo "error: MODEL=$MODEL: no config.json there" >&2; exit 1; }
mkdir -p "$OUT"

need() {  # need VAR: the file(s) VAR names must exist
  local v="$1"
  [ -n "${!v:-}" ] || { echo "error: $v is not set (see the usage at the top of $0)" >&2; exit 1; }
  for f in ${!v}; do [ -f "$f" ] || { echo "error: $v: no file $f" >&2; exit 1; }; done
}
lines() { if [[ "$1" == *.gz ]]; then zcat "$1" | wc -l; else wc -l < "$1"; fi; }
# Optimizer steps for EPOCHS passes over FILE's lines at BATCH x NPROC x GRAD_ACCUM per step.
steps_for() { echo $(( ($(lines "$1") * $2 + BATCH * NPROC * GRAD_ACCUM - 1) / (BATCH * NPROC * GRAD_ACCUM) )); }

# train NAME OBJECTIVE METHOD N TRAIN VAL LR STEPS [extra flags...]
train() {
  local name="$1" objective="$2" method="$3" n="$4" data="$5" val="$6" lr="$7" steps="$8"
  shift 8
  local dir="$OUT/$name"
  if [ -f "$dir/paper_done" ]; then echo "$name: done"; return; fi
  local resume=()
  [ -f "$dir/checkpoint/state.json" ] && resume=(--resume)
  echo "$name: $steps steps (batch $BATCH x $NPROC processes x $GRAD_ACCUM), lr $lr" >&2
  # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of flags
  "$XCOMP" train --model "$MODEL" --method "$method" --tokens "$n" --objective "$objective" \
    --train "$data" --val "$val" --out "$dir" --lr "$lr" --warmup "$WARMUP" --lr-schedule constant \
    --steps "$steps" --batch-size "$BATCH" --grad-accum "$GRAD_ACCUM" --context-length "$CONTEXT" \
    --positions "$POSITIONS" --lora-r "$LORA_R" --lora-alpha "$LORA_ALPHA" --lora-dropout 0.05 \
    --lora-targets "$LORA_TARGETS" --memory-init randn --overflow truncate --save-every "$SAVE_EVERY" \
    --device "$DEVICE" --dtype "$DTYPE" --nproc "$NPROC" "${resume[@]}" $TRAIN_FLAGS "$@"
  # Done only at its last step (a --time-limit in TRAIN_FLAGS stops earlier: rerun to go on).
  local at
  at=$(sed -n 's/^ *"step": *\([0-9]*\).*/\1/p' "$dir/checkpoint/state.json")
  if [ "$at" = "$steps" ]; then touch "$dir/paper_done"; else echo "$name: stopped at step $at of $steps; rerun to continue" >&2; fi
}

for stage in "${stages[@]}"; do
  case "$stage" in
    regen)
      need REGEN_TRAIN; need REGEN_VAL
      steps="${REGEN_STEPS:-$(steps_for "$REGEN_TRAIN" "$REGEN_EPOCHS")}"
      for m in $METHODS; do for n in $NS; do
        prefix=()
        [ "$m" = icae ] && prefix=(--regeneration-prefix "$ICAE_REGENERATION_PREFIX")
        train "$m-regen-n$n" regen "$m" "$n" "$REGEN_TRAIN" "$REGEN_VAL" "$REGEN_LR" "$steps" \
          --question-template "$QUESTION_TEMPLATE" "${prefix[@]}"
      done; done ;;
    qa)
      need QA_TRAIN; need QA_VAL
      steps="${QA_STEPS:-$(steps_for "$QA_TRAIN" "$QA_EPOCHS")}"
      for m in $METHODS; do for n in $NS; do
        [ -f "$OUT/$m-regen-n$n/compressor.json" ] || { echo "error: run stage regen first ($OUT/$m-regen-n$n)" >&2; exit 1; }
        train "$m-qa-n$n" qa "$m" "$n" "$QA_TRAIN" "$QA_VAL" "$QA_LR" "$steps" --init "$OUT/$m-regen-n$n"
      done; done ;;
    eval)
      need REGEN_TEST; need QA_TEST
      regen=() qa=()
      for m in $METHODS; do for n in $NS; do
        regen+=("$OUT/$m-regen-n$n"); qa+=("$OUT/$m-qa-n$n")
      done; done
      common=(--model "$MODEL" --device "$DEVICE" --dtype "$DTYPE" --limit "$EVAL_LIMIT" --nproc "$NPROC")
      # shellcheck disable=SC2086  # QA_TEST is a list of files
      "$XCOMP" eval qa "${common[@]}" --compressors "${qa[@]}" --data $QA_TEST --out "$OUT/eval/qa"
      "$XCOMP" eval regen "${common[@]}" --compressors "${regen[@]}" --data "$REGEN_TEST" --lengths "$LENGTHS" \
        --out "$OUT/eval/regen"
      echo "reports: $OUT/eval/qa/qa.md, $OUT/eval/regen/regen.md" >&2 ;;
  esac
done
