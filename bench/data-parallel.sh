#!/usr/bin/env bash
# Data-parallel compressor training on this machine: the same global batch trained by one process
# (all cores) and by P processes (the cores shared out), on the shipped base with arXiv abstracts
# cut to 96 tokens. Prints each run's training tokens/s (from train_log.jsonl, the last step)
# and wall time, and their ratio; docs/BENCHMARKS.md.
#   bench/data-parallel.sh [XCOMP] [P (2)] [STEPS (30)] [GLOBAL_BATCH (16)]
set -euo pipefail
xcomp="${1:-build/release/xcomp}"
nproc="${2:-2}"
steps="${3:-30}"
batch="${4:-16}"
data="${XCOMP_DATA_DIR:-$(dirname "$0")/../../shared/data}"
models="$(dirname "$0")/../models"
[ -x "$xcomp" ] || { echo "error: $xcomp: not built (scripts/build.sh)" >&2; exit 1; }
[ -f "$data/arxiv/train.jsonl.gz" ] || { echo "error: $data/arxiv/train.jsonl.gz: not found (set XCOMP_DATA_DIR)" >&2; exit 1; }
(( batch % nproc == 0 )) || { echo "error: GLOBAL_BATCH $batch is not a multiple of P $nproc" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ zcat "$data/arxiv/train.jsonl.gz" || true; } | head -2000 > "$tmp/train.jsonl"  # zcat stops at the pipe
common=("$xcomp" train --model "$models/base" --method kv --tokens 4 --train "$tmp/train.jsonl" --text-tokens 96
        --positions compact --encoder lora --lora-r 32 --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
        --lora-dropout 0 --steps "$steps" --eval-every 1000000 --save-every 1000000 --warmup 5 --lr 1e-3 --dtype f32)
run() {  # NAME, extra flags
  local name="$1"
  shift
  local t0 t1
  t0=$(date +%s%N)
  "${common[@]}" --out "$tmp/$name" "$@" 2> "$tmp/$name.log" || { tail -3 "$tmp/$name.log" >&2; exit 1; }
  t1=$(date +%s%N)
  local tok loss
  tok=$(tail -1 "$tmp/$name/train_log.jsonl" | grep -o '"tokens_per_s":[0-9.e+]*' | cut -d: -f2)
  loss=$(tail -1 "$tmp/$name/train_log.jsonl" | grep -o '"loss":[-0-9.e]*' | cut -d: -f2)
  printf '%-28s %8.0f tokens/s  %6.1f s wall  last loss %s\n' "$name" "$tok" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')" "$loss"
  echo "$tok" > "$tmp/$name.tok"
}
echo "$(nproc) CPUs; $steps steps of a global batch of $batch 96-token abstracts (kv N=4, LoRA r 32, shipped base)"
run one-process --batch-size "$batch"
run "$nproc-processes" --batch-size $((batch / nproc)) --nproc "$nproc"
awk -v p="$(cat "$tmp/$nproc-processes.tok")" -v o="$(cat "$tmp/one-process.tok")" -v n="$nproc" \
  'BEGIN { printf "ratio (%d processes / one): %.2f\n", n, p / o }' 
