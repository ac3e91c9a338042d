#!/usr/bin/env python3
"""Rebuilds the fuzz seed corpora from the captured vectors (tests/data/vectors/handle).

Run from the repository root after the vectors change: python3 tests/fuzz/make_seeds.py
The output is committed; CI only reads it.
"""
import hashlib
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
VECTORS = ROOT.parent / "data" / "vectors" / "handle"
CORPUS = ROOT / "corpus"


def write(target, data):
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)


def messages():
    """Whole messages: single lines, and multi-datagram files reassembled."""
    for path in sorted(VECTORS.glob("*.hex")):
        lines = [bytes.fromhex(l) for l in path.read_text().split() if l]
        if len(lines) == 1:
            yield lines[0]
        else:
            yield lines[0][:12] + b"\0\0\0\0" + lines[0][16:20] + b"".join(l[20:] for l in lines)
    for path in sorted(VECTORS.glob("session-*.hex.txt")):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 5 and fields[1] == "TCP":
                yield bytes.fromhex(fields[4])


def u32(b, at):
    return struct.unpack(">I", b[at:at + 4])[0]


def values_of(message):
    """Yields the encoded values of a resolution response (no RD prefix handled: enough for seeds)."""
    if len(message) < 44 or u32(message, 20) != 1 or u32(message, 24) != 1:
        return
    at = 44
    if u32(message, 28) & 0x00800000:
        at += 1 + 32
    at += 4 + u32(message, at)
    count = u32(message, at)
    at += 4
    for _ in range(count):
        start = at
        at += 4 + 4 + 1 + 4 + 1
        at += 4 + u32(message, at)  # type
        type_end = at
        at += 4 + u32(message, at)  # data
        refs = u32(message, at)
        at += 4
        for _ in range(refs):
            at += 4 + u32(message, at) + 4
        yield message[start:at], message[start + 14:type_end], message[type_end + 4:at - 4]


def main():
    site = None
    for message in messages():
        write("fuzz_message", message)
        for value, type_field, data in values_of(message):
            write("fuzz_value_types", b"\x00" + value)
            if type_field.endswith(b"HS_ADMIN"):
                write("fuzz_value_types", b"\x02" + data)
        if len(message) > 44 and u32(message, 20) == 2 and u32(message, 24) == 1:
            site = message[44:44 + u32(message, 40)]
    if site:
        write("fuzz_value_types", b"\x01" + site)
        # The server's public key inside the site record: after the fixed fields, hash filter,
        # attributes, server count, server id and address.
        at = 8 + 4 + u32(site, 8)
        attrs = u32(site, at)
        at += 4
        for _ in range(attrs):
            at += 4 + u32(site, at)
            at += 4 + u32(site, at)
        at += 4 + 4 + 16
        key = site[at + 4:at + 4 + u32(site, at)]
        write("fuzz_value_types", b"\x04" + key)
    vlist = struct.pack(">I", 2) + struct.pack(">I", 17) + b"0.NA/20.500.12345" + struct.pack(">i", 300) \
        + struct.pack(">I", 18) + b"20.500.12345/admin" + struct.pack(">i", 301)
    write("fuzz_value_types", b"\x03" + vlist)
    # Reassembly: records of (source byte, 2-byte length, datagram) from the multi-datagram vectors.
    for path in sorted(VECTORS.glob("*.hex")):
        lines = [bytes.fromhex(l) for l in path.read_text().split() if l]
        record = b"".join(bytes([1]) + struct.pack(">H", len(l)) + l for l in lines)
        write("fuzz_udp_reassembly", record)


if __name__ == "__main__":
    main()
