#!/usr/bin/env bash
# Reproduces docs/RESULTS.md's stories260K figures: trains 500x (kv) and ICAE compressors with
# N = 4 on TinyStories sentences (stories260K base, full encoder; the base in DTYPE: auto, bf16 where
# the CPU computes it natively, else f32; the published figures used bf16), then runs the
# regeneration and efficiency evaluations. About 10 minutes on 2 cores. Outputs in build/results.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh release xcomp >&2
data="${XCOMP_DATA_DIR:-../shared/data}"
x=build/release/xcomp
m=build/models/stories260K
out=build/results
mkdir -p "$out"
[ -f "$m/config.json" ] || $x convert llama2c "$data/models/stories260K/stories260K.bin" "$data/models/stories260K/tok512.bin" --out "$m"
scripts/tinystories-sentences.py "$data/tinystories/tinystories_val.txt" "$out/train.jsonl" "$out/val.jsonl"
for method in kv icae; do
  $x train --model "$m" --method "$method" --tokens 4 --train "$out/train.jsonl" --val "$out/val.jsonl" \
    --out "$out/$method-n4" --encoder full --memory-init embeddings --lr 2e-3 --memory-lr-scale 10 --warmup 50 \
    --steps 1500 --eval-every 100 --save-every 100 --context-length 64 --batch-size 16 --val-examples 200 --dtype "${DTYPE:-auto}"
done
$x eval regen --model "$m" --compressors "$out/kv-n4" "$out/icae-n4" --data "$out/val.jsonl" --lengths 8,12,16 --out "$out/eval"
$x eval efficiency --model "$m" --compressors "$out/kv-n4" "$out/icae-n4" --data "$out/val.jsonl" --lengths 16,32,64 --out "$out/eval"
