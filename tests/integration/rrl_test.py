#!/usr/bin/env python3
"""Response rate limiting of UDP answers on real idnode processes (HARDENING.md rows E and F).

  rrl_test.py IDNODE IDCTL

The shape of Knot's RRL test (tests-extra/tests/modules/rrl): a limit of 5 answers a second and
2 s of UDP queries from one source. With slip 0 some but not all are answered and the rest are
dropped; with slip 1 every limited answer is slipped (a short RC_SERVER_TOO_BUSY); an exempt
network is never limited; TCP is never limited; the counters in /metrics match what the client
saw. Then the amplification bound: a flood at 20 times the limit asking for a multi-datagram
record gets back fewer bytes and fewer datagrams than it sent, and a record larger than the burst
never goes over UDP. The DNS front end's answers are limited the same way, slipping with TC.
Traffic goes to 127.0.0.1 only; every node started is stopped, and a node that does not stop
cleanly (exit 0 on SIGTERM, no sanitizer report: harness.py) fails the test.
"""
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import unittest
import urllib.request

import harness
import server_test as st

IDNODE = IDCTL = None
NODE_DNS = {}  # pid -> DNS port
WORK = None
RATE = 5
QUERIES = 200


def start_node(name, rate_limit):
    """A node homing RRL.1 with the given handle.rate_limit (and dns.rate_limit); returns (process,
    handle port, http port), and keeps its DNS port in NODE_DNS."""
    config = os.path.join(WORK, name + ".yaml")
    with open(config, "w") as f:
        f.write("handle: {workers: 2, rate_limit: %s}\ndns: {workers: 2, rate_limit: %s}\n"
                % (json.dumps(rate_limit), json.dumps(rate_limit)))
    proc, ports = st.start_node_homing(IDNODE, IDCTL, WORK, "RRL.1", os.path.join(WORK, "records.jsonl"),
                                       ["--config", config], name=name)
    NODE_DNS[proc.pid] = ports["dns"]
    return proc, ports["handle"], ports["http"]


def stop(proc):
    """Stops a node; fails the test (once it is gone) if it crashed, exited non-zero, needed
    SIGKILL or left a sanitizer report."""
    st.stop_process(proc)


def paced(port, make, on_reply, queries, seconds):
    """Sends `queries` datagrams make(i) from one socket to `port`, evenly over `seconds`, and hands
    every datagram that comes back (until half a second after the last) to on_reply; returns the
    bytes sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    start, sent, bytes_out = time.time(), 0, 0

    def drain():
        while True:
            try:
                on_reply(s.recv(4096))
            except BlockingIOError:
                return

    try:
        while sent < queries:
            if time.time() >= start + seconds * sent / queries:
                datagram = make(sent)
                s.sendto(datagram, ("127.0.0.1", port))
                bytes_out += len(datagram)
                sent += 1
            drain()
            time.sleep(0.001)
        end = time.time() + 0.5
        while time.time() < end:
            drain()
            time.sleep(0.01)
    finally:
        s.close()
    return bytes_out


def flood(port, handle, queries=QUERIES, seconds=2.0):
    """Resolutions of `handle` at a steady pace; returns what came back: (answers by response code,
    datagrams received, bytes received, bytes sent)."""
    codes, received = {}, [0, 0]

    def on_reply(data):
        received[0] += 1
        received[1] += len(data)
        if struct.unpack(">I", data[12:16])[0] == 0:  # the first datagram carries the code
            rc = struct.unpack(">I", data[24:28])[0]
            codes[rc] = codes.get(rc, 0) + 1

    bytes_out = paced(port, lambda i: st.resolution_request(handle, request_id=1000 + i), on_reply, queries,
                      seconds)
    return codes, received[0], received[1], bytes_out


def dns_flood(port, queries=QUERIES, seconds=2.0):
    """SOA queries for the apex at a steady pace; returns (full answers, TC answers)."""
    question = b"".join(bytes([len(l)]) + l for l in (b"oid-res", b"org")) + b"\0" + struct.pack(">HH", 6, 1)
    counts = {"full": 0, "truncated": 0}

    def on_reply(data):
        if struct.unpack(">H", data[2:4])[0] & 0x0200:
            counts["truncated"] += 1
            assert struct.unpack(">HHH", data[6:12]) == (0, 0, 0), "a slip carries no records"
        else:
            counts["full"] += 1

    paced(port, lambda i: struct.pack(">HHHHHH", i & 0xFFFF, 0, 1, 0, 0, 0) + question, on_reply, queries,
          seconds)
    return counts["full"], counts["truncated"]


def limited(http_port, metric="idnode_udp_rate_limited_total"):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=5).read().decode()
    return {m.group(1): int(float(m.group(2)))
            for m in re.finditer(r'^%s\{action="(\w+)"\} (\S+)$' % metric, text, re.M)}


def setUpModule():
    global WORK
    WORK = tempfile.mkdtemp(prefix="idnode-rrl-")
    small = {"handle": "RRL.1/small", "values": [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/x"}}]}
    medium = {"handle": "RRL.1/medium", "values": [  # three datagrams
        {"index": i, "type": "DESC", "data": {"format": "string", "value": "m%d " % i * 100}} for i in range(1, 4)]}
    large = {"handle": "RRL.1/large", "values": [  # about 40 datagrams: more than any burst here
        {"index": i, "type": "DESC", "data": {"format": "string", "value": "l%d " % i * 120}} for i in range(1, 41)]}
    with open(os.path.join(WORK, "records.jsonl"), "w") as f:
        for r in (small, medium, large):
            f.write(json.dumps(r) + "\n")


def tearDownModule():
    # Any node a test left running (a failure between start and stop) is stopped and checked too.
    try:
        harness.stop_all()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


class RateLimit(unittest.TestCase):
    def test_slip_0_drops_what_is_over_the_limit_but_tcp_is_never_limited(self):
        proc, port, http = start_node("slip0", {"datagrams_per_second": RATE, "slip": 0})
        try:
            codes, _, _, _ = flood(port, "RRL.1/small")
            replied = codes.get(1, 0)
            self.assertTrue(0 < replied < 100, codes)
            self.assertEqual(set(codes), {1}, codes)
            counters = limited(http)
            self.assertGreaterEqual(counters["dropped"], 5)
            self.assertLessEqual(abs(counters["dropped"] - (QUERIES - replied)), 1, (counters, codes))
            # TCP proves its source: never limited.
            NODE_PORT = st.NODE.get("handle")
            st.NODE["handle"] = port
            try:
                answers = st.tcp_exchange([st.resolution_request("RRL.1/small", request_id=i) for i in range(50)],
                                          timeout=5)
            finally:
                st.NODE["handle"] = NODE_PORT
            self.assertEqual(len(answers), 50)
            self.assertTrue(all(st.header(a)["rc"] == 1 for a in answers))
        finally:
            stop(proc)

    def test_slip_1_answers_every_limited_query_with_a_short_error(self):
        proc, port, http = start_node("slip1", {"datagrams_per_second": RATE, "slip": 1})
        try:
            codes, _, _, _ = flood(port, "RRL.1/small")
            self.assertTrue(0 < codes.get(1, 0) < 100, codes)
            self.assertGreaterEqual(codes.get(3, 0), 100, codes)  # RC_SERVER_TOO_BUSY
            self.assertLessEqual(abs(limited(http)["slipped"] - codes.get(3, 0)), 1)
            # A slipped answer is no larger than the request that caused it.
            request = st.resolution_request("RRL.1/small", request_id=7)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            slipped = []
            try:
                for _ in range(30):
                    s.sendto(request, ("127.0.0.1", port))
                for _ in range(30):
                    reply = s.recv(2048)
                    if struct.unpack(">I", reply[24:28])[0] == 3:
                        slipped.append(reply)
            finally:
                s.close()
            self.assertGreater(len(slipped), 10)
            self.assertTrue(all(len(reply) <= len(request) for reply in slipped))
        finally:
            stop(proc)

    def test_dns_answers_are_limited_too_and_slip_with_tc(self):
        proc, _, http = start_node("dns", {"datagrams_per_second": RATE, "slip": 2})
        try:
            full, truncated = dns_flood(NODE_DNS[proc.pid])
            self.assertTrue(0 < full < 100, (full, truncated))
            self.assertGreater(truncated, 50)
            counters = limited(http, "idnode_dns_rate_limited_total")
            self.assertLessEqual(abs(counters["slipped"] - truncated), 1, counters)
            self.assertLessEqual(abs(counters["dropped"] + counters["slipped"] - (QUERIES - full)), 1, counters)
        finally:
            stop(proc)

    def test_exempt_networks_are_never_limited(self):
        proc, port, http = start_node("exempt", {"datagrams_per_second": RATE, "exempt": ["127.0.0.0/8"]})
        try:
            codes, _, _, _ = flood(port, "RRL.1/small")
            self.assertGreaterEqual(codes.get(1, 0), QUERIES - 3, codes)
            self.assertEqual(limited(http)["dropped"], 0)
        finally:
            stop(proc)

    def test_a_flood_for_a_large_record_gets_back_less_than_it_sent(self):
        proc, port, http = start_node("amplify", {"datagrams_per_second": RATE})
        try:
            # 20 times the limit, for a three-datagram answer.
            codes, datagrams, bytes_in, bytes_out = flood(port, "RRL.1/medium")
            self.assertGreater(codes.get(1, 0), 0)
            self.assertLess(bytes_in / bytes_out, 1.0, (bytes_in, bytes_out))
            self.assertLess(datagrams / QUERIES, 1.0, datagrams)
            # Larger than the burst (2.5 x 5 datagrams): never over UDP, whole over TCP.
            codes, datagrams, _, _ = flood(port, "RRL.1/large", queries=10, seconds=0.5)
            self.assertEqual(datagrams, 0, codes)
            self.assertGreaterEqual(limited(http)["too_large"], 10)
            st.NODE["handle"] = port
            answer = st.tcp_exchange([st.resolution_request("RRL.1/large")], timeout=5)[0]
            self.assertEqual(st.header(answer)["rc"], 1)
            self.assertGreater(len(answer), 15 * 492)
        finally:
            st.NODE.pop("handle", None)
            stop(proc)


if __name__ == "__main__":
    IDNODE, IDCTL = sys.argv[1], sys.argv[2]
    del sys.argv[1:3]
    unittest.main(verbosity=2)
