#!/usr/bin/env python3
"""Writes N JSON Lines records (three values: a 40-byte URL, a 45-byte description, an HS_ADMIN)
for import tests: gen_records.py N FILE"""
import json
import random
import sys


def main():
    count, path = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    with open(path, "w") as out:
        for i in range(count):
            url = ("https://example.cn/p/%07d/" % i + "".join(rng.choice(alphabet) for _ in range(40)))[:40]
            desc = ("part %07d lot " % i + "".join(rng.choice(alphabet) for _ in range(45)))[:45]
            record = {"handle": "88.100.%d/SN%07d" % (i % 7, i), "values": [
                {"index": 1, "type": "URL", "data": {"format": "string", "value": url}, "ttl": 86400},
                {"index": 2, "type": "DESC", "data": {"format": "string", "value": desc}, "ttl": 86400},
                {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                    "handle": "0.NA/88.100.%d" % (i % 7), "index": 300, "permissions": "111111111111"}},
                 "ttl": 86400}]}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
