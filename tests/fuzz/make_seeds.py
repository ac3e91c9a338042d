#!/usr/bin/env python3
"""Rebuilds the fuzz seed corpora from the captured vectors (tests/data/vectors/handle).

Run from the repository root after the vectors change: python3 tests/fuzz/make_seeds.py
The output is committed; CI only reads it.
"""
import hashlib
import os
import pathlib
import struct
import sys

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


def dns_name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_query(name, qtype, qclass=1, opcode=0, qdcount=1, edns=None, do=False, version=0, extra=b""):
    """A DNS query, built by hand for seeds only (idnode itself parses DNS with libknot)."""
    flags = (opcode << 11) | 0x0100  # RD
    arcount = 1 if edns is not None else 0
    message = struct.pack(">HHHHHH", 0x4242, flags, qdcount, 0, 0, arcount + (1 if extra else 0))
    message += dns_name(name) + struct.pack(">HH", qtype, qclass)
    if edns is not None:
        message += b"\0" + struct.pack(">HHBBHH", 41, edns, 0, version, 0x8000 if do else 0, 0)
    return message + extra


def dns_queries():
    """(mode byte, query): mode bit 0 = TCP, bits 1.. = what the fake registry answers."""
    oid = "1.3001.156.2.1.oid-res.org."
    NAPTR, TXT, SOA, NS, A, ANY, AXFR = 35, 16, 6, 2, 1, 255, 252
    yield 0, dns_query(oid, NAPTR)
    yield 1, dns_query(oid, NAPTR)
    yield 0, dns_query(oid, NAPTR, edns=1232, do=True)
    yield 0, dns_query(oid, NAPTR, edns=4096)
    yield 0, dns_query(oid, TXT, edns=1232)
    yield 1, dns_query(oid, TXT)
    yield 0, dns_query("3.2.1.oid-res.org.", NAPTR)
    yield 4, dns_query("9.3001.156.2.1.oid-res.org.", NAPTR)
    yield 6, dns_query(oid, NAPTR)
    yield 8, dns_query(oid, TXT)
    yield 10, dns_query(oid, NAPTR)
    yield 0, dns_query("oid-res.org.", SOA)
    yield 0, dns_query("OID-RES.ORG.", NS)
    yield 0, dns_query("oid-res.org.", AXFR)
    yield 0, dns_query(oid, A)
    yield 0, dns_query(oid, ANY)
    yield 0, dns_query("www.oid-res.org.", NAPTR)
    yield 0, dns_query("01.2.1.oid-res.org.", NAPTR)
    yield 0, dns_query("example.com.", NAPTR)
    yield 0, dns_query(oid, NAPTR, qclass=3)
    yield 0, dns_query(oid, NAPTR, opcode=4)
    yield 0, dns_query(oid, NAPTR, edns=1232, version=1)
    yield 0, dns_query(oid, NAPTR, qdcount=2)
    yield 0, dns_query(oid, NAPTR, qdcount=0)
    # A name that points at itself, and a record with a huge rdlength.
    yield 0, struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x23\x00\x01"
    yield 0, dns_query(oid, NAPTR, extra=b"\0" + struct.pack(">HHIH", 16, 1, 60, 0xFFFF) + b"x")
    long_oid = ".".join(["1"] * 49 + ["2", "1"]) + ".oid-res.org."
    yield 0, dns_query(long_oid, NAPTR)


def main():
    for mode, query in dns_queries():
        write("fuzz_dns_query", bytes([mode]) + query)
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
    challenge_answers()
    replication_streams()


def replication_streams():
    """fuzz_replication_stream: [selector][frames], the frames Protobuf messages encoded here by
    hand (proto/idnode/replication.proto field numbers): a source's stream (selector bit 0) with a
    welcome, a snapshot and changes; a replica's with a hello and acks; and broken ones."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
    from protowire import field, frame  # noqa: E402

    def record(handle):
        value = field(1, 1) + field(2, b"URL") + field(3, b"https://example.org/" + handle)
        return field(1, handle) + field(2, value) + field(3, 1)

    welcome = field(1, field(1, 1) + field(2, b"top") + field(3, 4) + field(8, 2))
    begin = field(3, field(1, 2) + field(2, 7) + field(3, b"abc"))
    chunk = field(4, field(1, 2) + field(2, record(b"88.100/A")) + field(2, record(b"88.100/B")))
    end = field(5, field(1, 2) + field(2, 7) + field(3, b"abc") + field(4, 2))
    put = field(1, 1) + field(2, b"88.100/C") + field(3, record(b"88.100/c")) + field(4, 8)
    delete = field(1, 2) + field(2, b"88.100/A") + field(4, 9)
    prefix = field(1, 3) + field(2, b"0.NA/88.100.5") + field(4, 10) + field(7, field(1, b"88.100.5") + field(2, 1))
    changes = field(6, field(1, 2) + field(2, put) + field(2, delete) + field(2, prefix) + field(3, 11)
                    + field(4, b"abc"))
    heartbeat = field(7, field(1, field(1, 2) + field(2, b"abc") + field(3, 11)) + field(2, 1700000000000))
    source = b"".join(frame(m) for m in (welcome, begin, chunk, end, changes, heartbeat))
    write("fuzz_replication_stream", b"\x01" + source)
    write("fuzz_replication_stream", b"\x01" + frame(field(2, field(1, b"not allowed"))))
    write("fuzz_replication_stream", b"\x01" + frame(changes))  # before any welcome
    hello = field(1, field(1, 1) + field(3, b"88.100") + field(3, b"20.500")
                  + field(4, field(1, 1) + field(2, b"abc") + field(3, 5)) + field(6, 1 << 20))
    ack = field(2, field(1, 4096) + field(2, field(1, 1) + field(2, b"abc") + field(3, 9)))
    write("fuzz_replication_stream", b"\x06" + frame(hello) + frame(ack))
    write("fuzz_replication_stream", b"\x06" + frame(field(1, field(1, 1) + field(2, 1))))
    write("fuzz_replication_stream", b"\x00" + struct.pack(">I", 0xFFFFFFFF) + b"x")


def challenge_answers():
    """fuzz_challenge_answer: [selector][key length (2)][key value][answer], one seed per secret-key
    MAC code (computed here with hashlib/hmac). The HS_PUBKEY seed (selector 1: a 1024-bit RSA key
    value and a SHA-256 signature over the target's nonce and digest) was made once with the
    openssl command and is kept as it is."""
    import hmac
    nonce, digest, key = bytes(range(1, 17)), bytes([0xde, 0xad, 0xbe, 0xef]) + bytes(28), b"s3cret"
    data = nonce + digest

    def seed(selector, answer):
        write("fuzz_challenge_answer", bytes([selector]) + struct.pack(">H", len(key)) + key + answer)

    seed(0, bytes([0x13]) + hmac.new(key, data, hashlib.sha256).digest())
    seed(4, bytes([0x12]) + hmac.new(key, data, hashlib.sha1).digest())
    seed(0, bytes([0x02]) + hashlib.sha1(key + data + key).digest())
    seed(2, hashlib.md5(key + data + key).digest())  # below 2.1: no code byte
    salt = bytes(range(8))
    stretched = hashlib.pbkdf2_hmac("sha1", key, salt, 10, 20)
    seed(0, bytes([0x22]) + struct.pack(">I", 8) + salt + struct.pack(">II", 10, 160) + struct.pack(">I", 20)
         + hmac.new(stretched, data, hashlib.sha1).digest())
    # Mutation seeds (selector bit 8): each MAC code (bits 4-6), flips at (position, mask) pairs,
    # one cut short (a first byte with the top bit set gives the new length).
    for code in range(5):
        seed(8 | code << 4, bytes([3, 1, 17, 0x80]))
    seed(8, bytes([0x80 | 20]))
    seed(8 | 2 << 4, bytes([0, 0x22 ^ 0x12]))  # PBKDF2 relabelled as HMAC-SHA1
    # SM2 (China's identifier SDK): its HS_PUBKEY value (PEM text inside) with its answers on both
    # hash paths; made for another nonce, they reach the SM2 key parser and verifier, not a yes.
    sm2 = VECTORS / "sm2"
    sm2_key = bytes.fromhex((sm2 / "keys" / "hs_pubkey-data.SM2_PUB_KEY.hex").read_text().split()[0])
    for path in ("sm3-path", "sha256-path"):
        answer = bytes.fromhex((sm2 / "offline" / (path + ".signedResponse.hex")).read_text().split()[0])
        write("fuzz_challenge_answer", bytes([1]) + struct.pack(">H", len(sm2_key)) + sm2_key + answer)


def session_messages():
    """fuzz_session_message: [selector][bytes]. 0: the capture's OC 400 setup bodies (DH); 1: a
    message encrypted with the target's session key (32 x 0x42, AES-128-CBC, a fixed IV so that
    the seed is stable); 2: the capture's HS_MAC'd session messages; 3: mutation strings."""
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    for path in sorted(VECTORS.glob("session-*.hex.txt")):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) != 5 or fields[2] != "C>S":
                continue
            m = bytes.fromhex(fields[4])
            if len(m) < 44 or u32(m, 20) == 0:
                continue
            if u32(m, 20) == 400:
                write("fuzz_session_message", b"\x00" + m[44:44 + u32(m, 40)])
            elif fields[1] == "TCP" and not (m[2] & 0x40):
                write("fuzz_session_message", b"\x02" + m)
    plain = bytes.fromhex("020b020b00000007000000630000000000000019000000650000000000000000ffff000000000000"
                          "0000000a38382e312f636f6e7400000000")
    padder = sympad.PKCS7(128).padder()
    padded = padder.update(plain[20:]) + padder.finalize()
    iv = bytes(range(16))
    sealed = iv + Cipher(algorithms.AES(bytes([0x42]) * 16), modes.CBC(iv)).encryptor().update(padded)
    write("fuzz_session_message", b"\x01" + plain[:2] + bytes([plain[2] | 0x40]) + plain[3:16]
          + struct.pack(">I", len(sealed)) + sealed)
    for mutation in (b"", bytes([3, 1, 17, 0x80]), bytes([0x80 | 40]), bytes([30, 1]), bytes([70, 0x10])):
        write("fuzz_session_message", b"\x03" + mutation)


def http_writes():
    """fuzz_http_write: [selector][bytes], selector 0 Basic credentials, 1 write query, 2 listing
    query, 3 PUT body, 4 batch body, 5 audit query, 6 Authorization: Handle (the reference
    transcript's shapes)."""
    import base64
    write("fuzz_http_write", b"\x00Basic " + base64.b64encode(b"301%3A0.NA%2F20.500.12345:secretpw"))
    write("fuzz_http_write", b"\x00Basic " + base64.b64encode(b"300:0.NA/x:y"))
    write("fuzz_http_write", b"\x00Handle sessionId=\"x\", id=\"300:0.NA/x\"")
    write("fuzz_http_write", b'\x06Handle sessionId="0123456789abcdef0123456789abcdef", '
          b'id="300%3A0.NA%2F20.500.12345", type="HS_PUBKEY", cnonce="hXQ/IlhvSDXJN2dJUN+yoQ==", '
          b'alg="SHA256", signature="AAECAwQFBgcICQ=="')
    write("fuzz_http_write", b'\x06Handle sessionId=abc, id="301:0.NA/x", type=HS_SECKEY, '
          b'alg=PBKDF2-HMAC-SHA1, cnonce=-_8, salt="AAEC", iterations=1000, length=160, '
          b'signature="AAEC\\"", version=0')
    write("fuzz_http_write", b"\x01overwrite=false&index=2&index=various&mintNewSuffix=true")
    write("fuzz_http_write", b"\x02prefix=20.500.12345&page=0&pageSize=2")
    write("fuzz_http_write", b'\x03{"values":[{"index":1,"type":"URL","data":{"format":"string",'
          b'"value":"https://example.org/rest9"}},{"index":100,"type":"HS_ADMIN","data":{"format":"admin",'
          b'"value":{"handle":"0.NA/20.500.12345","index":300,"permissions":"011111111111"}}}]}')
    write("fuzz_http_write", b'\x03[{"index":1,"type":"URL","data":"x"}]')
    write("fuzz_http_write", b'\x03{"index":2,"type":"EMAIL","data":{"format":"string","value":"a@b.c"}}')
    write("fuzz_http_write", b"\x05since=2026-12-01T00:00:00Z&prefix=88.100&identity=300:0.NA/88.100&limit=50")
    write("fuzz_http_write", b"\x05since=1796000000000&limit=100000")
    write("fuzz_http_write", b'\x04{"transaction":"sn1-1","operations":[{"op":"create","handle":"88.100/A",'
          b'"values":[{"index":1,"type":"URL","data":"https://a"}]},{"op":"remove","handle":"88.100/B",'
          b'"indexes":[2]},{"op":"delete","handle":"88.100/C"},{"op":"modify","handle":"88.100/D",'
          b'"values":[{"index":1,"type":"URL","data":{"format":"hex","value":"6869"}}],"overwrite":true}]}')


if __name__ == "__main__":
    main()
    session_messages()
    http_writes()
