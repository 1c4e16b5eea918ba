#!/usr/bin/env bash
# Copies the headers and libraries xcomp builds against (besides libtorch) from this Debian
# machine into .devdeps/usr, for GPU hosts that have PyTorch, CMake and nvcc but no package
# registry. Used with `device run --carry .devdeps` and scripts/device/check.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.devdeps/usr
arch=lib/x86_64-linux-gnu
rm -rf .devdeps
mkdir -p "$out/include" "$out/$arch/cmake" "$out/share/cmake"
cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/gtest /usr/include/gmock /usr/include/pcre2.h "$out/include/"
mkdir -p "$out/include/google" && cp -r /usr/include/google/protobuf "$out/include/google/"
cp -a /usr/$arch/libgtest.a /usr/$arch/libgtest_main.a /usr/$arch/libgmock.a /usr/$arch/libgmock_main.a "$out/$arch/" 2>/dev/null || true
cp -a /usr/$arch/libpcre2-8.so* /usr/$arch/libprotobuf.so* "$out/$arch/"
cp -r /usr/$arch/cmake/GTest "$out/$arch/cmake/"
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$out/share/cmake/"
# Test data: the stories260K model and TinyStories text (read from ../shared/data), and the
# reference tokenizers.
data="${XCOMP_DATA_DIR:-../shared/data}"
mkdir -p .devdeps/data/models .devdeps/data/tinystories
cp -r "$data/models/stories260K" .devdeps/data/models/
cp "$data/tinystories/tinystories_val.txt" .devdeps/data/tinystories/
scripts/fetch-tokenizers.sh .devdeps/tokenizers
du -sh .devdeps
