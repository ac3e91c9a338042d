#!/usr/bin/env python3
"""Whether an `idctl export` holds the records of the JSON Lines file that was imported:

  compare_records.py INPUT EXPORT [COUNT]

The same set of handles, each with the same values (index, type, data, ttl, permissions, ...), in
any order of lines and of values. Export may add a timestamp to a value (import sets one when the
input has none): timestamps are not compared. Prints the number of records and exits 0 when they
are the same (and there are COUNT of them, when given); otherwise prints the first differences and
exits 1.

Fast path, for a million records: each line's text with its timestamps removed is hashed, and the
sorted hashes of both files compared; equal text is equal records. Only when that fails are the
records compared field by field (parsed JSON, values keyed by index), which tells the difference
from a change of formatting, and names the handles that differ.
"""
import hashlib
import json
import re
import sys

TIMESTAMP = re.compile(rb',"timestamp":"[0-9T:.Z+-]*"')


def text_digests(path):
    """The sorted digests of the lines of `path`, timestamps removed."""
    digests = []
    with open(path, "rb") as f:
        for line in f:
            digests.append(hashlib.blake2b(TIMESTAMP.sub(b"", line.rstrip(b"\n")), digest_size=16).digest())
    digests.sort()
    return digests


def canonical(record):
    """(handle, the record's values as canonical JSON: sorted by index, keys sorted, no timestamp)."""
    values = []
    for value in record["values"]:
        value = {k: v for k, v in value.items() if k != "timestamp"}
        values.append(value)
    values.sort(key=lambda v: v["index"])
    return record["handle"], json.dumps(values, sort_keys=True, separators=(",", ":"))


def field_by_field(input_path, export_path, show=5):
    """Compares the records themselves; returns (records in the input, list of differences)."""
    expected = {}
    problems = []
    with open(input_path, "rb") as f:
        for number, line in enumerate(f, 1):
            handle, values = canonical(json.loads(line))
            if handle in expected:
                problems.append("input line %d: %s appears twice" % (number, handle))
            expected[handle] = hashlib.blake2b(values.encode(), digest_size=16).digest()
    count = len(expected)
    with open(export_path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                handle, values = canonical(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:
                problems.append("export line %d is not a record (%s): %r" % (number, e, line[:200]))
                continue
            want = expected.pop(handle, None)
            if want is None:
                problems.append("export line %d: %s is not in the input, or is exported twice" % (number, handle))
            elif want != hashlib.blake2b(values.encode(), digest_size=16).digest():
                problems.append("export line %d: %s has other values: %s" % (number, handle, values[:400]))
    for handle in list(expected)[:show]:
        problems.append("%s is missing from the export" % handle)
    if len(expected) > show:
        problems.append("... %d handles in all are missing from the export" % len(expected))
    return count, problems


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: compare_records.py INPUT EXPORT [COUNT]")
    input_path, export_path = sys.argv[1], sys.argv[2]
    want_count = int(sys.argv[3]) if len(sys.argv) == 4 else None
    a, b = text_digests(input_path), text_digests(export_path)
    count = len(a)
    if a != b:
        print("the export's text differs from the input's beyond timestamps: comparing field by field")
        del a, b
        count, problems = field_by_field(input_path, export_path)
        if problems:
            print("the export does not hold the input's records:")
            for p in problems[:12]:
                print("  " + p)
            if len(problems) > 12:
                print("  ... %d differences in all" % len(problems))
            sys.exit(1)
    if want_count is not None and count != want_count:
        print("%d records in the input and the export, not %d" % (count, want_count))
        sys.exit(1)
    print("%d records: the same handles with the same values" % count)


if __name__ == "__main__":
    main()
