#!/usr/bin/env bash
# Installs the Debian packages xcomp builds against, only those that are missing.
# Idempotent: a second run with everything present does nothing and prints nothing.
# Arguments name more packages to install with them (scripts/fuzz.sh: clang, libFuzzer).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libtorch-dev libopenblas0-openmp
      nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev
      libpcre2-dev libutf8proc-dev libprotobuf-dev libgloo-dev zlib1g-dev gnuplot-nox libjemalloc-dev
      libcpp-httplib-dev libssl-dev libbrotli-dev curl "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
