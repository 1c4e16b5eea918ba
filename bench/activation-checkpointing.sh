#!/usr/bin/env bash
# Activation checkpointing in compressor training: the same run (a random 0.5B LLaMA from
# bench/configs with the shipped tokenizer, kv N=16, the paper's layout: texts padded to 496
# tokens, regeneration of arXiv abstracts) with and without --activation-checkpointing. Prints
# each run's peak resident memory (GNU time), seconds per step and last loss (the same losses:
# the gradients are the same), and the ratios; docs/BENCHMARKS.md.
#   bench/activation-checkpointing.sh [XCOMP] [BATCH (2)] [STEPS (3)] [DTYPE (bf16)]
set -euo pipefail
xcomp="${1:-build/release/xcomp}"
batch="${2:-2}"
steps="${3:-3}"
dtype="${4:-bf16}"
here="$(dirname "$0")"
data="${XCOMP_DATA_DIR:-$here/../../shared/data}"
[ -x "$xcomp" ] || { echo "error: $xcomp: not built (scripts/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time not found (Debian package: time)" >&2; exit 1; }
[ -f "$data/arxiv/train.jsonl.gz" ] || { echo "error: $data/arxiv/train.jsonl.gz: not found (set XCOMP_DATA_DIR)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The 0.5B shape over the shipped tokenizer's vocabulary and special ids.
sed -e 's/"vocab_size": [0-9]*/"vocab_size": 8192/' -e 's/"bos_token_id": [0-9]*/"bos_token_id": 8190/' \
    -e 's/"eos_token_id": [0-9]*/"eos_token_id": 8191/' "$here/configs/random-0.5b.json" > "$tmp/config.json"
"$xcomp" init --config "$tmp/config.json" --out "$tmp/model" --dtype bf16 > /dev/null 2>&1
cp "$here/../models/base/tokenizer.json" "$tmp/model/"
{ zcat "$data/arxiv/train.jsonl.gz" || true; } | head -200 > "$tmp/train.jsonl"  # zcat stops at the pipe
common=("$xcomp" train --model "$tmp/model" --method kv --tokens 16 --objective regen --train "$tmp/train.jsonl"
        --positions paper --overflow truncate --encoder lora --lora-dropout 0.05 --batch-size "$batch" --steps "$steps"
        --eval-every 1000000 --save-every 1000000 --warmup 1 --lr 1e-4 --dtype "$dtype")
run() {  # NAME, extra flags
  local name="$1"
  shift
  /usr/bin/time -f '%M %e' -o "$tmp/$name.time" "${common[@]}" --out "$tmp/$name" "$@" 2> "$tmp/$name.log" ||
    { tail -3 "$tmp/$name.log" >&2; exit 1; }
  local rss wall loss
  read -r rss wall < "$tmp/$name.time"
  loss=$(tail -1 "$tmp/$name/train_log.jsonl" | grep -o '"loss":[-0-9.e]*' | cut -d: -f2)
  local elapsed
  elapsed=$(tail -1 "$tmp/$name/train_log.jsonl" | grep -o '"elapsed_s":[0-9.e+]*' | cut -d: -f2)
  printf '%-26s peak RSS %7.0f MiB   %6.1f s/step   last loss %s   (%.0f s wall)\n' "$name" "$((rss / 1024))" \
    "$(awk -v e="$elapsed" -v s="$steps" 'BEGIN { print e / s }')" "$loss" "$wall"
  echo "$((rss / 1024)) $(awk -v e="$elapsed" -v s="$steps" 'BEGIN { print e / s }')" > "$tmp/$name.fig"
}
echo "$(nproc) CPUs; random 0.5B LLaMA ($dtype), kv N=16, paper layout (496 + 16 encoder positions), batch $batch, $steps steps"
run plain
run checkpointed --activation-checkpointing
read -r m0 s0 < "$tmp/plain.fig"
read -r m1 s1 < "$tmp/checkpointed.fig"
awk -v m0="$m0" -v m1="$m1" -v s0="$s0" -v s1="$s1" \
  'BEGIN { printf "checkpointed / plain: peak RSS %.2f (%.0f MiB less), time per step %.2f\n", m1 / m0, m0 - m1, s1 / s0 }'
