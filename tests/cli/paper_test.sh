#!/usr/bin/env bash
# scripts/paper.sh end to end at toy scale: the paper's stages (regeneration, QA from it, the
# evaluations) for kv and icae on stories260K, two processes each, then a rerun that finds every
# compressor done, and a stage resumed from its checkpoint. Usage: paper_test.sh XCOMP DATA REPO
set -euo pipefail
xcomp="$1"; data="$2"; repo="$3"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$xcomp" convert llama2c "$data/models/stories260K/stories260K.bin" "$data/models/stories260K/tok512.bin" --out "$tmp/m" 2>/dev/null
for i in $(seq 1 12); do printf '{"text": "Tom saw a big red ball number %d in the park."}\n' "$i"; done > "$tmp/texts.jsonl"
for i in $(seq 1 6); do
  printf '{"context": "Tom saw a big red ball number %d in the park.", "question": "What did Tom see?", "answers": ["a big red ball"]}\n' "$i"
done > "$tmp/qa.jsonl"
export MODEL="$tmp/m" OUT="$tmp/run" XCOMP="$xcomp" NS=2 DEVICE=cpu DTYPE=f32 NPROC=2 BATCH=2 CONTEXT=24 \
  LORA_R=4 LORA_ALPHA=8 WARMUP=1 SAVE_EVERY=1 LENGTHS=4,8 REGEN_STEPS=3 QA_EPOCHS=1 \
  REGEN_TRAIN="$tmp/texts.jsonl" REGEN_VAL="$tmp/texts.jsonl" REGEN_TEST="$tmp/texts.jsonl" \
  QA_TRAIN="$tmp/qa.jsonl" QA_VAL="$tmp/qa.jsonl" QA_TEST="$tmp/qa.jsonl"
"$repo/scripts/paper.sh" > "$tmp/run.log" 2>&1 || fail "paper.sh: $(tail -5 "$tmp/run.log")"
for name in kv-regen-n2 icae-regen-n2 kv-qa-n2 icae-qa-n2; do
  [ -f "$tmp/run/$name/paper_done" ] && [ -f "$tmp/run/$name/compressor.json" ] || fail "$name not finished"
done
# QA: 6 lines, one epoch at 2 per process x 2 processes: 2 steps; regeneration: REGEN_STEPS.
grep -q '"step": 2,' "$tmp/run/kv-qa-n2/checkpoint/state.json" || fail "QA steps: $(cat "$tmp/run/kv-qa-n2/checkpoint/state.json")"
grep -q '"step": 3,' "$tmp/run/icae-regen-n2/checkpoint/state.json" || fail "regeneration steps"
grep -q '"world_size": 2' "$tmp/run/kv-regen-n2/checkpoint/state.json" || fail "not two processes"
grep -q "q_proj" "$tmp/run/kv-regen-n2/compressor.json" && ! grep -q "o_proj" "$tmp/run/kv-regen-n2/compressor.json" ||
  fail "LoRA targets are not the reference's q_proj,v_proj"
grep -q '"positions": "paper"' "$tmp/run/kv-regen-n2/compressor.json" || fail "not the paper's positions"
# icae regenerates as the reference's does (right after its AE embedding); QA keeps it.
for name in icae-regen-n2 icae-qa-n2; do
  grep -q '"regeneration_prefix": "ae"' "$tmp/run/$name/compressor.json" || fail "$name: not the reference's icae prefix"
done
grep -q "| kv-qa-n2 | .* | .* | .*% |" "$tmp/run/eval/qa/qa.md" || fail "QA report: $(head -20 "$tmp/run/eval/qa/qa.md")"
grep -q "| kv-regen-n2 (kv, N=2) |" "$tmp/run/eval/regen/regen.md" || fail "regeneration report"
# A rerun trains nothing; a regeneration run stopped early (its marker gone, more steps asked)
# continues from its checkpoint to the new end.
"$repo/scripts/paper.sh" regen qa > "$tmp/again.log" 2>&1 || fail "rerun: $(tail -3 "$tmp/again.log")"
[ "$(grep -c ': done$' "$tmp/again.log")" = 4 ] || fail "rerun trained again: $(cat "$tmp/again.log")"
rm "$tmp/run/kv-regen-n2/paper_done"
REGEN_STEPS=5 METHODS=kv "$repo/scripts/paper.sh" regen > "$tmp/more.log" 2>&1 || fail "continue: $(tail -3 "$tmp/more.log")"
grep -q "resuming from step 3" "$tmp/more.log" && grep -q '"step": 5,' "$tmp/run/kv-regen-n2/checkpoint/state.json" ||
  fail "did not continue from step 3: $(tail -5 "$tmp/more.log")"
# Missing settings are named.
if MODEL="$tmp/nowhere" "$repo/scripts/paper.sh" regen 2> "$tmp/err.txt"; then fail "missing model accepted"; fi
grep -q "MODEL=.*nowhere" "$tmp/err.txt" || fail "model message: $(cat "$tmp/err.txt")"
if REGEN_VAL= "$repo/scripts/paper.sh" regen 2> "$tmp/err.txt"; then fail "missing REGEN_VAL accepted"; fi
grep -q "REGEN_VAL is not set" "$tmp/err.txt" || fail "data message: $(cat "$tmp/err.txt")"
echo "paper.sh: ok"
