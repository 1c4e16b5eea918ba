#!/usr/bin/env bash
# CLI end to end: convert + generate reproduces the golden text; tokenize/detokenize round trip a
# file's exact bytes; bad input exits non-zero with "error: ...". Usage: cli_test.sh XCOMP DATA TOKENIZERS
set -euo pipefail
xcomp="$1"; data="$2"; toks="$3"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$xcomp" convert llama2c "$data/models/stories260K/stories260K.bin" "$data/models/stories260K/tok512.bin" --out "$tmp/m" 2>/dev/null
"$xcomp" generate --model "$tmp/m" --prompt "" --max-new-tokens 256 > "$tmp/out.txt"
cmp -s "$tmp/out.txt" "$data/models/stories260K/stories260K_greedy256_ref.txt" || fail "generate differs from the golden text"

printf 'Hello  world,\n\tcafé 東京 🦙 12345 ' > "$tmp/in.txt"
"$xcomp" tokenize --tokenizer "$toks/llama3/tokenizer.json" --file "$tmp/in.txt" --json > "$tmp/ids.json"
ids=$(tr -d '[]\n' < "$tmp/ids.json")
[ -n "$ids" ] || fail "no ids"
"$xcomp" detokenize --tokenizer "$toks/llama3/tokenizer.json" --ids "$ids" > "$tmp/back.txt"
printf '\n' >> "$tmp/in.txt"  # detokenize ends its output with a newline
cmp -s "$tmp/in.txt" "$tmp/back.txt" || fail "tokenize/detokenize round trip differs"
[ "$("$xcomp" tokenize --tokenizer "$toks/llama3/tokenizer.json" --text "Hi" --bos --json)" = "[128000,13347]" ] || fail "--bos"
[ "$("$xcomp" tokenize --tokenizer "$toks/llama3/tokenizer.json" --text "Hello world" --bos --pieces --json)" = \
  '{"ids":[128000,9906,1917],"pieces":["<|begin_of_text|>","Hello","Ġworld"]}' ] || fail "--pieces --json"
[ "$("$xcomp" tokenize --tokenizer "$toks/llama3/tokenizer.json" --text "Hello world" --pieces | tail -n 1)" = '1917 "Ġworld"' ] ||
  fail "--pieces"

# A folder of pytorch_model.bin (written by PyTorch's torch.save) converted to safetensors.
fixtures="$(cd "$(dirname "$0")/../fixtures" && pwd)"
"$xcomp" convert pytorch "$fixtures/torch/tiny-llama" --out "$tmp/tl" 2> "$tmp/err.txt" || fail "convert pytorch: $(cat "$tmp/err.txt")"
grep -q "^wrote $tmp/tl/model.safetensors" "$tmp/err.txt" || fail "convert pytorch said: $(cat "$tmp/err.txt")"
cmp -s "$tmp/tl/config.json" "$fixtures/torch/tiny-llama/config.json" || fail "convert pytorch did not copy config.json"
[ ! -e "$tmp/tl/pytorch_model.bin" ] || fail "convert pytorch copied the .bin"
if "$xcomp" convert pytorch "$tmp/tl" --out "$tmp/tl2" 2> "$tmp/err.txt"; then fail "converting safetensors accepted"; fi
grep -q "^error: .*already holds safetensors" "$tmp/err.txt" || fail "convert pytorch message: $(cat "$tmp/err.txt")"

# compressor import: the reference code's state dict (LoRA + memory) as an xcomp compressor folder
# (what it computes: tests/compress/reference_import_test.cpp).
ref="$fixtures/torch/reference-kv/lora_params.pth"
"$xcomp" compressor import "$ref" --model "$fixtures/torch/tiny-llama" --context-length 12 --out "$tmp/ref" 2> "$tmp/err.txt" ||
  fail "compressor import: $(cat "$tmp/err.txt")"
grep -q "^imported .*: kv, N=2, LoRA r 4 alpha 32 on q_proj,v_proj (8 tensors), padded to 12" "$tmp/err.txt" ||
  fail "compressor import said: $(cat "$tmp/err.txt")"
grep -q '"question_template": "Question: {question} Answer: "' "$tmp/ref/compressor.json" || fail "imported template: $(cat "$tmp/ref/compressor.json")"
[ -f "$tmp/ref/adapter_model.safetensors" ] && [ -f "$tmp/ref/memory.safetensors" ] || fail "imported folder incomplete"
if "$xcomp" compressor import "$ref" --model "$fixtures/torch/tiny-llama" --context-length 12 --out "$tmp/ref" 2> "$tmp/err.txt"; then
  fail "import over an existing compressor accepted"
fi
grep -q "^error: .*already holds a compressor" "$tmp/err.txt" || fail "import over a compressor said: $(cat "$tmp/err.txt")"
if "$xcomp" compressor import "$fixtures/torch/one_tensor.bin" --model "$fixtures/torch/tiny-llama" --out "$tmp/ref2" 2> "$tmp/err.txt"; then
  fail "a state dict without memory imported"
fi
grep -q "^error: .*one_tensor.bin.*holds no memory_embeddings" "$tmp/err.txt" || fail "import message: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/ref2/compressor.json" ] || fail "a failed import wrote a compressor"
# The reference's ICAE: found by its ae_embedding; it regenerates right after it.
icae="$fixtures/torch/reference-icae/lora_params.pth"
"$xcomp" compressor import "$icae" --model "$fixtures/torch/tiny-llama" --context-length 12 --out "$tmp/ricae" 2> "$tmp/err.txt" ||
  fail "icae import: $(cat "$tmp/err.txt")"
grep -q "^imported .*: icae (regenerates after its AE embedding), N=2" "$tmp/err.txt" || fail "icae import said: $(cat "$tmp/err.txt")"
grep -q '"regeneration_prefix": "ae"' "$tmp/ricae/compressor.json" || fail "imported icae: $(cat "$tmp/ricae/compressor.json")"
if "$xcomp" compressor import "$icae" --model "$fixtures/torch/tiny-llama" --method kv --out "$tmp/ricae2" 2> "$tmp/err.txt"; then
  fail "an icae checkpoint imported as kv"
fi
grep -q "^error: .*not a 500xCompressor (kv) one" "$tmp/err.txt" || fail "icae as kv said: $(cat "$tmp/err.txt")"
# ... and back to the reference's form: what to set in its code, and a file that imports again.
"$xcomp" compressor export-reference "$tmp/ricae" --model "$fixtures/torch/tiny-llama" --out "$tmp/ricae.pth" 2> "$tmp/err.txt" ||
  fail "export-reference: $(cat "$tmp/err.txt")"
grep -q "^in the reference code (ICAEL3): num_mem=2, max_length=12, LoraConfig(r=4, lora_alpha=32, target_modules=\[\"q_proj\", \"v_proj\"\])" "$tmp/err.txt" ||
  fail "export-reference said: $(cat "$tmp/err.txt")"
"$xcomp" compressor import "$tmp/ricae.pth" --model "$fixtures/torch/tiny-llama" --context-length 12 --out "$tmp/ricae3" 2> /dev/null ||
  fail "the exported file does not import"
cmp -s "$tmp/ricae/memory.safetensors" "$tmp/ricae3/memory.safetensors" || fail "export + import changed the memory"
if "$xcomp" compressor export-reference "$tmp/ricae" --model "$fixtures/torch/tiny-llama" --out "$tmp/ricae.pth" 2> "$tmp/err.txt"; then
  fail "export-reference over an existing file accepted"
fi
grep -q "^error: .*ricae.pth: already exists" "$tmp/err.txt" || fail "export-reference over a file said: $(cat "$tmp/err.txt")"
# --method icae on a state dict without AE embedding: the reference's ICAE QA stage.
"$xcomp" compressor import "$ref" --model "$fixtures/torch/tiny-llama" --context-length 12 --method icae --out "$tmp/rqa" 2> "$tmp/err.txt" ||
  fail "icae qa-stage import: $(cat "$tmp/err.txt")"
grep -q "^imported .*: icae without AE embedding (QA only)" "$tmp/err.txt" || fail "icae qa-stage import said: $(cat "$tmp/err.txt")"
grep -q '"regeneration_prefix": "none"' "$tmp/rqa/compressor.json" || fail "imported qa-stage icae: $(cat "$tmp/rqa/compressor.json")"
if "$xcomp" train --model "$fixtures/torch/tiny-llama" --init "$tmp/ricae" --regeneration-prefix ae_bos --train /dev/null --out "$tmp/t" 2> "$tmp/err.txt"; then
  fail "--regeneration-prefix with --init accepted"
fi
grep -q "^error: --regeneration-prefix: applies to a new compressor" "$tmp/err.txt" || fail "--regeneration-prefix with --init said: $(cat "$tmp/err.txt")"

if "$xcomp" generate --model "$tmp/nonexistent" --prompt x 2> "$tmp/err.txt"; then fail "missing model accepted"; fi
grep -q "^error: .*nonexistent" "$tmp/err.txt" || fail "error message: $(cat "$tmp/err.txt")"
if "$xcomp" generate --model "$tmp/m" --prompt x --dtype f8 2> "$tmp/err.txt"; then fail "bad dtype accepted"; fi
grep -q "^error: --dtype" "$tmp/err.txt" || fail "dtype message: $(cat "$tmp/err.txt")"
grep -q "auto" "$tmp/err.txt" || fail "dtype message without auto: $(cat "$tmp/err.txt")"
# A prompt past the model's positions is refused before anything is printed.
long_prompt=$(printf 'Tom ran. %.0s' $(seq 1 600))
if "$xcomp" generate --model "$tmp/m" --prompt "$long_prompt" > "$tmp/out_long.txt" 2> "$tmp/err.txt"; then fail "over-long prompt accepted"; fi
grep -q "^error: --prompt: has [0-9]* tokens, beyond the model's [0-9]* positions" "$tmp/err.txt" || fail "long prompt message: $(cat "$tmp/err.txt")"
[ ! -s "$tmp/out_long.txt" ] || fail "over-long prompt echoed before the error"
# auto resolves to f32 or bf16 by the CPU's measured bf16 speed; the text is the one that dtype gives.
"$xcomp" generate --model "$tmp/m" --prompt x --max-new-tokens 4 --dtype auto > "$tmp/auto.txt" 2> "$tmp/err.txt" ||
  fail "--dtype auto: $(cat "$tmp/err.txt")"
"$xcomp" generate --model "$tmp/m" --prompt x --max-new-tokens 4 --dtype f32 > "$tmp/f32.txt" 2> /dev/null
"$xcomp" generate --model "$tmp/m" --prompt x --max-new-tokens 4 --dtype bf16 > "$tmp/bf16.txt" 2> /dev/null
cmp -s "$tmp/auto.txt" "$tmp/f32.txt" || cmp -s "$tmp/auto.txt" "$tmp/bf16.txt" || fail "--dtype auto gave neither f32's nor bf16's text"
# Weights stored in bf16 under f32 compute: runs; a storage that cannot serve the compute dtype is an error.
"$xcomp" generate --model "$tmp/m" --prompt x --max-new-tokens 4 --dtype f32 --weights-dtype bf16 > "$tmp/w16.txt" 2> "$tmp/err.txt" ||
  fail "--weights-dtype bf16: $(cat "$tmp/err.txt")"
[ -s "$tmp/w16.txt" ] || fail "--weights-dtype bf16 wrote nothing"
if "$xcomp" generate --model "$tmp/m" --prompt x --dtype bf16 --weights-dtype f32 2> "$tmp/err.txt"; then fail "f32 weights under bf16 compute accepted"; fi
grep -q "^error: --weights-dtype" "$tmp/err.txt" || fail "weights dtype message: $(cat "$tmp/err.txt")"
# int8 weights: quantized at load, reported by bench, f32 compute only.
"$xcomp" bench --model "$tmp/m" --weights-dtype int8 --prompt-tokens 8 --decode-tokens 2 --repeats 1 > "$tmp/b8.txt" 2> "$tmp/err.txt" ||
  fail "--weights-dtype int8: $(cat "$tmp/err.txt")"
grep -q "compute f32 over int8 weights" "$tmp/b8.txt" || fail "bench with int8: $(cat "$tmp/b8.txt")"
# The few-row decoding kernel: used where the CPU has it, switched off by --no-matvec or
# XCOMP_MATVEC=0 in the environment; greedy text the same either way.
"$xcomp" bench --model "$tmp/m" --prompt-tokens 8 --decode-tokens 2 --repeats 1 > "$tmp/bm.txt" 2>&1 || fail "bench: $(cat "$tmp/bm.txt")"
grep -q "^few-row linear layers (decoding): matvec kernel\|this CPU lacks" "$tmp/bm.txt" || fail "bench's kernel line: $(cat "$tmp/bm.txt")"
"$xcomp" bench --model "$tmp/m" --prompt-tokens 8 --decode-tokens 2 --repeats 1 --no-matvec > "$tmp/bm.txt" 2>&1 || fail "bench --no-matvec: $(cat "$tmp/bm.txt")"
grep -q "^few-row linear layers (decoding): matmul" "$tmp/bm.txt" || fail "bench --no-matvec's kernel line: $(cat "$tmp/bm.txt")"
XCOMP_MATVEC=0 "$xcomp" bench --model "$tmp/m" --prompt-tokens 8 --decode-tokens 2 --repeats 1 > "$tmp/bm.txt" 2>&1 || fail "bench XCOMP_MATVEC=0: $(cat "$tmp/bm.txt")"
grep -q "^few-row linear layers (decoding): matmul" "$tmp/bm.txt" || fail "XCOMP_MATVEC=0's kernel line: $(cat "$tmp/bm.txt")"
XCOMP_MATVEC=0 "$xcomp" generate --model "$tmp/m" --prompt x --max-new-tokens 4 --dtype f32 > "$tmp/f32-matmul.txt" 2> /dev/null
cmp -s "$tmp/f32.txt" "$tmp/f32-matmul.txt" || fail "greedy text differs without matvec: $(cat "$tmp/f32.txt") / $(cat "$tmp/f32-matmul.txt")"
if "$xcomp" generate --model "$tmp/m" --prompt x --dtype bf16 --weights-dtype int8 2> "$tmp/err.txt"; then fail "int8 weights under bf16 compute accepted"; fi
grep -q "^error: --weights-dtype" "$tmp/err.txt" || fail "int8 weights dtype message: $(cat "$tmp/err.txt")"
# Compressor: train (killed with -9 after a checkpoint, then resumed), compress, regenerate, ask.
for i in $(seq 1 24); do printf '{"text": "Tom saw a big red ball number %d in the park."}\n' "$i"; done > "$tmp/train.jsonl"
head -4 "$tmp/train.jsonl" > "$tmp/val.jsonl"
train=("$xcomp" train --model "$tmp/m" --method kv --tokens 2 --train "$tmp/train.jsonl" --val "$tmp/val.jsonl"
       --out "$tmp/c" --encoder lora --lora-r 4 --steps 40 --save-every 5 --eval-every 20 --batch-size 4
       --context-length 32 --lr 1e-3 --warmup 5)
# A given learning rate is used as given: one no run can use is refused before --out is written.
if "$xcomp" train --model "$tmp/m" --train "$tmp/train.jsonl" --out "$tmp/c-bad" --lr -1 2> "$tmp/err.txt"; then
  fail "train --lr -1 accepted"
fi
grep -q "^error: --lr: is -1" "$tmp/err.txt" || fail "train --lr -1 message: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/c-bad" ] || fail "train --lr -1 wrote its --out folder"
# Counts no run can use are refused by name, before --out: --eval-every 0 died of SIGFPE after a
# step, --text-tokens -1 left a compressor.json, --nproc 0 and --threads -1 ran as if not given.
for bad in "--eval-every 0" "--save-every 0" "--text-tokens -1" "--nproc 0" "--threads -1" \
           "--decoder-anchor -5" "--limit -1" "--time-limit -1" "--context-length -1"; do
  rm -rf "$tmp/c-bad"
  # shellcheck disable=SC2086
  if "$xcomp" train --model "$tmp/m" --train "$tmp/train.jsonl" --out "$tmp/c-bad" $bad 2> "$tmp/err.txt"; then
    fail "train $bad accepted"
  fi
  flag="${bad%% *}"
  flag="${flag#--}"
  grep -q -- "${flag//-/[-_]}" "$tmp/err.txt" || fail "train $bad message: $(cat "$tmp/err.txt")"  # flag or field
  [ ! -e "$tmp/c-bad" ] || fail "train $bad wrote its --out folder"
done
"${train[@]}" 2> "$tmp/train1.log" &
pid=$!
for i in $(seq 1 1200); do [ -f "$tmp/c/checkpoint/state.json" ] && break; sleep 0.1; done  # up to 2 min on a loaded machine
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ -f "$tmp/c/checkpoint/state.json" ] || fail "no checkpoint before the kill"
"${train[@]}" --resume 2> "$tmp/train2.log" || fail "resume: $(tail -3 "$tmp/train2.log")"
grep -q "resuming from step" "$tmp/train2.log" || grep -q "done: 40 steps" "$tmp/train1.log" || fail "did not resume"
grep -q "done: 40 steps" "$tmp/train2.log" || fail "resumed run did not finish: $(tail -2 "$tmp/train2.log")"
[ "$(grep -c '"loss"' "$tmp/c/train_log.jsonl")" = 40 ] || fail "train log does not hold each step once"
for f in compressor.json memory.safetensors adapter_config.json adapter_model.safetensors; do
  [ -f "$tmp/c/$f" ] || fail "compressor folder lacks $f"
done
# Data parallel: two worker processes with batch 2 take the steps one process takes with batch 4
# (texts of different lengths: the gradients are weighted by target tokens), and a two-process
# checkpoint resumes under two processes as the one-process run continues (resumed with
# --activation-checkpointing, which changes the memory, not the steps).
for i in $(seq 1 12); do printf '{"text": "Tom saw %d big red balls%s in the park."}\n' "$i" "$(printf ' and a kite%.0s' $(seq 1 $((i % 4))))"; done > "$tmp/dp.jsonl"
dp=("$xcomp" train --model "$tmp/m" --method kv --tokens 2 --train "$tmp/dp.jsonl" --val "$tmp/val.jsonl" --lora-r 4
    --lora-dropout 0 --eval-every 3 --context-length 40 --lr 1e-3 --warmup 2)
losses() { grep -o '"[a-z_]*loss":[-0-9.e]*' "$1/train_log.jsonl" | cut -d: -f2; }
same_losses() {  # same count, each within 1e-5
  paste <(losses "$1") <(losses "$2") | awk -v n="$(losses "$1" | wc -l)" '
    { d = $1 - $2; if (d < 0) d = -d; if ($2 == "" || d > 1e-5) bad = 1; rows++ }
    END { exit (bad || rows != n || n == 0) }'
}
"${dp[@]}" --steps 6 --batch-size 4 --out "$tmp/dp1" 2> "$tmp/dp1.log" || fail "one-process run: $(tail -2 "$tmp/dp1.log")"
"${dp[@]}" --steps 3 --batch-size 2 --nproc 2 --out "$tmp/dp2" 2> "$tmp/dp2.log" || fail "--nproc 2: $(tail -3 "$tmp/dp2.log")"
grep -q "2 processes x batch 2" "$tmp/dp2.log" || fail "--nproc 2 did not say so: $(cat "$tmp/dp2.log")"
[ "$(grep -c '^training' "$tmp/dp2.log")" = 1 ] || fail "more than rank 0 printed progress"
"${dp[@]}" --steps 6 --batch-size 2 --nproc 2 --out "$tmp/dp2" --resume --activation-checkpointing 2> "$tmp/dp3.log" || fail "--nproc 2 --resume: $(tail -3 "$tmp/dp3.log")"
grep -q "resuming from step 3" "$tmp/dp3.log" || fail "--nproc 2 did not resume"
same_losses "$tmp/dp1" "$tmp/dp2" || fail "two processes x batch 2 differ from one x batch 4: $(paste <(losses "$tmp/dp1") <(losses "$tmp/dp2"))"
for f in compressor.json memory.safetensors adapter_model.safetensors; do [ -f "$tmp/dp2/$f" ] || fail "--nproc 2 wrote no $f"; done
# Pretraining a base, the same way (with --activation-checkpointing): a tokenizer trained here, a
# 2-layer config.
"$xcomp" tokenizer train --input "$tmp/dp.jsonl" --vocab-size 300 --out "$tmp/tok.json" > "$tmp/tok.log" 2>&1 ||
  fail "tokenizer train: $(cat "$tmp/tok.log")"
vocab=$(grep -o 'tok.json: [0-9]* tokens' "$tmp/tok.log" | grep -o '[0-9]*')
[ -n "$vocab" ] || fail "tokenizer train did not say its size: $(cat "$tmp/tok.log")"
cat > "$tmp/pt.json" <<EOF
{"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
 "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": $vocab, "max_position_embeddings": 64,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}
EOF
pt=("$xcomp" pretrain --config "$tmp/pt.json" --tokenizer "$tmp/tok.json" --train "$tmp/dp.jsonl" --val "$tmp/val.jsonl"
    --seq-len 16 --steps 4 --eval-every 2 --warmup 1)
"${pt[@]}" --batch-size 4 --out "$tmp/pt1" 2> "$tmp/pt1.log" || fail "pretrain: $(tail -2 "$tmp/pt1.log")"
"${pt[@]}" --batch-size 2 --nproc 2 --activation-checkpointing --out "$tmp/pt2" 2> "$tmp/pt2.log" || fail "pretrain --nproc 2: $(tail -3 "$tmp/pt2.log")"
cp "$tmp/pt1/pretrain_log.jsonl" "$tmp/pt1/train_log.jsonl"  # where same_losses looks
cp "$tmp/pt2/pretrain_log.jsonl" "$tmp/pt2/train_log.jsonl"
same_losses "$tmp/pt1" "$tmp/pt2" || fail "pretrain: two processes x batch 2 differ from one x batch 4"
for f in config.json model.safetensors tokenizer.json; do [ -f "$tmp/pt2/$f" ] || fail "pretrain --nproc 2 wrote no $f"; done
# A worker that fails stops the run with an error naming it (and none hangs).
if timeout 120 "$xcomp" train --model "$tmp/m" --train "$tmp/dp.jsonl" --val "$tmp/missing.jsonl" --lora-r 4 --steps 2 \
     --context-length 40 --nproc 2 --out "$tmp/dp4" 2> "$tmp/err.txt"; then
  fail "--nproc with a missing file succeeded"
fi
grep -q "^error: --nproc: worker rank [01] exited with status 1" "$tmp/err.txt" || fail "worker failure: $(cat "$tmp/err.txt")"
grep -q "missing.jsonl" "$tmp/err.txt" || fail "the worker's own error is not shown: $(cat "$tmp/err.txt")"

text="Tom saw a big red ball number 3 in the park."
"$xcomp" compress --model "$tmp/m" --compressor "$tmp/c" --text "$text" --out "$tmp/p.safetensors" 2>/dev/null
"$xcomp" regenerate "$tmp/p.safetensors" --model "$tmp/m" > /dev/null || fail "regenerate"
a1=$("$xcomp" ask "$tmp/p.safetensors" --model "$tmp/m" --question "What did Tom see?")
a2=$("$xcomp" ask --model "$tmp/m" --compressor "$tmp/c" --text "$text" --question "What did Tom see?")
[ "$a1" = "$a2" ] || fail "answer from the file ($a1) differs from the in-process answer ($a2)"
"$xcomp" ask --model "$tmp/m" --text "$text" --question "What did Tom see?" > /dev/null || fail "full-context ask"
# A bf16 prompt file under f32 compute: half the tensor bytes (the JSON header, ~0.9 kB, stays),
# and it decodes (cast back to f32).
"$xcomp" compress --model "$tmp/m" --compressor "$tmp/c" --text "$text" --out "$tmp/p16.safetensors" --storage-dtype bf16 2>/dev/null
s32=$(stat -c %s "$tmp/p.safetensors"); s16=$(stat -c %s "$tmp/p16.safetensors")
[ $((s16 * 10)) -lt $((s32 * 7)) ] || fail "bf16 prompt file is $s16 bytes against $s32 in f32"
"$xcomp" ask "$tmp/p16.safetensors" --model "$tmp/m" --question "What did Tom see?" > /dev/null || fail "ask from a bf16 prompt file"
# int8 (a scale per row): the file says I8 and decodes; other dtypes are refused.
"$xcomp" compress --model "$tmp/m" --compressor "$tmp/c" --text "$text" --out "$tmp/p8.safetensors" --storage-dtype int8 2>/dev/null ||
  fail "compress --storage-dtype int8"
grep -qa '"layers.0.k_scale"' < <(head -c 3000 "$tmp/p8.safetensors") || fail "int8 prompt file has no scales"
"$xcomp" ask "$tmp/p8.safetensors" --model "$tmp/m" --question "What did Tom see?" > /dev/null || fail "ask from an int8 prompt file"
if "$xcomp" compress --model "$tmp/m" --compressor "$tmp/c" --text "$text" --out "$tmp/p4.safetensors" --storage-dtype int4 2> "$tmp/err.txt"; then fail "int4 prompt storage accepted"; fi
grep -q "^error: --storage-dtype: unknown dtype 'int4' (use f32, bf16, f16 or int8)" "$tmp/err.txt" || fail "storage dtype message: $(cat "$tmp/err.txt")"
# Beam search and repetition controls reach the decoder; bad values are errors naming the field.
"$xcomp" regenerate "$tmp/p.safetensors" --model "$tmp/m" --num-beams 3 --no-repeat-ngram-size 2 \
  --repetition-penalty 1.2 > /dev/null || fail "regenerate with beam search"
b1=$("$xcomp" ask "$tmp/p.safetensors" --model "$tmp/m" --question "What did Tom see?" --num-beams 3)
b2=$("$xcomp" ask --model "$tmp/m" --compressor "$tmp/c" --text "$text" --question "What did Tom see?" --num-beams 3)
[ "$b1" = "$b2" ] || fail "beam answer from the file ($b1) differs from the in-process one ($b2)"
if "$xcomp" generate --model "$tmp/m" --prompt x --num-beams 2 --temperature 0.5 2> "$tmp/err.txt"; then fail "sampled beams accepted"; fi
grep -q "^error: num_beams" "$tmp/err.txt" || fail "beams message: $(cat "$tmp/err.txt")"
if "$xcomp" regenerate "$tmp/p.safetensors" --model "$tmp/m" --repetition-penalty 0 2> "$tmp/err.txt"; then fail "penalty 0 accepted"; fi
grep -q "^error: repetition_penalty" "$tmp/err.txt" || fail "penalty message: $(cat "$tmp/err.txt")"
printf '{"context": "%s", "question": "What did Tom see?"}\n' "$text" "$text" > "$tmp/batch.jsonl"
[ "$("$xcomp" ask --model "$tmp/m" --compressor "$tmp/c" --batch "$tmp/batch.jsonl" | wc -l)" = 2 ] || fail "--batch"
# eval gain: one row per compressor in gain.tsv; a length beyond the context is refused.
"$xcomp" eval gain --model "$tmp/m" --compressors "$tmp/c" --objective regen --data "$tmp/val.jsonl" --length 8 \
  --out "$tmp/gain" > "$tmp/gain.md" 2>/dev/null || fail "eval gain"
[ "$(wc -l < "$tmp/gain/gain.tsv")" = 2 ] && grep -q "^| c | regen | 4 | 36 |" "$tmp/gain.md" || fail "gain report: $(cat "$tmp/gain.md")"
if "$xcomp" eval gain --model "$tmp/m" --compressors "$tmp/c" --data "$tmp/val.jsonl" --length 64 --out "$tmp/gain2" 2> "$tmp/err.txt"; then
  fail "gain length beyond the context accepted"
fi
grep -q "^error: .*exceeds the context length 32" "$tmp/err.txt" || fail "gain length message: $(cat "$tmp/err.txt")"
# --storage-dtype int8: the prompts decoded as their int8 files read back, and the report says so.
"$xcomp" eval gain --model "$tmp/m" --compressors "$tmp/c" --objective regen --data "$tmp/val.jsonl" --length 8 \
  --storage-dtype int8 --out "$tmp/gain8" > "$tmp/gain8.md" 2>/dev/null || fail "eval gain --storage-dtype int8"
grep -q "stored in int8 (a scale per row)" "$tmp/gain8.md" || fail "gain int8 report: $(cat "$tmp/gain8.md")"
# eval --nproc 2: two ranks share the batches (of one here: 2 + 1 questions) and the first writes
# the very reports one process writes; gain's single batch leaves rank 1 nothing to do.
{
  echo '{"context": "Tom had a red ball.", "question": "What did Tom have?", "answers": ["a red ball"]}'
  echo '{"context": "Lily was happy in the sun.", "question": "Who was happy?", "answers": ["Lily"]}'
  echo '{"context": "The dog ran to the park.", "question": "Where did the dog run?", "answers": ["the park"]}'
} > "$tmp/qa3.jsonl"
for n in 1 2; do
  "$xcomp" eval qa --model "$tmp/m" --compressors "$tmp/c" --data "$tmp/qa3.jsonl" --batch-size 1 --nproc $n \
    --out "$tmp/qa_np$n" > /dev/null 2> "$tmp/np.log" || fail "eval qa --nproc $n: $(tail -3 "$tmp/np.log")"
  "$xcomp" eval regen --model "$tmp/m" --compressors "$tmp/c" --data "$tmp/val.jsonl" --lengths 4,8 --batch-size 1 \
    --nproc $n --out "$tmp/rg_np$n" > /dev/null 2> "$tmp/np.log" || fail "eval regen --nproc $n: $(tail -3 "$tmp/np.log")"
done
cmp -s "$tmp/qa_np1/answers.jsonl" "$tmp/qa_np2/answers.jsonl" && cmp -s "$tmp/qa_np1/qa.tsv" "$tmp/qa_np2/qa.tsv" \
  || fail "eval qa --nproc 2 differs from one process: $(diff "$tmp/qa_np1/qa.tsv" "$tmp/qa_np2/qa.tsv")"
[ "$(wc -l < "$tmp/qa_np2/answers.jsonl")" = 3 ] || fail "eval qa --nproc 2 answered $(wc -l < "$tmp/qa_np2/answers.jsonl") questions"
cmp -s "$tmp/rg_np1/regen.tsv" "$tmp/rg_np2/regen.tsv" || fail "eval regen --nproc 2 differs: $(diff "$tmp/rg_np1/regen.tsv" "$tmp/rg_np2/regen.tsv")"
"$xcomp" eval gain --model "$tmp/m" --compressors "$tmp/c" --objective regen --data "$tmp/val.jsonl" --length 8 \
  --nproc 2 --out "$tmp/gain_np2" > /dev/null 2>&1 || fail "eval gain --nproc 2"
cmp -s "$tmp/gain/gain.tsv" "$tmp/gain_np2/gain.tsv" || fail "eval gain --nproc 2 differs"
# compressor export (bf16 storage) and the demo on a models folder made of these.
"$xcomp" compressor export "$tmp/c" --model "$tmp/m" --out "$tmp/models/compressors/kv-regen-n2" 2>/dev/null || fail "export"
[ "$(stat -c %s "$tmp/models/compressors/kv-regen-n2/adapter_model.safetensors")" -lt "$(stat -c %s "$tmp/c/adapter_model.safetensors")" ] \
  || fail "bf16 export is not smaller"
# Continuing from a bf16 export on every 4-token chunk of each text (the GPU extend stage's
# run): more training texts than lines, validation still one text per line.
"$xcomp" train --model "$tmp/m" --init "$tmp/models/compressors/kv-regen-n2" --train "$tmp/train.jsonl" \
  --val "$tmp/val.jsonl" --out "$tmp/c5" --steps 1 --batch-size 4 --text-tokens 4 --text-chunks 2> "$tmp/chunks.log" \
  || fail "train --text-chunks from an export: $(tail -2 "$tmp/chunks.log")"
n_chunks=$(grep -o "on [0-9]* examples, 4 for validation" "$tmp/chunks.log" | grep -o "^on [0-9]*" | grep -o "[0-9]*")
[ -n "$n_chunks" ] && [ "$n_chunks" -gt 24 ] || fail "text chunks: $(grep examples "$tmp/chunks.log")"
# Decoder anchor: set at train time (kv, compact positions), carried by the compressed prompt,
# changed by export; refused with a clear error for the paper layout, writing nothing.
"$xcomp" train --model "$tmp/m" --method kv --tokens 2 --train "$tmp/train.jsonl" --out "$tmp/c2" --lora-r 4 --steps 2 \
  --batch-size 4 --context-length 32 --positions compact --decoder-anchor 4 2> /dev/null || fail "train with an anchor"
grep -q '"decoder_anchor": 4' "$tmp/c2/compressor.json" || fail "anchor not saved"
"$xcomp" compress --model "$tmp/m" --compressor "$tmp/c2" --text "$text" --out "$tmp/p2.safetensors" 2>/dev/null
start=$(head -c 2000 "$tmp/p2.safetensors" | grep -ao '"decoder_start":"[0-9]*"' | grep -o '[0-9]*')
[ -n "$start" ] && [ "$start" -gt 2 ] || fail "decoder_start '$start' does not follow the anchor"
"$xcomp" compressor export "$tmp/c2" --model "$tmp/m" --out "$tmp/c3" --decoder-anchor -1 2>/dev/null || fail "export anchor"
grep -q '"decoder_anchor": -1' "$tmp/c3/compressor.json" || fail "export did not set the anchor"
if "$xcomp" compressor export "$tmp/c" --model "$tmp/m" --out "$tmp/c4" --decoder-anchor 4 2> "$tmp/err.txt"; then
  fail "anchor on the paper layout accepted"; fi
grep -q "^error: .*decoder_anchor" "$tmp/err.txt" || fail "anchor message: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/c4" ] || fail "export wrote a folder despite the error"
if "$xcomp" train --model "$tmp/m" --train "$tmp/train.jsonl" --out "$tmp/sched-bad" --lora-r 4 --steps 2 --lr-schedule step \
  2> "$tmp/err.txt"; then fail "bad --lr-schedule accepted"; fi
grep -q "^error: --lr-schedule" "$tmp/err.txt" || fail "schedule message: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/sched-bad" ] || fail "train wrote a folder despite the schedule error"
"$xcomp" train --model "$tmp/m" --method kv --tokens 2 --train "$tmp/train.jsonl" --out "$tmp/sched-linear" --lora-r 4 --steps 4 \
  --batch-size 4 --warmup 1 --lr-schedule linear 2> /dev/null || fail "train with a linear schedule"
grep -q '"lr":0.0,' "$tmp/sched-linear/train_log.jsonl" || grep -q '"lr":0,' "$tmp/sched-linear/train_log.jsonl" ||
  fail "linear schedule did not end at lr 0: $(cat "$tmp/sched-linear/train_log.jsonl")"
mkdir -p "$tmp/models/base" && cp "$tmp/m"/* "$tmp/models/base/"
"$xcomp" demo --models "$tmp/models" --tokens 2 --text "$text" --question "What did Tom see?" > "$tmp/demo.txt" || fail "demo"
grep -q "500xCompressor (kv), compressed prompt" "$tmp/demo.txt" || fail "demo output: $(cat "$tmp/demo.txt")"
grep -q "ICAE (icae): no compressors" "$tmp/demo.txt" || fail "demo without icae: $(cat "$tmp/demo.txt")"
# Counts out of range are refused by flag (--batch-size 0 said "no texts given", -1 was taken,
# demo --tokens -1 looked for compressors named n-1).
for bad in "compress --batch-size 0" "compress --batch-size -1" "demo --tokens -1" "demo --length -1"; do
  read -r -a words <<< "$bad"  # command, flag, value
  if [ "${words[0]}" = demo ]; then args=(demo --models "$tmp/models" --text "$text" --question "What did Tom see?")
  else args=(compress --model "$tmp/m" --compressor "$tmp/c2" --text "$text" --out "$tmp/bad.safetensors"); fi
  if "$xcomp" "${args[@]}" "${words[@]:1}" > /dev/null 2> "$tmp/err.txt"; then fail "$bad accepted"; fi
  grep -q -- "${words[1]}" "$tmp/err.txt" || fail "$bad message: $(cat "$tmp/err.txt")"
done
if "$xcomp" demo --models "$tmp/none" 2> "$tmp/err.txt"; then fail "demo without models accepted"; fi
grep -q "^error: .*none/base" "$tmp/err.txt" || fail "demo message: $(cat "$tmp/err.txt")"
# serve (when built with cpp-httplib): a real server on a free port over that models folder;
# compress, then regenerate from the stored id, identical to `xcomp regenerate` of the same file
# (kept in bf16: --storage-dtype); SIGTERM stops it cleanly and the --store folder keeps the prompt.
if "$xcomp" serve --help > /dev/null 2>&1; then
  : > "$tmp/serve.log"  # exists before the background job's redirection (a race under load)
  printf '# test key\nxcomp-cli-test-key-0123456789\n' > "$tmp/keys"
  auth="Authorization: Bearer xcomp-cli-test-key-0123456789"
  "$xcomp" serve --models "$tmp/models" --port 0 --store "$tmp/store" --storage-dtype bf16 --cache-mib 0.5 --api-key-file "$tmp/keys" 2>> "$tmp/serve.log" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT  # whatever fails below, the server goes too
  port=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/serve.log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "serve exited: $(cat "$tmp/serve.log")"
    sleep 0.2
  done
  [ -n "$port" ] || fail "serve did not start: $(cat "$tmp/serve.log")"
  url="http://127.0.0.1:$port"
  grep -q '"ok"' <<< "$(curl -sf "$url/health")" || fail "serve /health"
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/info")
  [ "$code" = 401 ] || fail "serve --api-key-file: /v1/info without a key gave HTTP $code"
  body=$(curl -sf -H "$auth" "$url/v1/compress" -d "{\"compressor\": \"kv-regen-n2\", \"text\": \"$text\"}") || fail "serve compress"
  id=$(echo "$body" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
  [ ${#id} -eq 32 ] || fail "serve compress answered $body"
  got=$(curl -sf -H "$auth" "$url/v1/regenerate" -d "{\"id\": \"$id\"}" | sed -n 's/.*"text":"\([^"]*\)".*/\1/p')
  want=$("$xcomp" regenerate "$tmp/store/$id.safetensors" --model "$tmp/models/base")
  [ "$got" = "$want" ] || fail "serve regenerate '$got' != xcomp regenerate '$want'"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" "$url/v1/regenerate" -d '{"id": "nope"}')
  [ "$code" = 404 ] || fail "serve unknown id gave HTTP $code"
  # Read the whole answer first: with pipefail, grep -q quitting at its match would fail curl on a
  # broken pipe once /metrics outgrows one write.
  metrics=$(curl -sf -H "$auth" "$url/metrics") || fail "serve /metrics: HTTP error"
  grep -q '^xcomp_texts_compressed_total 1$' <<< "$metrics" || fail "serve /metrics: $metrics"
  grep -q '^xcomp_cached_prompt_bytes [1-9]' <<< "$metrics" || fail "serve /metrics cache bytes: $metrics"
  grep -q '"cache_max_bytes":524288' <<< "$(curl -sf -H "$auth" "$url/v1/info")" || fail "serve --cache-mib: $(curl -s -H "$auth" "$url/v1/info")"
  # A second server over the same store folder is refused (its index would fight the first's).
  if "$xcomp" serve --models "$tmp/models" --port 0 --store "$tmp/store" 2> "$tmp/err2.txt"; then fail "second server on one store started"; fi
  grep -q "^error: $tmp/store: is the prompt store of another running xcomp serve (pid $pid)" "$tmp/err2.txt" ||
    fail "second server's message: $(cat "$tmp/err2.txt")"
  kill -TERM "$pid"
  wait "$pid" || fail "serve exit status $? after SIGTERM: $(cat "$tmp/serve.log")"
  trap 'rm -rf "$tmp"' EXIT
  grep -q "^POST /v1/compress 200" "$tmp/serve.log" || fail "serve request log: $(cat "$tmp/serve.log")"
  [ -f "$tmp/store/$id.safetensors" ] || fail "serve --store lost the prompt"
  grep -qa '"dtype":"BF16"' < <(head -c 2000 "$tmp/store/$id.safetensors") || fail "serve --storage-dtype bf16 wrote $(head -c 300 "$tmp/store/$id.safetensors")"
  if "$xcomp" serve --models "$tmp/models" --port 0 --storage-dtype int4 2> "$tmp/err.txt"; then fail "serve --storage-dtype int4 accepted"; fi
  grep -q "^error: --storage-dtype" "$tmp/err.txt" || fail "serve storage message: $(cat "$tmp/err.txt")"
  if "$xcomp" serve --models "$tmp/models" --port 0 --cache-mib -1 2> "$tmp/err.txt"; then fail "serve --cache-mib -1 accepted"; fi
  grep -q "^error: --cache-mib" "$tmp/err.txt" || fail "serve cache size message: $(cat "$tmp/err.txt")"
  if "$xcomp" serve --models "$tmp/models" --port 0 --store-max-mib -1 2> "$tmp/err.txt"; then fail "serve --store-max-mib -1 accepted"; fi
  grep -q "^error: --store-max-mib" "$tmp/err.txt" || fail "serve store size message: $(cat "$tmp/err.txt")"
  if "$xcomp" serve --models "$tmp/models" --port 0 --store-max-prompts 8 2> "$tmp/err.txt"; then fail "serve --store-max-prompts 8 accepted"; fi
  grep -q "^error: .*--store-max-prompts.*max_batch (64)" "$tmp/err.txt" || fail "serve store count message: $(cat "$tmp/err.txt")"
  if "$xcomp" serve --models "$tmp/models" --port 0 --http-threads 0 2> "$tmp/err.txt"; then fail "serve --http-threads 0 accepted"; fi
  grep -q "^error: --http-threads" "$tmp/err.txt" || fail "serve threads message: $(cat "$tmp/err.txt")"
  if "$xcomp" serve --models "$tmp/none" --port 0 2> "$tmp/err.txt"; then fail "serve without models accepted"; fi
  grep -q "^error: .*none/base" "$tmp/err.txt" || fail "serve message: $(cat "$tmp/err.txt")"
fi
# A corrupt compressed prompt is a clear error.
head -c 100 "$tmp/p.safetensors" > "$tmp/bad.safetensors"
if "$xcomp" regenerate "$tmp/bad.safetensors" --model "$tmp/m" 2> "$tmp/err.txt"; then fail "corrupt file accepted"; fi
grep -q "^error: .*bad.safetensors" "$tmp/err.txt" || fail "corrupt message: $(cat "$tmp/err.txt")"
# data make-qa: pairs whose answers are spans of their contexts, a type histogram, and a clear
# error naming the line of a malformed input.
cat > "$tmp/abs.jsonl" <<'JSON'
{"id": "a1", "abstract": "We propose a sparse attention scheme for long documents. Graph neural networks (GNNs) are widely used."}
{"id": "a2", "abstract": "The model is trained using stochastic gradient descent. Our method improves accuracy by 4.5% on average."}
JSON
"$xcomp" data make-qa --input "$tmp/abs.jsonl" --out "$tmp/qa.jsonl" --report "$tmp/qarep" 2> "$tmp/qa.log" || fail "make-qa: $(cat "$tmp/qa.log")"
[ "$(wc -l < "$tmp/qa.jsonl")" -ge 4 ] || fail "make-qa made too few pairs"
grep -q '"question":"What does GNN stand for?"' "$tmp/qa.jsonl" || fail "make-qa lacks the acronym question"
grep -q "| acronym |" "$tmp/qarep/qa_types.md" || fail "make-qa histogram"
echo '{"id": "x", "abstract": 3}' >> "$tmp/abs.jsonl"
if "$xcomp" data make-qa --input "$tmp/abs.jsonl" --out "$tmp/qa2.jsonl" 2> "$tmp/err.txt"; then fail "bad abstract accepted"; fi
grep -q "^error: .*abs.jsonl:3" "$tmp/err.txt" || fail "make-qa message: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/qa2.jsonl" ] || fail "make-qa wrote output despite the error"
echo "cli ok"
