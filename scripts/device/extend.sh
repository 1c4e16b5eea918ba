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
# (twice the batch: ~1.3x the regeneration texts/s, the same QA abstracts/s; models/MODEL_CARD.md);
# round 4 (H200) the same with EXTEND_LR_SCHEDULE=linear and BUDGET_S 570 (build 134 s, regen
# 195 s, QA 161 s: 5.0 and 2.4 steps/s, the default rates).
# With EXTEND_CUDA_TESTS=1 (the default when it builds) the GPU tests alone (target
# xcomp_cuda_tests: the CUDA model against the CPU, gradients with checkpointing, a compressor
# overfitting on the GPU) build beside the training on 4 low-priority cores and run at the end
# (40 s of the budget kept for them). Logs: $OUT/logs.tar.
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
# Logs go to $OUT/logs.tar, refreshed after each step (the device tool returns at most 8 files).
logs=/tmp/xcomp-extend-logs
rm -rf "$logs" && mkdir -p "$logs"
save_logs() { tar -cf "$OUT/logs.tar.tmp" -C "$logs" . && mv "$OUT/logs.tar.tmp" "$OUT/logs.tar"; }
deps="$PWD/.devx"
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
x="${XCOMP:-}"
cuda_tests=0
if [ -z "$x" ]; then
  cuda_tests="${EXTEND_CUDA_TESTS:-1}"
  torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  tests_flag=OFF
  [ "$cuda_tests" = 1 ] && tests_flag=ON
  cmake -S . -B build/cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DXCOMP_BUILD_TESTS=$tests_flag -DXCOMP_USE_JEMALLOC=OFF \
    -DXCOMP_DATA_DIR="$deps/data" -DCMAKE_PREFIX_PATH="$deps/usr;$torch_prefix" > "$logs/configure.log" 2>&1 ||
    { tail -40 "$logs/configure.log"; save_logs; exit 1; }
  cmake --build build/cuda -j16 --target xcomp_cli > "$logs/build.log" 2>&1 ||
    { grep -E "error" -A3 "$logs/build.log" | head -60; save_logs; exit 1; }
  x="$PWD/build/cuda/xcomp"
  echo "configure+build: $(( $(date +%s) - t0 )) s"
  save_logs
  if [ "$cuda_tests" = 1 ]; then
    (nice -n 19 cmake --build build/cuda -j4 --target xcomp_cuda_tests > "$logs/cuda-tests-build.log" 2>&1; echo $? > /tmp/cuda-tests-built) &
  fi
  (nvidia-smi dmon -s u -d 10 > "$logs/dmon.txt" 2>&1 &)
fi
x="$(cd "$(dirname "$x")" && pwd)/$(basename "$x")"
w=/tmp/xcomp-extend
rm -rf "$w" && mkdir -p "$w/qa" "$w/ship-regen" "$w/ship-qa"
ln -s "$PWD/models/base" "$w/base"
# The QA train pairs, made again here (deterministic; ~25 s) while regeneration trains.
("$x" data make-qa --input "$deps/data/arxiv/train.jsonl.gz" --out "$w/qa/arxivqa_train.jsonl" \
  --report "$w/qa/train_report" > "$logs/make-qa.log" 2>&1; echo $? > "$w/qa/make-qa.rc") &
zcat "$deps/qa/arxivqa_val.jsonl.gz" > "$w/qa/arxivqa_val.jsonl"
left=$(( budget - ($(date +%s) - t0) - 40 - 40 * cuda_tests ))
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
  save_logs
  tail -n 2 "$w"/extended/*-"$1"-n*.log
}
run_cuda_tests() {  # the GPU tests, when they were built (waits for the build at most 30 s more)
  [ "$cuda_tests" = 1 ] || return 0
  local i
  for i in $(seq 30); do [ -f /tmp/cuda-tests-built ] && break; sleep 1; done
  [ "$(cat /tmp/cuda-tests-built 2>/dev/null)" = 0 ] ||
    { echo "GPU tests not built in time"; tail -5 "$logs/cuda-tests-build.log"; return 0; }
  timeout 60 build/cuda/tests/xcomp_cuda_tests > "$logs/cuda-tests.log" 2>&1
  echo "GPU tests: exit $?"; grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]" "$logs/cuda-tests.log"
  save_logs
}
scripts/default-model.sh extend-regen > "$logs/extend-regen.log" 2>&1 || echo "extend-regen: some runs failed"
ship regen
echo "regeneration done at $(( $(date +%s) - t0 )) s"
[ "${EXTEND_QA:-1}" = 0 ] && { run_cuda_tests; exit 0; }
while [ ! -f "$w/qa/make-qa.rc" ]; do sleep 1; done  # (ship's wait may have reaped it already)
[ "$(cat "$w/qa/make-qa.rc")" = 0 ] || { echo "make-qa failed:"; tail -5 "$logs/make-qa.log"; exit 1; }
scripts/default-model.sh extend-qa > "$logs/extend-qa.log" 2>&1 || echo "extend-qa: some runs failed"
ship qa
echo "all done at $(( $(date +%s) - t0 )) s"
run_cuda_tests
