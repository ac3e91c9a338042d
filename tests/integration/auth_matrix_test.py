#!/usr/bin/env python3
"""The auth matrix (HARDENING.md row M) against a real idnode (loopback, ephemeral ports, temp dir).

  auth_matrix_test.py IDNODE IDCTL

For each administrative operation {create, delete, add value, modify value, remove value, add
admin, remove admin} over each way in {UDP, TCP, HTTP (JSON API over HTTPS), a session (MAC'd
messages over TCP)}, every bad credential gets its documented code and leaves the registry digest
(/api/digest?prefix=MTX.1, order-independent over every record) unchanged:

  Handle UDP/TCP: no credential -> 402 (never answered); wrong key -> 403; right key without the
    permission -> 400; expired challenge -> 405; a replayed answer -> 405; an answer made for
    another request's digest -> 403.
  HTTP: no credential -> 401; wrong key -> 401; right key without the permission -> 403 (rc 400);
    credentials over plain HTTP -> 403 (rc 402). (Basic carries no challenge: expiry, replay and
    digest binding do not apply.)
  Session: no MAC -> 404; a MAC under another key -> 502; a replayed MAC'd message -> 505; a
    message in an unknown session -> 500; an authenticated session of an identity without the
    permission -> 400.

Only the right identity with the right permission writes, once, and the next resolution sees it
(the caches were invalidated before the answer). Each (operation, way) has its own target handle,
so the rows are independent. The client side is written here from HANDLE.md (hmac/hashlib and
Python's `cryptography`), not from idnode's code.
"""
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import tempfile
import time
import unittest

import admin_test as at
import harness
import server_test as st

IDNODE = IDCTL = None
NODE = st.NODE
ADMIN_SECRET = b"matrix-admin"
WEAK_SECRET = b"matrix-weak"
OPS = ["create", "delete", "add", "modify", "remove", "add-admin", "remove-admin"]
WAYS = ["udp", "tcp", "http", "session"]
ADMIN = ("0.NA/MTX.1", 300)
WEAK = ("MTX.1/weak", 300)
TIMEOUT_MS = 1000  # auth.challenge_timeout_ms of the node


def target(op, way):
    return "MTX.1/t-%s-%s" % (op, way)


def admin_value(index, handle, admin_index, permissions=0x0FFF):
    data = struct.pack(">H", permissions) + at.text(handle) + struct.pack(">i", admin_index)
    return struct.pack(">iIBiB", index, 0, 0, 86400, 0x0E) + at.text("HS_ADMIN") + at.text(data) + struct.pack(">I", 0)


def handle_request(op, way, request_id, session_id=0):
    """The Handle protocol request of `op` on its target."""
    t = target(op, way)
    if op == "create":
        return at.message(100, at.values_body(t + "-new", [at.url_value(1, "https://created")]), request_id,
                          session_id=session_id)
    if op == "delete":
        return at.message(101, at.text(t), request_id, session_id=session_id)
    if op == "add":
        return at.message(102, at.values_body(t, [at.url_value(5, "https://added")]), request_id,
                          session_id=session_id)
    if op == "modify":
        return at.message(104, at.values_body(t, [at.url_value(1, "https://modified")]), request_id,
                          session_id=session_id)
    if op == "remove":
        return at.message(103, at.text(t) + struct.pack(">Ii", 1, 2), request_id, session_id=session_id)
    if op == "add-admin":
        return at.message(102, at.values_body(t, [admin_value(101, "0.NA/MTX.1", 301)]), request_id,
                          session_id=session_id)
    return at.message(103, at.text(t) + struct.pack(">Ii", 1, 100), request_id, session_id=session_id)


def http_call(op, auth, tls=True):
    t = "/api/handles/" + target(op, "http")
    if op == "create":
        return at.http_request("PUT", t + "-new?overwrite=false", [{"index": 1, "type": "URL", "data": "https://created"}],
                               auth=auth, tls=tls)
    if op == "delete":
        return at.http_request("DELETE", t, auth=auth, tls=tls)
    if op == "add":
        return at.http_request("PUT", t + "?index=5", {"index": 5, "type": "URL", "data": "https://added"}, auth=auth, tls=tls)
    if op == "modify":
        return at.http_request("PUT", t + "?index=1", {"index": 1, "type": "URL", "data": "https://modified"},
                               auth=auth, tls=tls)
    if op == "remove":
        return at.http_request("DELETE", t + "?index=2", auth=auth, tls=tls)
    if op == "add-admin":
        return at.http_request("PUT", t + "?index=101", {"index": 101, "type": "HS_ADMIN", "data": {
            "format": "admin", "value": {"handle": "0.NA/MTX.1", "index": 301, "permissions": "111111111111"}}},
            auth=auth, tls=tls)
    return at.http_request("DELETE", t + "?index=100", auth=auth, tls=tls)


def secret_answer(challenge, identity, secret, request_id, nonce_digest=None):
    """OC 200 for `challenge` (HMAC-SHA256 over nonce ‖ digest, or over `nonce_digest`)."""
    session, nonce, digest = at.challenge_parts(challenge)
    data = nonce_digest if nonce_digest is not None else nonce + digest
    signed = bytes([0x13]) + hmac.new(secret, data, hashlib.sha256).digest()
    body = at.text("HS_SECKEY") + at.text(identity[0]) + struct.pack(">i", identity[1]) + at.text(signed)
    return at.message(200, body, request_id, session_id=session)


def digest():
    return json.loads(harness.http_get(NODE["http"], "/api/digest?prefix=MTX.1", timeout=10))


def effect_seen(op, way):
    """Whether the correct row's write shows in the next resolution."""
    t = target(op, way)
    if op == "create":
        return st.header(at.resolved_url(t + "-new")[1])["rc"] == 1
    rc, reply = at.resolved_url(t)
    if op == "delete":
        return rc == 100
    if op == "add":
        return b"https://added" in reply
    if op == "modify":
        return b"https://modified" in reply
    if op == "remove":
        return b"https://second" not in reply
    answer = st.tcp_exchange([st.resolution_request(t, types=["HS_ADMIN"])])[0]
    if op == "add-admin":
        return answer.count(b"0.NA/MTX.1") >= 1
    return b"MTX.1/weak" not in answer


class Exchange:
    """One TCP connection, or datagrams, for Handle protocol requests."""

    def __init__(self, way):
        self.way = way
        self.sock = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5) if way != "udp" else None

    def __call__(self, msg):
        if self.sock is None:
            return st.udp_exchange(msg, timeout=3)
        self.sock.sendall(msg)
        return st.read_message(self.sock)

    def close(self):
        if self.sock:
            self.sock.close()


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def start_module_node():
    work = tempfile.mkdtemp(prefix="idnode-matrix-")
    NODE["work"] = work
    records = os.path.join(work, "records.jsonl")
    lines = [
        {"handle": "0.NA/MTX.1", "values": [
            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                "handle": "0.NA/MTX.1", "index": 300, "permissions": "111111111111"}}},
            {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": ADMIN_SECRET.decode()},
             "permissions": "1100"}]},
        {"handle": "MTX.1/weak", "values": [
            {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": WEAK_SECRET.decode()},
             "permissions": "1100"}]}]
    for op in OPS:
        for way in WAYS:
            # An admin of its own, but with READ_VALUE only: "right key without the permission".
            lines.append({"handle": target(op, way), "values": [
                {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://first"}},
                {"index": 2, "type": "URL", "data": {"format": "string", "value": "https://second"}},
                {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                    "handle": "MTX.1/weak", "index": 300, "permissions": "010000000000"}}}]})
    with open(records, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    cert, key = at.write_test_certificate(work)
    config = os.path.join(work, "idnode.yaml")
    with open(config, "w") as f:
        f.write("http:\n  tls_cert_file: %s\n  tls_key_file: %s\n" % (cert, key))
        # Short challenges (the expiry rows), and no throttling of the many wrong proofs here (the
        # throttle has its own tests).
        f.write("auth:\n  challenge_timeout_ms: %d\n  failed_proofs_per_minute: 0\n" % TIMEOUT_MS)
    NODE["proc"], ports = st.start_node_homing(IDNODE, IDCTL, work, "MTX.1", records, ["--config", config])
    NODE["handle"], NODE["http"] = ports["handle"], ports["http"]


def tearDownModule():
    st.tearDownModule()


class AuthMatrix(unittest.TestCase):
    def assertUnchanged(self, before, what):
        self.assertEqual(digest(), before, "the registry changed after " + what)

    def test_handle_protocol_over_udp_and_tcp(self):
        rid = 1000
        for way in ("udp", "tcp"):
            expired = {}
            for op in OPS:
                ex = Exchange(way)
                try:
                    before = digest()
                    row = "%s over %s" % (op, way)
                    # No credential: challenged, never answered.
                    rid += 1
                    challenge = ex(handle_request(op, way, rid))
                    self.assertEqual(st.header(challenge)["rc"], 402, row)
                    self.assertUnchanged(before, row + ", no credential")
                    # Wrong key.
                    rid += 1
                    challenge = ex(handle_request(op, way, rid))
                    reply = ex(secret_answer(challenge, ADMIN, b"not-the-secret", rid + 500))
                    self.assertEqual(st.header(reply)["rc"], 403, row + ", wrong key")
                    self.assertUnchanged(before, row + ", wrong key")
                    # Right key, no permission.
                    rid += 1
                    challenge = ex(handle_request(op, way, rid))
                    reply = ex(secret_answer(challenge, WEAK, WEAK_SECRET, rid + 500))
                    self.assertEqual(st.header(reply)["rc"], 400, row + ", without the permission")
                    self.assertUnchanged(before, row + ", without the permission")
                    # An answer made for another request's digest (another operation's challenge;
                    # two requests with the same header and body have the same digest).
                    rid += 1
                    other = OPS[(OPS.index(op) + 1) % len(OPS)]
                    first = ex(handle_request(other, way, rid))
                    rid += 1
                    second = ex(handle_request(op, way, rid))
                    _, nonce1, digest1 = at.challenge_parts(first)
                    _, nonce2, _ = at.challenge_parts(second)
                    reply = ex(secret_answer(second, ADMIN, ADMIN_SECRET, rid + 500, nonce_digest=nonce2 + digest1))
                    self.assertEqual(st.header(reply)["rc"], 403, row + ", another request's digest")
                    self.assertUnchanged(before, row + ", another request's digest")
                    # A challenge left to expire (answered below, all at once).
                    rid += 1
                    expired[op] = (ex(handle_request(op, way, rid)), rid)
                finally:
                    ex.close()
            time.sleep(TIMEOUT_MS / 1000 + 0.3)
            for op in OPS:
                before = digest()
                ex = Exchange(way)
                try:
                    challenge, r = expired[op]
                    reply = ex(secret_answer(challenge, ADMIN, ADMIN_SECRET, r + 500))
                    self.assertEqual(st.header(reply)["rc"], 405, "%s over %s, expired challenge" % (op, way))
                    self.assertUnchanged(before, "%s over %s, expired challenge" % (op, way))
                    # The right identity with the permission writes, once...
                    rid += 1
                    challenge = ex(handle_request(op, way, rid))
                    right = secret_answer(challenge, ADMIN, ADMIN_SECRET, rid + 500)
                    reply = ex(right)
                    self.assertEqual(st.header(reply)["rc"], 1, "%s over %s, the right identity" % (op, way))
                    self.assertTrue(effect_seen(op, way), "%s over %s: not visible" % (op, way))
                    # ...and its answer replayed writes nothing.
                    after = digest()
                    self.assertNotEqual(after, before)
                    reply = ex(right)
                    self.assertEqual(st.header(reply)["rc"], 405, "%s over %s, replayed answer" % (op, way))
                    self.assertUnchanged(after, "%s over %s, replayed answer" % (op, way))
                finally:
                    ex.close()

    def test_json_api(self):
        admin = at.basic("300:0.NA/MTX.1", ADMIN_SECRET.decode())
        for op in OPS:
            before = digest()
            status, _, body = http_call(op, None)
            self.assertEqual((status, body["responseCode"]), (401, 402), op)
            status, _, _ = http_call(op, at.basic("300:0.NA/MTX.1", "not-the-secret"))
            self.assertEqual(status, 401, op)
            status, _, body = http_call(op, at.basic("300:MTX.1/weak", WEAK_SECRET.decode()))
            self.assertEqual((status, body["responseCode"]), (403, 400), op)
            status, _, body = http_call(op, admin, tls=False)
            self.assertEqual((status, body["responseCode"]), (403, 402), op)
            self.assertUnchanged(before, op + " over HTTP, bad credentials")
            status, _, body = http_call(op, admin)
            self.assertIn(status, (200, 201), (op, body))
            self.assertTrue(effect_seen(op, "http"), op + " over HTTP: not visible")

    def test_sessions(self):
        # The admin's session: authenticated once by a challenge (its first request), then MAC'd.
        session, key, _ = at.open_session(identity=b"0.NA/MTX.1", index=300)
        weak_session, weak_key, _ = at.open_session(identity=b"MTX.1/weak", index=300)
        s = socket.create_connection(("127.0.0.1", NODE["handle"]), timeout=5)
        counter = {"admin": 0, "weak": 0}

        def ex(msg):
            s.sendall(msg)
            return st.read_message(s)

        def macd(op, rid, who="admin"):
            counter[who] += 1
            sid, k = (session, key) if who == "admin" else (weak_session, weak_key)
            return at.with_mac(handle_request(op, "session", rid, session_id=sid), k, counter[who])

        try:
            bootstrap = at.with_mac(at.message(100, at.values_body("MTX.1/session-bootstrap",
                                                                    [at.url_value(1, "https://b")]), 2000,
                                               session_id=session), key, 100)
            challenge = ex(bootstrap)
            self.assertEqual(st.header(challenge)["rc"], 402)
            self.assertEqual(st.header(ex(secret_answer(challenge, ADMIN, ADMIN_SECRET, 2001)))["rc"], 1)
            counter["admin"] = 100
            challenge = ex(at.with_mac(at.message(101, at.text("MTX.1/weak-bootstrap"), 2002,
                                                  session_id=weak_session), weak_key, 100))
            self.assertEqual(st.header(ex(secret_answer(challenge, WEAK, WEAK_SECRET, 2003)))["rc"], 400)
            counter["weak"] = 100
            rid = 2100
            for op in OPS:
                before = digest()
                rid += 1
                bare = handle_request(op, "session", rid, session_id=session)
                self.assertEqual(st.header(ex(bare))["rc"], 404, op + ": no MAC")
                rid += 1
                self.assertEqual(st.header(ex(at.with_mac(handle_request(op, "session", rid, session_id=session),
                                                          os.urandom(32), 9000 + rid)))["rc"], 502, op + ": other key")
                rid += 1
                self.assertEqual(st.header(ex(at.with_mac(handle_request(op, "session", rid, session_id=0x7ee7),
                                                          key, 1)))["rc"], 500, op + ": unknown session")
                rid += 1
                self.assertEqual(st.header(ex(macd(op, rid, "weak")))["rc"], 400, op + ": without the permission")
                self.assertUnchanged(before, op + " in a session, bad credentials")
                rid += 1
                right = macd(op, rid)
                self.assertEqual(st.header(ex(right))["rc"], 1, op + ": the right identity")
                self.assertTrue(effect_seen(op, "session"), op + " in a session: not visible")
                after = digest()
                self.assertEqual(st.header(ex(right))["rc"], 505, op + ": replayed")
                self.assertUnchanged(after, op + " in a session, replayed")
        finally:
            s.close()


if __name__ == "__main__":
    IDNODE, IDCTL = sys.argv[1], sys.argv[2]
    at.IDNODE, at.IDCTL = IDNODE, IDCTL
    unittest.main(argv=sys.argv[:1], verbosity=2)
