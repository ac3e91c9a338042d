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


def url_value(index, url):
    # index, timestamp, ttl type, ttl, permissions, type, data, no references
    return (struct.pack(">iIBiB", index, 0, 0, 86400, 0x0E) + text("URL") + text(url) + struct.pack(">I", 0))


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
    NODE["proc"], ports = st.start_node_homing(IDNODE, IDCTL, work, "ADM.1", records, ["--workers", "2"])
    NODE["handle"] = ports["handle"]


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


if __name__ == "__main__":
    IDNODE, IDCTL, IDBENCH = sys.argv[1], sys.argv[2], sys.argv[3]
    del sys.argv[1:4]
    unittest.main(verbosity=2)
