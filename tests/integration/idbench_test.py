#!/usr/bin/env python3
"""idbench against a real idnode (loopback, ephemeral ports, temp dir), and against its responder.

  idbench_test.py IDNODE IDCTL IDBENCH

`idbench gen` writes a dataset that `idctl import` loads; idbench then reads it back over Handle
UDP, Handle TCP and the JSON API, in a closed and an open loop, with a share of missing keys, and
writes its JSON and HTML reports. The figures checked are the ones an operator reads: answers per
response code, the open loop's rate and its send lag, the per-second timeline. Traffic goes to
127.0.0.1 only; every run is bounded in time; the node and the responder are stopped at the end,
and one that does not end cleanly (exit 0, no sanitizer report: harness.py) fails the test.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import harness
import server_test as st

IDNODE = IDCTL = IDBENCH = None
NODE = st.NODE  # tearDownModule of server_test.py stops (and checks) every process started, and
# removes NODE["work"]
COUNT = 300


def idbench(*args, timeout=30):
    return subprocess.run([IDBENCH, *args], capture_output=True, text=True, timeout=timeout)


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def start_module_node():
    work = tempfile.mkdtemp(prefix="idnode-idbench-")
    NODE["work"] = work
    records, keys = (os.path.join(work, n) for n in ("records.jsonl", "keys.txt"))
    gen = idbench("gen", "--count", str(COUNT), "--prefix", "BENCH.1", "--out", records, "--keys", keys)
    if gen.returncode != 0:
        raise RuntimeError("idbench gen failed: " + gen.stderr)
    NODE["keys"] = keys
    NODE["records"] = records
    NODE["proc"], ports = st.start_node_homing(IDNODE, IDCTL, work, "BENCH.1", records, ["--workers", "1"])
    NODE["handle"], NODE["http"] = ports["handle"], ports["http"]


def tearDownModule():
    st.tearDownModule()


def codes(stdout):
    return {int(c): int(n) for c, n in re.findall(r"^code (\d+): (\d+)$", stdout, re.M)}


class Dataset(unittest.TestCase):
    def test_gen_writes_realistic_records_and_their_keys(self):
        with open(NODE["records"]) as f:
            records = [json.loads(line) for line in f]
        with open(NODE["keys"]) as f:
            keys = f.read().split()
        self.assertEqual(len(records), COUNT)
        self.assertEqual(keys, [r["handle"] for r in records])
        for r in records:
            types = [v["type"] for v in r["values"]]
            self.assertIn("URL", types)
            self.assertIn("HS_ADMIN", types)
            self.assertTrue(3 <= len(types) <= 6, types)
            for v in r["values"]:
                if v["type"] in ("URL", "EMAIL", "DESC"):
                    self.assertTrue(15 <= len(v["data"]["value"]) <= 200, v)

    def test_gen_refuses_missing_arguments(self):
        bad = idbench("gen", "--count", "10")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("usage", bad.stderr)


class AgainstIdnode(unittest.TestCase):
    def run_closed(self, protocol, port, extra=()):
        report = os.path.join(NODE["work"], protocol + ".json")
        page = os.path.join(NODE["work"], protocol + ".html")
        out = idbench("run", "--protocol", protocol, "--server", "127.0.0.1:%d" % port, "--keys", NODE["keys"],
                      "--seconds", "1.2", "--concurrency", "16", "--connections", "2", "--json", report,
                      "--html", page, *extra)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(report) as f:
            result = json.load(f)
        with open(page) as f:
            html = f.read()
        return out, result, html

    def check_reads(self, protocol, port, ok_code):
        out, result, html = self.run_closed(protocol, port)
        self.assertEqual(result["protocol"], protocol)
        self.assertEqual(result["mode"], "closed")
        self.assertGreater(result["answered"], 100, out.stdout)
        self.assertEqual((result["timeouts"], result["errors"]), (0, 0), out.stdout)
        self.assertEqual(result["codes"], {str(ok_code): result["answered"]})
        self.assertEqual(codes(out.stdout), {ok_code: result["answered"]})
        lat = result["latency_us"]
        self.assertTrue(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat)
        self.assertGreater(result["bytes_in"], 0)
        self.assertGreater(result["bytes_out"], 0)
        self.assertGreaterEqual(len(result["timeline"]), 1)
        # One progress line a second on stderr.
        self.assertRegex(out.stderr, r"(?m)^\s+1s +\d+ req/s  p50 +[\d.]+ us  p99 +[\d.]+ us  errors 0  timeouts 0$")
        self.assertIn("<svg", html)
        self.assertNotIn("<script src", html)

    def test_udp_reads(self):
        self.check_reads("udp", NODE["handle"], 1)

    def test_tcp_reads(self):
        self.check_reads("tcp", NODE["handle"], 1)

    def test_http_reads(self):
        self.check_reads("http", NODE["http"], 200)

    def test_missing_keys_get_negative_answers(self):
        for protocol, port, found, missing in (("udp", NODE["handle"], 1, 100), ("http", NODE["http"], 200, 404)):
            out, result, _ = self.run_closed(protocol, port, ("--missing", "0.5"))
            answered = codes(out.stdout)
            self.assertEqual(set(answered), {found, missing}, out.stdout)
            share = answered[missing] / sum(answered.values())
            self.assertTrue(0.35 < share < 0.65, out.stdout)

    def test_open_loop_keeps_its_rate_and_reports_send_lag(self):
        report = os.path.join(NODE["work"], "open.json")
        out = idbench("run", "--protocol", "udp", "--server", "127.0.0.1:%d" % NODE["handle"], "--keys",
                      NODE["keys"], "--seconds", "2", "--rate", "2000", "--json", report)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(report) as f:
            result = json.load(f)
        self.assertEqual(result["mode"], "open")
        # 2000/s for 2 s: the schedule, not the server, sets the count.
        self.assertTrue(3600 <= result["sent"] <= 4001, result["sent"])
        # Answers still on their way when the run ends are neither answered nor timed out.
        self.assertTrue(result["sent"] - 50 <= result["answered"] + result["timeouts"] <= result["sent"], result)
        self.assertTrue(1800 <= result["requests_per_second"] <= 2050, result["requests_per_second"])
        lag = result["send_lag_us"]
        self.assertTrue(0 <= lag["p50"] <= lag["p99"] <= lag["max"], lag)
        self.assertIn("send lag us", out.stdout)

    def test_unknown_protocol_is_refused(self):
        bad = idbench("run", "--protocol", "smtp", "--keys", NODE["keys"])
        self.assertEqual(bad.returncode, 2)


class AgainstResponder(unittest.TestCase):
    def test_responder_answers_every_request(self):
        # The responder has no SIGTERM handler: it is given a lifetime that covers the run, and
        # must then exit by itself with status 0.
        responder = harness.start([IDBENCH, "responder", "--port", "0", "--seconds", "5"], "idbench responder",
                                  os.path.join(NODE["work"], "responder.log"), expect_exit=True)
        try:
            line = harness.ready_line(responder, "responder ready:", timeout=10)
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            self.assertTrue(m, line)
            out = idbench("run", "--protocol", "udp", "--server", "127.0.0.1:" + m.group(1), "--pattern",
                          "X/SN{0..999}", "--seconds", "1", "--concurrency", "32")
            self.assertEqual(out.returncode, 0, out.stderr)
            answered = codes(out.stdout)
            self.assertEqual(set(answered), {1}, out.stdout)
            self.assertGreater(answered[1], 1000)
        finally:
            harness.wait_exit(responder, timeout=20)

if __name__ == "__main__":
    IDNODE, IDCTL, IDBENCH = sys.argv[1], sys.argv[2], sys.argv[3]
    del sys.argv[1:4]
    unittest.main(verbosity=2)
