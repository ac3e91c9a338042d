#!/usr/bin/env python3
"""Replication between real idnode processes on loopback (issue 11's "Done when").

  replication_test.py IDNODE IDCTL

Each test builds its own nodes in a temp dir: test certificates from a CA made for the run (the
openssl command), a source node homing 88.100 (and the OID prefix, for DNS) with imported records,
and replicas pulling over mutual TLS, some through tests/support/fault_proxy.py. Writes reach the
source as a Handle client sends them: CREATE_HANDLE / MODIFY_VALUE with the HS_SECKEY
challenge-response, on one TCP connection (hierarchy_test.py's client, written from HANDLE.md).
Convergence is judged by /api/digest (the order-independent digest of the records, per prefix and
whole) and the replica's /api/replication status; every wait is bounded, and every process is
stopped and checked at the end (harness.py). Under sanitizers (IDNODE_SANITIZED) the record counts
are scaled down, and the summary says so.
"""
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import harness
import hierarchy_test as ht
import site_test

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from fault_proxy import FaultProxy  # noqa: E402
from protowire import field, frame  # noqa: E402

IDNODE = IDCTL = None
ROOT = None  # the run's temp dir: certificates, and one directory per test
WORK = None  # the current test's directory: its nodes' data dirs, configs, logs
CERTS = None
SANITIZED = bool(os.environ.get("IDNODE_SANITIZED"))
SCALE = 10 if SANITIZED else 1
ADMIN = ("88.100/admin", 300, b"replication-test-secret")
PREFIX = "88.100"
OID_PREFIX = "OID"


# ---- certificates --------------------------------------------------------------------------------


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(directory, names, ca_name="idnode test CA"):
    """A CA and, for each name, a key and a certificate (CN and DNS subjectAltName = the name)."""
    os.makedirs(directory, exist_ok=True)
    ca_key, ca_crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key,
            "-out", ca_crt, "-days", "2", "-subj", "/CN=" + ca_name)
    for name in names:
        key, csr, crt, ext = (os.path.join(directory, name + suffix) for suffix in (".key", ".csr", ".crt", ".ext"))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                "-subj", "/CN=" + name)
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n" % name)
        openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
                "-days", "2", "-extfile", ext)
    return directory


# ---- nodes ---------------------------------------------------------------------------------------


def records_file(name, count, prefix=PREFIX, oids=0):
    """JSON Lines: the admin identity, `count` records under `prefix`.N (N = i % 7), and `oids`
    records under the OID prefix."""
    path = os.path.join(WORK, name + ".jsonl")
    with open(path, "w") as f:
        admin = {"handle": ADMIN[0], "values": [
            {"index": ADMIN[1], "type": "HS_SECKEY", "data": {"format": "string", "value": ADMIN[2].decode()},
             "ttl": 86400, "permissions": "1100"}]}
        f.write(json.dumps(admin) + "\n")
        for i in range(count):
            f.write(json.dumps({"handle": "%s.%d/SN%07d" % (prefix, i % 7, i), "values": [
                {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.cn/p/%d" % i},
                 "ttl": 86400},
                {"index": 2, "type": "DESC", "data": {"format": "string", "value": "part %d lot %d" % (i, i % 13)},
                 "ttl": 86400}]}) + "\n")
        for i in range(oids):
            f.write(json.dumps({"handle": "%s/1.2.156.3001.%d" % (OID_PREFIX, i), "values": [
                {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.cn/oid/%d" % i},
                 "ttl": 86400}]}) + "\n")
    return path


class Node:
    """One idnode process with its data dir, config and ports."""

    def __init__(self, name, homes=(), sources=(), peers=(), serve=False, extra="", cert=None,
                 storage="storage: {sync_writes: false}", handle_port=0):
        self.name = name
        self.handle_port = handle_port
        self.storage = storage
        self.data = os.path.join(WORK, name)
        self.homes = list(homes)
        self.sources = list(sources)
        self.peers = list(peers)
        self.serve = serve
        self.extra = extra
        self.cert = cert or name
        self.proc = None
        self.ports = {}
        self.runs = 0

    def config_text(self):
        c = ("node:\n  data_dir: %s\n  demo: false\n  home: %s\n" % (self.data, json.dumps(self.homes)) +
             "handle: {port: %d, workers: 2}\nhttp: {port: 0}\ndns: {port: 0, workers: 1}\n" % self.handle_port +
             self.storage + "\n" +
             'auth: {server_admins: ["%d:%s"]}\n' % (ADMIN[1], ADMIN[0]) +
             "replication:\n  name: %s\n  certificate: %s\n  private_key: %s\n  ca: %s\n" % (
                 self.name, os.path.join(CERTS, self.cert + ".crt"), os.path.join(CERTS, self.cert + ".key"),
                 os.path.join(CERTS, "ca.crt")) +
             "  heartbeat_ms: 200\n  ack_timeout_ms: 5000\n")
        if self.serve:
            c += "  listen: 127.0.0.1:%d\n  peers: %s\n" % (self.ports.get("replication", 0), json.dumps(self.peers))
        if self.sources:
            c += "  sources: %s\n" % json.dumps(self.sources)
        return c + self.extra

    def start(self):
        self.runs += 1
        path = os.path.join(WORK, self.name + ".yaml")
        with open(path, "w") as f:
            f.write(self.config_text())
        self.proc = harness.start([IDNODE, "--config", path], "idnode " + self.name,
                                  os.path.join(WORK, "%s.%d.log" % (self.name, self.runs)))
        line = harness.ready_line(self.proc, "idnode ready:", 60)
        ports = {k: int(v) for k, v in re.findall(r"(handle|http|dns|replication)=127\.0\.0\.1:(\d+)", line)}
        if "handle" not in ports or "http" not in ports:
            problem = harness.stop_quietly(self.proc)
            raise RuntimeError("idnode %s did not start: %r %s" % (self.name, line,
                                                                    problem or harness.log_tail(self.proc, 4000)))
        self.ports.update(ports)
        return self

    def stop(self):
        harness.stop(self.proc)

    def kill(self):
        harness.kill(self.proc)

    def get(self, path):
        status, body = ht.http(self.ports["http"], path, timeout=60)
        assert status == 200, (self.name, path, status, body)
        return body

    def digest(self, prefix=""):
        body = self.get("/api/digest" + ("?prefix=" + prefix if prefix else ""))
        return body["digest"], body["records"]

    def link(self, peer, direction="pulling"):
        for link in self.get("/api/replication")["links"]:
            if link["peer"] == peer and link["direction"] == direction:
                return link
        return None


def converged(replica, source, prefixes=(PREFIX, OID_PREFIX)):
    """Whether the replica's digests equal the source's, per prefix ("" is everything: a replica of
    some prefixes lacks the source's other records, such as the prefix handles 0.NA/P of the
    prefixes themselves, which belong to their parents)."""
    return all(replica.digest(p) == source.digest(p) for p in prefixes)


def wait_converged(replica, source, prefixes=(PREFIX, OID_PREFIX), timeout=120):
    last = {}

    def check():
        last["replica"] = [replica.digest(p) for p in prefixes]
        last["source"] = [source.digest(p) for p in prefixes]
        return last["replica"] == last["source"]

    try:
        harness.wait_until(check, timeout, "%s to converge with %s on %s" % (replica.name, source.name, prefixes),
                           interval=0.1)
    except AssertionError as e:
        raise AssertionError("%s; last digests: %s; link: %s" % (e, last, replica.link(source.name))) from None


# ---- writing as a Handle client ------------------------------------------------------------------


class Writer:
    """Admin writes over one TCP connection: each request, its 402, the answer, the result."""

    def __init__(self, node):
        self.node = node
        self.sock = socket.create_connection(("127.0.0.1", node.ports["handle"]), timeout=10)

    def close(self):
        self.sock.close()

    def request(self, opcode, body):
        self.sock.sendall(ht.message(opcode, body, ht.next_request_id(), flags=0))
        challenge = ht.decode_message(ht.read_message(self.sock))
        if challenge["rc"] != 402:
            return challenge["rc"]
        self.sock.sendall(ht.challenge_answer(challenge, ADMIN, ht.next_request_id()))
        return ht.decode_message(ht.read_message(self.sock))["rc"]

    def create(self, handle, url):
        return self.request(ht.OC_CREATE, ht.values_body(handle, [ht.encode_value(1, "URL", url.encode())]))

    def modify(self, handle, url):
        return self.request(ht.OC_MODIFY_VALUE, ht.values_body(handle, [ht.encode_value(1, "URL", url.encode())]))

    def delete(self, handle):
        return self.request(ht.OC_DELETE, ht.text(handle))


class BackgroundWriter(threading.Thread):
    """Writes steadily until stopped: creates, and modifies of what it created (versions move)."""

    def __init__(self, node, tag, pause=0.002):
        super().__init__(daemon=True)
        self.node, self.tag, self.pause = node, tag, pause
        self.stop_event = threading.Event()
        self.written = 0
        self.failures = []

    def run(self):
        writer = Writer(self.node)
        try:
            i = 0
            while not self.stop_event.is_set():
                handle = "%s.8/%s-%d" % (PREFIX, self.tag, i // 2)
                rc = (writer.create(handle, "https://example.cn/w/%d" % i) if i % 2 == 0 else
                      writer.modify(handle, "https://example.cn/w/%d/v2" % i))
                if rc != 1:
                    self.failures.append((handle, rc))
                self.written += 1
                i += 1
                time.sleep(self.pause)
        except OSError as e:
            self.failures.append(("connection", str(e)))
        finally:
            writer.close()

    def finish(self):
        self.stop_event.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the writer did not stop"
        assert not self.failures, self.failures[:5]
        return self.written


# ---- the peer side of the stream, from proto/idnode/replication.proto ------------------------------


def hello(prefixes=(), everything=False):
    body = field(1, 1) + (field(2, True) if everything else b"") + b"".join(field(3, p) for p in prefixes)
    return field(1, body)  # ReplicaMessage.hello


def tls_client(node, cert, ca=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(ca or os.path.join(CERTS, "ca.crt"))
    context.load_cert_chain(cert + ".crt", cert + ".key")
    raw = socket.create_connection(("127.0.0.1", node.ports["replication"]), timeout=10)
    return context.wrap_socket(raw, server_hostname=node.name)


def read_all(sock, limit=1 << 22, timeout=5):
    """Everything the peer sends until it closes, or until `timeout` seconds have passed (a source
    that streams sends heartbeats, so the connection is never idle)."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while len(data) < limit and time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ssl.SSLError, ConnectionResetError):
        pass
    return data


def frames(data):
    out, at = [], 0
    while at + 4 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        out.append(data[at + 4:at + 4 + length])
        at += 4 + length
    return out


# ---- the tests -----------------------------------------------------------------------------------


def setUpModule():
    global ROOT, CERTS
    ROOT = tempfile.mkdtemp(prefix="idnode-repl-")
    CERTS = make_certs(os.path.join(ROOT, "certs"),
                       ["top", "replica", "standby", "old-owner", "intruder", "site-0", "site-1"])
    make_certs(os.path.join(ROOT, "other-ca"), ["replica"], ca_name="another CA")


def tearDownModule():
    try:
        harness.stop_all()
    finally:
        if not os.environ.get("IDNODE_KEEP_WORK"):
            shutil.rmtree(ROOT, ignore_errors=True)


def source_node(name="top", records=20000, oids=0, peers=("replica 88.100 OID",), extra="", storage=None):
    node = Node(name, homes=[PREFIX, OID_PREFIX], peers=list(peers), serve=True, extra=extra,
                **({"storage": storage} if storage else {}))
    subprocess.run([IDCTL, "import", "--data-dir", node.data, records_file(name, records, oids=oids)],
                   check=True, capture_output=True, timeout=300)
    return node.start()


def replica_node(source, name="replica", prefixes="88.100 OID", via=None, extra="", host="127.0.0.1"):
    port = via.port if via else source.ports["replication"]
    return Node(name, sources=["%s %s:%d %s" % (source.name, host, port, prefixes)], extra=extra).start()


class Replication(unittest.TestCase):
    def setUp(self):
        global WORK
        WORK = os.path.join(ROOT, self._testMethodName.split("_")[0] + "_" + self._testMethodName.split("_")[1])
        os.makedirs(WORK)

    def tearDown(self):
        harness.stop_all()
        if not os.environ.get("IDNODE_KEEP_WORK"):
            shutil.rmtree(WORK, ignore_errors=True)

    def test_1_bootstrap_then_admin_writes_reach_every_protocol(self):
        count, writes, oid_writes = 100000 // SCALE, 10000 // SCALE, 1000 // SCALE
        top = source_node(records=count, oids=100)
        replica = replica_node(top)
        wait_converged(replica, top, timeout=300)
        link = replica.link("top")
        self.assertEqual(link["resyncs"], 1, link)
        self.assertEqual(link["state"], "streaming", link)

        written = []
        writer = Writer(top)
        for i in range(writes - oid_writes):
            handle = "%s.9/W%06d" % (PREFIX, i)
            self.assertEqual(writer.create(handle, "https://example.cn/w/%d" % i), 1, handle)
            written.append((handle, "https://example.cn/w/%d" % i))
        for i in range(oid_writes):
            handle = "%s/1.2.156.3001.%d" % (OID_PREFIX, 1000 + i)
            self.assertEqual(writer.create(handle, "https://example.cn/oid/w/%d" % i), 1, handle)
            written.append((handle, "https://example.cn/oid/w/%d" % i))
        writer.close()
        wait_converged(replica, top)
        self.assertEqual(replica.link("top")["resyncs"], 1)

        # Every write, answered by the replica over UDP, TCP, HTTP and (OIDs) DNS.
        endpoint = ("127.0.0.1", replica.ports["handle"])
        for transport in ("udp", "tcp"):
            for handle, url in written:
                answer = ht.ask(endpoint, transport, handle)
                self.assertEqual(answer["rc"], 1, (transport, handle, answer))
                self.assertEqual(answer["values"][0]["data"], url.encode(), (transport, handle))
        http = socket.create_connection(("127.0.0.1", replica.ports["http"]), timeout=10)
        try:
            for handle, url in written:
                http.sendall(("GET /api/handles/%s HTTP/1.1\r\nHost: x\r\n\r\n" % handle).encode())
                status, body = read_http_response(http)
                self.assertEqual(status, 200, (handle, body))
                self.assertEqual(json.loads(body)["values"][0]["data"]["value"], url, handle)
        finally:
            http.close()
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.settimeout(2)
        try:
            for handle, url in written:
                if not handle.startswith(OID_PREFIX + "/"):
                    continue
                arcs = handle.split("/", 1)[1].split(".")
                name = ".".join(reversed(arcs)) + ".oid-res.org."
                answer = dns_ask(dns, replica.ports["dns"], name)
                self.assertIn(url.encode(), answer, name)
        finally:
            dns.close()

    def test_2_a_killed_replica_resumes_from_its_cursor(self):
        top = source_node(records=20000 // SCALE)
        replica = replica_node(top)
        wait_converged(replica, top)
        writer = BackgroundWriter(top, "kill")
        writer.start()
        harness.wait_until(lambda: replica.link("top")["records_applied"] > 20000 // SCALE + 200, 60,
                           "the replica applying streamed changes")
        replica.kill()
        time.sleep(0.3)  # writes go on while the replica is down
        replica.start()
        harness.wait_until(lambda: (replica.link("top") or {}).get("state") == "streaming", 60, "reconnected")
        writer.finish()
        wait_converged(replica, top)
        link = replica.link("top")
        self.assertEqual(link["resyncs"], 0, link)  # resumed from its cursor: no snapshot
        self.assertEqual(link["snapshots"], 0, link)
        # The source restarts (its shards' histories fork at their last sequences): the replica
        # goes on from its cursor in the forked history, still without a snapshot.
        connects = link["connects"]
        top.stop()
        top.start()
        harness.wait_until(lambda: (replica.link("top") or {}).get("connects", 0) > connects and
                           replica.link("top")["state"] == "streaming", 60, "the replica back on the restarted source")
        writer = Writer(top)
        for i in range(50):
            self.assertEqual(writer.create("%s.8/after-restart-%d" % (PREFIX, i), "https://example.cn/r/%d" % i), 1)
        writer.close()
        wait_converged(replica, top)
        link = replica.link("top")
        self.assertEqual((link["resyncs"], link["snapshots"]), (0, 0), link)
        replica.stop()
        # No change applied twice: the replica's own changelog has each record's versions in strictly
        # increasing order.
        out = subprocess.run([IDCTL, "changelog", "--data-dir", replica.data], check=True, capture_output=True,
                             text=True, timeout=120).stdout
        versions = {}
        for line in out.splitlines():
            entry = json.loads(line)
            if entry["op"] != "put":
                continue
            previous = versions.get(entry["handle"], 0)
            self.assertGreater(entry["version"], previous, entry)
            versions[entry["handle"]] = entry["version"]
        self.assertGreater(len(versions), 100)

    def test_3_a_cut_link_catches_up_without_a_snapshot(self):
        top = source_node(records=20000 // SCALE)
        proxy = FaultProxy(("127.0.0.1", top.ports["replication"])).start()
        try:
            replica = replica_node(top, via=proxy)
            wait_converged(replica, top)
            self.assertEqual(replica.link("top")["resyncs"], 1)
            writer = BackgroundWriter(top, "cut")
            writer.start()
            proxy.cut()
            harness.wait_until(lambda: replica.link("top")["state"] != "streaming", 30, "the link seen down")
            time.sleep(30)  # the 30-second cut, under steady writes
            proxy.restore()
            harness.wait_until(lambda: replica.link("top")["state"] == "streaming", 60, "the link back up")
            # Flapping: cut every 1-3 s for 12 s.
            deadline = time.monotonic() + 12
            flip = 0
            while time.monotonic() < deadline:
                proxy.cut()
                time.sleep(0.3)
                proxy.restore()
                time.sleep(1 + (flip % 3))
                flip += 1
            writer.finish()
            wait_converged(replica, top)
            link = replica.link("top")
            self.assertEqual(link["resyncs"], 1, link)  # the bootstrap only: the changelog covered each gap
            self.assertGreaterEqual(link["connects"], 3, link)
        finally:
            proxy.close()

    def test_4_trimmed_past_the_cursor_one_snapshot_then_streaming(self):
        # A short changelog, trimmed five times a second, and a saved position that holds nothing
        # once 10 changes behind.
        top = source_node(records=5000 // SCALE, extra="  max_lag_entries: 10\n", storage=(
            "storage: {sync_writes: false, changelog_max_entries: 20, changelog_trim_interval_ms: 200}"))
        replica = replica_node(top)
        wait_converged(replica, top)
        self.assertEqual(replica.link("top")["resyncs"], 1)
        positions = {s["shard"]: s["position"] for s in replica.link("top")["shards"]}
        replica.stop()
        writer = Writer(top)
        for i in range(400):
            self.assertEqual(writer.create("%s.8/trim-%d" % (PREFIX, i), "https://example.cn/t/%d" % i), 1)
        writer.close()

        def trimmed():
            samples = harness.metrics(top.ports["http"])
            return [shard for shard, position in positions.items()
                    if samples['idnode_changelog_first_sequence{shard="%d"}' % shard] > position + 1]

        harness.wait_until(trimmed, 30, "the source's changelog trimmed past the replica's positions")
        replica.start()
        wait_converged(replica, top)
        link = replica.link("top")
        self.assertEqual(link["resyncs"], 1, link)  # since this start: exactly one
        writer = Writer(top)
        self.assertEqual(writer.create("%s.8/after" % PREFIX, "https://example.cn/after"), 1)
        writer.close()
        wait_converged(replica, top)
        link = replica.link("top")
        self.assertEqual((link["resyncs"], link["state"]), (1, "streaming"), link)

    def test_5_peers_without_the_right_certificate_or_grant_get_nothing(self):
        top = source_node(records=2000 // SCALE, oids=50, peers=("replica 88.100",))
        # A certificate from another CA: the handshake fails, not a byte of the stream arrives.
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
            s = tls_client(top, os.path.join(ROOT, "other-ca", "replica"))
            s.sendall(frame(hello(["88.100"])))
            data = read_all(s)
            s.close()
            if not data:
                raise ssl.SSLError("closed without a byte")
            self.fail("a peer of another CA got %d bytes" % len(data))
        # A certificate of the CA for a name that is no peer: closed without a byte.
        s = tls_client(top, os.path.join(CERTS, "intruder"))
        try:
            s.sendall(frame(hello(["88.100"])))
        except OSError:
            pass
        self.assertEqual(read_all(s), b"")
        s.close()
        # The right peer asking for more than it may: one refusal, nothing else.
        s = tls_client(top, os.path.join(CERTS, "replica"))
        s.sendall(frame(hello(["88.100", OID_PREFIX])))
        data = read_all(s)
        s.close()
        messages = frames(data)
        self.assertEqual(len(messages), 1, messages[:3])
        self.assertTrue(messages[0].startswith(b"\x12"), messages[0][:20])  # SourceMessage.refusal
        self.assertNotIn(b"1.2.156.3001", data)
        s = tls_client(top, os.path.join(CERTS, "replica"))
        s.sendall(frame(field(1, field(1, 1) + field(2, True))))  # everything
        data = read_all(s)
        s.close()
        self.assertEqual(len(frames(data)), 1)
        self.assertNotIn(b"/SN", data)
        # What it may have: 88.100's records, and not one of another prefix (read off the wire).
        s = tls_client(top, os.path.join(CERTS, "replica"))
        s.sendall(frame(hello(["88.100"])))
        data = read_all(s, timeout=3)
        s.close()
        self.assertIn(b"88.100.1/SN", data)
        self.assertNotIn(b"OID/", data)
        self.assertNotIn(b"1.2.156.3001", data)

    def test_6_a_slow_replica_slows_neither_the_writes_nor_the_memory_of_the_source(self):
        # Each round writes ~8 MB of values (eight times the 1 MiB window). While the proxy stalls
        # the replica's reads, the source may hold at most a window of it for the replica, so its
        # memory grows no more in a stalled round than in a free one (the memtable grows alike).
        # Speed: the source's CPU time per write (what the stalled stream costs the writers, immune
        # to the host stealing this VM's cores, which swings wall-clock rates 2x here) may not
        # grow by more than 10%; the wall-clock write rate, a check that nothing blocks the
        # writers on the replica, may not fall by more than a quarter.
        count, payload = 4000, "x" * 2000  # not scaled: a round must overflow the window
        # ack_timeout (both ends): a stalled round must stay a stall, not become a disconnection,
        # however slow the 4,000 writes are (under sanitizers longer than the default 30 s).
        top = source_node(records=5000 // SCALE,
                          extra="  window_bytes: 1MiB\n  max_lag_entries: 1000000\n  ack_timeout_ms: 600000\n",
                          peers=("replica 88.100 OID", "standby 88.100"))
        proxy = FaultProxy(("127.0.0.1", top.ports["replication"])).start()
        try:
            # The replica waits as long for a stalled stream (its idle timeout follows ack_timeout).
            replica = replica_node(top, via=proxy, extra="  ack_timeout_ms: 600000\n")
            wait_converged(replica, top)
            rates = {"free": [], "stalled": []}
            cpu = {"free": [], "stalled": []}
            growth = {"free": [], "stalled": []}
            rounds = 7
            for round_ in range(rounds):
                for mode in (("free", "stalled") if round_ % 2 == 0 else ("stalled", "free")):
                    if mode == "stalled":
                        proxy.stall()
                    before, ticks = rss_kb(top.proc.pid), cpu_ticks(top.proc.pid)
                    rates[mode].append(write_rate(top, "%s-%d" % (mode, round_), count, payload))
                    cpu[mode].append((cpu_ticks(top.proc.pid) - ticks) / count)
                    growth[mode].append(rss_kb(top.proc.pid) - before)
                    if mode == "stalled":
                        # Bounded generously: under sanitizers the status can take seconds to show it.
                        harness.wait_until(lambda: top.link("replica", "serving")["lag_entries"] > count // 2, 30,
                                           "the source's status showing the stalled replica's lag")
                        proxy.unstall()
                        wait_converged(replica, top, (PREFIX,))
            # Paired rounds (the order alternates), judged by the median of the per-round ratios.
            ratio = sorted(s / f for s, f in zip(rates["stalled"], rates["free"]))[rounds // 2]
            cpu_ratio = sorted(s / f for s, f in zip(cpu["stalled"], cpu["free"]))[rounds // 2]
            print("source writes/s: free %s, replica stalled %s; median ratio %.2f; source CPU per write "
                  "stalled/free median %.2f; source RSS growth KiB %s" % (
                      [round(r) for r in rates["free"]], [round(r) for r in rates["stalled"]], ratio, cpu_ratio,
                      growth), file=sys.stderr)
            self.assertLess(cpu_ratio, 1.1, cpu)
            self.assertGreater(ratio, 0.75, rates)
            # Memory: bounded by the window, not by the ~8 MB a stalled round leaves unread.
            if SANITIZED:
                print("replication_test: RSS growth not judged under sanitizers (ASan's quarantine holds "
                      "freed memory); the window bound above is", file=sys.stderr)
            else:
                self.assertLess(sorted(growth["stalled"])[rounds // 2] - sorted(growth["free"])[rounds // 2],
                                4 * 1024, growth)
            wait_converged(replica, top)
            # The window itself, seen by a peer that reads everything and acknowledges nothing
            # (no TCP buffer in the way): the source sends a window's worth (the snapshot of
            # 88.100 is tens of MB), then waits.
            s = tls_client(top, os.path.join(CERTS, "standby"))
            s.sendall(frame(field(1, field(1, 1) + field(3, PREFIX) + field(6, 1 << 20))))  # hello, 1 MiB window
            data = read_all(s, limit=64 << 20, timeout=3)
            held = top.link("standby", "serving")
            s.close()
            sent = sum(4 + len(m) for m in frames(data))
            print("a peer that never acknowledges received %d bytes; the source holds %d unacknowledged" % (
                sent, held["unacked_bytes"]), file=sys.stderr)
            self.assertLessEqual(sent, 1 << 20)
            self.assertGreater(sent, (1 << 20) - (300 << 10))  # full, less at most one message
            self.assertEqual(held["unacked_bytes"], sent, held)
        finally:
            proxy.close()

    def test_7_take_over_and_the_old_owner_converges_as_a_replica(self):
        owner = source_node(name="old-owner", records=5000 // SCALE, peers=("top 88.100",))
        standby = Node("top", sources=["old-owner 127.0.0.1:%d 88.100" % owner.ports["replication"]],
                       peers=["old-owner 88.100"], serve=True).start()
        wait_converged(standby, owner, (PREFIX,))
        owner.kill()  # the owner fails
        answers = ht.tcp_admin(standby.ports["handle"], 2101, ht.text("0.NA/88.100"), identity=ADMIN)
        self.assertEqual(answers[-1]["rc"], 1, answers)
        writer = Writer(standby)
        changed = []
        for i in range(0, 200):
            handle = "%s.%d/SN%07d" % (PREFIX, i % 7, i)
            self.assertEqual(writer.modify(handle, "https://example.cn/new/%d" % i), 1, handle)
            changed.append((handle, "https://example.cn/new/%d" % i))
        self.assertEqual(writer.create("%s.8/born-after-takeover" % PREFIX, "https://example.cn/born"), 1)
        writer.close()
        # The old owner is told, before it starts again, that the prefix is now the standby's.
        subprocess.run([IDCTL, "prefix", "mirror", "--data-dir", owner.data, PREFIX, "top",
                        "127.0.0.1:%d" % standby.ports["handle"]], check=True, capture_output=True, timeout=60)
        owner.homes = []
        owner.sources = ["top 127.0.0.1:%d 88.100" % standby.ports["replication"]]
        owner.start()
        endpoint = ("127.0.0.1", owner.ports["handle"])
        seen_referral = seen_new = False
        deadline = time.monotonic() + 120
        while True:
            for handle, url in changed[:50]:
                answer = ht.ask(endpoint, "udp", handle)
                if answer["rc"] == 302:
                    seen_referral = True
                else:
                    self.assertEqual(answer["rc"], 1, (handle, answer))
                    self.assertEqual(answer["values"][0]["data"], url.encode(), "a stale answer for %s" % handle)
                    seen_new = True
            if converged(owner, standby, (PREFIX,)):
                break
            self.assertLess(time.monotonic(), deadline, "the old owner did not converge")
        # The digests can match a moment before the resync is marked complete (the copy is referred
        # until then): wait for that, bounded, then every answer must be the new data.
        while any(ht.ask(endpoint, "udp", handle)["rc"] == 302 for handle, _ in changed[:50]):
            self.assertLess(time.monotonic(), deadline, "the old owner kept referring after converging")
            time.sleep(0.05)
        for handle, url in changed:
            answer = ht.ask(endpoint, "udp", handle)
            self.assertEqual((answer["rc"], answer["values"][0]["data"]), (1, url.encode()), handle)
        print("old owner during its resync: referrals seen %s, new data seen %s" % (seen_referral, seen_new),
              file=sys.stderr)

    def test_8_an_import_into_the_source_is_followed(self):
        top = source_node(records=0)
        # The source by host name (resolved at each connection; localhost is loopback).
        replica = replica_node(top, host="localhost")
        wait_converged(replica, top)
        self.assertEqual(replica.link("top")["resyncs"], 1)
        top.stop()
        subprocess.run([IDCTL, "import", "--data-dir", top.data, records_file("more", 3000 // SCALE)],
                       check=True, capture_output=True, timeout=300)
        top.start()
        wait_converged(replica, top)
        link = replica.link("top")
        self.assertEqual(link["resyncs"], 2, link)  # the import bypassed the changelog: one more
        digest, records = top.digest(PREFIX)
        self.assertGreaterEqual(records, 3000 // SCALE)

    def test_9_each_server_of_a_mirror_site_replicates_its_share(self):
        # A mirror site of two servers (site.servers): each pulls from the one-server source only
        # the identifiers the site hash puts on it (the hello says which server of how many), so
        # the two shares add up to the source's records, writes reach the right server only, and
        # each answers the other's identifiers 301 as any server of a site does.
        count = 6000 // SCALE
        top = source_node(records=count, peers=("site-0 88.100", "site-1 88.100"))
        ports = [site_test.free_port() for _ in range(2)]
        servers = json.dumps(["127.0.0.1:%d" % p for p in ports])
        mirrors = [Node("site-%d" % k, sources=["top 127.0.0.1:%d 88.100" % top.ports["replication"]],
                        handle_port=ports[k], extra="site: {servers: %s, this_server: %d}\n" % (servers, k)).start()
                   for k in range(2)]
        writer = Writer(top)
        written = ["%s.3/site-write-%d" % (PREFIX, i) for i in range(40)]
        for handle in written:
            self.assertEqual(writer.create(handle, "https://example.cn/" + handle), 1)
        writer.close()

        def shares_add_up():
            lanes, records = [0, 0, 0, 0], 0
            for m in mirrors:
                digest, n = m.digest(PREFIX)
                raw = bytes.fromhex(digest)
                for lane in range(4):
                    lanes[lane] = (lanes[lane] + int.from_bytes(raw[lane * 8:lane * 8 + 8], "big")) % 2 ** 64
                records += n
            return (b"".join(x.to_bytes(8, "big") for x in lanes).hex(), records) == top.digest(PREFIX)

        harness.wait_until(shares_add_up, 120, "the mirror site's two shares to add up to the source", interval=0.2)
        _, total = top.digest(PREFIX)
        self.assertGreater(total, count)
        held = [m.digest(PREFIX)[1] for m in mirrors]
        self.assertTrue(all(n > total // 4 for n in held), held)  # the hash spreads them
        for m in mirrors:
            self.assertIn("server %s of 2 by the site hash" % m.name[-1], m.link("top")["subscription"])
        # Each identifier at its server, the other's answered 301.
        for handle in written[:20] + ["%s.%d/SN%07d" % (PREFIX, i % 7, i) for i in range(0, count, max(1, count // 40))]:
            k = site_test.site_index(handle, 2)
            mine = ht.ask(("127.0.0.1", ports[k]), "udp", handle)
            self.assertEqual(mine["rc"], 1, (handle, k))
            other = ht.ask(("127.0.0.1", ports[1 - k]), "udp", handle)
            self.assertEqual(other["rc"], 301, (handle, 1 - k))
        # The source's status shows each server's share.
        serving = {link["peer"]: link["subscription"] for link in top.get("/api/replication")["links"]
                   if link["direction"] == "serving"}
        self.assertEqual(serving, {"site-0": "88.100 (server 0 of 2 by the site hash)",
                                   "site-1": "88.100 (server 1 of 2 by the site hash)"})
        # idctl resolve asked at server 0 for server 1's identifier follows the 301 to server 1,
        # found through server 0's own site record (a mirror site holds no prefix handle of its
        # parent's: none for 88.100.3 here).
        other = next(h for h in written if site_test.site_index(h, 2) == 1)
        done = subprocess.run([IDCTL, "resolve", other, "--server", "udp://127.0.0.1:%d" % ports[0]],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("server 1 of 2 (127.0.0.1:%d) by the site's hash" % ports[1], done.stdout)
        # A server's data and cursors are its share's: started as another server of the site, it
        # is refused (its first start recorded its place), not resumed with a share it lacks.
        mirrors[1].stop()
        mirrors[1].extra = "site: {servers: %s, this_server: 0}\n" % servers
        mirrors[1].handle_port = ports[0]  # where server 0 listens (refused before it binds)
        path = os.path.join(WORK, "site-1-as-0.yaml")
        with open(path, "w") as f:
            f.write(mirrors[1].config_text())
        wrong = subprocess.run([IDNODE, "--config", path], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("holds server 1 of a site of 2 servers", wrong.stderr + wrong.stdout)


# ---- small clients -------------------------------------------------------------------------------


def read_http_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("the connection closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("the connection closed")
        rest += chunk
    return int(head.split(b" ", 2)[1]), rest[:length]


def dns_ask(sock, port, name):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", 35, 1)
    for _ in range(3):
        sock.sendto(query, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except socket.timeout:
            continue
    raise AssertionError("no DNS answer for " + name)


def write_rate(node, tag, count, payload=""):
    writer = Writer(node)
    start = time.monotonic()
    for i in range(count):
        rc = writer.create("%s.8/rate-%s-%d" % (PREFIX, tag, i), "https://example.cn/r/%d?%s" % (i, payload))
        assert rc == 1, rc
    elapsed = time.monotonic() - start
    writer.close()
    return count / elapsed


def cpu_ticks(pid):
    """User + system CPU time of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    IDNODE, IDCTL = sys.argv[1], sys.argv[2]
    del sys.argv[1:3]
    if SANITIZED:
        print("replication_test: under sanitizers the record counts are a tenth of the issue's", file=sys.stderr)
    unittest.main(verbosity=2)
