#!/usr/bin/env bash
# Compute and storage dtypes on this machine: a random bf16 LLaMA (default: the 0.5B config in
# bench/configs) benchmarked with f32 weights, bf16 weights under f32 compute, int8 weights, and
# bf16 compute (shorter: emulated bf16 is slow on AVX2-only CPUs). Prints `xcomp bench`'s figures
# (weights MiB, peak resident MiB, prefill and decode tokens/s) for each; docs/BENCHMARKS.md.
#   bench/weights-dtype.sh [XCOMP] [CONFIG] [THREADS]
set -euo pipefail
xcomp="${1:-build/release/xcomp}"
config="${2:-$(dirname "$0")/configs/random-0.5b.json}"
threads="${3:-0}"
[ -x "$xcomp" ] || { echo "error: $xcomp: not built (scripts/build.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$xcomp" init --config "$config" --out "$tmp/model" --dtype bf16
run() {
  echo "== $*"
  "$xcomp" bench --model "$tmp/model" --threads "$threads" "$@" 2>&1 | grep -v "^warning"
}
run --prompt-tokens 128 --decode-tokens 16 --repeats 2 --dtype f32 --weights-dtype f32
run --prompt-tokens 128 --decode-tokens 16 --repeats 2 --dtype f32 --weights-dtype bf16
run --prompt-tokens 128 --decode-tokens 16 --repeats 2 --dtype f32 --weights-dtype int8
run --prompt-tokens 32 --decode-tokens 8 --repeats 1 --dtype bf16 --weights-dtype bf16
