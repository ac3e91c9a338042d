#!/usr/bin/env bash
# Installs every build and test dependency of idnode from Debian 12 packages, then the browser
# test's npm package (tests/e2e: playwright-core, which drives Debian's chromium and downloads no
# browser). Idempotent: packages already present are left alone, apt is only updated when something
# is missing, and npm only runs when build/e2e/node_modules lacks the package or the lock changed.
# Used by docker/dev.sh (and so by .ci/run) and by docker/Dockerfile.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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
# The browser tests (tests/e2e, run by tests/integration/ui_test.py): Debian's chromium, and Node.js
# from Debian only when there is no node at all (a machine may have one from elsewhere; Debian 12's
# is Node 18 and playwright-core wants 20: ui_test.py then says SKIPPED). IDNODE_NO_BROWSER=1 (the
# image's build stage, which runs no tests) leaves them out.
if [[ -z ${IDNODE_NO_BROWSER:-} ]]; then
  packages+=(chromium)
  if ! command -v node >/dev/null 2>&1; then
    packages+=(nodejs npm)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
else
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser test's npm package, exactly as tests/e2e/package-lock.json pins it, installed in
# build/e2e (outside the source tree: third-party code stays out of tests/), where
# tests/integration/ui_test.py looks for it. There is no tests/e2e where only this script was
# copied (docker/Dockerfile's build stage). Installed again whenever the lock file changes
# (build/e2e/node_modules/.installed-lock holds the one installed).
e2e="$root/tests/e2e"
target="$root/build/e2e"
if [[ -z ${IDNODE_NO_BROWSER:-} && -f $e2e/package-lock.json ]]; then
  lock=$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)
  if [[ ! -d $target/node_modules/playwright-core || $(cat "$target/node_modules/.installed-lock" 2>/dev/null) != "$lock" ]]; then
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
      echo "install-deps: npm ci in build/e2e (tests/e2e's lock file)"
      mkdir -p "$target"
      cp "$e2e/package.json" "$e2e/package-lock.json" "$target/"
      npm ci --prefix "$target" --no-audit --no-fund
      echo "$lock" >"$target/node_modules/.installed-lock"
    else
      echo "install-deps: no node and npm: tests/e2e's packages not installed (the browser test cannot run)"
    fi
  fi
fi
