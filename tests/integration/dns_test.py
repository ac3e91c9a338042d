#!/usr/bin/env python3
"""Integration tests of idnode's DNS front end (ORS, ITU-T X.672) against a real process.

  dns_test.py IDNODE IDCTL IDBENCH

The node starts on its demo data (DEMO.1 and the OID prefix homed, OID 1.2.156.3001.1 with a URL
and a DESC) plus an imported OID with forty URL values, on ephemeral ports. Queries are sent over
UDP and TCP to 127.0.0.1 only, built by hand here and with kdig (package knot-dnsutils, which CI
installs: the test fails without it); every wait is bounded (on a condition: a counter in /metrics);
the node is stopped and its directory removed at the end, and the run fails if it did not stop
cleanly (exit 0 on SIGTERM, no sanitizer report: harness.py).
"""
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
from server_test import read_exact, wait_ready  # shared with the Handle tests

IDNODE = IDCTL = IDBENCH = None
NODE = {}
DEMO_OID_NAME = "1.3001.156.2.1.oid-res.org."
NAPTR, TXT, SOA, NS, A, AXFR = 35, 16, 6, 2, 1, 252


def encode_name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype, qid=0x5151, opcode=0, qclass=1, edns=None):
    flags = (opcode << 11) | 0x0100
    message = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    message += encode_name(name) + struct.pack(">HH", qtype, qclass)
    if edns:
        message += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return message


def read_name(msg, at):
    labels, jumps, end = [], 0, None
    while True:
        n = msg[at]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = at + 2
            at = ((n & 0x3F) << 8) | msg[at + 1]
            jumps += 1
            assert jumps < 20, "compression loop in an answer"
            continue
        if n == 0:
            return ".".join(labels) + ".", (end if end is not None else at + 1)
        labels.append(msg[at + 1:at + 1 + n].decode())
        at += 1 + n


def parse(msg):
    """Header fields and the records of each section (test code: idnode itself uses libknot)."""
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    out = {"id": qid, "qr": bool(flags & 0x8000), "aa": bool(flags & 0x0400), "tc": bool(flags & 0x0200),
           "rd": bool(flags & 0x0100), "rcode": flags & 0xF, "opcode": (flags >> 11) & 0xF,
           "counts": (qd, an, ns, ar), "sections": [[], [], []]}
    at = 12
    for _ in range(qd):
        out["qname"], at = read_name(msg, at)
        at += 4
    for section, count in enumerate((an, ns, ar)):
        for _ in range(count):
            owner, at = read_name(msg, at)
            rtype, rclass, ttl, rdlength = struct.unpack(">HHIH", msg[at:at + 10])
            at += 10
            out["sections"][section].append({"owner": owner, "type": rtype, "class": rclass, "ttl": ttl,
                                              "rdata": msg[at:at + rdlength], "offset": at})
            at += rdlength
    assert at == len(msg), "trailing bytes in an answer"
    return out


def naptr(rdata):
    order, pref = struct.unpack(">HH", rdata[:4])
    at, strings = 4, []
    for _ in range(3):
        n = rdata[at]
        strings.append(rdata[at + 1:at + 1 + n].decode())
        at += 1 + n
    return {"order": order, "preference": pref, "flags": strings[0], "service": strings[1],
            "regexp": strings[2], "replacement": rdata[at:]}


def exchange(payload, timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(payload, ("127.0.0.1", NODE["dns"]))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def tcp_exchange(payloads, timeout=2.0):
    """Sends the queries on one connection (all first: pipelined); returns the answers."""
    s = socket.create_connection(("127.0.0.1", NODE["dns"]), timeout=timeout)
    try:
        s.sendall(b"".join(struct.pack(">H", len(p)) + p for p in payloads))
        answers = []
        for _ in payloads:
            head = read_exact(s, 2)
            answers.append(None if head is None else read_exact(s, struct.unpack(">H", head)[0]))
        return answers
    finally:
        s.close()


def closed_within(s, seconds):
    """Whether the server closes `s` within `seconds` (reads until EOF or the time is up)."""
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def ask(name, qtype, **kw):
    answer = exchange(query(name, qtype, **kw))
    assert answer is not None, "no answer to %s/%d" % (name, qtype)
    return answer, parse(answer)


def healthy():
    answer = exchange(query(DEMO_OID_NAME, NAPTR, qid=4242))
    return answer is not None and parse(answer)["rcode"] == 0 and parse(answer)["counts"][1] == 1


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def start_module_node():
    work = tempfile.mkdtemp(prefix="idnode-dns-")
    NODE["work"] = work
    data = os.path.join(work, "data")
    records = os.path.join(work, "records.jsonl")
    many = {"handle": "OID/1.2.156.3001.7", "values": [
        {"index": i, "type": "URL", "data": {"format": "string", "value": "https://example.org/oid/7/%d" % i},
         "ttl": 600} for i in range(1, 41)]}
    with open(records, "w") as f:
        f.write(json.dumps(many) + "\n")
    subprocess.run([IDCTL, "import", "--data-dir", data, records], check=True, capture_output=True, timeout=60)
    # Short TCP deadlines and a small connection cap, so that the limits can be seen quickly.
    config = os.path.join(work, "idnode.yaml")
    with open(config, "w") as f:
        f.write("dns:\n  tcp_max_connections: 4\n  tcp_max_connections_per_source: 2\n"
                "  tcp_idle_timeout_ms: 600\n  tcp_io_timeout_ms: 300\n")
    NODE["proc"] = harness.start(
        [IDNODE, "--config", config, "--data-dir", data, "--handle-port", "0", "--http-port", "0",
         "--dns-port", "0", "--workers", "2"], "idnode", os.path.join(work, "idnode.log"))
    line = wait_ready(NODE["proc"])
    m = re.search(r"http=127\.0\.0\.1:(\d+) dns=127\.0\.0\.1:(\d+)", line)
    if not m:
        raise RuntimeError("idnode did not start: " + line + harness.log_tail(NODE["proc"]))
    NODE["http"], NODE["dns"] = int(m.group(1)), int(m.group(2))
    NODE["prefixes"] = line.split("prefixes=")[1].strip()


def tearDownModule():
    # A crash, a non-zero exit, a SIGKILL needed or a sanitizer report fails the run, even when
    # every test passed (harness.stop_all raises once everything is stopped).
    try:
        harness.stop_all()
    finally:
        shutil.rmtree(NODE.get("work", "/nonexistent"), ignore_errors=True)


OPEN_DNS_TCP = 'idnode_open_connections{protocol="dns_tcp"}'
REFUSED_DNS_TCP = 'idnode_connections_refused_total{protocol="dns_tcp"}'


def wait_for_dns_connections(count, timeout=10):
    """Waits until the node holds `count` open DNS TCP connections; returns its metrics."""
    def seen():
        m = harness.metrics(NODE["http"])
        return m if m[OPEN_DNS_TCP] == count else None
    return harness.wait_until(seen, timeout, "%d open DNS TCP connections" % count)


class DnsTest(unittest.TestCase):
    def test_demo_oid_naptr(self):
        self.assertIn("OID", NODE["prefixes"].split(","))
        for _ in range(2):  # a storage read, then the answer cache
            raw, a = ask(DEMO_OID_NAME, NAPTR)
            self.assertEqual(a["id"], 0x5151)
            self.assertTrue(a["qr"] and a["aa"] and a["rd"])
            self.assertEqual(a["rcode"], 0)
            self.assertEqual(a["qname"], DEMO_OID_NAME)
            self.assertEqual(len(a["sections"][0]), 1)
            rr = a["sections"][0][0]
            self.assertEqual((rr["owner"], rr["type"], rr["class"], rr["ttl"]), (DEMO_OID_NAME, NAPTR, 1, 86400))
            n = naptr(rr["rdata"])
            self.assertEqual(n, {"order": 1, "preference": 0, "flags": "U", "service": "RINF",
                                 "regexp": "!^.*$!https://example.org/oid/1.2.156.3001.1!",
                                 "replacement": b"\0"})

    def test_demo_oid_txt(self):
        _, a = ask(DEMO_OID_NAME.upper(), TXT)
        self.assertEqual(a["rcode"], 0)
        self.assertEqual(a["qname"], DEMO_OID_NAME.upper())  # the question keeps its spelling
        texts = [rr["rdata"][1:].decode() for rr in a["sections"][0]]
        self.assertEqual(texts, ["DESC=idnode demo OID"])

    def test_unknown_oid_is_nxdomain_with_soa(self):
        _, a = ask("9.3001.156.2.1.oid-res.org.", NAPTR)
        self.assertEqual(a["rcode"], 3)
        self.assertTrue(a["aa"])
        self.assertEqual(a["counts"][1:3], (0, 1))
        soa = a["sections"][1][0]
        self.assertEqual((soa["owner"], soa["type"], soa["ttl"]), ("oid-res.org.", SOA, 300))
        _, b = ask("www.oid-res.org.", NAPTR)
        self.assertEqual(b["rcode"], 3)

    def test_names_above_an_oid_are_empty_non_terminals(self):
        # What a resolver doing QNAME minimisation asks on its way down to the demo OID: NODATA
        # (NOERROR, no records, the SOA), never NXDOMAIN; a sibling that leads nowhere is NXDOMAIN.
        for name in ("1.oid-res.org.", "2.1.oid-res.org.", "156.2.1.oid-res.org.", "3001.156.2.1.oid-res.org."):
            _, a = ask(name, A)
            self.assertEqual((a["rcode"], a["aa"], a["counts"][1], a["counts"][2]), (0, True, 0, 1), name)
        _, b = ask("157.2.1.oid-res.org.", A)
        self.assertEqual(b["rcode"], 3)

    def test_other_types_are_nodata(self):
        _, a = ask(DEMO_OID_NAME, A)
        self.assertEqual((a["rcode"], a["counts"][1], a["counts"][2]), (0, 0, 1))

    def test_apex_soa_and_ns(self):
        _, a = ask("oid-res.org.", SOA)
        self.assertEqual(a["rcode"], 0)
        self.assertEqual(a["sections"][0][0]["type"], SOA)
        _, b = ask("oid-res.org.", NS)
        self.assertEqual(b["sections"][0][0]["type"], NS)

    def test_refused_outside_the_zone_other_classes_and_transfers(self):
        for name, qtype, qclass in (("example.com.", A, 1), ("1.2.oid-res.org.evil.", NAPTR, 1),
                                    (DEMO_OID_NAME, NAPTR, 3), ("oid-res.org.", AXFR, 1)):
            _, a = ask(name, qtype, qclass=qclass)
            self.assertEqual(a["rcode"], 5, name)
            self.assertFalse(a["aa"])
            self.assertEqual(a["counts"][1:3], (0, 0))

    def test_notimp_for_other_opcodes(self):
        _, a = ask(DEMO_OID_NAME, NAPTR, opcode=5)
        self.assertEqual((a["rcode"], a["opcode"]), (4, 5))

    def test_large_answers_truncate_within_the_udp_limit(self):
        name = "7.3001.156.2.1.oid-res.org."
        raw, a = ask(name, NAPTR)
        self.assertLessEqual(len(raw), 512)
        self.assertTrue(a["tc"])
        self.assertEqual(a["counts"][1], 0)
        raw, a = ask(name, NAPTR, edns=4096)
        self.assertLessEqual(len(raw), 1232)
        self.assertTrue(a["tc"])
        opt = a["sections"][2][0]
        self.assertEqual((opt["type"], opt["class"]), (41, 1232))
        # A small answer under EDNS is whole.
        raw, a = ask(DEMO_OID_NAME, NAPTR, edns=1232)
        self.assertFalse(a["tc"])
        self.assertEqual(a["counts"][1], 1)

    def test_malformed_queries_get_formerr_or_silence_and_the_server_stays_up(self):
        good = query(DEMO_OID_NAME, NAPTR, qid=0x7777)
        cases = [
            ("empty", b"", None),
            ("runt", good[:7], None),
            ("response", bytes([good[0], good[1], good[2] | 0x80]) + good[3:], None),
            ("truncated question", good[:20], 1),
            ("qdcount 2", good[:5] + b"\x02" + good[6:] + good[12:], 1),
            ("compression loop", good[:12] + b"\xc0\x0c\x00\x23\x00\x01", 1),
            ("huge rdlength", good[:11] + b"\x01" + good[12:] + b"\x00\x00\x10\x00\x01\x00\x00\x00\x3c\xff\xffx", 1),
            ("OPT twice", good[:11] + b"\x02" + good[12:] + (b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2), 1),
            ("garbage", bytes(range(256)) * 4, None),
        ]
        for name, payload, rcode in cases:
            with self.subTest(name):
                answer = exchange(payload, timeout=0.3)
                if rcode is None:
                    if answer is not None:  # garbage may parse as a header: then a defined answer
                        self.assertLessEqual(len(answer), max(len(payload), 12))
                        self.assertEqual(parse(answer)["rcode"], 1)
                else:
                    self.assertIsNotNone(answer)
                    self.assertEqual(len(answer), 12)  # the header alone: no amplification
                    h = parse(answer)
                    self.assertEqual((h["id"], h["qr"], h["rcode"]), (0x7777, True, rcode))
                self.assertTrue(healthy(), name)

    def test_tcp_carries_what_udp_truncates(self):
        big = query("7.3001.156.2.1.oid-res.org.", NAPTR, qid=1)
        small = query(DEMO_OID_NAME, TXT, qid=2)
        answers = tcp_exchange([big, small, big])
        self.assertTrue(all(a is not None for a in answers))
        first, second, third = (parse(a) for a in answers)
        self.assertEqual((first["id"], first["tc"], first["counts"][1]), (1, False, 40))
        orders = [naptr(rr["rdata"])["order"] for rr in first["sections"][0]]
        self.assertEqual(orders, list(range(1, 41)))
        self.assertEqual(naptr(first["sections"][0][6]["rdata"])["regexp"], "!^.*$!https://example.org/oid/7/7!")
        self.assertEqual((second["id"], second["counts"][1]), (2, 1))
        self.assertEqual(third["counts"][1], 40)

    def test_malformed_queries_over_tcp(self):
        good = query(DEMO_OID_NAME, NAPTR, qid=0x7777)
        loop = good[:12] + b"\xc0\x0c\x00\x23\x00\x01"
        answers = tcp_exchange([loop, good])  # FORMERR, and the connection goes on
        self.assertEqual(len(answers[0]), 12)
        self.assertEqual(parse(answers[0])["rcode"], 1)
        self.assertEqual(parse(answers[1])["counts"][1], 1)
        s = socket.create_connection(("127.0.0.1", NODE["dns"]), timeout=2)
        try:
            s.sendall(b"\x00\x00")  # an empty message: no header to answer, the stream is closed
            self.assertTrue(closed_within(s, 1))
        finally:
            s.close()
        self.assertTrue(healthy())

    def test_tcp_limits(self):
        # Idle connections are closed after tcp_idle_timeout_ms (600), a stalled query after
        # tcp_io_timeout_ms (300); beyond tcp_max_connections (4), or 2 from one address
        # (tcp_max_connections_per_source), connections are closed at accept.
        idle = socket.create_connection(("127.0.0.1", NODE["dns"]), timeout=2)
        start = time.time()
        self.assertTrue(closed_within(idle, 3))
        self.assertLess(time.time() - start, 2.5)
        idle.close()
        slow = socket.create_connection(("127.0.0.1", NODE["dns"]), timeout=2)
        slow.sendall(b"\x00\x30\x12")  # a length and one byte of the query, then nothing
        start = time.time()
        self.assertTrue(closed_within(slow, 3))
        self.assertLess(time.time() - start, 1.5)
        slow.close()
        def connect_from(source):
            return socket.create_connection(("127.0.0.1", NODE["dns"]), timeout=2, source_address=(source, 0))

        wait_for_dns_connections(0)
        refused = harness.metrics(NODE["http"])[REFUSED_DNS_TCP]
        held = [connect_from("127.0.0.1"), connect_from("127.0.0.1")]
        try:
            wait_for_dns_connections(2)  # both taken in before the third comes
            extra = connect_from("127.0.0.1")  # a third from one address
            self.assertTrue(closed_within(extra, 0.5))
            extra.close()
            self.assertEqual(harness.metrics(NODE["http"])[REFUSED_DNS_TCP], refused + 1)  # at accept
            # Another address still has room (else the fifth below would be let in).
            held += [connect_from("127.0.0.2"), connect_from("127.0.0.2")]
            wait_for_dns_connections(4)
            extra = connect_from("127.0.0.3")  # the fifth in all
            self.assertTrue(closed_within(extra, 0.5))
            extra.close()
            self.assertEqual(harness.metrics(NODE["http"])[REFUSED_DNS_TCP], refused + 2)
        finally:
            for s in held:
                s.close()
        wait_for_dns_connections(0)  # the slots come back as the server sees the connections close
        self.assertIsNotNone(tcp_exchange([query(DEMO_OID_NAME, NAPTR)])[0])
        self.assertTrue(healthy())

    def test_kdig(self):
        # CI installs kdig (knot-dnsutils, docker/install-deps.sh): its absence is a failure, not a skip.
        kdig = shutil.which("kdig")
        self.assertIsNotNone(kdig, "kdig is not installed (apt-get install knot-dnsutils): the DNS front end "
                                   "is not checked against a real DNS client")

        def dig(name):
            out = subprocess.run([kdig, "@127.0.0.1", "-p", str(NODE["dns"]), "+norec", "+timeout=2", "+retry=0",
                                  name, "NAPTR"], capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            return out.stdout

        out = dig(DEMO_OID_NAME)
        self.assertIn("status: NOERROR", out)
        self.assertIn('"U" "RINF" "!^.*$!https://example.org/oid/1.2.156.3001.1!"', out)
        out = dig("7.3001.156.2.1.oid-res.org.")
        self.assertIn("ANSWER: 40", out)  # truncated over UDP, kdig retries over TCP

    def test_metrics_count_dns(self):
        ask(DEMO_OID_NAME, NAPTR)
        s = socket.create_connection(("127.0.0.1", NODE["http"]), timeout=3)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        finally:
            s.close()
        text = body.decode()
        self.assertIn('idnode_requests_total{protocol="dns_udp",opcode="0",rc="0"}', text)
        self.assertIn("idnode_dns_truncated_total", text)
        self.assertIn('idnode_open_connections{protocol="dns_tcp"}', text)


class IdbenchDns(unittest.TestCase):
    def test_idbench_asks_oids_as_ors_names(self):
        keys = os.path.join(NODE["work"], "oids.txt")
        with open(keys, "w") as f:
            f.write("1.2.156.3001.1\n1.2.156.3001.99\n")
        out = subprocess.run(
            [IDBENCH, "run", "--protocol", "dns", "--server", "127.0.0.1:%d" % NODE["dns"], "--keys", keys,
             "--order", "sequential", "--seconds", "1", "--concurrency", "8"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        codes = dict(re.findall(r"^code (\d+): (\d+)$", out.stdout, re.M))
        # Sequential keys alternate: the demo OID (NOERROR) and one that does not exist (NXDOMAIN).
        self.assertEqual(set(codes), {"0", "3"}, out.stdout)
        self.assertLessEqual(abs(int(codes["0"]) - int(codes["3"])), 8, out.stdout)


if __name__ == "__main__":
    IDNODE, IDCTL, IDBENCH = sys.argv[1], sys.argv[2], sys.argv[3]
    unittest.main(argv=[sys.argv[0], "-v"])
