#!/usr/bin/env bash
# Installs every build and test dependency of idnode from Debian 12 packages. Idempotent: packages
# already present are left alone, and apt is only updated when something is missing.
# Used by docker/dev.sh (and so by .ci/run) and by docker/Dockerfile.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates python3 python3-cryptography
  libboost1.81-dev
  librocksdb-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libyaml-cpp-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsimdjson-dev
  libknot-dev knot-dnsutils
  clang-14 libclang-rt-14-dev llvm-14 clang-format
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
