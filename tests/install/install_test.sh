#!/usr/bin/env bash
# `cmake --install` and find_package(xcomp): installs the build into a fresh prefix, builds
# examples/embed against the installed package (headers, static libraries, xcompConfig.cmake and
# its dependencies), and checks that the program decodes exactly as the installed CLI does (kv
# regeneration, icae regeneration and answer) on the installed models, which the installed CLI
# finds by itself from another folder.
# Usage: install_test.sh CMAKE BUILD_DIR SOURCE_DIR GENERATOR CXX TORCH_DIR
set -euo pipefail
cmake="$1"; build="$2"; src="$3"; generator="$4"; cxx="$5"; torch_dir="$6"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
prefix="$tmp/prefix"

"$cmake" --install "$build" --prefix "$prefix" > "$tmp/install.log" || fail "install: $(cat "$tmp/install.log")"
for f in bin/xcomp include/xcomp/compressor.h lib/libxcomp.a lib/cmake/xcomp/xcompConfig.cmake \
         lib/cmake/xcomp/xcompTargets.cmake share/xcomp/models/base/config.json; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
"$cmake" -S "$src/examples/embed" -B "$tmp/embed" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DTorch_DIR="$torch_dir" > "$tmp/cfg.log" 2>&1 ||
  fail "configuring the example: $(tail -30 "$tmp/cfg.log")"
"$cmake" --build "$tmp/embed" > "$tmp/build.log" 2>&1 || fail "building the example: $(tail -30 "$tmp/build.log")"
example="$tmp/embed/compress_and_ask"
xcomp="$prefix/bin/xcomp"
models="$prefix/share/xcomp/models"

text="We show that every reciprocity sheaf gives rise to a cycle (pre)module in the sense of Rost over a perfect field."
question="What does every reciprocity sheaf give rise to?"
trim() { sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'; }
for comp in kv-regen-n16 icae-qa-n4; do
  "$example" "$models/base" "$models/compressors/$comp" "$text" "$question" > "$tmp/out.txt" 2> "$tmp/err.txt" ||
    fail "example with $comp: $(cat "$tmp/err.txt")"
  grep -q "^compressed 33 tokens into" "$tmp/out.txt" || fail "example with $comp printed $(cat "$tmp/out.txt")"
  "$xcomp" compress --model "$models/base" --compressor "$models/compressors/$comp" --text "$text" \
    --out "$tmp/p.safetensors" 2> /dev/null
  want=$("$xcomp" regenerate "$tmp/p.safetensors" --model "$models/base" | trim)
  got=$(sed -n 's/^regenerated: //p' "$tmp/out.txt" | trim)
  [ -n "$want" ] && [ "$got" = "$want" ] || fail "$comp regeneration: example '$got', CLI '$want'"
  want=$("$xcomp" ask "$tmp/p.safetensors" --model "$models/base" --question "$question" | trim)
  got=$(sed -n 's/^answer: //p' "$tmp/out.txt" | trim)
  [ "$got" = "$want" ] || fail "$comp answer: example '$got', CLI '$want'"
done
# A bad folder is an error naming it, not a crash.
if "$example" "$models/base" "$tmp/nope" "$text" 2> "$tmp/err.txt"; then fail "a missing compressor was accepted"; fi
grep -q "^error: .*nope" "$tmp/err.txt" || fail "example error: $(cat "$tmp/err.txt")"
# The installed CLI finds the installed models from any folder.
(cd "$tmp" && "$xcomp" demo --text "$text" --question "$question" > "$tmp/demo.txt" 2> "$tmp/demo.err") ||
  fail "installed demo: $(cat "$tmp/demo.err")"
grep -q "^Full context" "$tmp/demo.txt" || fail "installed demo printed $(head -20 "$tmp/demo.txt")"
echo "install ok"
