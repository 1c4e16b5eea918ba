#!/usr/bin/env bash
# Copies the headers and libraries xcomp builds against (besides libtorch) from this Debian
# machine into DIR/usr, for GPU hosts that have PyTorch, CMake and nvcc but no package registry.
# Usage: scripts/device/pack-deps.sh [DIR (.devdeps)] [--build-only | --gpu-tests]
#   default: also GoogleTest and the test data (stories260K, TinyStories, reference tokenizers),
#   for `device run --carry .devdeps` and scripts/device/check.sh; --build-only: what the CLI
#   needs alone; --gpu-tests: the CLI's needs, GoogleTest and stories260K, what the GPU tests
#   (target xcomp_cuda_tests) need beside it (scripts/device/pack-extend.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-.devdeps}"
tests=1
[ "${2:-}" = --build-only ] && tests=0
[ "${2:-}" = --gpu-tests ] && tests=gpu
out="$dir/usr"
arch=lib/x86_64-linux-gnu
rm -rf "$dir"
mkdir -p "$out/include/google" "$out/$arch/cmake" "$out/share/cmake"
cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/pcre2.h /usr/include/utf8proc.h "$out/include/"
# Gloo's headers: data-parallel training (libtorch has the library itself).
[ -d /usr/include/gloo ] && cp -r /usr/include/gloo "$out/include/"
cp -r /usr/include/google/protobuf "$out/include/google/"
cp -a /usr/$arch/libpcre2-8.so* /usr/$arch/libutf8proc.so* /usr/$arch/libprotobuf.so* "$out/$arch/"
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$out/share/cmake/"
[ "$tests" = 0 ] && { du -sh "$dir"; exit 0; }
cp -r /usr/include/gtest /usr/include/gmock "$out/include/"
cp -a /usr/$arch/libgtest.a /usr/$arch/libgtest_main.a /usr/$arch/libgmock.a /usr/$arch/libgmock_main.a "$out/$arch/" 2>/dev/null || true
cp -r /usr/$arch/cmake/GTest "$out/$arch/cmake/"
# Test data: the stories260K model and TinyStories text (read from ../shared/data), and the
# reference tokenizers.
data="${XCOMP_DATA_DIR:-../shared/data}"
mkdir -p "$dir/data/models" "$dir/data/tinystories"
cp -r "$data/models/stories260K" "$dir/data/models/"
[ "$tests" = gpu ] && { du -sh "$dir"; exit 0; }
cp "$data/tinystories/tinystories_val.txt" "$dir/data/tinystories/"
scripts/fetch-tokenizers.sh "$dir/tokenizers"
du -sh "$dir"
