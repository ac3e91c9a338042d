#!/usr/bin/env python3
"""JSON Lines records for the import benchmark, as a top-level node loads them from secondary
nodes: `gen_import.py N FILE [--small]`.

Realistic (the default): about 1 KB a record, several values with multi-byte UTF-8 text (Chinese
product descriptions, manufacturer and address), a URL, an e-mail, dates, an HS_ADMIN.
--small: three short values (a URL, a description, an HS_ADMIN), about 300 bytes a record.
"""
import json
import random
import sys

WORDS = ["工业", "互联网", "标识", "解析", "产品", "型号", "批次", "生产", "日期", "制造商", "上海", "北京",
         "深圳", "零件", "轴承", "电机", "传感器", "控制器", "质量", "检验", "合格", "出厂", "编号", "规格"]


def text(rng, n):
    return "".join(rng.choice(WORDS) for _ in range(n))


def value(index, type_, data, **extra):
    return {"index": index, "type": type_, "data": {"format": "string", "value": data}, "ttl": 86400, **extra}


def main():
    count, path = int(sys.argv[1]), sys.argv[2]
    small = "--small" in sys.argv[3:]
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            prefix = "88.%d.%d" % (100 + i % 50, 10000 + i % 997)
            admin = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                "handle": "0.NA/" + prefix, "index": 300, "permissions": "111111111111"}}, "ttl": 86400}
            url = "https://id.example.cn/%s/%07d/%s" % (prefix, i, "".join(rng.choice(alphabet) for _ in range(24)))
            if small:
                values = [value(1, "URL", url), value(2, "DESC", "part %07d lot %d" % (i, i % 977)), admin]
            else:
                values = [
                    value(1, "URL", url),
                    value(2, "DESC", text(rng, 40)),
                    value(3, "EMAIL", "service%d@factory%d.example.cn" % (i % 1000, i % 50)),
                    value(4, "MANUFACTURER", text(rng, 8) + "有限公司"),
                    value(5, "ADDRESS", text(rng, 10) + "路%d号" % (i % 9999)),
                    value(6, "MODEL", "MX-%04d-%s" % (i % 10000, "".join(rng.choice(alphabet) for _ in range(8)))),
                    value(7, "PRODUCTION_DATE", "2026-%02d-%02dT08:00:00Z" % (1 + i % 12, 1 + i % 28)),
                    value(8, "BATCH", "B%08d" % (i // 1000)),
                    admin,
                ]
            out.write(json.dumps({"handle": "%s/SN%09d" % (prefix, i), "values": values},
                                 ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
