#!/usr/bin/env bash
# Data-parallel evaluation on this machine: the same QA evaluation (the shipped base and a shipped
# QA compressor on ArxivQA-style test questions) by one process (all cores) and by P processes
# (the cores shared out, every P-th batch each). Prints each run's wall time and questions/s,
# their ratio, and whether the two reports are identical (they must be); docs/BENCHMARKS.md.
#   bench/eval-parallel.sh [XCOMP] [P (2)] [QUESTIONS (200)] [COMPRESSOR (kv-qa-n4)]
set -euo pipefail
xcomp="${1:-build/release/xcomp}"
nproc="${2:-2}"
questions="${3:-200}"
comp="${4:-kv-qa-n4}"
data="${XCOMP_DATA_DIR:-$(dirname "$0")/../../shared/data}"
models="$(dirname "$0")/../models"
[ -x "$xcomp" ] || { echo "error: $xcomp: not built (scripts/build.sh)" >&2; exit 1; }
[ -d "$models/compressors/$comp" ] || { echo "error: $models/compressors/$comp: no such compressor" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# ArxivQA-style test questions, made from the test abstracts as the recipe makes them.
{ zcat "$data/arxiv/test.jsonl.gz" || true; } | head -100 > "$tmp/abstracts.jsonl"  # zcat stops at the pipe
"$xcomp" data make-qa --input "$tmp/abstracts.jsonl" --out "$tmp/qa.jsonl" 2> /dev/null
common=("$xcomp" eval qa --model "$models/base" --compressors "$models/compressors/$comp" --data "$tmp/qa.jsonl"
        --limit "$questions" --batch-size 8 --dtype f32)
run() {  # NAME, extra flags
  local name="$1"
  shift
  local t0 t1
  t0=$(date +%s%N)
  "${common[@]}" --out "$tmp/$name" "$@" > /dev/null 2> "$tmp/$name.log" || { tail -3 "$tmp/$name.log" >&2; exit 1; }
  t1=$(date +%s%N)
  local s
  s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')
  printf '%-14s %7.1f s wall  %6.2f questions/s (3 rows: zero-shot, full context, %s)\n' "$name" "$s" \
    "$(awk -v s="$s" -v q="$questions" 'BEGIN { print 3 * q / s }')" "$comp"
  echo "$s" > "$tmp/$name.s"
}
echo "$(nproc) CPUs; $questions ArxivQA-style test questions, batches of 8, shipped base + $comp, f32"
run one-process
run "$nproc-processes" --nproc "$nproc"
awk -v p="$(cat "$tmp/$nproc-processes.s")" -v o="$(cat "$tmp/one-process.s")" -v n="$nproc" \
  'BEGIN { printf "speed-up (%d processes / one): %.2f\n", n, o / p }'
if cmp -s "$tmp/one-process/answers.jsonl" "$tmp/$nproc-processes/answers.jsonl" && cmp -s "$tmp/one-process/qa.tsv" "$tmp/$nproc-processes/qa.tsv"; then
  echo "reports identical"
else
  echo "reports DIFFER" >&2
  exit 1
fi
