#!/usr/bin/env bash
# GPU host: builds the xcomp CLI against the PyTorch install's CUDA libtorch (headers and
# libraries from .devx: scripts/device/pack-extend.sh), then runs the recipe's extend-regen and
# extend-qa stages (scripts/default-model.sh) on the GPU, the 6 runs of each side by side, and
# writes the results exported in bf16 (with their logs) to $OUT/regen.tar and $OUT/qa.tar.
# Usage: scripts/device/extend.sh [BUDGET_S]   the whole script's wall time (540): what the build
# leaves, less 40 s for start-up, validation and export (the H200 run of 2026-11-26 used 15 s of
# the 100 it kept then), is split 55:45 between the stages. Give the device call a timeout ~30 s
# above BUDGET_S. GPU rounds 1-2 of the shipped models used the EXTEND_* defaults (the H200 was
# launch-bound with them: 100% busy at 13-34% memory bandwidth); round 3 (H100) ran
# EXTEND_STRIDE=48 EXTEND_BATCH=128 EXTEND_QA_BATCH=64 EXTEND_QA_FROM=$PWD/models/compressors
# (twice the batch: ~1.3x the regeneration texts/s, the same QA abstracts/s; models/MODEL_CARD.md).
# Environment: XCOMP (a built binary: no build), DEVICE (cuda), NS, METHODS (passed on),
# EXTEND_QA (1; 0: regeneration only, with the QA stage's time), EXTEND_FROM (models/compressors),
# and the other EXTEND_* of scripts/default-model.sh (EXTEND_BATCH, EXTEND_QA_BATCH, EXTEND_STRIDE,
# EXTEND_QA_FROM: give an absolute path; EXTEND_LR_SCHEDULE=linear with EXTEND_REGEN_RATE and
# EXTEND_QA_RATE, the steps/s of one run, decays the lr to 0 by the end of each stage's time: on
# the CPU, the decay beat a constant lr by 0.056 nats at the same 1,000 steps), passed on.
set -uo pipefail
t0=$(date +%s)
budget="${1:-540}"
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
deps="$PWD/.devx"
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
x="${XCOMP:-}"
if [ -z "$x" ]; then
  torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  cmake -S . -B build/cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DXCOMP_BUILD_TESTS=OFF -DXCOMP_USE_JEMALLOC=OFF \
    -DCMAKE_PREFIX_PATH="$deps/usr;$torch_prefix" > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  cmake --build build/cuda -j16 --target xcomp_cli > "$OUT/build.log" 2>&1 ||
    { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
  x="$PWD/build/cuda/xcomp"
  echo "configure+build: $(( $(date +%s) - t0 )) s"
  (nvidia-smi dmon -s u -d 10 > "$OUT/dmon.txt" 2>&1 &)
fi
x="$(cd "$(dirname "$x")" && pwd)/$(basename "$x")"
w=/tmp/xcomp-extend
rm -rf "$w" && mkdir -p "$w/qa" "$w/ship-regen" "$w/ship-qa"
ln -s "$PWD/models/base" "$w/base"
zcat "$deps/qa/arxivqa_train.jsonl.gz" > "$w/qa/arxivqa_train.jsonl"
zcat "$deps/qa/arxivqa_val.jsonl.gz" > "$w/qa/arxivqa_val.jsonl"
left=$(( budget - ($(date +%s) - t0) - 40 ))
[ "$left" -ge 40 ] || { echo "only ${left} s left for training after the build"; exit 1; }
regen_time=$(( left * 55 / 100 ))
qa_time=$(( left - regen_time ))
[ "${EXTEND_QA:-1}" = 0 ] && regen_time=$(( left + 10 )) qa_time=0  # regeneration only
echo "training: regeneration ${regen_time} s, then QA ${qa_time} s"
export XCOMP="$x" XCOMP_DATA_DIR="$deps/data" WORK="$w" DEVICE="${DEVICE:-cuda}" THREADS=2 \
  EXTEND_FROM="${EXTEND_FROM:-$PWD/models/compressors}" EXTEND_REGEN_TIME="$regen_time" EXTEND_QA_TIME="$qa_time"

ship() {  # objective: bf16 exports of the finished runs, with their logs, into $OUT/OBJECTIVE.tar
  local d name
  for d in "$w"/extended/*-"$1"-n*/; do
    d="${d%/}" name="$(basename "$d")"
    [ -f "$d/recipe_done" ] || { echo "not finished: $name"; continue; }
    "$x" compressor export "$d" --model models/base --out "$w/ship-$1/$name" --storage-dtype bf16 \
      --base-name xcomp-default-base > /dev/null && cp "$d/train_log.jsonl" "$w/ship-$1/$name/" &&
      cp "$d.log" "$w/ship-$1/$name/train.log" &
  done
  wait
  tar -cf "$OUT/$1.tar" -C "$w/ship-$1" .
  tail -n 2 "$w"/extended/*-"$1"-n*.log
}
scripts/default-model.sh extend-regen > "$OUT/extend-regen.log" 2>&1 || echo "extend-regen: some runs failed"
ship regen
echo "regeneration done at $(( $(date +%s) - t0 )) s"
[ "${EXTEND_QA:-1}" = 0 ] && exit 0
scripts/default-model.sh extend-qa > "$OUT/extend-qa.log" 2>&1 || echo "extend-qa: some runs failed"
ship qa
echo "all done at $(( $(date +%s) - t0 )) s"
