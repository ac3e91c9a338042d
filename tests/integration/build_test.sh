#!/usr/bin/env bash
# Two fixed defects of the build set-up stay fixed:
#   (a) `docker/dev.sh start` builds only what it runs and suggests (the targets idnode and idctl),
#       never the whole tree with its tests and benchmarks: checked with IDNODE_DRY_RUN=1, which
#       prints the configure and build commands instead of running them (nothing is installed or
#       built);
#   (b) warnings are not errors in a user's build: a fresh build directory configured with no
#       options has IDNODE_WERROR=OFF, and none of its compile commands has -Werror (the directory
#       is configured only, never built, and removed afterwards).
#
#   build_test.sh [REPOSITORY]   (default: the repository this script is in)
set -euo pipefail

repo=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
repo=$(cd "$repo" && pwd)
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
ok() { echo "ok: $*"; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/idnode-build-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# ---- (a) what `start` builds ---------------------------------------------------------------------
out=$scratch/dry-run.txt
if ! (cd "$repo" && IDNODE_DRY_RUN=1 timeout 60 bash docker/dev.sh start) >"$out" 2>&1; then
  fail "IDNODE_DRY_RUN=1 bash docker/dev.sh start exited non-zero:"
  cat "$out"
else
  mapfile -t builds < <(grep -E '^\+ cmake --build ' "$out" || true)
  mapfile -t configures < <(grep -E '^\+ cmake -S ' "$out" || true)
  if ((${#builds[@]} != 1)); then
    fail "start should run exactly one build command, it prints ${#builds[@]}:"
    cat "$out"
  elif [[ ! ${builds[0]} =~ \ --target\ idnode\ idctl$ ]]; then
    fail "start should build only the targets idnode and idctl (--target idnode idctl), it prints: ${builds[0]}"
  else
    ok "start builds only: ${builds[0]#+ }"
  fi
  if ((${#configures[@]} != 1)); then
    fail "start should configure once, it prints ${#configures[@]} configure commands"
    cat "$out"
  elif [[ ${configures[0]} == *IDNODE_WERROR=ON* ]]; then
    fail "start configures with warnings as errors: ${configures[0]}"
  else
    ok "start configures with: ${configures[0]#+ }"
  fi
  # The dry run runs nothing: no dependency installation, no idnode.
  if ! grep -qE '^\+ exec build/release/src/cmd/idnode$' "$out"; then
    fail "the dry run should print the idnode command it would run:"
    cat "$out"
  fi
fi

# ---- (b) a user's fresh configuration ------------------------------------------------------------
build=$scratch/build
if ! timeout 100 cmake -S "$repo" -B "$build" -G Ninja >"$scratch/configure.txt" 2>&1; then
  fail "cmake -S $repo -B $build -G Ninja failed:"
  tail -40 "$scratch/configure.txt"
else
  werror=$(grep -E '^IDNODE_WERROR:BOOL=' "$build/CMakeCache.txt" || true)
  if [[ $werror != "IDNODE_WERROR:BOOL=OFF" ]]; then
    fail "a fresh configuration should have IDNODE_WERROR:BOOL=OFF, its CMakeCache.txt has '${werror:-nothing}'"
  else
    ok "fresh configuration: $werror"
  fi
  commands=$build/compile_commands.json
  if [[ ! -s $commands ]] || ! grep -q -- '-Wall' "$commands"; then
    fail "no compile commands with -Wall in $commands to check"
  elif grep -q -- '-Werror' "$commands"; then
    fail "compile commands of a fresh configuration have -Werror: $(grep -m1 -o -- '-Werror[^ ]*' "$commands")"
  else
    ok "$(grep -c '"command"' "$commands") compile commands, with -Wall and without -Werror"
  fi
fi

if ((failures > 0)); then
  echo "build_test: $failures failure(s)"
  exit 1
fi
echo "build_test: all passed"
