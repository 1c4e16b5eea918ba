#!/usr/bin/env bash
# The few-row CPU kernel (matvec) against torch's matmul in decoding: a random bf16 LLaMA
# (default: the 0.5B config in bench/configs) benchmarked with f32, bf16 (under f32 compute) and
# int8 weights, each with and without `--no-matvec`, at batch 1, 4 and 16; then the shipped base
# (models/base, f32) the same way. Prints `xcomp bench`'s figures; docs/BENCHMARKS.md.
#   bench/matvec.sh [XCOMP] [CONFIG] [THREADS]
set -euo pipefail
xcomp="${1:-build/release/xcomp}"
config="${2:-$(dirname "$0")/configs/random-0.5b.json}"
threads="${3:-0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$xcomp" ] || { echo "error: $xcomp: not built (scripts/build.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$xcomp" init --config "$config" --out "$tmp/model" --dtype bf16
run() {
  echo "== $*"
  "$xcomp" bench --threads "$threads" "$@" 2>&1 | grep -E "^(prefill|decode|few-row|resident)"
}
for weights in f32 bf16 int8; do
  for batch in 1 4 16; do
    for kernel in "" --no-matvec; do
      run --model "$tmp/model" --prompt-tokens 32 --decode-tokens 32 --repeats 2 --batch "$batch" \
        --dtype f32 --weights-dtype "$weights" $kernel
    done
  done
done
for kernel in "" --no-matvec; do
  run --model "$root/models/base" --prompt-tokens 128 --decode-tokens 64 --repeats 3 --dtype f32 $kernel
done
