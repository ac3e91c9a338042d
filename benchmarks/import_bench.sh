#!/usr/bin/env bash
# `idctl import` throughput on JSON Lines records as a top-level node loads them, against the
# ceiling of a bare parse of the same file with simdjson (benchmarks/json_ceiling), both on this
# machine's cores. Realistic records (about 1 KB, multi-byte UTF-8 text, nine values) and small ones
# (three short values); the median of three imports into an empty data directory.
#   benchmarks/import_bench.sh [--records N]     (default 300,000 realistic, 1,000,000 small)
source "$(dirname "$0")/common.sh"
need_build src/cmd/idctl benchmarks/json_ceiling
realistic=$((records < 1000000 ? records : 300000))
small=$((records < 1000000 ? records : 1000000))
python3 benchmarks/gen_import.py "$realistic" "$work/realistic.jsonl"
python3 benchmarks/gen_import.py "$small" "$work/small.jsonl" --small

# Median of three: MB/s and records/s of `idctl import` into an empty directory.
import_rate() {
  local file=$1 bytes runs=()
  bytes=$(stat -c %s "$file")
  for run in 1 2 3; do
    rm -rf "$work/data"
    local start end
    start=$(date +%s.%N)
    "$build/src/cmd/idctl" import --data-dir "$work/data" "$file" >/dev/null 2>&1
    end=$(date +%s.%N)
    runs+=("$(python3 -c "print($end - $start)")")
  done
  python3 - "$bytes" "$(wc -l <"$file")" "${runs[@]}" <<'PY'
import sys
bytes_, lines, runs = int(sys.argv[1]), int(sys.argv[2]), sorted(float(x) for x in sys.argv[3:])
median = runs[1]
print("%.1f %.0f %.1f-%.1f" % (bytes_ / median / 1e6, lines / median, bytes_ / runs[-1] / 1e6, bytes_ / runs[0] / 1e6))
PY
}
ceiling() {
  "$build/benchmarks/json_ceiling" "$1" --threads "$(nproc)" | python3 -c "import re,sys; print(re.search(r'([0-9.]+) MB/s', sys.stdin.read()).group(1))"
}

read -r real_mbs real_rps real_range <<<"$(import_rate "$work/realistic.jsonl")"
read -r small_mbs small_rps small_range <<<"$(import_rate "$work/small.jsonl")"
real_ceiling=$(ceiling "$work/realistic.jsonl")
small_ceiling=$(ceiling "$work/small.jsonl")
ratio() { python3 -c "print(round($1/$2,3))"; }
cat <<TABLE
| records | idctl import MB/s (median of 3; range) | records/s | simdjson bare parse MB/s ($(nproc) threads) | ratio |
|---|---|---|---|---|
| realistic, $(($(stat -c %s "$work/realistic.jsonl") / realistic)) bytes each | $real_mbs ($real_range) | $real_rps | $real_ceiling | $(ratio "$real_mbs" "$real_ceiling")x |
| small, $(($(stat -c %s "$work/small.jsonl") / small)) bytes each | $small_mbs ($small_range) | $small_rps | $small_ceiling | $(ratio "$small_mbs" "$small_ceiling")x |
TABLE
