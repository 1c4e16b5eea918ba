#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds, fetches the
# reference tokenizers, runs ctest. `scripts/test.sh quick` skips tests labelled slow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh release
scripts/fetch-tokenizers.sh build/tokenizers
args=(--preset release --output-on-failure -j"$(nproc)")
[ "${1:-}" = "quick" ] && args+=(-LE slow)
ctest "${args[@]}"
