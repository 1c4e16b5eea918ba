#!/usr/bin/env bash
# The main job: installs what is missing, builds, converts the stories260K llama2.c model into a
# Hugging Face folder (build/models/stories260K) and generates a story from it with xcomp.
# Extra arguments go to `xcomp generate` (e.g. --temperature 0.8 --seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh release >&2
data="${XCOMP_DATA_DIR:-../shared/data}"
model=build/models/stories260K
if [ ! -f "$model/config.json" ]; then
  build/release/xcomp convert llama2c "$data/models/stories260K/stories260K.bin" \
    "$data/models/stories260K/tok512.bin" --out "$model"
fi
exec build/release/xcomp generate --model "$model" --prompt "Once upon a time" --max-new-tokens 200 "$@"
