#!/usr/bin/env python3
"""The listeners of a real idnode (loopback, ephemeral ports, temporary data directories).

  listener_test.py IDNODE IDCTL

  - Port conflicts: a second idnode started on the Handle, HTTP or DNS port of a running one (with
    another data directory) exits non-zero at once, saying the port is "in use by another
    process" and naming the listener and the port, and the first keeps answering on every
    listener. The same when the port is held, with SO_REUSEPORT (as idnode's own sockets are), by
    another process (this one) over UDP only or over TCP only: joining that group silently is
    what the check prevents.
  - Out of descriptors: with its RLIMIT_NOFILE lowered (prlimit) to what it holds plus a few,
    and connections waiting in its listen queue that it cannot accept (EMFILE), the node does not
    spin (its CPU time over 2 s stays far below a core-second), counts the failures and back-offs
    (idnode_accept_errors_total, idnode_accept_backoffs_total), keeps answering UDP, and accepts
    TCP connections again once descriptors are free.
Traffic goes to 127.0.0.1 only; every wait is bounded; every node is stopped (and checked) through
harness.py.
"""
import json
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import harness
import server_test as st

IDNODE = IDCTL = None
WORK = None
NODE = {}  # the node the conflicts are tried against: "proc", "handle", "http", "dns"
IN_USE = "in use by another process"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_node(name, ports=None, config=None, wait=True):
    """Starts idnode on WORK/`name` (a new data directory holding LST.1/item, homed), on the
    `ports` given ({"handle": N, "http": N, "dns": N}) and ephemeral ones for the others; returns
    {"proc", "handle", "http", "dns"} once it is ready, or {"proc"} with wait=False."""
    data = os.path.join(WORK, name)
    if not os.path.exists(data):
        records = os.path.join(WORK, name + ".jsonl")
        with open(records, "w") as f:
            f.write(json.dumps({"handle": "LST.1/item", "values": [{
                "index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/item"}}]}) + "\n")
        subprocess.run([IDCTL, "import", "--data-dir", data, records], check=True, capture_output=True, timeout=60)
    chosen = {"handle": 0, "http": 0, "dns": 0, **(ports or {})}
    args = [IDNODE, "--data-dir", data, "--home", "LST.1", "--no-demo", "--workers", "2"]
    for kind in ("handle", "http", "dns"):
        args += ["--%s-port" % kind, str(chosen[kind])]
    if config:
        path = os.path.join(WORK, name + ".yaml")
        with open(path, "w") as f:
            f.write(config)
        args += ["--config", path]
    proc = harness.start(args, "idnode " + name, os.path.join(WORK, name + ".log"), expect_exit=not wait)
    if not wait:
        return {"proc": proc}
    line = harness.ready_line(proc, "idnode ready:", 30)
    ports = {k: int(v) for k, v in re.findall(r"(handle|http|dns)=127\.0\.0\.1:(\d+)", line)}
    if set(ports) != {"handle", "http", "dns"}:
        problem = harness.stop_quietly(proc)
        raise RuntimeError("idnode %s did not start: %r %s" % (name, line, problem or harness.log_tail(proc, 4000)))
    return {"proc": proc, **ports}


def udp_resolve(port, handle="LST.1/item", timeout=1.0, request_id=77):
    """The RC of a UDP resolution at 127.0.0.1:`port` (None if no answer within `timeout`)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(st.resolution_request(handle, request_id=request_id), ("127.0.0.1", port))
        while True:
            answer = s.recv(2048)
            if st.header(answer)["request_id"] == request_id:
                return st.header(answer)["rc"]
    except socket.timeout:
        return None
    finally:
        s.close()


def tcp_resolve(port, handle="LST.1/item", timeout=3.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(st.resolution_request(handle))
        answer = st.read_message(s)
        return None if answer is None else st.header(answer)["rc"]
    finally:
        s.close()


def http_status(port, path="/healthz", timeout=3.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        head = s.recv(1024)
        return int(head.split(b" ", 2)[1])
    finally:
        s.close()


def dns_answers(port, qid, tcp=False, timeout=1.0):
    """Whether a DNS query (any answer will do: this node's zone is oid-res.org) is answered, over
    UDP or TCP, with the query's id."""
    name = b"".join(bytes([len(label)]) + label for label in b"1.3001.156.2.1.oid-res.org".split(b".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + name + struct.pack(">HH", 16, 1)
    try:
        if tcp:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.sendall(struct.pack(">H", len(query)) + query)
            reply = s.recv(4096)[2:]
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            s.sendto(query, ("127.0.0.1", port))
            reply = s.recv(4096)
        s.close()
    except OSError:
        return False
    return len(reply) >= 12 and struct.unpack(">H", reply[:2])[0] == qid and reply[2] & 0x80 != 0


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def start_module_node():
    global WORK
    WORK = tempfile.mkdtemp(prefix="idnode-listener-")
    NODE.update(start_node("first"))


def tearDownModule():
    try:
        harness.stop_all()
    finally:
        if WORK:
            shutil.rmtree(WORK, ignore_errors=True)


class PortConflicts(unittest.TestCase):
    def refused(self, name, kind, port, listener, seconds=10):
        """Starts a node on `port` for `kind` ("handle", "http", "dns"), which must refuse to
        start, saying that its `listener` (a pattern: "Handle (UDP|TCP)", ...) cannot have the
        port; returns its stderr."""
        started = time.monotonic()
        proc = start_node(name, {kind: port}, wait=False)["proc"]
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - started
        problem = harness.stop_quietly(proc)  # its non-zero exit is the point: reported, not raised
        log = harness.log_tail(proc, 20000)
        self.assertIsNotNone(proc.returncode)
        self.assertLess(took, seconds, "still running %s s after it was started: %s" % (seconds, log))
        self.assertGreater(proc.returncode, 0, "%s\n%s" % (problem, log))
        self.assertNotIn("idnode ready:", "".join(proc.stdout_lines))
        self.assertIsNone(harness.SANITIZER_REPORT.search(log), log)
        self.assertRegex(log, r"%s[^\n]*127\.0\.0\.1:%d[^\n]*%s" % (listener, port, IN_USE))
        return log

    def assert_first_node_serves(self):
        # Every request is answered, over every listener, after the other node's attempt.
        rcs = [udp_resolve(NODE["handle"], request_id=1000 + i) for i in range(32)]
        self.assertEqual(rcs, [1] * 32)
        self.assertEqual([tcp_resolve(NODE["handle"]) for _ in range(8)], [1] * 8)
        self.assertEqual([http_status(NODE["http"]) for _ in range(8)], [200] * 8)
        self.assertTrue(all(dns_answers(NODE["dns"], 4000 + i) for i in range(16)))
        self.assertTrue(dns_answers(NODE["dns"], 4100, tcp=True))
        self.assertIsNone(NODE["proc"].poll())

    def test_same_handle_port(self):
        self.refused("second-handle", "handle", NODE["handle"], "Handle (UDP|TCP)")
        self.assert_first_node_serves()

    def test_same_http_port(self):
        self.refused("second-http", "http", NODE["http"], "HTTP")
        self.assert_first_node_serves()

    def test_same_dns_port(self):
        self.refused("second-dns", "dns", NODE["dns"], "DNS (UDP|TCP)")
        self.assert_first_node_serves()

    def test_a_port_another_process_holds_with_so_reuseport(self):
        # This process holds a port with SO_REUSEPORT (as an idnode does), over UDP only, then TCP
        # only: a plain bind with SO_REUSEPORT would join it; idnode must refuse instead.
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with self.subTest(kind="udp" if kind == socket.SOCK_DGRAM else "tcp"):
                holder = hold_port_free_for_the_other_kind(kind)
                try:
                    port = holder.getsockname()[1]
                    transport = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                    self.refused("held-" + transport.lower(), "handle", port, "Handle " + transport)
                finally:
                    holder.close()
        self.assert_first_node_serves()


def hold_port_free_for_the_other_kind(kind):
    """A socket of `kind` holding an ephemeral port with SO_REUSEPORT (listening, for TCP), on a
    port the other kind is free on at that moment: otherwise another test's connection that
    happens to use the same number for the other transport (parallel ctest) would make idnode
    fail on that transport instead of the held one."""
    other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
    for _ in range(50):
        holder = socket.socket(socket.AF_INET, kind)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        probe = socket.socket(socket.AF_INET, other)
        try:
            probe.bind(("127.0.0.1", holder.getsockname()[1]))
        except OSError:
            holder.close()
            continue
        finally:
            probe.close()
        if kind == socket.SOCK_STREAM:
            holder.listen(8)
        return holder
    raise AssertionError("no ephemeral port free for both UDP and TCP")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def accept_queue(port):
    """Connections waiting in the accept queues of the listening sockets on 127.0.0.1:`port`
    (/proc/net/tcp: a LISTEN socket's rx_queue is its accept queue)."""
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "0100007F:%04X" % port and fields[3] == "0A":
                total += int(fields[4].split(":")[1], 16)
    return total


ERRORS = 'idnode_accept_errors_total{protocol="handle_tcp"}'
BACKOFFS = 'idnode_accept_backoffs_total{protocol="handle_tcp"}'


class KeptMetrics:
    """/metrics read again and again on one keep-alive HTTP connection, made before descriptors
    run out: while they are out, the node cannot accept another one."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.9", 0))
        self.buffer = b""

    def close(self):
        self.s.close()

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise AssertionError("the node closed the kept /metrics connection")
        self.buffer += chunk

    def read(self):
        self.s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise AssertionError("/metrics answered " + head.decode("latin-1").split("\r\n")[0])
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples


class OutOfDescriptors(unittest.TestCase):
    def test_accept_backs_off_on_emfile(self):
        # Its own node: idle connections are kept for a minute (no idle timeout frees descriptors
        # while the test runs), and so is the /metrics connection between requests.
        node = start_node("emfile", config="handle:\n  tcp_idle_timeout_ms: 60000\n"
                                           "http:\n  request_timeout_ms: 60000\n")
        pid = node["proc"].pid
        self.assertEqual(udp_resolve(node["handle"]), 1)  # in the answer cache from now on
        self.assertEqual(tcp_resolve(node["handle"]), 1)
        kept = KeptMetrics(node["http"])
        clients = []
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        try:
            harness.wait_until(lambda: kept.read()['idnode_open_connections{protocol="handle_tcp"}'] == 0, 10,
                               "the first TCP connection to be closed")
            before = kept.read()
            limit = open_fds(pid) + 6
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
            for _ in range(30):  # 6 or so are accepted, the rest wait in the listen queue
                clients.append(socket.create_connection(("127.0.0.1", node["handle"]), timeout=3))
            # Out of descriptors: all of them used, connections waiting that it cannot accept,
            # and the failures counted.
            harness.wait_until(lambda: open_fds(pid) >= limit and accept_queue(node["handle"]) > 0, 10,
                               "the node to run out of descriptors (%d allowed)" % limit)
            harness.wait_until(lambda: kept.read()[BACKOFFS] >= before[BACKOFFS] + 3, 10,
                               "accept back-offs to be counted")
            queued = accept_queue(node["handle"])
            out = kept.read()
            cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
            # UDP is answered meanwhile (the answer is in the cache: no descriptor needed).
            self.assertEqual(udp_resolve(node["handle"], request_id=901), 1)
            time.sleep(2.0)
            self.assertEqual(udp_resolve(node["handle"], request_id=902), 1)
            cpu = cpu_seconds(pid) - cpu_before
            wall = time.monotonic() - wall_before
            self.assertLess(cpu, 0.5, "%.2f s of CPU in %.2f s out of descriptors: the accept loop spins" % (cpu, wall))
            later = kept.read()
            # Still trying (every second at most), not given up; each wait follows a failure.
            self.assertGreater(later[BACKOFFS], out[BACKOFFS])
            self.assertGreater(later[ERRORS], before[ERRORS])
            self.assertGreaterEqual(later[ERRORS] - before[ERRORS], later[BACKOFFS] - before[BACKOFFS])
            self.assertLess(later[BACKOFFS] - out[BACKOFFS], 100, "backs off %d times in %.1f s" % (
                later[BACKOFFS] - out[BACKOFFS], wall))
            self.assertGreaterEqual(open_fds(pid), limit - 1)
            self.assertGreater(accept_queue(node["handle"]), 0, "the waiting connections were taken (%d)" % queued)
            # Free descriptors: every client goes; what waited is accepted (and found closed).
            for c in clients:
                c.close()
            clients = []
            harness.wait_until(lambda: accept_queue(node["handle"]) == 0 and open_fds(pid) < limit - 2, 15,
                               "the node to drain its listen queue and free its descriptors")
            # New connections are accepted again, still under the lowered limit.
            self.assertEqual([tcp_resolve(node["handle"]) for _ in range(3)], [1, 1, 1])
            self.assertEqual(udp_resolve(node["handle"], request_id=903), 1)
            self.assertEqual(http_status(node["http"]), 200)
            harness.wait_until(lambda: kept.read()['idnode_open_connections{protocol="handle_tcp"}'] == 0, 10,
                               "the node to close every client connection")
        finally:
            for c in clients:
                c.close()
            kept.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        harness.stop(node["proc"])


if __name__ == "__main__":
    IDNODE, IDCTL = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"])
