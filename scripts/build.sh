#!/usr/bin/env bash
# Installs missing Debian packages, configures (CMake preset "release") and builds xcomp.
# Usage: scripts/build.sh [preset]   (release, debug, asan or tsan; default release)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
scripts/install-deps.sh
if [ ! -f "build/$preset/build.ninja" ]; then
  cmake --preset "$preset" >/dev/null
fi
cmake --build --preset "$preset" -j"$(nproc)"
