#!/usr/bin/env python3
"""Administration of a real idnode over the Handle protocol (loopback, ephemeral ports, temp dir).

  admin_test.py IDNODE IDCTL IDBENCH

The node homes ADM.1; its prefix handle 0.NA/ADM.1 holds an HS_SECKEY identity (index 300) that
its HS_ADMIN names, and ADM.1/user holds a second identity that no HS_ADMIN names. The client side
of the challenge-response is written here from HANDLE.md (Python's hmac/hashlib), independently
of idnode's C++: create, modify, delete over TCP and UDP, HMAC-SHA256 and PBKDF2-HMAC-SHA1
answers, a wrong secret (403), an identity that is not an admin (400); then idbench's write mix.
Traffic goes to 127.0.0.1 only; every wait is bounded; the node is stopped at the end, and the run
fails if it did not stop cleanly (exit 0 on SIGTERM, no sanitizer report: harness.py).
"""
import functools
import hashlib
import hmac
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import harness
import server_test as st

IDNODE = IDCTL = IDBENCH = None
NODE = st.NODE  # the helpers of server_test.py read the port from here
SECRET = b"s3cret-adm"


def text(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def message(opcode, body, request_id, session_id=0, flags=0x19000000):
    hdr = struct.pack(">IIIHBBII", opcode, 0, flags, 0xFFFF, 0, 0, int(time.time()) + 43200, len(body))
    m = hdr + body + struct.pack(">I", 0)
    return struct.pack(">BBBBIIII", 2, 11, 2, 11, session_id, request_id, 0, len(m)) + m


def url_value(index, url, permissions=0x0E, kind="URL"):
    # index, timestamp, ttl type, ttl, permissions, type, data, no references
    return (struct.pack(">iIBiB", index, 0, 0, 86400, permissions) + text(kind) + text(url) + struct.pack(">I", 0))


def values_body(handle, values):
    return text(handle) + struct.pack(">I", len(values)) + b"".join(values)


def challenge_parts(reply):
    """(session id, nonce, digest) of a 402 whose RD prefix holds a SHA-256 digest."""
    h = st.header(reply)
    assert h["rc"] == 402, h
    assert reply[44] == 3, "digest type SHA-256"
    digest = reply[45:77]
    (nonce_length,) = struct.unpack(">I", reply[77:81])
    nonce = reply[81:81 + nonce_length]
    return struct.unpack(">I", reply[4:8])[0], nonce, digest


def answer(reply, identity=b"0.NA/ADM.1", secret=SECRET, pbkdf2=False, request_id=5151):
    session, nonce, digest = challenge_parts(reply)
    if pbkdf2:
        salt, iterations = os.urandom(16), 10000
        key = hashlib.pbkdf2_hmac("sha1", secret, salt, iterations, 20)
        mac = hmac.new(key, nonce + digest, hashlib.sha1).digest()
        signed = bytes([0x22]) + text(salt) + struct.pack(">II", iterations, 160) + text(mac)
    else:
        signed = bytes([0x13]) + hmac.new(secret, nonce + digest, hashlib.sha256).digest()
    body = text("HS_SECKEY") + text(identity) + struct.pack(">i", 300) + text(signed)
    return message(200, body, request_id, session_id=session)


def tcp_admin(request, **kw):
    """Sends `request`, answers its challenge on the same connection; returns the final answer."""
    s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
    try:
        s.sendall(request)
        challenge = st.read_message(s)
        s.sendall(answer(challenge, **kw))
        return st.read_message(s)
    finally:
        s.close()


def udp_admin(request, **kw):
    challenge = st.udp_exchange(request, timeout=3)
    return st.udp_exchange(answer(challenge, **kw), timeout=3)


def resolved_url(handle):
    reply = st.udp_exchange(st.resolution_request(handle), timeout=2)
    h = st.header(reply)
    return h["rc"], reply


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def start_module_node():
    work = tempfile.mkdtemp(prefix="idnode-admin-")
    NODE["work"] = work
    data = os.path.join(work, "data")
    records = os.path.join(work, "identities.jsonl")
    admin = {"handle": "0.NA/ADM.1", "values": [
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
            "handle": "0.NA/ADM.1", "index": 300, "permissions": "111111111111"}}},
        {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": SECRET.decode()},
         "permissions": "1100"}]}
    user = {"handle": "ADM.1/user", "values": [
        {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": "user-secret"},
         "permissions": "1100"}]}
    with open(records, "w") as f:
        f.write(json.dumps(admin) + "\n" + json.dumps(user) + "\n")
    # HTTPS on the HTTP port (port unification) with a self-signed certificate made here.
    cert, key = write_test_certificate(work)
    NODE["cert"] = cert
    config = os.path.join(work, "idnode.yaml")
    with open(config, "w") as f:
        f.write("http:\n  tls_cert_file: %s\n  tls_key_file: %s\n  max_body_bytes: 4194304\n" % (cert, key))
        f.write("  status_requires_admin: true\n")  # StatusPagesForAdmins
        f.write('auth:\n  server_admins: ["300:0.NA/ADM.1"]\n')
    NODE["proc"], ports = st.start_node_homing(IDNODE, IDCTL, work, "ADM.1", records,
                                               ["--workers", "2", "--config", config])
    NODE["handle"] = ports["handle"]
    NODE["http"] = ports["http"]


def write_test_certificate(work):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(work, "http-cert.pem"), os.path.join(work, "http-key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def basic(identity, secret):
    import base64
    from urllib.parse import quote
    return "Basic " + base64.b64encode((quote(identity, safe="") + ":" + secret).encode()).decode()


ADMIN_AUTH = basic("300:0.NA/ADM.1", SECRET.decode())
USER_AUTH = basic("300:ADM.1/user", "user-secret")


def http_request(method, path, body=None, auth=None, tls=True, timeout=30, source="127.0.0.1"):
    """(status, headers, parsed JSON body or raw text) of one request to the node's HTTP port, from
    the address `source` (the failed-proof throttle counts per source address)."""
    import http.client
    import ssl
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", NODE["http"], timeout=timeout,
                                           context=ssl._create_unverified_context(),
                                           source_address=(source, 0))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", NODE["http"], timeout=timeout,
                                          source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers)
        r = conn.getresponse()
        data = r.read()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode(errors="replace")
        return r.status, r.getheaders(), parsed
    finally:
        conn.close()


def changelog_total():
    return sum(v for k, v in harness.metrics(NODE["http"]).items() if k.startswith("idnode_changelog_last_sequence"))


def tearDownModule():
    st.tearDownModule()


class Administration(unittest.TestCase):
    def test_create_modify_delete_over_tcp(self):
        created = tcp_admin(message(100, values_body("ADM.1/item", [url_value(1, "https://a.example")]), 11))
        h = st.header(created)
        self.assertEqual((h["opcode"], h["rc"], h["request_id"]), (100, 1, 5151))
        self.assertIn(b"ADM.1/item", created[44:])
        rc, reply = resolved_url("ADM.1/item")
        self.assertEqual(rc, 1)
        self.assertIn(b"https://a.example", reply)

        modified = tcp_admin(message(104, values_body("ADM.1/item", [url_value(1, "https://b.example")]), 12))
        self.assertEqual(st.header(modified)["rc"], 1)
        rc, reply = resolved_url("ADM.1/item")
        self.assertIn(b"https://b.example", reply)  # the cached answer was invalidated

        deleted = tcp_admin(message(101, text("ADM.1/item"), 13))
        self.assertEqual((st.header(deleted)["opcode"], st.header(deleted)["rc"]), (101, 1))
        self.assertEqual(resolved_url("ADM.1/item")[0], 100)

    def test_create_over_udp_with_a_pbkdf2_answer(self):
        created = udp_admin(message(100, values_body("ADM.1/udp", [url_value(1, "https://u.example")]), 21),
                            pbkdf2=True)
        self.assertEqual(st.header(created)["rc"], 1)
        self.assertEqual(resolved_url("ADM.1/udp")[0], 1)

    def test_wrong_secret_and_non_admin_are_refused(self):
        request = message(100, values_body("ADM.1/nope", [url_value(1, "https://n.example")]), 31)
        self.assertEqual(st.header(tcp_admin(request, secret=b"wrong"))["rc"], 403)
        self.assertEqual(st.header(tcp_admin(request, identity=b"ADM.1/user", secret=b"user-secret"))["rc"], 400)
        self.assertEqual(resolved_url("ADM.1/nope")[0], 100)

    def test_prefix_not_homed_here_is_not_challenged(self):
        reply = st.tcp_exchange([message(100, values_body("OTHER.1/x", [url_value(1, "https://o")]), 41)])[0]
        self.assertEqual(st.header(reply)["rc"], 301)

    def test_idctl_admin(self):
        secret_file = os.path.join(NODE["work"], "admin-secret")
        with open(secret_file, "wb") as f:
            f.write(SECRET + b"\n")
        server = "tcp://127.0.0.1:%d" % NODE["handle"]

        def idctl(*args):
            return subprocess.run([IDCTL, "admin", *args, "--identity", "300:0.NA/ADM.1", "--secret-file",
                                   secret_file, "--server", server], capture_output=True, text=True, timeout=30)

        out = idctl("create", "ADM.1/tool", "--value", "1:URL:https://t.example",
                    "--value", "100:HS_ADMIN:300:0.NA/ADM.1")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("RC_SUCCESS ADM.1/tool", out.stdout)
        self.assertEqual(resolved_url("ADM.1/tool")[0], 1)
        out = idctl("create", "ADM.1/tool", "--value", "1:URL:https://t.example")
        self.assertEqual(out.returncode, 1)
        self.assertIn("RC_HANDLE_ALREADY_EXISTS", out.stdout)
        self.assertEqual(idctl("add", "ADM.1/tool", "--value", "2:EMAIL:ops@t.example").returncode, 0)
        self.assertEqual(idctl("modify", "ADM.1/tool", "--value", "2:EMAIL:noc@t.example").returncode, 0)
        self.assertIn(b"noc@t.example", resolved_url("ADM.1/tool")[1])
        self.assertEqual(idctl("remove", "ADM.1/tool", "--index", "2").returncode, 0)
        self.assertNotIn(b"noc@t.example", resolved_url("ADM.1/tool")[1])
        self.assertEqual(idctl("delete", "ADM.1/tool").returncode, 0)
        self.assertEqual(resolved_url("ADM.1/tool")[0], 100)
        bad = subprocess.run([IDCTL, "admin", "create", "ADM.1/x", "--value", "nonsense", "--identity",
                              "300:0.NA/ADM.1", "--secret-file", secret_file, "--server", server],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("INDEX:TYPE:DATA", bad.stderr)
        bad = subprocess.run([IDCTL, "admin", "delete", "ADM.1/x", "--identity", "0.NA/ADM.1",
                              "--secret-file", secret_file, "--server", server],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--identity is INDEX:HANDLE", bad.stderr)
        bad = subprocess.run([IDCTL, "admin", "delete", "ADM.1/x", "--identity", "300:0.NA/ADM.1",
                              "--secret-file", os.path.join(NODE["work"], "absent"), "--server", server],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("cannot read a secret", bad.stderr)

    def test_idbench_write_mix(self):
        secret_file = os.path.join(NODE["work"], "secret")
        with open(secret_file, "wb") as f:
            f.write(SECRET + b"\n")
        for protocol in ("tcp", "udp"):
            out = subprocess.run(
                [IDBENCH, "run", "--protocol", protocol, "--server", "127.0.0.1:%d" % NODE["handle"],
                 "--pattern", "ADM.1/SN{0..99}", "--seconds", "1", "--concurrency", "8", "--connections", "2",
                 "--writes", "0.25", "--write-prefix", "ADM.1", "--identity", "300:0.NA/ADM.1",
                 "--secret-file", secret_file],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            codes = dict(re.findall(r"^write code (\d+): (\d+)$", out.stdout, re.M))
            self.assertGreater(int(codes.get("1", 0)), 10, out.stdout)
            self.assertEqual(set(codes), {"1"}, out.stdout)



# ---- certified answers and sessions, checked with Python's `cryptography` (not idnode's code) ----

# The reference client's DH group (RFC 2409 group 2, as the capture's session setups carry it).
OAKLEY2_P = int("ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a0879"
                "8e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0b"
                "ff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece65381ffffffffffffffff", 16)


def java_int(n):
    """BigInteger.toByteArray of a positive number."""
    b = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")
    return b


def read_text(buf, at):
    (n,) = struct.unpack(">I", buf[at:at + 4])
    return buf[at + 4:at + 4 + n], at + 4 + n


def site_public_key():
    """The RSA key of the node's HS_SITE (GET_SITE_INFO), as a `cryptography` key."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    reply = st.udp_exchange(message(2, text("/"), 77), timeout=3)
    site = reply[44:44 + st.header(reply)["body_length"]]
    at = 8
    _, at = read_text(site, at)  # hash filter
    (attributes,) = struct.unpack(">I", site[at:at + 4])
    at += 4
    for _ in range(attributes):
        _, at = read_text(site, at)
        _, at = read_text(site, at)
    (servers,) = struct.unpack(">I", site[at:at + 4])
    assert servers == 1
    at += 4 + 4 + 16
    key, at = read_text(site, at)
    kind, k = read_text(key, 0)
    assert kind == b"RSA_PUB_KEY", kind
    e, k = read_text(key, k + 2)
    n, k = read_text(key, k)
    return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()


def credential_of(reply):
    """(type, algorithm, signer index, signature, covered header+body) of a decoded answer."""
    body_end = 44 + st.header(reply)["body_length"]
    (length,) = struct.unpack(">I", reply[body_end:body_end + 4])
    cred = reply[body_end + 4:body_end + 4 + length]
    if not cred:
        return None
    _, at = read_text(cred, 4)
    (index,) = struct.unpack(">i", cred[at:at + 4])
    kind, at = read_text(cred, at + 4)
    alg, at2 = read_text(cred, at + 4)
    sig, _ = read_text(cred, at2)
    return kind, alg, index, sig, reply[20:body_end]


def preamble(msg, counter):
    return msg[0:2] + bytes([msg[2] & 3, msg[3]]) + msg[4:12] + struct.pack(">I", counter)


def verify_signed(reply, public_key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    kind, alg, index, sig, covered = credential_of(reply)
    assert (kind, alg) == (b"HS_SIGNED", b"SHA-256"), (kind, alg)
    public_key.verify(sig, preamble(reply, index) + covered, padding.PKCS1v15(), hashes.SHA256())


def with_mac(msg, key, counter):
    """`msg` (built by message(), empty credential) with an HS_MAC credential of session `key`."""
    covered = msg[20:-4]
    mac = hmac.new(key, preamble(msg, counter) + covered, hashlib.sha256).digest()
    info = text("HMAC-SHA256") + text(mac)
    cred = b"\0\0\0\0" + text("") + struct.pack(">i", counter) + text("HS_MAC") + struct.pack(">I", len(info)) + info
    whole = covered + struct.pack(">I", len(cred)) + cred
    return msg[:16] + struct.pack(">I", len(whole)) + whole


def encrypted(msg, key):
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    iv = os.urandom(16)
    padder = sympad.PKCS7(128).padder()
    plain = padder.update(msg[20:]) + padder.finalize()
    enc = Cipher(algorithms.AES(key[:16]), modes.CBC(iv)).encryptor()
    sealed = iv + enc.update(plain) + enc.finalize()
    return msg[:2] + bytes([msg[2] | 0x40]) + msg[3:16] + struct.pack(">I", len(sealed)) + sealed


def decrypted(reply, key):
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    assert reply[2] & 0x40, "the answer is not encrypted"
    dec = Cipher(algorithms.AES(key[:16]), modes.CBC(reply[20:36])).decryptor()
    padded = dec.update(reply[36:]) + dec.finalize()
    unpadder = sympad.PKCS7(128).unpadder()
    plain = unpadder.update(padded) + unpadder.finalize()
    return reply[:2] + bytes([reply[2] & ~0x40 & 0xFF]) + reply[3:16] + struct.pack(">I", len(plain)) + plain


def open_session(identity=b"0.NA/ADM.1", index=300):
    """OC 400 over UDP with CT|RD and a DH key, as the reference client sends it: (id, key, reply)."""
    from cryptography.hazmat.primitives.asymmetric import dh
    private = dh.DHParameterNumbers(OAKLEY2_P, 2).parameters().generate_private_key()
    y = private.public_key().public_numbers().y
    public = text("DH_PUB_KEY") + b"\0\0" + text(java_int(y)) + text(java_int(OAKLEY2_P)) + text(java_int(2))
    body = struct.pack(">Hi", 4, 86400) + text(identity) + struct.pack(">i", index) + text(public) + b"\0\0"
    reply = st.udp_exchange(message(400, body, 4001, flags=0x59800000), timeout=3)
    h = st.header(reply)
    assert (h["opcode"], h["rc"]) == (400, 1), h
    session_id = struct.unpack(">I", reply[4:8])[0]
    at = 44 + 33  # after the RD prefix (SHA-256)
    (mode,) = struct.unpack(">H", reply[at:at + 2])
    assert mode == 4
    data, _ = read_text(reply, at + 2)
    assert struct.unpack(">I", data[:4])[0] == 3  # AES
    kind, k = read_text(data, 4)
    assert kind == b"DH_PUB_KEY"
    server_y, k = read_text(data, k + 2)
    peer = dh.DHPublicNumbers(int.from_bytes(server_y, "big"),
                              dh.DHParameterNumbers(OAKLEY2_P, 2)).public_key()
    secret = private.exchange(peer)
    i = 0
    while i + 32 < len(secret) and secret[i] == 0:
        i += 1
    return session_id, secret[i:i + 32], reply


class JsonApiWrites(unittest.TestCase):
    """The handle.net JSON API's writes (HANDLE.md §2, the reference transcript's exchanges) and
    idnode's batch endpoint, over HTTPS on the HTTP port."""

    def test_writes_need_credentials_and_tls(self):
        value = {"values": [{"index": 1, "type": "URL", "data": "https://x"}]}
        status, headers, body = http_request("PUT", "/api/handles/ADM.1/rest9", value)
        self.assertEqual((status, body["responseCode"]), (401, 402))
        self.assertIn(("WWW-Authenticate", 'Basic realm="handle"'), headers)
        status, _, body = http_request("PUT", "/api/handles/ADM.1/rest9", value, auth=ADMIN_AUTH, tls=False)
        self.assertEqual((status, body["responseCode"]), (403, 402))
        status, headers, body = http_request("PUT", "/api/handles/ADM.1/rest9", value,
                                             auth=basic("300:0.NA/ADM.1", "wrong"))
        self.assertEqual(status, 401)
        self.assertTrue(any("Identity not verified" in v for k, v in headers if k == "WWW-Authenticate"))
        status, _, body = http_request("PUT", "/api/handles/ADM.1/rest9", value, auth=USER_AUTH)
        self.assertEqual((status, body["responseCode"]), (403, 400))  # authenticated, not an admin
        self.assertEqual(st.header(resolved_url("ADM.1/rest9")[1])["rc"], 100)

    def test_the_reference_transcript_sequence(self):
        path = "/api/handles/ADM.1/rest9"
        created = {"values": [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/rest9"}},
                              {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                                  "handle": "0.NA/ADM.1", "index": 300, "permissions": "011111111111"}}}]}
        self.assertEqual(http_request("PUT", path, created, auth=ADMIN_AUTH)[:3:2],
                         (201, {"responseCode": 1, "handle": "ADM.1/rest9"}))
        self.assertIn(b"https://example.org/rest9", resolved_url("ADM.1/rest9")[1])  # caches coherent
        status, _, body = http_request("PUT", path + "?overwrite=false",
                                       {"values": [{"index": 1, "type": "URL", "data": "https://x"}]}, auth=ADMIN_AUTH)
        self.assertEqual((status, body["responseCode"]), (409, 101))
        status, _, _ = http_request("PUT", path + "?index=2",
                                    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "a@b.c"}},
                                    auth=ADMIN_AUTH)
        self.assertEqual(status, 201)
        status, _, got = http_request("GET", path, tls=False)
        self.assertEqual(status, 200)
        self.assertEqual([v["index"] for v in got["values"]], [1, 2, 100])
        self.assertEqual(http_request("DELETE", path + "?index=2", auth=ADMIN_AUTH)[0], 200)
        self.assertEqual(http_request("DELETE", path, auth=ADMIN_AUTH)[0], 200)
        status, _, body = http_request("DELETE", path, auth=ADMIN_AUTH)
        self.assertEqual((status, body["responseCode"]), (404, 100))
        # mintNewSuffix on the prefix: a new UUID handle.
        status, _, body = http_request("PUT", "/api/handles/ADM.1/?mintNewSuffix=true",
                                       [{"index": 1, "type": "URL", "data": "https://minted"}], auth=ADMIN_AUTH)
        self.assertEqual(status, 201)
        self.assertRegex(body["handle"], r"^ADM\.1/[0-9a-f-]{36}$")
        self.assertEqual(st.header(resolved_url(body["handle"])[1])["rc"], 1)

    def test_a_batch_of_2000_then_its_retry(self):
        ops = [{"op": "create", "handle": "ADM.1/b%04d" % i,
                "values": [{"index": 1, "type": "URL", "data": "https://b.example/%d" % i}]} for i in range(2000)]
        before = changelog_total()
        status, _, body = http_request("POST", "/api/batch", {"transaction": "sn1-0001", "operations": ops},
                                       auth=ADMIN_AUTH, timeout=120)
        self.assertEqual(status, 200, body)
        self.assertEqual([r["responseCode"] for r in body["results"]], [1] * 2000)
        after = changelog_total()
        self.assertEqual(after - before, 2000)
        # The same request again (a retry after a timeout): every result success, nothing applied.
        status, _, body = http_request("POST", "/api/batch", {"transaction": "sn1-0001", "operations": ops},
                                       auth=ADMIN_AUTH, timeout=120)
        self.assertEqual([r["responseCode"] for r in body["results"]], [1] * 2000)
        self.assertEqual(changelog_total(), after)
        # Under another transaction id, "already exists with the same values" is success too.
        status, _, body = http_request("POST", "/api/batch", {"transaction": "sn1-0002", "operations": ops[:5]},
                                       auth=ADMIN_AUTH)
        self.assertEqual([r["responseCode"] for r in body["results"]], [1] * 5)
        self.assertEqual(changelog_total(), after)
        self.assertIn(b"https://b.example/1999", resolved_url("ADM.1/b1999")[1])
        # The admin listing sees them.
        status, _, listing = http_request("GET", "/api/handles?prefix=ADM.1&page=0&pageSize=10", auth=ADMIN_AUTH)
        self.assertEqual(status, 200)
        self.assertEqual(len(listing["handles"]), 10)
        self.assertGreaterEqual(int(listing["totalCount"]), 2000)
        self.assertEqual(http_request("GET", "/api/handles?prefix=ADM.1", auth=USER_AUTH)[0], 403)

    def test_idctl_batch(self):
        lines = [json.dumps({"op": "create", "handle": "ADM.1/idctl%04d" % i,
                             "values": [{"index": 1, "type": "URL", "data": "https://i/%d" % i}]}) for i in range(2500)]
        lines.append(json.dumps({"op": "delete", "handle": "ADM.1/never-there"}))
        path = os.path.join(NODE["work"], "ops.jsonl")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        secret_file = os.path.join(NODE["work"], "batch-secret")
        with open(secret_file, "wb") as f:
            f.write(SECRET + b"\n")

        def run(*extra):
            return subprocess.run([IDCTL, "batch", path, "--server", "https://127.0.0.1:%d" % NODE["http"],
                                   "--identity", "300:0.NA/ADM.1", "--secret-file", secret_file, *extra],
                                  capture_output=True, text=True, timeout=120)

        before = changelog_total()
        out = run("--ca-file", NODE["cert"])
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)  # the delete of a missing handle
        self.assertIn("2500 succeeded, 1 failed", out.stdout)
        self.assertIn('"responseCode":100', out.stdout)
        after = changelog_total()
        self.assertEqual(after - before, 2500)
        # The same file again: its transaction id makes it a replay; nothing applies twice.
        out = run("--insecure")
        self.assertIn("2500 succeeded, 1 failed", out.stdout)
        self.assertEqual(changelog_total(), after)
        self.assertIn(b"https://i/2499", resolved_url("ADM.1/idctl2499")[1])
        # A certificate nobody vouches for is refused.
        out = run()
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)

    def test_transaction_ids_are_the_identitys_and_name_their_operations(self):
        ops = [{"op": "create", "handle": "ADM.1/tx-same", "values": [{"index": 1, "type": "URL", "data": "https://t"}]},
               {"op": "add", "handle": "ADM.1/tx-same", "values": [{"index": 2, "type": "EMAIL", "data": "a@b"}]},
               {"op": "modify", "handle": "ADM.1/tx-same", "values": [{"index": 1, "type": "URL", "data": "https://t2"}]}]
        status, _, body = http_request("POST", "/api/batch", {"transaction": "shared-1", "operations": ops},
                                       auth=ADMIN_AUTH)
        self.assertEqual([r["responseCode"] for r in body["results"]], [1, 1, 1])
        before = changelog_total()
        # The same request again: every operation of the same handle replays, none applies again.
        status, _, body = http_request("POST", "/api/batch", {"transaction": "shared-1", "operations": ops},
                                       auth=ADMIN_AUTH)
        self.assertEqual([r["responseCode"] for r in body["results"]], [1, 1, 1])
        self.assertEqual(changelog_total(), before)
        # Another identity's batch under the same id is its own transaction (here: refused).
        status, _, body = http_request("POST", "/api/batch", {"transaction": "shared-1", "operations": ops[:1]},
                                       auth=USER_AUTH)
        self.assertEqual([r["responseCode"] for r in body["results"]], [400])
        # The same id and place with another operation: refused, not answered with the old outcome.
        other = [{"op": "delete", "handle": "ADM.1/tx-same"}]
        status, _, body = http_request("POST", "/api/batch", {"transaction": "shared-1", "operations": other},
                                       auth=ADMIN_AUTH)
        self.assertEqual(body["results"][0]["responseCode"], 2)
        self.assertIn("another operation", body["results"][0]["message"])
        self.assertEqual(st.header(resolved_url("ADM.1/tx-same")[1])["rc"], 1)
        # DELETE with index=various, or a misspelt parameter, is refused (never deletes the handle).
        self.assertEqual(http_request("DELETE", "/api/handles/ADM.1/tx-same?index=various", auth=ADMIN_AUTH)[0], 400)
        self.assertEqual(http_request("DELETE", "/api/handles/ADM.1/tx-same?indexes=2", auth=ADMIN_AUTH)[0], 400)
        self.assertEqual(st.header(resolved_url("ADM.1/tx-same")[1])["rc"], 1)

    def test_one_refused_operation_fails_alone(self):
        owned = {"values": [{"index": 1, "type": "URL", "data": "https://owned"},
                            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                                "handle": "ADM.1/user", "index": 300, "permissions": "011111111111"}}}]}
        self.assertEqual(http_request("PUT", "/api/handles/ADM.1/owned", owned, auth=ADMIN_AUTH)[0], 201)
        ops = [{"op": "modify", "handle": "ADM.1/owned", "values": [{"index": 1, "type": "URL", "data": "https://mine"}]},
               {"op": "create", "handle": "ADM.1/not-mine", "values": [{"index": 1, "type": "URL", "data": "https://n"}]},
               {"op": "create", "handle": "OTHER.9/x", "values": [{"index": 1, "type": "URL", "data": "https://o"}]}]
        status, _, body = http_request("POST", "/api/batch", {"transaction": "user-1", "operations": ops}, auth=USER_AUTH)
        self.assertEqual(status, 200)
        self.assertEqual([r["responseCode"] for r in body["results"]], [1, 400, 301])
        self.assertIn(b"https://mine", resolved_url("ADM.1/owned")[1])
        self.assertEqual(st.header(resolved_url("ADM.1/not-mine")[1])["rc"], 100)
        # A malformed operation fails the whole request, nothing applied.
        status, _, body = http_request("POST", "/api/batch", {"operations": [ops[0], {"op": "explode", "handle": "x"}]},
                                       auth=USER_AUTH)
        self.assertEqual(status, 400)


def url_body(index, url):
    return {"values": [{"index": index, "type": "URL", "data": url}]}


def handle_challenge(headers):
    """(sessionId, nonce bytes) of a 401's `WWW-Authenticate: Handle` header."""
    import base64
    for k, v in headers:
        if k == "WWW-Authenticate" and v.startswith("Handle "):
            session = re.search(r'sessionId="([^"]*)"', v).group(1)
            nonce = base64.b64decode(re.search(r'nonce="([^"]*)"', v).group(1))
            return session, nonce
    raise AssertionError("no Handle challenge in %r" % (headers,))


def handle_auth(session, identity=None, kind=None, alg=None, cnonce=None, signature=None):
    """An `Authorization: Handle` header as the handle.net clients write it."""
    import base64
    from urllib.parse import quote
    parts = ['sessionId="%s"' % session]
    if identity is not None:
        parts += ['id="%s"' % quote(identity, safe=""), 'type="%s"' % kind, 'alg="%s"' % alg,
                  'cnonce="%s"' % base64.b64encode(cnonce).decode(),
                  'signature="%s"' % base64.b64encode(signature).decode()]
    return "Handle " + ", ".join(parts)


class HandleScheme(unittest.TestCase):
    """The JSON API's `Handle` challenge-response scheme (HANDLE.md §2, the handle.net server's
    StandardHandleAuthenticator): a 401 names a session and a nonce; the client signs
    nonce ‖ cnonce with its private key (here: RSA with Python's `cryptography`, SM2 with the SDK's
    math in sm2_sdk.py) or MACs it with its HS_SECKEY; the session then carries the identity."""

    @classmethod
    def setUpClass(cls):
        from cryptography.hazmat.primitives.asymmetric import rsa
        import sm2_sdk
        cls.sdk = sm2_sdk
        cls.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = cls.key.public_key().public_numbers()
        value = text("RSA_PUB_KEY") + b"\0\0" + text(java_int(n.e)) + text(java_int(n.n)) + text(b"")
        made = tcp_admin(message(100, values_body("ADM.1/rsaid", [raw_value(300, "HS_PUBKEY", value)]), 801))
        assert st.header(made)["rc"] == 1, st.header(made)
        made = tcp_admin(message(100, values_body("ADM.1/sm2http", [
            raw_value(300, "HS_PUBKEY", sm2_sdk.hs_pubkey_data())]), 802))
        assert st.header(made)["rc"] == 1, st.header(made)
        admins = [raw_value(100 + i, "HS_ADMIN", struct.pack(">H", 0x0FFF) + text(h) + struct.pack(">i", 300))
                  for i, h in enumerate(["ADM.1/rsaid", "ADM.1/sm2http"])]
        made = tcp_admin(message(100, values_body("ADM.1/keyed", [url_value(1, "https://keyed")] + admins), 803))
        assert st.header(made)["rc"] == 1, st.header(made)

    def rsa_sign(self, nonce, cnonce, key=None):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        return (key or self.key).sign(nonce + cnonce, padding.PKCS1v15(), hashes.SHA256())

    def challenge(self, path="/api/handles/ADM.1/keyed?index=2"):
        status, headers, body = http_request("PUT", path, url_body(2, "https://unused"))
        self.assertEqual((status, body["responseCode"]), (401, 402))
        self.assertIn(("WWW-Authenticate", 'Basic realm="handle"'), headers)
        return handle_challenge(headers)

    def put(self, index, url, auth, tls=True):
        return http_request("PUT", "/api/handles/ADM.1/keyed?index=%d" % index, url_body(index, url), auth=auth,
                            tls=tls)

    def test_a_private_key_proves_the_identity_and_the_session_carries_it(self):
        session, nonce = self.challenge()
        self.assertEqual((len(session), len(nonce)), (32, 16))
        cnonce = os.urandom(16)
        proof = handle_auth(session, "300:ADM.1/rsaid", "HS_PUBKEY", "SHA256", cnonce,
                            self.rsa_sign(nonce, cnonce))
        status, _, body = self.put(2, "https://keyed/2", proof)
        self.assertEqual((status, body["responseCode"]), (201, 1), body)
        self.assertIn(b"https://keyed/2", resolved_url("ADM.1/keyed")[1])  # caches invalidated
        # The session alone, from now on (and the same proof again: the reference accepts it).
        status, _, body = self.put(3, "https://keyed/3", handle_auth(session))
        self.assertEqual((status, body["responseCode"]), (201, 1), body)
        self.assertIn(b"https://keyed/3", resolved_url("ADM.1/keyed")[1])
        status, _, _ = self.put(3, "https://keyed/3b", proof)
        self.assertEqual(status, 201)
        # Over plain HTTP, never.
        status, _, body = self.put(4, "https://plain", handle_auth(session), tls=False)
        self.assertEqual((status, body["responseCode"]), (403, 402))
        self.assertNotIn(b"https://plain", resolved_url("ADM.1/keyed")[1])

    def test_bad_proofs_are_refused_and_write_nothing(self):
        before = changelog_total()
        session, nonce = self.challenge()
        cnonce = os.urandom(16)
        right = self.rsa_sign(nonce, cnonce)
        from cryptography.hazmat.primitives.asymmetric import rsa
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_session, other_nonce = self.challenge()
        cases = {
            "no proof yet": handle_auth(session),
            "unknown session": handle_auth("0" * 32),
            "wrong key": handle_auth(session, "300:ADM.1/rsaid", "HS_PUBKEY", "SHA256", cnonce,
                                     self.rsa_sign(nonce, cnonce, other_key)),
            "another session's nonce": handle_auth(other_session, "300:ADM.1/rsaid", "HS_PUBKEY", "SHA256", cnonce,
                                                   right),
            "another cnonce": handle_auth(session, "300:ADM.1/rsaid", "HS_PUBKEY", "SHA256", os.urandom(16), right),
            "no session": handle_auth("", "300:ADM.1/rsaid", "HS_PUBKEY", "SHA256", cnonce, right)
                          .replace('sessionId="", ', ""),
            "unknown alg": handle_auth(session, "300:ADM.1/rsaid", "HS_PUBKEY", "WHIRLPOOL", cnonce, right),
            "malformed": 'Handle sessionId="%s", id=' % session,
        }
        for name, auth in cases.items():
            status, headers, body = self.put(5, "https://bad/" + name, auth)
            self.assertEqual((status, body["responseCode"]), (401, 402), name)
            handle_challenge(headers)  # a new challenge to answer
        status, headers, _ = self.put(5, "https://bad", cases["wrong key"])
        self.assertTrue(any("Identity not verified" in v for k, v in headers if k == "WWW-Authenticate"))
        self.assertNotIn(b"https://bad", resolved_url("ADM.1/keyed")[1])
        self.assertEqual(changelog_total(), before)
        # A right proof for an identity without the permission: authenticated, then refused.
        session, nonce = self.challenge()
        mac = hmac.new(b"user-secret", nonce + cnonce, hashlib.sha256).digest()
        status, _, body = self.put(5, "https://user", handle_auth(session, "300:ADM.1/user", "HS_SECKEY",
                                                                  "HMAC-SHA256", cnonce, mac))
        self.assertEqual((status, body["responseCode"]), (403, 400))
        self.assertEqual(changelog_total(), before)

    def authenticated_session(self):
        session, nonce = self.challenge()
        cnonce = os.urandom(16)
        status, _, body = self.put(8, "https://keyed/8", handle_auth(session, "300:ADM.1/rsaid", "HS_PUBKEY", "SHA256",
                                                                     cnonce, self.rsa_sign(nonce, cnonce)))
        self.assertEqual(status, 201, body)
        return session, nonce

    def test_an_authenticated_session_keeps_its_identity(self):
        session, nonce = self.authenticated_session()
        cnonce = os.urandom(16)
        # A valid proof of another identity in the same session: refused, and the session is
        # still the first identity's.
        mac = hmac.new(b"user-secret", nonce + cnonce, hashlib.sha256).digest()
        status, _, _ = self.put(9, "https://other", handle_auth(session, "300:ADM.1/user", "HS_SECKEY", "HMAC-SHA256",
                                                                cnonce, mac))
        self.assertEqual(status, 401)
        # A partial proof (an id and nothing else) is not the session alone.
        status, _, _ = self.put(9, "https://partial", 'Handle sessionId="%s", id="300%%3AADM.1%%2Frsaid"' % session)
        self.assertEqual(status, 401)
        status, _, body = self.put(9, "https://still-rsaid", handle_auth(session))
        self.assertEqual(status, 201, body)
        reply = resolved_url("ADM.1/keyed")[1]
        self.assertIn(b"https://still-rsaid", reply)
        self.assertNotIn(b"https://other", reply)
        self.assertNotIn(b"https://partial", reply)

    def test_failed_proofs_of_held_identities_are_audited(self):
        since = int(time.time() * 1000)
        from cryptography.hazmat.primitives.asymmetric import rsa
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        session, nonce = self.challenge()
        cnonce = os.urandom(16)
        wrong = self.rsa_sign(nonce, cnonce, other_key)
        for identity in ("300:ADM.1/rsaid", "300:ADM.1/nobody-holds-this"):
            status, headers, _ = self.put(10, "https://audited", handle_auth(session, identity, "HS_PUBKEY", "SHA256",
                                                                             cnonce, wrong))
            self.assertEqual(status, 401)
        status, _, body = http_request("GET", "/api/audit?since=%d" % since, auth=ADMIN_AUTH)
        self.assertEqual(status, 200, body)
        seen = [(e["identity"], e["via"], e["responseCode"]) for e in body["entries"]]
        self.assertIn(("300:ADM.1/rsaid", "http", 403), seen)
        self.assertFalse([e for e in seen if e[0] == "300:ADM.1/nobody-holds-this"], seen)

    def test_a_changed_key_ends_the_sessions_it_authenticated(self):
        from cryptography.hazmat.primitives.asymmetric import rsa
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = key.public_key().public_numbers()
        value = text("RSA_PUB_KEY") + b"\0\0" + text(java_int(n.e)) + text(java_int(n.n)) + text(b"")
        made = tcp_admin(message(100, values_body("ADM.1/rotating", [raw_value(300, "HS_PUBKEY", value)]), 811))
        self.assertEqual(st.header(made)["rc"], 1)
        made = tcp_admin(message(102, values_body("ADM.1/keyed", [
            raw_value(110, "HS_ADMIN", struct.pack(">H", 0x0FFF) + text("ADM.1/rotating") + struct.pack(">i", 300))]),
            812))
        self.assertEqual(st.header(made)["rc"], 1)
        session, nonce = self.challenge()
        cnonce = os.urandom(16)
        status, _, body = self.put(11, "https://rotating/1", handle_auth(session, "300:ADM.1/rotating", "HS_PUBKEY",
                                                                         "SHA256", cnonce,
                                                                         self.rsa_sign(nonce, cnonce, key)))
        self.assertEqual(status, 201, body)
        self.assertEqual(self.put(11, "https://rotating/2", handle_auth(session))[0], 201)
        # The identity's key is replaced: the session it authenticated ends.
        new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
        new_value = text("RSA_PUB_KEY") + b"\0\0" + text(java_int(new_key.e)) + text(java_int(new_key.n)) + text(b"")
        made = tcp_admin(message(104, values_body("ADM.1/rotating", [raw_value(300, "HS_PUBKEY", new_value)]), 813))
        self.assertEqual(st.header(made)["rc"], 1)
        status, headers, _ = self.put(11, "https://rotating/3", handle_auth(session))
        self.assertEqual(status, 401)
        handle_challenge(headers)
        self.assertEqual(self.put(11, "https://rotating/4", handle_auth(session))[0], 401)  # closed
        reply = resolved_url("ADM.1/keyed")[1]
        self.assertIn(b"https://rotating/2", reply)
        self.assertNotIn(b"https://rotating/3", reply)

    def test_secret_keys_and_sm2_keys_answer_too(self):
        session, nonce = self.challenge()
        cnonce = os.urandom(16)
        # HS_SECKEY, as the reference's SHA1 form: SHA1(key ‖ nonce ‖ cnonce ‖ key).
        mac = hashlib.sha1(SECRET + nonce + cnonce + SECRET).digest()
        status, _, body = self.put(6, "https://seckey", handle_auth(session, "300:0.NA/ADM.1", "HS_SECKEY", "SHA1",
                                                                    cnonce, mac))
        self.assertEqual((status, body["responseCode"]), (201, 1), body)
        # SM2 (China's identifier SDK's key), signed the SDK's "SM3" way under the identity handle.
        session, nonce = self.challenge()
        d, public = self.sdk.test_key()
        signed = self.sdk.signed_response(d, public, "ADM.1/sm2http", nonce, cnonce, "SM3")
        signature = signed[4 + 3 + 4:]
        status, _, body = self.put(7, "https://sm2http", handle_auth(session, "300:ADM.1/sm2http", "HS_PUBKEY", "SM3",
                                                                     cnonce, signature))
        self.assertEqual((status, body["responseCode"]), (201, 1), body)
        reply = resolved_url("ADM.1/keyed")[1]
        self.assertIn(b"https://seckey", reply)
        self.assertIn(b"https://sm2http", reply)


class StatusPagesForAdmins(unittest.TestCase):
    """http.status_requires_admin: the dashboard and /api/stats for server admins over HTTPS only;
    the resolver page stays public."""

    def test_only_a_server_admin_over_https_sees_the_dashboard(self):
        # From an address of its own: other tests' wrong proofs from 127.0.0.1 may have it throttled.
        http_request = functools.partial(globals()["http_request"], source="127.0.0.77")
        for path in ("/ui/status", "/api/stats"):
            status, headers, _ = http_request("GET", path, tls=False)
            self.assertEqual(status, 401, path)
            status, _, _ = http_request("GET", path, auth=ADMIN_AUTH, tls=False)
            self.assertEqual(status, 403, path)  # credentials over plain HTTP
            status, headers, _ = http_request("GET", path)
            self.assertEqual(status, 401, path)
            self.assertIn("Basic", " ".join(v for k, v in headers if k.lower() == "www-authenticate"), path)
            status, _, body = http_request("GET", path, auth=USER_AUTH)
            self.assertEqual(status, 403, (path, body))  # proven, but no server admin
            status, headers, body = http_request("GET", path, auth=ADMIN_AUTH)
            self.assertEqual(status, 200, (path, body))
            if path == "/api/stats":
                self.assertIn("series", body)
                self.assertGreaterEqual(body["prefixes"]["homed"], 1)
            else:
                self.assertIn('id="rps-total"', body)
        status, _, body = http_request("GET", "/?id=ADM.1/none", tls=False)
        self.assertEqual(status, 404)
        self.assertIn('data-outcome="not-found"', body)


class AuditLog(unittest.TestCase):
    def test_writes_and_refusals_are_logged(self):
        since = int(time.time() * 1000)
        created = tcp_admin(message(100, values_body("ADM.1/audited", [url_value(1, "https://a")]), 301))
        self.assertEqual(st.header(created)["rc"], 1)
        refused = tcp_admin(message(101, text("ADM.1/audited"), 302), secret=b"wrong")
        self.assertEqual(st.header(refused)["rc"], 403)
        status, _, _ = http_request("PUT", "/api/handles/ADM.1/audited",
                                    [{"index": 1, "type": "URL", "data": "https://u"}], auth=USER_AUTH)
        self.assertEqual(status, 403)
        status, _, body = http_request("GET", "/api/audit?prefix=ADM.1&since=%d" % since, auth=ADMIN_AUTH)
        self.assertEqual(status, 200, body)
        seen = [(e["operation"], e["handle"], e["identity"], e["via"], e["responseCode"]) for e in body["entries"]]
        self.assertIn(("create", "ADM.1/audited", "300:0.NA/ADM.1", "handle/tcp", 1), seen)
        self.assertIn(("delete", "ADM.1/audited", "300:0.NA/ADM.1", "handle/tcp", 403), seen)
        self.assertIn(("create", "ADM.1/audited", "300:ADM.1/user", "http", 400), seen)
        self.assertTrue(all(e["source"] == "127.0.0.1" for e in body["entries"]))
        self.assertEqual([e["timeMs"] for e in body["entries"]], sorted(e["timeMs"] for e in body["entries"]))
        status, _, only_user = http_request("GET", "/api/audit?identity=300:ADM.1/user&since=%d" % since,
                                            auth=ADMIN_AUTH)
        self.assertTrue(only_user["entries"])
        self.assertTrue(all(e["identity"] == "300:ADM.1/user" for e in only_user["entries"]))
        # Only server admins read it.
        self.assertEqual(http_request("GET", "/api/audit", auth=USER_AUTH)[0], 403)


class ListHandles(unittest.TestCase):
    def test_list_handles_streams_every_handle_with_cn(self):
        ops = [{"op": "create", "handle": "ADM.1/list%04d" % i,
                "values": [{"index": 1, "type": "URL", "data": "https://l/%d" % i}]} for i in range(1234)]
        status, _, body = http_request("POST", "/api/batch", {"transaction": "list-setup", "operations": ops},
                                       auth=ADMIN_AUTH, timeout=120)
        self.assertEqual(status, 200)
        _, _, listing = http_request("GET", "/api/handles?prefix=ADM.1&pageSize=1", auth=ADMIN_AUTH)
        total = int(listing["totalCount"])
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=10)
        got, flags = [], []
        try:
            s.sendall(message(105, text("0.NA/ADM.1"), 401))
            challenge = st.read_message(s)
            self.assertEqual((st.header(challenge)["opcode"], st.header(challenge)["rc"]), (105, 402))
            s.sendall(answer(challenge, request_id=402))
            while True:
                m = st.read_message(s)
                h = st.header(m)
                self.assertEqual((h["opcode"], h["rc"]), (105, 1))
                body = m[44:44 + h["body_length"]]
                (count,) = struct.unpack(">I", body[:4])
                self.assertLessEqual(count, 50)
                at = 4
                for _ in range(count):
                    name, at = read_text(body, at)
                    got.append(name.decode())
                flags.append(bool(h["flags"] & 0x04000000))
                if not flags[-1]:
                    break
        finally:
            s.close()
        self.assertEqual(len(got), total)
        self.assertEqual(len(set(got)), total)
        self.assertTrue(all(f for f in flags[:-1]))
        self.assertGreater(len(flags), 20)
        for i in (0, 617, 1233):
            self.assertIn("ADM.1/list%04d" % i, got)
        # Only admins of the prefix with LIST_HANDLES; never over UDP.
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=10)
        try:
            s.sendall(message(105, text("0.NA/ADM.1"), 403))
            challenge = st.read_message(s)
            s.sendall(answer(challenge, identity=b"ADM.1/user", secret=b"user-secret", request_id=404))
            self.assertEqual(st.header(st.read_message(s))["rc"], 400)
        finally:
            s.close()
        self.assertEqual(st.header(st.udp_exchange(message(105, text("0.NA/ADM.1"), 405), timeout=3))["rc"], 5)
        self.assertEqual(st.header(st.tcp_exchange([message(105, text("0.NA/NOT.HERE"), 406)])[0])["rc"], 301)


def sdk_message(opcode, body, request_id, session_id, flags, credential=True):
    """A request laid out as China's identifier SDK sends it (the sm2 captures): protocol 2.10
    suggesting 2.11; its login carries no credential section at all."""
    hdr = struct.pack(">IIIHBBII", opcode, 0, flags, 0xFFFF, 0, 0, int(time.time()) + 43200, len(body))
    m = hdr + body + (struct.pack(">I", 0) if credential else b"")
    return struct.pack(">BBBBIIII", 2, 10, 2, 11, session_id, request_id, 0, len(m)) + m


def raw_value(index, kind, data, permissions=0x0E):
    return struct.pack(">iIBiB", index, 0, 0, 86400, permissions) + text(kind) + text(data) + struct.pack(">I", 0)


class Sm2Login(unittest.TestCase):
    """China's identifier SDK: an SM2 identity logs in on a connection (OC 2001, 402, OC 200 signed
    on either hash path), then writes on it without further challenges (HANDLE.md §3)."""

    @classmethod
    def setUpClass(cls):
        import sm2_sdk
        cls.sdk = sm2_sdk
        cls.d, cls.public = sm2_sdk.test_key()
        made = tcp_admin(message(100, values_body("ADM.1/sm2admin", [
            raw_value(300, "HS_PUBKEY", sm2_sdk.hs_pubkey_data())]), 501))
        assert st.header(made)["rc"] == 1, st.header(made)
        admin = struct.pack(">H", 0x0FFF) + text("ADM.1/sm2admin") + struct.pack(">i", 300)
        made = tcp_admin(message(100, values_body("ADM.1/sm2target", [
            url_value(1, "https://sm2"), raw_value(100, "HS_ADMIN", admin)]), 502))
        assert st.header(made)["rc"] == 1, st.header(made)

    def login(self, conn, path, d=None):
        def ex(msg):
            conn.sendall(msg)
            return st.read_message(conn)
        challenge = ex(sdk_message(2001, text("ADM.1/sm2admin") + struct.pack(">i", 300), 3, 10001, 0x10800000,
                                   credential=False))
        self.assertEqual((st.header(challenge)["opcode"], st.header(challenge)["rc"]), (2001, 402))
        session, nonce, digest = challenge_parts(challenge)
        signed = self.sdk.signed_response(d or self.d, self.public, "ADM.1/sm2admin", nonce, digest, path)
        body = text("HS_PUBKEY") + text("ADM.1/sm2admin") + struct.pack(">i", 300) + text(signed)
        return ex(sdk_message(200, body, 4, session, 0x10800000))

    def test_login_on_both_hash_paths_then_write(self):
        for path in ("SM3", "SHA-256"):
            conn = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=10)
            try:
                done = self.login(conn, path)
                self.assertEqual((st.header(done)["opcode"], st.header(done)["rc"]), (2001, 1), path)
                index = 10 if path == "SM3" else 11
                add = sdk_message(102, values_body("ADM.1/sm2target", [url_value(index, "https://sm2/" + path)]),
                                  1, 10001, 0x19000000)
                conn.sendall(add)
                reply = st.read_message(conn)
                self.assertEqual((st.header(reply)["opcode"], st.header(reply)["rc"]), (102, 1), path)
            finally:
                conn.close()
            self.assertIn(("https://sm2/" + path).encode(), resolved_url("ADM.1/sm2target")[1])

    def test_a_session_keyed_to_the_sm2_key_speaks_sm4(self):
        # OC 400 as the SDK's code lays it out (session-sm4/decoded.txt): mode 3, the key in a
        # handle (the SM2 identity's HS_PUBKEY), anonymous; the key comes back SM2-encrypted.
        body = (struct.pack(">Hi", 3, 86400) + text("") + struct.pack(">i", -1) + text("ADM.1/sm2admin")
                + struct.pack(">i", 300) + b"\0\0")
        reply = st.tcp_exchange([sdk_message(400, body, 6, 10001, 0x19000000)])[0]
        h = st.header(reply)
        self.assertEqual((h["opcode"], h["rc"]), (400, 1))
        session = struct.unpack(">I", reply[4:8])[0]
        (mode,) = struct.unpack(">H", reply[44:46])
        self.assertEqual(mode, 3)
        sealed, _ = read_text(reply, 46)
        opened = self.sdk.sm2_decrypt(self.d, sealed)  # decrypted here, in plain Python
        self.assertEqual(struct.unpack(">I", opened[:4])[0], 4)  # SM4
        key = opened[4:]
        self.assertEqual(len(key), 16)
        # An SM4-encrypted resolution asking for an encrypted answer (ENC): the answer is SM4 too.
        request = st.resolution_request("ADM.1/sm2target", flags=0x39000000)
        inner = request[20:]
        ciphertext = self.sdk.sm4_cbc(key, inner, True)
        wire = (request[:2] + bytes([request[2] | 0x40]) + request[3:4] + struct.pack(">I", session)
                + request[8:16] + struct.pack(">I", len(ciphertext)) + ciphertext)
        answer = st.tcp_exchange([wire])[0]
        self.assertTrue(answer[2] & 0x40, "the answer is not encrypted")
        plain = self.sdk.sm4_cbc(key, answer[20:], False)
        self.assertIn(b"https://sm2", plain)
        self.assertEqual(struct.unpack(">I", plain[4:8])[0], 1)  # RC_SUCCESS
        # A wrong key's message: one answer, and the session ends.
        garbage = wire[:20] + self.sdk.sm4_cbc(bytes(16), inner, True)
        self.assertEqual(st.header(st.tcp_exchange([garbage])[0])["rc"], 501)

    def test_the_login_is_the_connections_and_the_keys(self):
        add = sdk_message(102, values_body("ADM.1/sm2target", [url_value(20, "https://sm2/none")]), 1, 10001,
                          0x19000000)
        # While connection A is logged in, connection B is not: challenged.
        a = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=10)
        try:
            self.assertEqual(st.header(self.login(a, "SM3"))["rc"], 1)
            self.assertEqual(st.header(st.tcp_exchange([add])[0])["rc"], 402)
            # A failed login on A ends A's login too.
            self.assertEqual(st.header(self.login(a, "SM3", d=98765432109876543210))["rc"], 403)
            a.sendall(add)
            self.assertEqual(st.header(st.read_message(a))["rc"], 402)
        finally:
            a.close()
        # A signature by another key: refused, and the connection stays unauthenticated.
        conn = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=10)
        try:
            refused = self.login(conn, "SM3", d=12345678901234567890)
            self.assertEqual(st.header(refused)["rc"], 403)
            conn.sendall(add)
            self.assertEqual(st.header(st.read_message(conn))["rc"], 402)
        finally:
            conn.close()
        self.assertNotIn(b"https://sm2/none", resolved_url("ADM.1/sm2target")[1])


class RestrictedValues(unittest.TestCase):
    """Values without PUBLIC_READ: left out under PO; without PO, read by admins with READ_VALUE
    after a challenge (CNRI's checkReadAccess); HS_SECKEY never returned."""

    @classmethod
    def setUpClass(cls):
        created = tcp_admin(message(100, values_body("ADM.1/restricted", [
            url_value(1, "https://public.example"),
            url_value(2, "https://admins-only.example", permissions=0x0C),
            url_value(3, "ops@nobody.example", permissions=0x04, kind="EMAIL")]), 201))
        assert st.header(created)["rc"] == 1, st.header(created)

    def test_public_only_leaves_them_out(self):
        reply = st.udp_exchange(st.resolution_request("ADM.1/restricted", flags=0x19000000), timeout=3)
        self.assertEqual(st.header(reply)["rc"], 1)
        self.assertIn(b"public.example", reply)
        self.assertNotIn(b"admins-only", reply)

    def test_without_po_an_admin_reads_them_after_a_challenge(self):
        request = st.resolution_request("ADM.1/restricted", types=["URL"], flags=0x18000000)
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
        try:
            s.sendall(request)
            challenge = st.read_message(s)
            self.assertEqual((st.header(challenge)["opcode"], st.header(challenge)["rc"]), (1, 402))
            self.assertNotIn(b"admins-only", challenge)
            s.sendall(answer(challenge, request_id=202))
            reply = st.read_message(s)
        finally:
            s.close()
        self.assertEqual((st.header(reply)["opcode"], st.header(reply)["rc"]), (1, 1))
        self.assertIn(b"https://admins-only.example", reply)
        self.assertIn(b"https://public.example", reply)
        # Over UDP too, and a non-admin identity is refused (400) without seeing them.
        challenge = st.udp_exchange(request, timeout=3)
        self.assertEqual(st.header(challenge)["rc"], 402)
        refused = st.udp_exchange(answer(challenge, identity=b"ADM.1/user", secret=b"user-secret"), timeout=3)
        self.assertEqual(st.header(refused)["rc"], 400)
        self.assertNotIn(b"admins-only", refused)

    def test_a_value_nobody_may_read_is_refused_and_secret_keys_never_leave(self):
        nobody = st.udp_exchange(st.resolution_request("ADM.1/restricted", flags=0x18000000), timeout=3)
        self.assertEqual(st.header(nobody)["rc"], 401)  # index 3 has neither PUBLIC nor ADMIN read
        self.assertNotIn(b"nobody.example", nobody)
        challenge = st.tcp_exchange([st.resolution_request("0.NA/ADM.1", flags=0x18000000)])[0]
        self.assertEqual(st.header(challenge)["rc"], 402)
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
        try:
            s.sendall(st.resolution_request("0.NA/ADM.1", flags=0x18000000))
            challenge = st.read_message(s)
            s.sendall(answer(challenge, request_id=203))
            reply = st.read_message(s)
        finally:
            s.close()
        self.assertEqual(st.header(reply)["rc"], 1)
        self.assertIn(b"HS_ADMIN", reply)
        self.assertNotIn(b"HS_SECKEY", reply)
        self.assertNotIn(SECRET, reply)


class CertifiedAnswersAndSessions(unittest.TestCase):
    def test_certified_resolution_verifies_with_the_published_key(self):
        key = site_public_key()
        created = tcp_admin(message(100, values_body("ADM.1/certified", [url_value(1, "https://c.example")]), 61))
        self.assertEqual(st.header(created)["rc"], 1)
        for flags in (0x59000000, 0x59800000):  # CT, and CT with RD
            reply = st.udp_exchange(st.resolution_request("ADM.1/certified", flags=flags), timeout=3)
            h = st.header(reply)
            self.assertEqual(h["rc"], 1)
            self.assertTrue(h["flags"] & 0x40000000, "CT on a signed answer")
            verify_signed(reply, key)
            tampered = bytearray(reply)
            tampered[60] ^= 1
            from cryptography.exceptions import InvalidSignature
            with self.assertRaises(InvalidSignature):
                verify_signed(bytes(tampered), key)
        plain = st.udp_exchange(st.resolution_request("ADM.1/certified"), timeout=3)
        self.assertFalse(st.header(plain)["flags"] & 0x40000000, "no CT on an unsigned answer")
        self.assertIsNone(credential_of(plain))
        # Errors are signed too when asked: a handle that does not exist.
        missing = st.udp_exchange(st.resolution_request("ADM.1/none", flags=0x59000000), timeout=3)
        self.assertEqual(st.header(missing)["rc"], 100)
        verify_signed(missing, key)

    def test_session_as_the_reference_client_drives_it(self):
        key = site_public_key()
        session, session_key, setup = open_session()
        verify_signed(setup, key)  # the setup answer is signed with the node's key
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
        try:
            def exchange(msg):
                s.sendall(msg)
                return st.read_message(s)

            create = with_mac(message(100, values_body("ADM.1/sess", [url_value(1, "https://s1.example")]), 71,
                                      session_id=session), session_key, 1)
            challenge = exchange(create)
            self.assertEqual(st.header(challenge)["rc"], 402)
            self.assertEqual(struct.unpack(">I", challenge[4:8])[0], session)  # the session's own
            done = exchange(answer(challenge, request_id=72))
            self.assertEqual((st.header(done)["opcode"], st.header(done)["rc"]), (100, 1))
            # The identity proved itself in this session: its MAC'd requests need no challenge now.
            modify = with_mac(message(104, values_body("ADM.1/sess", [url_value(1, "https://s2.example")]), 73,
                                      session_id=session), session_key, 2)
            self.assertEqual(st.header(exchange(modify))["rc"], 1)
            self.assertIn(b"https://s2.example", resolved_url("ADM.1/sess")[1])
            # The same message again: the counter was used.
            self.assertEqual(st.header(exchange(modify))["rc"], 505)
            # A wrong MAC.
            forged = bytearray(with_mac(message(104, values_body("ADM.1/sess", [url_value(1, "https://evil")]), 74,
                                                session_id=session), session_key, 3))
            forged[-1] ^= 1
            self.assertEqual(st.header(exchange(bytes(forged)))["rc"], 502)
            # Without a MAC, an authenticated session's request is refused (CNRI: 404).
            bare = message(104, values_body("ADM.1/sess", [url_value(1, "https://evil")]), 75, session_id=session)
            self.assertEqual(st.header(exchange(bare))["rc"], 404)
            self.assertNotIn(b"https://evil", resolved_url("ADM.1/sess")[1])
            # Encrypted (EC) with ENC and CT: the answer comes back encrypted, MAC'd with the session key.
            sealed = encrypted(with_mac(message(104, values_body("ADM.1/sess", [url_value(1, "https://s3.example")]),
                                                76, session_id=session, flags=0x79000000), session_key, 4),
                               session_key)
            reply = decrypted(exchange(sealed), session_key)
            self.assertEqual(st.header(reply)["rc"], 1)
            kind, alg, counter, mac, covered = credential_of(reply)
            self.assertEqual((kind, alg), (b"HS_MAC", b"HMAC-SHA256"))
            self.assertEqual(mac, hmac.new(session_key, preamble(reply, counter) + covered, hashlib.sha256).digest())
            self.assertIn(b"https://s3.example", resolved_url("ADM.1/sess")[1])
            # An encrypted message that does not decrypt: one answer (501), and the session ends.
            second, second_key, _ = open_session()
            garbage = bytearray(encrypted(message(104, b"", 79, session_id=second), second_key))
            garbage[-1] ^= 1  # breaks the padding
            self.assertEqual(st.header(st.tcp_exchange([bytes(garbage)])[0])["rc"], 501)
            late = with_mac(message(101, text("ADM.1/none"), 80, session_id=second), second_key, 1)
            self.assertEqual(st.header(st.tcp_exchange([late])[0])["rc"], 500)
            # Terminate, then the session is gone.
            ended = exchange(with_mac(message(401, b"", 77, session_id=session), session_key, 5))
            self.assertEqual(st.header(ended)["rc"], 1)
            after = exchange(with_mac(message(104, values_body("ADM.1/sess", [url_value(1, "https://late")]), 78,
                                              session_id=session), session_key, 6))
            self.assertEqual(st.header(after)["rc"], 500)
        finally:
            s.close()

    def test_an_anonymous_or_unproven_session_is_still_challenged(self):
        session, session_key, _ = open_session(identity=b"", index=-1)
        for n, counter in ((81, 1), (83, 2)):
            request = with_mac(message(100, values_body("ADM.1/anon%d" % n, [url_value(1, "https://a")]), n,
                                       session_id=session), session_key, counter)
            s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
            try:
                s.sendall(request)
                challenge = st.read_message(s)
                self.assertEqual(st.header(challenge)["rc"], 402)
                s.sendall(answer(challenge, request_id=n + 1))
                self.assertEqual(st.header(st.read_message(s))["rc"], 1)
            finally:
                s.close()
        # A session named for one identity is not authenticated by another's answer.
        session, session_key, _ = open_session(identity=b"ADM.1/user", index=300)
        request = with_mac(message(100, values_body("ADM.1/other", [url_value(1, "https://o")]), 91,
                                   session_id=session), session_key, 1)
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
        try:
            s.sendall(request)
            challenge = st.read_message(s)
            s.sendall(answer(challenge, request_id=92))
            self.assertEqual(st.header(st.read_message(s))["rc"], 1)  # 0.NA/ADM.1 wrote it
            again = with_mac(message(101, text("ADM.1/other"), 93, session_id=session), session_key, 2)
            s.sendall(again)
            self.assertEqual(st.header(st.read_message(s))["rc"], 402)  # still challenged
        finally:
            s.close()

    def test_sessions_keyed_by_rsa_either_way(self):
        """KEY_EXCHANGE_CIPHER_CLIENT (the node encrypts the key to the client's RSA key) and
        CIPHER_SERVER (the client encrypts one to the node's key, OC 402)."""
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        client = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = client.public_key().public_numbers()
        value = text("RSA_PUB_KEY") + b"\0\0" + text(java_int(numbers.e)) + text(java_int(numbers.n)) + text(b"")

        def setup(mode, key_field):
            body = struct.pack(">Hi", mode, 600) + text("0.NA/ADM.1") + struct.pack(">i", 300) + key_field + b"\0\0"
            reply = st.udp_exchange(message(400, body, 4100 + mode, flags=0x59800000), timeout=3)
            self.assertEqual(st.header(reply)["rc"], 1)
            verify_signed(reply, site_public_key())
            (m,) = struct.unpack(">H", reply[77:79])
            self.assertEqual(m, mode)
            data, _ = read_text(reply, 79)
            return struct.unpack(">I", reply[4:8])[0], data

        def write_in(session, key, name, first_counter):
            s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
            try:
                s.sendall(with_mac(message(100, values_body(name, [url_value(1, "https://r")]), 130,
                                           session_id=session), key, first_counter))
                challenge = st.read_message(s)
                self.assertEqual(st.header(challenge)["rc"], 402)
                s.sendall(answer(challenge, request_id=131))
                self.assertEqual(st.header(st.read_message(s))["rc"], 1)
                s.sendall(with_mac(message(101, text(name), 132, session_id=session), key, first_counter + 1))
                self.assertEqual(st.header(st.read_message(s))["rc"], 1)  # no challenge now
            finally:
                s.close()

        session, sealed = setup(1, text(value))
        opened = client.decrypt(sealed, padding.PKCS1v15())
        self.assertEqual(struct.unpack(">I", opened[:4])[0], 3)
        write_in(session, opened[4:], "ADM.1/rsa-client", 1)

        session, server_value = setup(2, b"")
        kind, k = read_text(server_value, 0)
        self.assertEqual(kind, b"RSA_PUB_KEY")
        e, k = read_text(server_value, k + 2)
        n, _ = read_text(server_value, k)
        server_key = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
        chosen = os.urandom(16)
        exchange = message(402, text(server_key.encrypt(struct.pack(">I", 3) + chosen, padding.PKCS1v15())), 140,
                           session_id=session)
        self.assertEqual(st.header(st.udp_exchange(exchange, timeout=3))["rc"], 1)
        self.assertEqual(st.header(st.udp_exchange(exchange, timeout=3))["rc"], 501)  # the key is set once
        write_in(session, chosen, "ADM.1/rsa-server", 1)

    def test_unknown_sessions_and_bad_setups(self):
        stale = with_mac(message(104, values_body("ADM.1/x", [url_value(1, "https://x")]), 95,
                                 session_id=0x7fff1234), os.urandom(32), 1)
        self.assertEqual(st.header(st.tcp_exchange([stale])[0])["rc"], 500)
        truncated = message(400, struct.pack(">H", 4), 96)
        self.assertEqual(st.header(st.udp_exchange(truncated, timeout=3))["rc"], 504)
        not_dh = struct.pack(">Hi", 4, 60) + text("") + struct.pack(">i", -1) + text(b"garbage")
        self.assertEqual(st.header(st.udp_exchange(message(400, not_dh, 97), timeout=3))["rc"], 501)
        unknown_mode = struct.pack(">Hi", 9, 60) + text("") + struct.pack(">i", -1)
        self.assertEqual(st.header(st.udp_exchange(message(400, unknown_mode, 98), timeout=3))["rc"], 501)

if __name__ == "__main__":
    IDNODE, IDCTL, IDBENCH = sys.argv[1], sys.argv[2], sys.argv[3]
    del sys.argv[1:4]
    unittest.main(verbosity=2)
