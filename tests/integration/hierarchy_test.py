#!/usr/bin/env python3
"""The three levels of the identifier tree, from real idnode processes on loopback.

  hierarchy_test.py IDNODE IDCTL

  - a top-level node homes 0.NA and 88 (a GHR/MPA in small);
  - a secondary node homes 88.100 only, holds the enterprise prefix handle 0.NA/88.100.1 (created
    over the admin protocol by its server admin, with the secondary's own HS_SITE, as its
    GET_SITE_INFO returns it: a delegation to the node itself, which it serves, never refers) and
    the identifiers 88.100.1/SN0001 and SN0002;
  - the secondary registers at the top the way a secondary node does: a server admin of the top
    creates 0.NA/88.100 there over the Handle protocol (challenge-response with HS_SECKEY), with
    the secondary's HS_SITE and HS_SITE.PREFIX values, as its GET_SITE_INFO (OC 2) returns them.

Then a client written here from HANDLE.md (§1.1-1.7, §1.11; independent of idnode's C++ and of
idctl) starts at the top-level node only and resolves 88.100.1/SN0001 by following the answers
(0.NA/88.100.1: 303 at the top, 1 at the secondary; the identifier at the site named), over UDP
and over TCP; idctl resolve --walk does the same, and picks the server of a multi-server site by
the same hash; the top's JSON API gives the referral answers; DNRF gets 301; the registration
survives a restart of the top; a delegation created, modified, stripped of its sites and deleted
over the admin protocol at the running top takes effect at once each time; HOME_NA / UNHOME_NA /
LIST_HOMED_NAS work for a server admin only.
Traffic goes to 127.0.0.1 only; every wait is bounded; the nodes are stopped (and checked) at the
end through harness.py.
"""
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import harness

IDNODE = IDCTL = None
WORK = None
TOP = {}  # "proc", "handle", "http"
SECONDARY = {}  # "proc", "handle", "http", "site" (its HS_SITE bytes, from OC 2)
ADMIN = ("0.NA/0.NA", 300, b"ghr-admin-secret")  # the top's server admin (auth.server_admins)
OPS = ("88/ops", 300, b"ops-secret")  # an identity the top holds that is no server admin
SECONDARY_ADMIN = ("0.NA/88.100", 300, b"secondary-secret")
TOP_CONFIG = 'auth:\n  server_admins: ["%d:%s"]\n' % (ADMIN[1], ADMIN[0])

# ---- the Handle protocol, from HANDLE.md ---------------------------------------------------------

ENVELOPE = struct.Struct(">BBBBIIII")  # §1.1
HEADER = struct.Struct(">IIIHBBII")  # §1.2
OC_RESOLUTION, OC_GET_SITE_INFO, OC_CREATE, OC_DELETE = 1, 2, 100, 101
OC_ADD_VALUE, OC_REMOVE_VALUE, OC_MODIFY_VALUE = 102, 103, 104
OC_CHALLENGE_ANSWER, OC_HOME_NA, OC_UNHOME_NA, OC_LIST_HOMED_NAS = 200, 300, 301, 302
FLAG_RD, FLAG_CN, FLAG_DNRF = 0x00800000, 0x04000000, 0x00100000
RESOLUTION_FLAGS = 0x19000000  # REC|CA|PO, what CNRI clients send
LOCATION_TYPES = ("HS_SITE", "HS_SITE.6", "HS_SERV", "HS_SITE.PREFIX", "HS_NA_DELEGATE", "HS_SERV.PREFIX")
_next_request_id = [1000]


def next_request_id():
    _next_request_id[0] += 1
    return _next_request_id[0]


def text(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def message(opcode, body, request_id, flags=RESOLUTION_FLAGS, session_id=0):
    """Envelope (2.11, suggesting 2.11) + header + body + an empty credential."""
    m = HEADER.pack(opcode, 0, flags, 0xFFFF, 0, 0, int(time.time()) + 43200, len(body)) + body + struct.pack(">I", 0)
    return ENVELOPE.pack(2, 11, 2, 11, session_id, request_id, 0, len(m)) + m


def resolution(handle, request_id, types=(), indexes=(), flags=RESOLUTION_FLAGS):
    body = text(handle) + struct.pack(">I", len(indexes)) + b"".join(struct.pack(">i", i) for i in indexes)
    body += struct.pack(">I", len(types)) + b"".join(text(t) for t in types)
    return message(OC_RESOLUTION, body, request_id, flags)


def encode_value(index, type_, data, permissions=0x0E, ttl=86400):
    """§1.6: index, timestamp, TTL type, TTL, permissions, type, data, references."""
    return (struct.pack(">iIBiB", index, 0, 0, ttl, permissions) + text(type_) + text(data) + struct.pack(">I", 0))


def values_body(handle, values):
    return text(handle) + struct.pack(">I", len(values)) + b"".join(values)


class Reader:
    """Reads big-endian fields; every length and count is checked against the bytes left."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def left(self):
        return len(self.data) - self.at

    def take(self, n):
        if n < 0 or n > self.left():
            raise ValueError("%d bytes wanted at offset %d, %d left" % (n, self.at, self.left()))
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def bytes(self):
        return self.take(self.u32())

    def str(self):
        return self.bytes().decode()


def decode_values(r):
    """count(4) + values (§1.6) -> [{index, type, data, ttl, permissions, references}]."""
    values = []
    for _ in range(r.u32()):
        v = {"index": r.i32(), "timestamp": r.u32(), "ttl_type": r.u8(), "ttl": r.i32(), "permissions": r.u8()}
        v["type"] = r.str()
        v["data"] = r.bytes()
        v["references"] = [(r.str(), r.i32()) for _ in range(r.u32())]
        values.append(v)
    return values


DIGEST_SIZES = {1: 16, 2: 20, 3: 32}


def decode_message(m):
    """Envelope, header and body of one whole message (§1.1-1.5); the body must be used whole."""
    if len(m) < 44:
        raise ValueError("%d bytes: shorter than envelope + header" % len(m))
    major, minor, flags8, suggested_minor, session, request_id, seq, length = ENVELOPE.unpack(m[:20])
    if length != len(m) - 20:
        raise ValueError("message length %d, %d bytes after the envelope" % (length, len(m) - 20))
    opcode, rc, flags, serial, recursion, _, expiration, body_length = HEADER.unpack(m[20:44])
    out = {"version": (major, minor), "session_id": session, "request_id": request_id, "opcode": opcode,
           "rc": rc, "flags": flags, "serial": serial, "body_length": body_length}
    r = Reader(m[44:44 + body_length])
    if len(m) < 44 + body_length:
        raise ValueError("body length %d, %d bytes there" % (body_length, len(m) - 44))
    if flags & FLAG_RD or rc == 402:
        hash_type = r.u8()
        out["digest"] = r.bytes() if hash_type == 0 else r.take(DIGEST_SIZES[hash_type])
    if rc == 1 and opcode == OC_RESOLUTION:
        out["handle"] = r.str()
        out["values"] = decode_values(r)
    elif rc == 1 and opcode == OC_GET_SITE_INFO:
        out["site"] = r.take(r.left())
    elif rc == 1 and opcode in (OC_LIST_HOMED_NAS,):
        out["handles"] = [r.str() for _ in range(r.u32())]
    elif rc == 1:
        out["rest"] = r.take(r.left())  # e.g. the created handle (OC 100), or nothing
    elif rc in (302, 303):
        out["handle"] = r.str()
        out["values"] = decode_values(r) if r.left() else []
    elif rc == 402:
        out["nonce"] = r.bytes()
    else:
        out["message"] = r.str() if r.left() else ""
    if r.left():
        raise ValueError("%d bytes left over in the body of RC %d" % (r.left(), rc))
    return out


def decode_site(data):
    """HS_SITE / HS_SITE.PREFIX data (§1.7); trailing bytes are refused, as CNRI's decoder does."""
    r = Reader(data)
    site = {"format": r.u16(), "protocol": (r.u8(), r.u8()), "serial": r.u16(), "primary_mask": r.u8(),
            "hash_option": r.u8()}
    site["hash_filter"] = r.bytes()
    site["attributes"] = {r.str(): r.str() for _ in range(r.u32())}
    servers = []
    for _ in range(r.u32()):
        server = {"id": r.u32(), "address": r.take(16)}
        server["public_key"] = r.bytes()
        server["interfaces"] = [{"type": r.u8(), "protocol": r.u8(), "port": r.u32()} for _ in range(r.u32())]
        servers.append(server)
    site["servers"] = servers
    if r.left():
        raise ValueError("%d bytes after the site record" % r.left())
    return site


def encode_site(port, serial=1, description="test site", address="127.0.0.1", more_ports=(), hash_option=0):
    """A primary site on `address` (IPv4, right-aligned in 16 bytes; §1.7) of one server answering
    queries over UDP and TCP at `port`, and one more for each of `more_ports`, chosen among by
    `hash_option` (0 prefix, 1 suffix, 2 whole handle)."""
    servers = b""
    for server_id, p in enumerate((port, *more_ports), start=1):
        servers += struct.pack(">I", server_id) + b"\0" * 12 + socket.inet_aton(address) + text(b"")
        servers += struct.pack(">I", 2) + struct.pack(">BBI", 3, 1, p) + struct.pack(">BBI", 2, 0, p)
    return (struct.pack(">HBBHBB", 1, 2, 11, serial, 0x80, hash_option) + text(b"") + struct.pack(">I", 1) +
            text("desc") + text(description) + struct.pack(">I", 1 + len(more_ports)) + servers)


def site_hash_index(handle, hash_option, server_count):
    """SiteInfo.getHandleHash (§1.7): MD5 of the ASCII-uppercased part the option selects (0 the
    prefix, 1 the suffix, 2 the whole handle), its last 4 bytes as a signed int, Math.abs, and the
    remainder (Java's, toward zero) by the number of servers."""
    prefix, slash, suffix = handle.partition("/")
    part = {0: prefix, 1: suffix if slash else handle}.get(hash_option, handle)
    upper = part.encode().translate(bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    value = struct.unpack(">i", hashlib.md5(upper).digest()[-4:])[0]
    if value != -2 ** 31:
        value = abs(value)  # Math.abs(Integer.MIN_VALUE) stays negative
    index = abs(value) % server_count
    return -index if value < 0 else index


def pick_server(values, types, handle, transport):
    """(host, port) of the `transport` ("udp"/"tcp") query interface of the server that the sites
    among `values` of `types` give `handle`: primary sites first, the server by the site hash."""
    sites = [decode_site(v["data"]) for v in values if v["type"].upper() in types]
    sites.sort(key=lambda s: not (s["primary_mask"] & 0x80))
    wanted = {"udp": 0, "tcp": 1}[transport]
    for site in sites:
        if not site["servers"]:
            continue
        index = site_hash_index(handle, site["hash_option"], len(site["servers"]))
        server = site["servers"][abs(index)]
        address = server["address"]
        if address[:12] != b"\0" * 12:
            continue  # IPv6: this test's nodes are on 127.0.0.1
        for interface in server["interfaces"]:
            if interface["protocol"] == wanted and interface["type"] & 2:  # QUERY or BOTH
                return socket.inet_ntoa(address[12:]), interface["port"]
    raise AssertionError("no %s query interface among the %s values %r" % (transport, types, values))


def udp_exchange(endpoint, request, timeout=1.0, tries=3):
    """One request over UDP; the answer reassembled by RequestId and SequenceNumber (§1.8). Sent
    again after `timeout` seconds of silence, `tries` times in all; None if nothing comes."""
    request_id = struct.unpack(">I", request[8:12])[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(tries):
            s.sendto(request, endpoint)
            s.settimeout(timeout)
            parts = {}
            try:
                while True:
                    datagram = s.recv(2048)
                    assert len(datagram) <= 512, "a datagram of %d bytes" % len(datagram)
                    if len(datagram) < 20 or struct.unpack(">I", datagram[8:12])[0] != request_id:
                        continue
                    seq, length = struct.unpack(">II", datagram[12:20])
                    parts[seq] = datagram[20:]
                    if sum(len(p) for p in parts.values()) >= length:
                        body = b"".join(parts[i] for i in sorted(parts))
                        return datagram[:12] + b"\0\0\0\0" + datagram[16:20] + body
            except socket.timeout:
                continue
        return None
    finally:
        s.close()


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_message(s):
    """One whole message from a TCP connection (envelope, then MessageLength bytes)."""
    head = read_exact(s, 20)
    if head is None:
        raise AssertionError("the server closed the connection without an answer")
    rest = read_exact(s, struct.unpack(">I", head[16:20])[0])
    if rest is None:
        raise AssertionError("the server closed the connection in the middle of an answer")
    return head + rest


def tcp_exchange(endpoint, request, timeout=5.0):
    s = socket.create_connection(endpoint, timeout=timeout)
    try:
        s.sendall(request)
        return read_message(s)
    finally:
        s.close()


def ask(endpoint, transport, handle, types=(), flags=RESOLUTION_FLAGS):
    """One resolution request for `handle` at `endpoint`; the decoded answer."""
    request = resolution(handle, next_request_id(), types=types, flags=flags)
    raw = udp_exchange(endpoint, request) if transport == "udp" else tcp_exchange(endpoint, request)
    if raw is None:
        raise AssertionError("no answer from %s over %s for %s" % (endpoint, transport, handle))
    answer = decode_message(raw)
    assert answer["request_id"] == struct.unpack(">I", request[8:12])[0], answer
    assert answer["opcode"] == OC_RESOLUTION, answer
    return answer


def walk(handle, start, transport, max_hops=8):
    """A Handle client's resolution of `handle` (§1.11), starting at `start` (host, port) only:
    the prefix handle 0.NA/P first, following prefix referrals (303: HS_SITE.PREFIX /
    HS_NA_DELEGATE) and service referrals (302: HS_SITE / HS_SITE.6) until it is found; then
    `handle` at the server its HS_SITE values give, following service referrals (HS_SERV service
    handles are not followed: none here). Returns the hops: [{"name", "at" (host, port), "rc",
    "handle" (the answer's handle field: the referral handle of a 302), "values", "message"}];
    the last is the answer."""
    prefix = handle.partition("/")[0]
    prefix_handle = "0.NA/" + prefix
    hops = []
    at = start

    def hop(name, types=()):
        if len(hops) >= max_hops:
            raise AssertionError("more than %d hops: %r" % (max_hops, [(h["name"], h["at"], h["rc"]) for h in hops]))
        answer = ask(at, transport, name, types)
        hops.append({"name": name, "at": at, "rc": answer["rc"], "handle": answer.get("handle"),
                     "values": answer.get("values", []), "message": answer.get("message")})
        return answer

    while True:
        answer = hop(prefix_handle, LOCATION_TYPES)
        if answer["rc"] == 303:
            at = pick_server(answer["values"], ("HS_SITE.PREFIX", "HS_NA_DELEGATE"), prefix_handle, transport)
        elif answer["rc"] == 302:
            at = pick_server(answer["values"], ("HS_SITE", "HS_SITE.6"), prefix_handle, transport)
        elif answer["rc"] == 1:
            sites = answer["values"]
            break
        else:
            return hops
    while True:
        at = pick_server(sites, ("HS_SITE", "HS_SITE.6"), handle, transport)
        answer = hop(handle)
        if answer["rc"] != 302:
            return hops
        sites = answer["values"]


# ---- administration (HANDLE.md §1.10): challenge-response with HS_SECKEY, HMAC-SHA256 ----------


def challenge_answer(challenge, identity, request_id):
    handle, index, secret = identity
    mac = hmac.new(secret, challenge["nonce"] + challenge["digest"], hashlib.sha256).digest()
    body = text("HS_SECKEY") + text(handle) + struct.pack(">i", index) + text(bytes([0x13]) + mac)
    return message(OC_CHALLENGE_ANSWER, body, request_id, flags=0, session_id=challenge["session_id"])


def tcp_admin(port, opcode, body, identity=ADMIN):
    """Sends an admin request to 127.0.0.1:`port` over TCP, answers its 402 on the same connection
    as `identity`; returns every answer (several when the server streams with CN)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(message(opcode, body, next_request_id(), flags=0))
        challenge = decode_message(read_message(s))
        if challenge["rc"] != 402:
            return [challenge]
        assert len(challenge["digest"]) == 32 and len(challenge["nonce"]) == 16, challenge
        s.sendall(challenge_answer(challenge, identity, next_request_id()))
        answers = []
        while True:
            answer = decode_message(read_message(s))
            answers.append(answer)
            if not answer["flags"] & FLAG_CN:
                return answers
    finally:
        s.close()


# ---- the nodes ---------------------------------------------------------------------------------


def http(port, path, timeout=5):
    """GET `path` from 127.0.0.1:`port`: (status, parsed JSON body or None)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def start_node(name, homes, records=None, config=None):
    """Imports `records` (a list of JSON records) into WORK/`name`, then starts idnode there on
    ephemeral ports homing `homes` (at start, so that each 0.NA/<home> gets this node's HS_SITE).
    Returns {"proc", "handle", "http"}."""
    data = os.path.join(WORK, name)
    if records:
        path = os.path.join(WORK, name + ".jsonl")
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        subprocess.run([IDCTL, "import", "--data-dir", data, path], check=True, capture_output=True, timeout=60)
    args = [IDNODE, "--data-dir", data, "--handle-port", "0", "--http-port", "0", "--dns-port", "0", "--no-demo",
            "--workers", "2"]
    if config:
        path = os.path.join(WORK, name + ".yaml")
        with open(path, "w") as f:
            f.write(config)
        args += ["--config", path]
    for home in homes:
        args += ["--home", home]
    proc = harness.start(args, "idnode " + name, os.path.join(WORK, name + ".log"))
    line = harness.ready_line(proc, "idnode ready:", 30)
    ports = {k: int(v) for k, v in re.findall(r"(handle|http)=127\.0\.0\.1:(\d+)", line)}
    if set(ports) != {"handle", "http"}:
        problem = harness.stop_quietly(proc)
        raise RuntimeError("idnode %s did not start: %r %s" % (name, line, problem or harness.log_tail(proc, 4000)))
    return {"proc": proc, "line": line, **ports}


def string_value(index, type_, value, **extra):
    return {"index": index, "type": type_, "data": {"format": "string", "value": value}, **extra}


SN0001 = [(1, "URL", b"https://example.org/products/SN0001"), (2, "DESC", b"industrial part SN0001, lot 42")]


def setUpModule():
    harness.set_up_or_tear_down(start_module_nodes, tearDownModule)


def start_module_nodes():
    global WORK
    WORK = tempfile.mkdtemp(prefix="idnode-hierarchy-")
    # The secondary: 88.100 homed here, with identifiers of its enterprise prefix 88.100.1.
    # Its server admin is 300:0.NA/88.100 (a key in its own prefix handle).
    SECONDARY.update(start_node("secondary", ["88.100"], [
        {"handle": SECONDARY_ADMIN[0], "values": [
            string_value(SECONDARY_ADMIN[1], "HS_SECKEY", SECONDARY_ADMIN[2].decode(), permissions="1100")]},
        {"handle": "88.100.1/SN0001", "values": [string_value(i, t, d.decode()) for i, t, d in SN0001]},
        {"handle": "88.100.1/SN0002", "values": [string_value(1, "URL", "https://example.org/products/SN0002")]}],
        config='auth:\n  server_admins: ["%d:%s"]\n' % (SECONDARY_ADMIN[1], SECONDARY_ADMIN[0])))
    site_info = udp_exchange(("127.0.0.1", SECONDARY["handle"]),
                             message(OC_GET_SITE_INFO, text("/"), next_request_id()))
    site_info = decode_message(site_info)
    assert (site_info["opcode"], site_info["rc"]) == (OC_GET_SITE_INFO, 1), site_info
    SECONDARY["site"] = site_info["site"]
    # The enterprise prefix handle, with the secondary's own site: served by the secondary itself.
    created = tcp_admin(SECONDARY["handle"], OC_CREATE, values_body("0.NA/88.100.1", [
        encode_value(1, "HS_SITE", SECONDARY["site"])]), identity=SECONDARY_ADMIN)
    assert [(a["opcode"], a["rc"]) for a in created] == [(OC_CREATE, 1)], created
    # The top: 0.NA and 88 homed; a server admin (300:0.NA/0.NA) and an identity that is none.
    TOP.update(start_node("top", ["0.NA", "88"], [
        {"handle": ADMIN[0], "values": [
            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                "handle": ADMIN[0], "index": ADMIN[1], "permissions": "111111111111"}}},
            string_value(ADMIN[1], "HS_SECKEY", ADMIN[2].decode(), permissions="1100")]},
        {"handle": OPS[0], "values": [string_value(OPS[1], "HS_SECKEY", OPS[2].decode(), permissions="1100")]}],
        config=TOP_CONFIG))
    assert "delegated=0 " in TOP["line"], TOP["line"]
    # The secondary registers at the top: its prefix handle there, with its site twice.
    created = tcp_admin(TOP["handle"], OC_CREATE, values_body("0.NA/88.100", [
        encode_value(1, "HS_SITE", SECONDARY["site"]), encode_value(2, "HS_SITE.PREFIX", SECONDARY["site"])]))
    assert [(a["opcode"], a["rc"]) for a in created] == [(OC_CREATE, 1)], created


def tearDownModule():
    try:
        harness.stop_all()
    finally:
        if WORK:
            shutil.rmtree(WORK, ignore_errors=True)


def top():
    return ("127.0.0.1", TOP["handle"])


def secondary():
    return ("127.0.0.1", SECONDARY["handle"])


def triples(values):
    return [(v["index"], v["type"], v["data"]) for v in values]


class Restart(unittest.TestCase):
    def test_the_registration_survives_a_restart_of_the_top(self):
        harness.stop(TOP["proc"])
        TOP.update(start_node("top", ["0.NA", "88"], config=TOP_CONFIG))
        self.assertRegex(TOP["line"], r" delegated=1 prefixes=(0\.NA,88|88,0\.NA)$")
        hops = walk("88.100.1/SN0002", top(), "udp")
        self.assertEqual([(h["name"], h["at"], h["rc"]) for h in hops], [
            ("0.NA/88.100.1", top(), 303), ("0.NA/88.100.1", secondary(), 1), ("88.100.1/SN0002", secondary(), 1)])
        self.assertEqual(triples(hops[2]["values"]), [(1, "URL", b"https://example.org/products/SN0002")])


class Walk(unittest.TestCase):
    def test_the_secondary_site_is_its_own(self):
        site = decode_site(SECONDARY["site"])
        self.assertEqual(site["protocol"], (2, 11))
        self.assertEqual(len(site["servers"]), 1)
        server = site["servers"][0]
        self.assertEqual(server["address"], b"\0" * 12 + b"\x7f\0\0\1")
        ports = {(i["protocol"], i["port"]) for i in server["interfaces"]}
        self.assertIn((0, SECONDARY["handle"]), ports)  # UDP
        self.assertIn((1, SECONDARY["handle"]), ports)  # TCP
        self.assertIn((2, SECONDARY["http"]), ports)  # HTTP
        # The same site as GET /api/site shows.
        status, body = http(SECONDARY["http"], "/api/site")
        self.assertEqual(status, 200)
        shown = {(i["protocol"], i["port"]) for i in body["site"]["servers"][0]["interfaces"]}
        self.assertEqual(shown, {("UDP", SECONDARY["handle"]), ("TCP", SECONDARY["handle"]),
                                 ("HTTP", SECONDARY["http"])})
        # The prefix handle it homes carries that site (written at start).
        answer = ask(secondary(), "udp", "0.NA/88.100.1", ["HS_SITE"])
        self.assertEqual(answer["rc"], 1)
        self.assertEqual(triples(answer["values"]), [(1, "HS_SITE", SECONDARY["site"])])

    def check_walk(self, transport):
        hops = walk("88.100.1/SN0001", top(), transport)
        self.assertEqual([(h["name"], h["at"], h["rc"]) for h in hops], [
            ("0.NA/88.100.1", top(), 303),
            ("0.NA/88.100.1", secondary(), 1),
            ("88.100.1/SN0001", secondary(), 1)])
        # The prefix referral: no handle, the HS_SITE.PREFIX of 0.NA/88.100 (not its HS_SITE).
        self.assertEqual(hops[0]["handle"], "")
        self.assertEqual(triples(hops[0]["values"]), [(2, "HS_SITE.PREFIX", SECONDARY["site"])])
        self.assertEqual(triples(hops[1]["values"]), [(1, "HS_SITE", SECONDARY["site"])])
        self.assertEqual(triples(hops[2]["values"]), SN0001)
        self.assertEqual(hops[2]["handle"], "88.100.1/SN0001")

    def test_walk_over_udp(self):
        self.check_walk("udp")

    def test_walk_over_tcp(self):
        self.check_walk("tcp")

    def test_walk_to_an_identifier_that_does_not_exist(self):
        hops = walk("88.100.1/NOPE", top(), "udp")
        self.assertEqual([(h["name"], h["at"], h["rc"]) for h in hops], [
            ("0.NA/88.100.1", top(), 303), ("0.NA/88.100.1", secondary(), 1), ("88.100.1/NOPE", secondary(), 100)])

    def test_an_identifier_asked_at_the_top_is_referred(self):
        # A client that skips the prefix handle: a service referral to the secondary's site.
        for transport in ("udp", "tcp"):
            with self.subTest(transport=transport):
                answer = ask(top(), transport, "88.100.1/SN0001")
                self.assertEqual(answer["rc"], 302)
                self.assertEqual(answer["handle"], "0.NA/88.100.1")
                self.assertEqual(triples(answer["values"]), [(1, "HS_SITE", SECONDARY["site"])])
                self.assertEqual(pick_server(answer["values"], ("HS_SITE",), "88.100.1/SN0001", transport),
                                 secondary())

    def test_do_not_refer(self):
        # DNRF: 301 instead of the service referral; the prefix handle is looked up at the top only
        # (which homes 0.NA and does not hold 0.NA/88.100.1: 100, no 303).
        answer = ask(top(), "udp", "88.100.1/SN0001", flags=RESOLUTION_FLAGS | FLAG_DNRF)
        self.assertEqual((answer["rc"], answer["message"]), (301, "That prefix doesn't live here"))
        self.assertEqual(ask(top(), "tcp", "88.100.1/SN0001", flags=RESOLUTION_FLAGS | FLAG_DNRF)["rc"], 301)
        self.assertEqual(ask(top(), "udp", "0.NA/88.100.1", flags=RESOLUTION_FLAGS | FLAG_DNRF)["rc"], 100)
        # Without DNRF the same requests are referrals.
        self.assertEqual(ask(top(), "udp", "88.100.1/SN0001")["rc"], 302)
        self.assertEqual(ask(top(), "udp", "0.NA/88.100.1")["rc"], 303)

    def test_what_the_top_answers_itself(self):
        # Its own prefix handles, and identifiers under 88 that no delegation covers.
        self.assertEqual(ask(top(), "udp", "0.NA/88.100", ["HS_SITE"])["rc"], 1)
        self.assertEqual(ask(top(), "udp", "88.7/x")["rc"], 100)
        # Prefixes are matched at dots: 88.1000 is under 88, not under 88.100.
        self.assertEqual(ask(top(), "udp", "88.1000/x")["rc"], 100)
        self.assertEqual(ask(top(), "udp", "0.NA/88.1000")["rc"], 100)
        self.assertEqual(ask(top(), "udp", "88.10/x")["rc"], 100)
        self.assertEqual(ask(top(), "udp", "77/x")["rc"], 301)
        # "88.100" without a slash is the prefix handle 0.NA/88.100.
        answer = ask(top(), "udp", "88.100", ["HS_SITE.PREFIX"])
        self.assertEqual((answer["rc"], triples(answer["values"])), (1, [(2, "HS_SITE.PREFIX", SECONDARY["site"])]))


class IdctlWalk(unittest.TestCase):
    def check(self, scheme):
        out = subprocess.run([IDCTL, "resolve", "88.100.1/SN0001", "--walk", "--server",
                              "%s://127.0.0.1:%d" % (scheme, TOP["handle"])],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        hops = re.findall(r"^hop (\d+): (\S+) at (\S+) \((udp|tcp)\) -> (RC_\w+) \((\d+)\)", out.stdout, re.M)
        self.assertEqual(hops, [
            ("1", "0.NA/88.100.1", "%s://127.0.0.1:%d" % (scheme, TOP["handle"]), scheme, "RC_PREFIX_REFERRAL", "303"),
            ("2", "0.NA/88.100.1", "%s://127.0.0.1:%d" % (scheme, SECONDARY["handle"]), scheme, "RC_SUCCESS", "1"),
            ("3", "88.100.1/SN0001", "%s://127.0.0.1:%d" % (scheme, SECONDARY["handle"]), scheme, "RC_SUCCESS",
             "1")], out.stdout)
        self.assertIn("https://example.org/products/SN0001", out.stdout)
        self.assertIn("industrial part SN0001, lot 42", out.stdout)

    def test_over_udp(self):
        self.check("udp")

    def test_over_tcp(self):
        self.check("tcp")

    def test_the_server_of_a_multi_server_site_is_chosen_by_the_hash(self):
        # 0.NA/88.500 at the top names a site of two servers, the secondary (index 0) and the top
        # (index 1), chosen among by the hash of the prefix, the suffix or the whole handle. idctl
        # asks the identifier (hop 2) at the server this test's reading of HANDLE.md §1.7 picks.
        checked = {}
        for option in (0, 1, 2):
            site = encode_site(SECONDARY["handle"], more_ports=[TOP["handle"]], hash_option=option)
            created = tcp_admin(TOP["handle"], OC_CREATE,
                                values_body("0.NA/88.500", [encode_value(1, "HS_SITE", site)]))
            self.assertEqual([a["rc"] for a in created], [1])
            try:
                for name in ["88.500/" + suffix for suffix in ("a", "B", "sn0001", "SN0002", "x.y", "12345")]:
                    want = pick_server([{"type": "HS_SITE", "data": site}], ("HS_SITE",), name, "udp")
                    checked.setdefault(option, set()).add(want)
                    out = subprocess.run([IDCTL, "resolve", name, "--walk", "--server",
                                          "udp://127.0.0.1:%d" % TOP["handle"]],
                                         capture_output=True, text=True, timeout=60)
                    hop2 = re.search(r"^hop 2: (\S+) at udp://127\.0\.0\.1:(\d+) ", out.stdout, re.M)
                    self.assertIsNotNone(hop2, out.stdout)
                    self.assertEqual((hop2.group(1), int(hop2.group(2))), (name, want[1]),
                                     "hash option %d: %s" % (option, out.stdout))
            finally:
                deleted = tcp_admin(TOP["handle"], OC_DELETE, text("0.NA/88.500"))
                self.assertEqual([a["rc"] for a in deleted], [1])
        # By the suffix and the whole handle both servers were chosen (by the prefix, one only).
        self.assertEqual(len(checked[0]), 1)
        self.assertEqual(len(checked[1]), 2)
        self.assertEqual(len(checked[2]), 2)

    def test_unknown_prefix_fails(self):
        out = subprocess.run([IDCTL, "resolve", "77/x", "--walk", "--server", "udp://127.0.0.1:%d" % TOP["handle"]],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0, out.stdout)
        self.assertRegex(out.stdout, r"hop 1: 0\.NA/77 at udp://127\.0\.0\.1:%d \(udp\) -> RC_HANDLE_NOT_FOUND \(100\)"
                         % TOP["handle"])


class JsonApi(unittest.TestCase):
    def site_of(self, value):
        self.assertEqual(value["data"]["format"], "site")
        server = value["data"]["value"]["servers"][0]
        self.assertEqual(server["address"], "127.0.0.1")
        return {(i["protocol"], i["port"]) for i in server["interfaces"]}

    def test_prefix_referral(self):
        status, body = http(TOP["http"], "/api/handles/0.NA/88.100.1")
        self.assertEqual(status, 300, body)
        self.assertEqual(body["responseCode"], 303)
        self.assertNotIn("referralHandle", body)
        self.assertEqual([(v["index"], v["type"]) for v in body["values"]], [(2, "HS_SITE.PREFIX")])
        self.assertEqual(self.site_of(body["values"][0]), {("UDP", SECONDARY["handle"]), ("TCP", SECONDARY["handle"]),
                                                           ("HTTP", SECONDARY["http"])})

    def test_service_referral(self):
        status, body = http(TOP["http"], "/api/handles/88.100.1/SN0001")
        self.assertEqual(status, 300, body)
        self.assertEqual(body["responseCode"], 302)
        self.assertEqual(body["referralHandle"], "0.NA/88.100.1")
        self.assertEqual([(v["index"], v["type"]) for v in body["values"]], [(1, "HS_SITE")])
        self.assertEqual(self.site_of(body["values"][0]), {("UDP", SECONDARY["handle"]), ("TCP", SECONDARY["handle"]),
                                                           ("HTTP", SECONDARY["http"])})

    def test_not_here(self):
        status, body = http(TOP["http"], "/api/handles/77/x")
        self.assertEqual(status, 400, body)
        self.assertEqual(body["responseCode"], 301)
        self.assertEqual(body["message"], "That prefix doesn't live here")

    def test_the_secondary_answers_what_the_top_refers(self):
        status, body = http(SECONDARY["http"], "/api/handles/88.100.1/SN0001")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["responseCode"], 1)
        self.assertEqual([(v["index"], v["type"], v["data"]["value"]) for v in body["values"]],
                         [(i, t, d.decode()) for i, t, d in SN0001])


class AdminAtTheTop(unittest.TestCase):
    def referral(self, handle, transport="udp"):
        answer = ask(top(), transport, handle)
        return answer["rc"], answer.get("handle"), triples(answer.get("values", []))

    def test_a_delegation_written_over_the_admin_protocol_takes_effect_at_once(self):
        site = encode_site(2641, serial=7, description="88.200 secondary")
        other = encode_site(2642, serial=8, description="88.200 moved")
        # Under 88, homed at the top: not found (and the answers are now in the caches).
        self.assertEqual(self.referral("88.200/x"), (100, None, []))
        self.assertEqual(self.referral("88.200/x", "tcp"), (100, None, []))
        self.assertEqual(self.referral("0.NA/88.200.1"), (100, None, []))
        self.assertEqual(http(TOP["http"], "/api/handles/88.200/x")[0], 404)
        # An identity that is no admin of 0.NA/0.NA may not create it.
        refused = tcp_admin(TOP["handle"], OC_CREATE, values_body("0.NA/88.200", [encode_value(1, "HS_SITE", site)]),
                            identity=OPS)
        self.assertEqual([a["rc"] for a in refused], [400])
        self.assertEqual(self.referral("88.200/x"), (100, None, []))
        # The server admin creates it: referrals at once, no restart.
        created = tcp_admin(TOP["handle"], OC_CREATE, values_body("0.NA/88.200", [
            encode_value(1, "HS_SITE", site), encode_value(2, "DESC", b"delegated to a secondary"),
            encode_value(3, "HS_SITE.PREFIX", site)]))
        self.assertEqual([(a["opcode"], a["rc"]) for a in created], [(OC_CREATE, 1)])
        try:
            for transport in ("udp", "tcp"):
                answer = ask(top(), transport, "88.200/x")
                self.assertEqual((answer["rc"], answer["handle"]), (302, "0.NA/88.200"), transport)
                self.assertEqual(triples(answer["values"]), [(1, "HS_SITE", site)])
                self.assertEqual(pick_server(answer["values"], ("HS_SITE",), "88.200/x", transport),
                                 ("127.0.0.1", 2641))
            # A deeper identifier is referred with its own prefix handle as the referral handle;
            # the prefix handle of a derived prefix gets the prefix referral.
            self.assertEqual(self.referral("88.200.5/y"), (302, "0.NA/88.200.5", [(1, "HS_SITE", site)]))
            self.assertEqual(self.referral("0.NA/88.200.5"), (303, "", [(3, "HS_SITE.PREFIX", site)]))
            status, body = http(TOP["http"], "/api/handles/88.200/x")
            self.assertEqual((status, body["responseCode"], body["referralHandle"]), (300, 302, "0.NA/88.200"))
            self.assertEqual(ask(top(), "udp", "88.200/x", flags=RESOLUTION_FLAGS | FLAG_DNRF)["rc"], 301)
            # The site moves (MODIFY_VALUE): the referrals follow at once.
            modified = tcp_admin(TOP["handle"], OC_MODIFY_VALUE, values_body("0.NA/88.200", [
                encode_value(1, "HS_SITE", other)]))
            self.assertEqual([(a["opcode"], a["rc"]) for a in modified], [(OC_MODIFY_VALUE, 1)])
            self.assertEqual(self.referral("88.200/x"), (302, "0.NA/88.200", [(1, "HS_SITE", other)]))
            self.assertEqual(self.referral("88.200/x", "tcp"), (302, "0.NA/88.200", [(1, "HS_SITE", other)]))
            # Its location values removed (REMOVE_VALUE): not delegated any more.
            removed = tcp_admin(TOP["handle"], OC_REMOVE_VALUE, text("0.NA/88.200") + struct.pack(">Iii", 2, 1, 3))
            self.assertEqual([(a["opcode"], a["rc"]) for a in removed], [(OC_REMOVE_VALUE, 1)])
            self.assertEqual(self.referral("88.200/x"), (100, None, []))
            self.assertEqual(self.referral("0.NA/88.200.5"), (100, None, []))
            self.assertEqual(http(TOP["http"], "/api/handles/88.200/x")[0], 404)
            # Added back (ADD_VALUE): delegated again.
            added = tcp_admin(TOP["handle"], OC_ADD_VALUE,
                              values_body("0.NA/88.200", [encode_value(1, "HS_SITE", site)]))
            self.assertEqual([(a["opcode"], a["rc"]) for a in added], [(OC_ADD_VALUE, 1)])
            self.assertEqual(self.referral("88.200/x"), (302, "0.NA/88.200", [(1, "HS_SITE", site)]))
        finally:
            deleted = tcp_admin(TOP["handle"], OC_DELETE, text("0.NA/88.200"))
        self.assertEqual([(a["opcode"], a["rc"]) for a in deleted], [(OC_DELETE, 1)])
        # Deleted: not delegated any more, under 88 again.
        self.assertEqual(self.referral("88.200/x"), (100, None, []))
        self.assertEqual(self.referral("88.200/x", "tcp"), (100, None, []))
        self.assertEqual(http(TOP["http"], "/api/handles/88.200/x")[0], 404)
        self.assertEqual(self.referral("0.NA/88.200"), (100, None, []))
        # The secondary's delegation is untouched.
        self.assertEqual(self.referral("88.100.1/SN0001")[:2], (302, "0.NA/88.100.1"))

    def list_homed(self):
        answers = tcp_admin(TOP["handle"], OC_LIST_HOMED_NAS, text("/"))
        self.assertEqual([(a["opcode"], a["rc"]) for a in answers], [(OC_LIST_HOMED_NAS, 1)] * len(answers))
        return [h for a in answers for h in a["handles"]]

    def test_home_list_unhome(self):
        self.assertEqual(self.list_homed(), ["0.NA/0.NA", "0.NA/88"])
        self.assertEqual(ask(top(), "udp", "99.9/x")["rc"], 301)
        homed = tcp_admin(TOP["handle"], OC_HOME_NA, text("0.NA/99.9"))
        self.assertEqual([(a["opcode"], a["rc"]) for a in homed], [(OC_HOME_NA, 1)])
        try:
            self.assertEqual(self.list_homed(), ["0.NA/0.NA", "0.NA/88", "0.NA/99.9"])
            self.assertEqual(ask(top(), "udp", "99.9/x")["rc"], 100)  # ours now, at once
            self.assertEqual(ask(top(), "tcp", "99.9.1/x")["rc"], 100)
        finally:
            unhomed = tcp_admin(TOP["handle"], OC_UNHOME_NA, text("0.NA/99.9"))
        self.assertEqual([(a["opcode"], a["rc"]) for a in unhomed], [(OC_UNHOME_NA, 1)])
        self.assertEqual(self.list_homed(), ["0.NA/0.NA", "0.NA/88"])
        self.assertEqual(ask(top(), "udp", "99.9/x")["rc"], 301)

    def test_prefix_operations_need_a_server_admin(self):
        # Authenticated (its HS_SECKEY is right) but no server admin: RC_INVALID_ADMIN.
        self.assertEqual([a["rc"] for a in tcp_admin(TOP["handle"], OC_HOME_NA, text("0.NA/99.8"), identity=OPS)],
                         [400])
        self.assertEqual([a["rc"] for a in tcp_admin(TOP["handle"], OC_LIST_HOMED_NAS, text("/"), identity=OPS)],
                         [400])
        self.assertEqual(ask(top(), "udp", "99.8/x")["rc"], 301)
        # A wrong secret for the server admin: RC_AUTHENTICATION_FAILED.
        wrong = (ADMIN[0], ADMIN[1], b"not-the-secret")
        self.assertEqual([a["rc"] for a in tcp_admin(TOP["handle"], OC_HOME_NA, text("0.NA/99.8"), identity=wrong)],
                         [403])
        self.assertEqual(ask(top(), "udp", "99.8/x")["rc"], 301)
        # LIST_HOMED_NAS needs TCP.
        over_udp = udp_exchange(top(), message(OC_LIST_HOMED_NAS, text("/"), next_request_id(), flags=0))
        self.assertEqual(decode_message(over_udp)["rc"], 5)


if __name__ == "__main__":
    IDNODE, IDCTL = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"])
