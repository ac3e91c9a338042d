#!/usr/bin/env bash
# One entry point for people and CI (README.md names the first two):
#   docker/dev.sh start [FLAGS]   install deps, build, start idnode on its embedded defaults
#                                 (FLAGS go to idnode, e.g. --config config/idnode.yaml)
#   docker/dev.sh test [--quick]  install deps, then everything CI checks: formatting, the test
#                                 suite (release and ASan+UBSan builds), each fuzz target for
#                                 IDNODE_FUZZ_SECONDS (default 60) over its seed corpus.
#                                 --quick: release build and tests only.
#   docker/dev.sh fuzz [SECONDS]  only the fuzz targets
#   docker/dev.sh bench           build and run the Google Benchmarks
# Builds use IDNODE_JOBS parallel jobs (default 2: the CI machine has 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${IDNODE_JOBS:-2}
fuzz_seconds=${IDNODE_FUZZ_SECONDS:-60}
fuzz_targets=(fuzz_message fuzz_value_types fuzz_udp_reassembly fuzz_dns_query fuzz_challenge_answer
  fuzz_replication_stream fuzz_session_message fuzz_http_write fuzz_ui_render)
passed=0
failed=0

log() { printf '\n== %s\n' "$*"; }

deps() { bash docker/install-deps.sh; }

# IDNODE_DRY_RUN=1 prints the configure and build commands instead of running them (a test checks
# what `start` builds).
run() {
  if [[ -n ${IDNODE_DRY_RUN:-} ]]; then
    echo "+ $*"
  else
    "$@"
  fi
}

# configure_and_build DIR [CMAKE ARGS...] [-- TARGET...]: everything, or only the targets named.
configure_and_build() {
  local dir=$1
  shift
  local args=() targets=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    args+=("$1")
    shift
  done
  if (($# > 0)); then
    shift
    targets=("$@")
  fi
  if [[ -n ${IDNODE_DRY_RUN:-} ]]; then
    run cmake -S . -B "$dir" -G Ninja "${args[@]}"
  else
    cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
  fi
  if ((${#targets[@]} > 0)); then
    run cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  else
    run cmake --build "$dir" -j "$jobs"
  fi
}

# Runs ctest in a build directory and adds its counts to the totals.
run_ctest() {
  local dir=$1 out rc=0
  out=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 300) 2>&1 | tee "$out" || rc=$?
  local line
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$out" | tail -1 || true)
  if [[ $line =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
    failed=$((failed + BASH_REMATCH[1]))
    passed=$((passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
  fi
  rm -f "$out"
  if ((rc != 0)); then
    echo "summary: $passed passed, $failed failed"
    exit "$rc"
  fi
}

format_check() {
  log "clang-format check"
  local files
  mapfile -t files < <(git ls-files '*.h' '*.cc')
  clang-format --dry-run -Werror "${files[@]}"
  echo "formatting ok (${#files[@]} files)"
}

release_build() {
  log "release build (-O3, -Werror) and tests"
  configure_and_build build/release -DCMAKE_BUILD_TYPE=Release -DIDNODE_WERROR=ON
}

sanitizer_build() {
  log "ASan+UBSan build and tests"
  configure_and_build build/asan -DCMAKE_BUILD_TYPE=Debug -DIDNODE_SANITIZE=ON -DIDNODE_BUILD_BENCHMARKS=OFF
}

thread_sanitizer_run() {
  log "ThreadSanitizer: cache and registry concurrency tests"
  cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIDNODE_TSAN=ON \
    -DIDNODE_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build/tsan -j "$jobs" --target cache_unit_tests registry_concurrency_tests
  local t
  for t in cache_unit_tests registry_concurrency_tests; do
    if TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
      "build/tsan/tests/$t" --gtest_brief=1; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      echo "summary: $passed passed, $failed failed"
      exit 1
    fi
  done
}

fuzz() {
  local seconds=$1
  log "fuzzing: ${#fuzz_targets[@]} targets, ${seconds}s each (clang, libFuzzer, ASan+UBSan)"
  # Only the fuzz targets and the rooms they use (clang 14 cannot compile the coroutine-based
  # server rooms with sanitizers: "Cannot represent a difference across sections").
  cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
    -DIDNODE_FUZZ=ON -DIDNODE_BUILD_TESTS=OFF >/dev/null
  cmake --build build/fuzz -j "$jobs" --target "${fuzz_targets[@]}"
  mkdir -p build/fuzz/artifacts
  for target in "${fuzz_targets[@]}"; do
    local work
    work=$(mktemp -d)
    # New inputs go to a scratch corpus; the checked-in seeds are only read.
    if "build/fuzz/tests/fuzz/$target" -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/"$target"- \
      "$work" "tests/fuzz/corpus/$target" >"build/fuzz/$target.log" 2>&1; then
      echo "$target: $(grep -E 'stat::number_of_executed_units' "build/fuzz/$target.log" | awk '{print $2}') execs, 0 crashes"
      passed=$((passed + 1))
    else
      tail -40 "build/fuzz/$target.log"
      echo "$target: FAILED (artifacts in build/fuzz/artifacts)"
      failed=$((failed + 1))
    fi
    rm -rf "$work"
  done
}

command=${1:-}
case "$command" in
  start)
    [[ -n ${IDNODE_DRY_RUN:-} ]] || deps
    # Only what `start` runs and suggests: no tests, no benchmarks.
    configure_and_build build/release -DCMAKE_BUILD_TYPE=Release -- idnode idctl
    log "starting idnode on its embedded defaults (Handle on 127.0.0.1:2641 UDP+TCP, HTTP on 127.0.0.1:8000)"
    echo "try:  build/release/src/cmd/idctl resolve DEMO.1/hello"
    echo "      curl http://127.0.0.1:8000/api/handles/DEMO.1/hello"
    run exec build/release/src/cmd/idnode "${@:2}"
    ;;
  test)
    deps
    # install-deps.sh installed Chromium and tests/e2e's packages: the browser test may not skip
    # (IDNODE_REQUIRE_BROWSER_TESTS= lets it, e.g. where node is older than 20).
    export IDNODE_REQUIRE_BROWSER_TESTS=${IDNODE_REQUIRE_BROWSER_TESTS-1}
    quick=0
    [[ ${2:-} == --quick ]] && quick=1
    if ((quick == 0)); then format_check; fi
    release_build
    run_ctest build/release
    if ((quick == 0)); then
      sanitizer_build
      run_ctest build/asan
      thread_sanitizer_run
      fuzz "$fuzz_seconds"
    fi
    echo
    echo "summary: $passed passed, $failed failed"
    ((failed == 0))
    ;;
  fuzz)
    deps
    fuzz "${2:-$fuzz_seconds}"
    echo "summary: $passed passed, $failed failed"
    ((failed == 0))
    ;;
  bench)
    deps
    configure_and_build build/release -DCMAKE_BUILD_TYPE=Release
    build/release/benchmarks/protocol_bench
    ;;
  *)
    sed -n '2,11p' "$0"
    exit 2
    ;;
esac
