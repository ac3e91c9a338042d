#!/usr/bin/env python3
"""A multi-server site (issue 13; HANDLE.md §1.7): three idnode processes form one site.

  site_test.py IDNODE IDCTL IDBENCH [--full]

Each server is configured with the same site.servers (three entries on 127.0.0.1, fixed ports
chosen free here) and its own site.this_server, and shares one server key. The identifiers of
SITE.1 (30,000; 300,000 with --full) and the prefix handle 0.NA/SITE.1 (an HS_SECKEY admin) are
imported into one node's data (6 shards), which `idctl site split` turns into the three servers'
(whole shards copied); each server's expected share comes from this test's own implementation of
the site hash (MD5 of the upper-cased handle, last 4 bytes, abs, modulo 3). Then:
  - the split gave each server its share, and `idctl site check` agrees (and fails when the
    servers are named in the wrong order);
  - GET_SITE_INFO from any server gives the same HS_SITE: three servers, the whole-handle hash;
  - a client that knows only that record resolves every identifier, each from the server the
    hash picks, over UDP; a server asked for another server's identifier answers RC 301
    "Request was hashed incorrectly", as the reference server does;
  - admin writes hashed to the wrong server are refused the same way, at the right one applied;
  - the servers' digests of SITE.1 add up to the digest of the unsplit data (every identifier
    imported into one data directory).
Traffic goes to 127.0.0.1 only; every wait is bounded; every process started is stopped and a
crash or an unclean exit fails the run (harness.py).
"""
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import harness
import server_test as st
import hierarchy_test as ht
import admin_test as at

IDNODE = IDCTL = IDBENCH = None
FULL = False
SERVERS = 3
PREFIX = "SITE.1"
SECRET = b"site-secret"
WORK = None
SHARDS = 6
NODES = []  # {"proc", "handle", "http", "data"}
SPLIT = {}
SHARES = [[] for _ in range(SERVERS)]
ALL = []


def site_index(handle, servers=SERVERS):
    upper = handle.encode().translate(bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    value = struct.unpack(">i", hashlib.md5(upper).digest()[-4:])[0]
    if value != -2 ** 31:
        value = abs(value)
    index = int(abs(value) % servers) * (-1 if value < 0 else 1)
    return index + servers if index < 0 else index


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (the Handle protocol listens on both)."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


def request(opcode, body, request_id):
    hdr = struct.pack(">IIIHBBII", opcode, 0, 0x19000000, 0xFFFF, 0, 0, int(time.time()) + 43200, len(body))
    message = hdr + body + struct.pack(">I", 0)
    return struct.pack(">BBBBIIII", 2, 11, 2, 11, 0, request_id, 0, len(message)) + message


def record(handle, url):
    # A fixed timestamp: the digests compare values as stored, timestamps included.
    return {"handle": handle, "values": [{"index": 1, "type": "URL", "timestamp": "2026-12-01T00:00:00Z",
                                          "data": {"format": "string", "value": url}}]}


def setUpModule():
    harness.set_up_or_tear_down(start_site, tearDownModule)


def start_site():
    global WORK
    WORK = tempfile.mkdtemp(prefix="idnode-site-")
    count = 300000 if FULL else 30000
    for i in range(count):
        handle = "%s/ID%07d" % (PREFIX, i)
        ALL.append(handle)
        SHARES[site_index(handle)].append(handle)
    admin = {"handle": "0.NA/" + PREFIX, "values": [
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
            "handle": "0.NA/" + PREFIX, "index": 300, "permissions": "111111111111"}}},
        {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": SECRET.decode()},
         "permissions": "1100"}]}
    # One server key for the whole site (the HS_SITE record publishes it for each server).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = os.path.join(WORK, "site-key.pem")
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    # One node's data, split into the three servers' by `idctl site split` (whole shards: 6 shards,
    # two per server), then checked by `idctl site check`.
    unsplit = os.path.join(WORK, "unsplit")
    records = os.path.join(WORK, "unsplit.jsonl")
    with open(records, "w") as f:
        f.write(json.dumps(admin) + "\n")
        for handle in ALL:
            f.write(json.dumps(record(handle, "https://example.org/" + handle)) + "\n")
    subprocess.run([IDCTL, "prefix", "home", "--data-dir", unsplit, "--shards", str(SHARDS), PREFIX], check=True,
                   capture_output=True, timeout=60)
    subprocess.run([IDCTL, "import", "--data-dir", unsplit, "--shards", str(SHARDS), records], check=True,
                   capture_output=True, timeout=600)
    split = subprocess.run([IDCTL, "site", "split", "--data-dir", unsplit, "--shards", str(SHARDS), "--servers",
                            str(SERVERS), "--out", os.path.join(WORK, "site")], capture_output=True, text=True,
                           timeout=600)
    if split.returncode != 0:
        raise RuntimeError("idctl site split: " + split.stdout + split.stderr)
    SPLIT["output"] = split.stdout
    ports = [(free_port(), free_port()) for _ in range(SERVERS)]
    servers = ['"127.0.0.1:%d http=%d"' % p for p in ports]
    for k in range(SERVERS):
        data = os.path.join(WORK, "site", "server%d" % k)
        config = os.path.join(WORK, "server%d.yaml" % k)
        with open(config, "w") as f:
            f.write("node:\n  shards: %d\n" % SHARDS)
            f.write("site:\n  servers: [%s]\n  this_server: %d\n" % (", ".join(servers), k))
            f.write("handle:\n  port: %d\nhttp:\n  port: %d\n" % ports[k])
            f.write("auth:\n  server_key_file: %s\n  failed_proofs_per_minute: 0\n" % key_file)
            f.write("dns:\n  port: 0\n")
        proc = harness.start([IDNODE, "--data-dir", data, "--config", config, "--no-demo", "--workers", "1"],
                             "idnode server%d" % k, os.path.join(WORK, "server%d.log" % k))
        NODES.append({"proc": proc, "handle": ports[k][0], "http": ports[k][1], "data": data})
    for node in NODES:
        line = harness.ready_line(node["proc"], "idnode ready:", 60)
        if "handle=127.0.0.1:%d" % node["handle"] not in line:
            raise RuntimeError("a server of the site did not start on its port: " + line)


def tearDownModule():
    try:
        harness.stop_all()
    finally:
        if WORK:
            shutil.rmtree(WORK, ignore_errors=True)


def resolve_many(port, handles, window=256, deadline_seconds=600):
    """{handle: decoded answer} for `handles` asked over UDP at `port`, `window` in flight at a
    time, each one asked again (up to 5 times) when its answer does not come."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    answers = {}
    pending = list(enumerate(handles))
    deadline = time.monotonic() + deadline_seconds
    try:
        for _attempt in range(5):
            missing = []
            for start in range(0, len(pending), window):
                batch = dict(pending[start:start + window])
                for rid, handle in batch.items():
                    s.sendto(st.resolution_request(handle, request_id=rid + 1), ("127.0.0.1", port))
                waiting = set(batch)
                while waiting and time.monotonic() < deadline:
                    try:
                        data = s.recv(65536)
                    except socket.timeout:
                        break
                    rid = struct.unpack(">I", data[8:12])[0] - 1
                    if rid in waiting:
                        waiting.discard(rid)
                        answers[batch[rid]] = ht.decode_message(data)
                missing += [(rid, batch[rid]) for rid in waiting]
            pending = missing
            if not pending:
                break
    finally:
        s.close()
    if pending:
        raise AssertionError("%d of %d identifiers got no answer from port %d" % (len(pending), len(handles), port))
    return answers


class Site(unittest.TestCase):
    def site_record(self, port):
        # Over TCP: three servers' keys make a record larger than one datagram.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request(2, struct.pack(">I", 1) + b"/", 9))
            reply = st.read_message(conn)
        decoded = ht.decode_message(reply)
        self.assertEqual((decoded["opcode"], decoded["rc"]), (2, 1))
        return decoded["site"]

    def test_every_server_publishes_the_same_site_of_three(self):
        records = [self.site_record(node["handle"]) for node in NODES]
        self.assertEqual(records[0], records[1])
        self.assertEqual(records[0], records[2])
        site = ht.decode_site(records[0])
        self.assertEqual(site["hash_option"], 2)  # the whole handle
        self.assertEqual(len(site["servers"]), SERVERS)
        for k, server in enumerate(site["servers"]):
            self.assertEqual(server["address"][12:], socket.inet_aton("127.0.0.1"))
            ports = {(i["protocol"], i["port"]) for i in server["interfaces"]}
            self.assertIn((0, NODES[k]["handle"]), ports)  # UDP
            self.assertIn((1, NODES[k]["handle"]), ports)  # TCP
            self.assertIn((2, NODES[k]["http"]), ports)    # HTTP
        # /api/site says the same.
        with urllib.request.urlopen("http://127.0.0.1:%d/api/site" % NODES[1]["http"], timeout=10) as r:
            body = json.loads(r.read())
        self.assertEqual(len(body["site"]["servers"]), SERVERS)

    def test_a_client_knowing_only_the_site_record_resolves_every_identifier(self):
        site = ht.decode_site(self.site_record(NODES[2]["handle"]))
        routed = [[] for _ in range(SERVERS)]
        for handle in ALL:
            index = ht.site_hash_index(handle, site["hash_option"], len(site["servers"]))
            server = site["servers"][abs(index)]
            port = [i["port"] for i in server["interfaces"] if i["protocol"] == 0][0]
            routed[[n["handle"] for n in NODES].index(port)].append(handle)
        self.assertEqual([len(r) for r in routed], [len(s) for s in SHARES])
        for k in range(SERVERS):
            self.assertGreater(len(routed[k]), len(ALL) // SERVERS // 2)  # the hash spreads them
            answers = resolve_many(NODES[k]["handle"], routed[k])
            bad = [h for h, a in answers.items()
                   if a["rc"] != 1 or a["values"][0]["data"] != ("https://example.org/" + h).encode()]
            self.assertEqual(bad, [], "server %d" % k)

    def test_another_servers_identifiers_are_answered_301(self):
        for k in range(SERVERS):
            others = [h for j in range(SERVERS) if j != k for h in SHARES[j][:50]]
            answers = resolve_many(NODES[k]["handle"], others)
            self.assertEqual({a["rc"] for a in answers.values()}, {301})
            self.assertEqual({a["message"] for a in answers.values()}, {"Request was hashed incorrectly"})
        # The prefix handle is every server's, and index 1 of it is the site's record (over TCP:
        # three servers' keys make it larger than a datagram).
        site = None
        for node in NODES:
            with socket.create_connection(("127.0.0.1", node["handle"]), timeout=10) as conn:
                conn.sendall(st.resolution_request("0.NA/" + PREFIX, request_id=5))
                answer = ht.decode_message(st.read_message(conn))
            self.assertEqual(answer["rc"], 1)
            hs_site = [v["data"] for v in answer["values"] if v["type"] == "HS_SITE" and v["index"] == 1]
            self.assertEqual(len(hs_site), 1)
            self.assertEqual(len(ht.decode_site(hs_site[0])["servers"]), SERVERS)
            site = site or hs_site[0]
            self.assertEqual(hs_site[0], site)

    def test_admin_writes_go_to_the_server_the_hash_picks(self):
        def admin(port, handle, request_id):
            st.NODE["handle"] = port
            msg = at.message(100, at.values_body(handle, [at.url_value(1, "https://new/" + handle)]), request_id)
            return st.header(at.tcp_admin(msg, identity=("0.NA/" + PREFIX).encode(), secret=SECRET))["rc"]
        for i in range(12):
            handle = "%s/new%d" % (PREFIX, i)
            right = site_index(handle)
            wrong = (right + 1) % SERVERS
            st.NODE["handle"] = NODES[wrong]["handle"]
            refused = st.tcp_exchange([at.message(100, at.values_body(handle, [at.url_value(1, "https://x")]),
                                                  700 + i)])[0]
            self.assertEqual(st.header(refused)["rc"], 301)
            self.assertIn(b"Request was hashed incorrectly", refused)
            self.assertEqual(admin(NODES[right]["handle"], handle, 800 + i), 1)
            answers = resolve_many(NODES[right]["handle"], [handle])
            self.assertEqual(answers[handle]["rc"], 1)
        # idctl admin routes by the site record, as the reference's clients do: asked at server 0,
        # each write lands on the server its hash picks.
        secret_file = os.path.join(WORK, "secret")
        with open(secret_file, "wb") as f:
            f.write(SECRET + b"\n")
        for i in range(6):
            handle = "%s/idctl%d" % (PREFIX, i)
            done = subprocess.run([IDCTL, "admin", "create", handle, "--value", "1:URL:https://idctl/%d" % i,
                                   "--identity", "300:0.NA/" + PREFIX, "--secret-file", secret_file,
                                   "--server", "tcp://127.0.0.1:%d" % NODES[0]["handle"]],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            right = site_index(handle)
            self.assertEqual(resolve_many(NODES[right]["handle"], [handle])[handle]["rc"], 1)

    def test_idctl_resolve_routes_by_the_site_record(self):
        # Asked at server 0, each identifier is resolved at the server its hash picks (after server
        # 0's 301 for the others' identifiers); --no-route stops at the 301.
        for k in range(SERVERS):
            handle = SHARES[k][0]
            done = subprocess.run([IDCTL, "resolve", handle, "--server", "udp://127.0.0.1:%d" % NODES[0]["handle"]],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            routed = "server %d of %d (127.0.0.1:%d) by the site's hash" % (k, SERVERS, NODES[k]["handle"])
            if k == 0:
                self.assertNotIn("by the site's hash", done.stdout)  # its own: answered there
            else:
                self.assertIn(routed, done.stdout)
            self.assertIn("https://example.org/" + handle, done.stdout)
        other = SHARES[1][0]
        direct = subprocess.run([IDCTL, "resolve", other, "--no-route", "--server",
                                 "tcp://127.0.0.1:%d" % NODES[0]["handle"]], capture_output=True, text=True, timeout=60)
        self.assertEqual(direct.returncode, 3, direct.stdout + direct.stderr)
        self.assertIn("(301)", direct.stdout)

    def test_idbench_drives_the_site_by_its_record(self):
        # Every key asked once (sequential, --requests = the number of keys), from the site record
        # found at server 2: each server answers exactly its share, and none is answered 301.
        keys = os.path.join(WORK, "keys.txt")
        with open(keys, "w") as f:
            f.write("\n".join(ALL) + "\n")
        for protocol in ("udp", "tcp"):
            report = os.path.join(WORK, "idbench-%s.json" % protocol)
            done = subprocess.run([IDBENCH, "run", "--protocol", protocol, "--site", "127.0.0.1:%d" % NODES[2]["handle"],
                                   "--keys", keys, "--order", "sequential", "--requests", str(len(ALL)),
                                   "--seconds", "300", "--concurrency", "64", "--connections", "2",
                                   "--timeout", "10", "--json", report],
                                  capture_output=True, text=True, timeout=400)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            with open(report) as f:
                result = json.load(f)
            self.assertEqual(result["codes"], {"1": len(ALL)}, protocol)
            self.assertEqual([s["server"] for s in result["servers"]],
                             ["127.0.0.1:%d" % n["handle"] for n in NODES])
            self.assertEqual([s["answered"] for s in result["servers"]], [len(share) for share in SHARES], protocol)
            for k in range(SERVERS):
                self.assertIn("server %d 127.0.0.1:%d: requests/s" % (k, NODES[k]["handle"]), done.stdout)
        # No site record to be had (nothing listens there): an error, not a run against nothing.
        refused = subprocess.run([IDBENCH, "run", "--protocol", "udp", "--site", "127.0.0.2:%d" % NODES[0]["handle"],
                                  "--keys", keys, "--requests", "10"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("--site", refused.stderr)

    def test_a_share_each_the_digests_add_up_to_the_unsplit_one(self):
        # Named to run before the admin writes (unittest's alphabetical order), which add records.
        unsplit = os.path.join(WORK, "unsplit")
        out = subprocess.run([IDCTL, "digest", "--data-dir", unsplit, "--shards", str(SHARDS), "--prefix", PREFIX],
                             check=True,
                             capture_output=True, text=True, timeout=300).stdout.split()
        expected_hex, expected_count = out[0], int(out[1])
        lanes = [0, 0, 0, 0]
        count = 0
        for node in NODES:
            body = harness.wait_until(lambda: self.digest(node["http"]), timeout=120, what="a digest")
            digest = bytes.fromhex(body["digest"])
            for lane in range(4):
                lanes[lane] = (lanes[lane] + int.from_bytes(digest[lane * 8:lane * 8 + 8], "big")) % 2 ** 64
            count += body["records"]
        self.assertEqual(count, expected_count)
        self.assertEqual(b"".join(l.to_bytes(8, "big") for l in lanes).hex(), expected_hex)

    def test_split_gave_each_server_its_share_and_check_says_so(self):
        for k in range(SERVERS):
            self.assertIn("server%d: %d identifiers" % (k, len(SHARES[k])), SPLIT["output"])
        # The split's output is checked by idctl itself on the data of the running servers' copies:
        # site check needs stopped data, so it reads a second split of the same data.
        again = os.path.join(WORK, "site-again")
        subprocess.run([IDCTL, "site", "split", "--data-dir", os.path.join(WORK, "unsplit"), "--shards", str(SHARDS),
                        "--servers", str(SERVERS), "--out", again], check=True, capture_output=True, timeout=600)
        dirs = [os.path.join(again, "server%d" % k) for k in range(SERVERS)]
        check = subprocess.run([IDCTL, "site", "check", "--shards", str(SHARDS), *dirs, "--against",
                                os.path.join(WORK, "unsplit")], capture_output=True, text=True, timeout=600)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn(": the same", check.stdout)
        for k in range(SERVERS):
            self.assertIn("%d identifiers, 0 another server's" % len(SHARES[k]), check.stdout)
        # Checked the other way round (servers in the wrong order), it fails.
        wrong = subprocess.run([IDCTL, "site", "check", "--shards", str(SHARDS), dirs[1], dirs[0], dirs[2]],
                               capture_output=True, text=True, timeout=600)
        self.assertEqual(wrong.returncode, 1, wrong.stdout + wrong.stderr)
        # A node whose shards are not a multiple of the servers is refused, with the reason.
        refused = subprocess.run([IDCTL, "site", "split", "--data-dir", os.path.join(WORK, "unsplit"), "--shards",
                                  str(SHARDS), "--servers", "4", "--out", os.path.join(WORK, "site-4")],
                                 capture_output=True, text=True, timeout=60)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("not a multiple", refused.stderr)

    def test_a_servers_data_is_not_started_as_another_server(self):
        # server0's data with server1's configuration: refused before anything is opened.
        wrong = subprocess.run([IDNODE, "--data-dir", NODES[0]["data"], "--config", os.path.join(WORK, "server1.yaml"),
                                "--no-demo"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("holds server 0 of a site of 3 servers", wrong.stderr + wrong.stdout)

    def test_prefix_handles_are_not_changed_on_one_server_only(self):
        st.NODE["handle"] = NODES[0]["handle"]
        msg = at.message(104, at.values_body("0.NA/" + PREFIX, [at.url_value(7, "https://one-server-only")]), 901)
        reply = st.tcp_exchange([msg])[0]  # refused before any challenge
        self.assertEqual(st.header(reply)["rc"], 5)  # RC_OPERATION_NOT_SUPPORTED
        self.assertIn(b"changed on every server", reply)

    def digest(self, port):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/api/digest?prefix=%s" % (port, PREFIX), timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 503:
                return None
            raise

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--full"]
    FULL = "--full" in sys.argv
    IDNODE, IDCTL, IDBENCH = args[0], args[1], args[2]
    unittest.main(argv=[sys.argv[0], "-v"] + args[3:])
