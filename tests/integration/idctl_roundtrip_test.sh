#!/usr/bin/env bash
# idctl import / export / digest round trip: N generated records (1,000,000 by default) imported
# with a progress display, exported, imported into a second data directory, and both digests and
# record counts compared; the export must hold exactly the generated records (the same handles with
# the same values: compare_records.py).  Usage: idctl_roundtrip_test.sh IDCTL RECORDS
set -euo pipefail
idctl=$1
records=${2:-1000000}
here=$(dirname "$0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

[[ $records =~ ^[0-9]+$ && $records -gt 0 ]] || fail "RECORDS must be a positive count, not '$records'"
python3 "$here/gen_records.py" "$records" "$work/in.jsonl"
generated=$(wc -l <"$work/in.jsonl")
[[ $generated -eq $records ]] || fail "gen_records.py wrote $generated records, not $records"

"$idctl" import --data-dir "$work/a" "$work/in.jsonl" 2>"$work/import.log"
grep -q "records/s" "$work/import.log" || { cat "$work/import.log"; fail "no progress shown"; }
grep -q "^imported $records records from $records lines .*, 0 bad lines$" "$work/import.log" ||
  { cat "$work/import.log"; fail "import did not take all $records records"; }
tail -1 "$work/import.log"

"$idctl" export --data-dir "$work/a" >"$work/out.jsonl" 2>"$work/export.log"
grep -q "^exported $records records$" "$work/export.log" || { cat "$work/export.log"; fail "export did not report $records records"; }
exported=$(wc -l <"$work/out.jsonl")
[[ $exported -eq $records ]] || fail "exported $exported lines of $records records"
# What was exported is what was generated (lines in any order; timestamps set by import ignored).
python3 "$here/compare_records.py" "$work/in.jsonl" "$work/out.jsonl" "$records" || fail "export differs from the input"

"$idctl" import --data-dir "$work/b" "$work/out.jsonl" 2>"$work/import-b.log"
grep -q "^imported $records records from $records lines .*, 0 bad lines$" "$work/import-b.log" ||
  { cat "$work/import-b.log"; fail "re-import did not take all $records records"; }

digest_a=$("$idctl" digest --data-dir "$work/a")
digest_b=$("$idctl" digest --data-dir "$work/b")
echo "digest a: $digest_a"
echo "digest b: $digest_b"
[[ $digest_a == "$digest_b" ]] || fail "digests differ"
[[ $digest_a == *" $records records" ]] || fail "digest counts other than $records records"
# One prefix's digest counts that prefix's records: as many as the input holds.
in_prefix=$(grep -c '^{"handle":"88\.100\.3/' "$work/in.jsonl" || true)
prefix_a=$("$idctl" digest --data-dir "$work/a" --prefix 88.100.3)
prefix_b=$("$idctl" digest --data-dir "$work/b" --prefix 88.100.3)
[[ $prefix_a == *" $in_prefix records" ]] || fail "88.100.3: '$prefix_a', but the input holds $in_prefix records"
[[ $prefix_a == "$prefix_b" ]] || fail "88.100.3 digests differ: $prefix_a / $prefix_b"
echo "round trip of $records records: lossless"
