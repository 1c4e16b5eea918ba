#!/usr/bin/env bash
# Installs missing Debian packages, configures (CMake preset "release") and builds xcomp.
# Usage: scripts/build.sh [preset] [target...]   (preset: release, debug, asan or tsan; default
# release. Targets: default all; `xcomp` builds the CLI alone, without the test binary.)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true
targets=()
if [ $# -gt 0 ]; then targets=(--target "$@"); fi
scripts/install-deps.sh
if [ ! -f "build/$preset/build.ninja" ]; then
  cmake --preset "$preset" >/dev/null
fi
cmake --build --preset "$preset" -j"$(nproc)" "${targets[@]}"
