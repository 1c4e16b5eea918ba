#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs `xcomp demo` on the shipped models
# (models/): the paper's seed abstract compressed into 4 tokens by 500xCompressor (kv) and by
# ICAE, regenerated and questioned, beside the base model reading the full text.
# Extra arguments go to `xcomp demo` (e.g. --text "..." --question "..." --tokens 16).
# Without models/ (a checkout from before they were trained) it falls back to converting the
# stories260K llama2.c model and generating a story from it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh release xcomp >&2
if [ -f models/base/model.safetensors ]; then
  exec build/release/xcomp demo --models models "$@"
fi
data="${XCOMP_DATA_DIR:-../shared/data}"
model=build/models/stories260K
if [ ! -f "$model/config.json" ]; then
  build/release/xcomp convert llama2c "$data/models/stories260K/stories260K.bin" \
    "$data/models/stories260K/tok512.bin" --out "$model"
fi
exec build/release/xcomp generate --model "$model" --prompt "Once upon a time" --max-new-tokens 200 "$@"
