#!/usr/bin/env python3
"""What a session saves an administrator, in the node's own CPU (issue 12's benchmark).

  session_writes.py IDNODE IDCTL [--ops N] [--rounds R]

Starts idnode (storage.sync_writes: false, so fsync is aside), homes BENCH.1 with an HS_SECKEY
identity, and in each of R paired rounds drives three loads with the same client (this script, one
TCP connection, one request in flight), N requests each, measuring the node's CPU time (utime +
stime from /proc) per request:
  - resolve:   OC_RESOLUTION of a handle (answered from the cache): the unit of comparison;
  - resolve_storage: OC_RESOLUTION of a handle never asked before (each one once: read from
               RocksDB on a storage thread, as a write is decided on one): the same hand-offs as a
               write, without the write;
  - session:   MODIFY_VALUE with HS_MAC in a session authenticated once (DH setup, one challenge);
  - challenge: MODIFY_VALUE without a session, each answering its own 402 (HMAC-SHA256 HS_SECKEY).
Warm-up: N/10 of each before the first round (by count). Prints the median and the spread (min-max)
over the rounds of CPU microseconds per request and the ratios session/resolve and
challenge/session (and session/resolve_storage), as JSON. The node's CPU is what is compared, so the client's speed (Python)
changes only the wall time. The issue's goal: session/resolve <= 1.2.
"""
import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import admin_test as at  # noqa: E402  (the Handle client of the integration tests)
import harness  # noqa: E402
import server_test as st  # noqa: E402

SECRET = b"bench-secret"
HANDLE = "BENCH.1/item"


def node_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("idnode")
    parser.add_argument("idctl")
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="idnode-session-bench-")
    records = os.path.join(work, "records.jsonl")
    with open(records, "w") as f:
        f.write(json.dumps({"handle": "0.NA/BENCH.1", "values": [
            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                "handle": "0.NA/BENCH.1", "index": 300, "permissions": "111111111111"}}},
            {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": SECRET.decode()},
             "permissions": "1100"}]}) + "\n")
        f.write(json.dumps({"handle": HANDLE, "values": [
            {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://bench"}}]}) + "\n")
        # Distinct handles for resolve_storage: one per request of the warm-up and of every round.
        for i in range(args.ops * (args.rounds + 1)):
            f.write(json.dumps({"handle": "BENCH.1/cold%d" % i, "values": [
                {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://bench/%d" % i}}]}) + "\n")
    config = os.path.join(work, "idnode.yaml")
    with open(config, "w") as f:
        f.write("storage:\n  sync_writes: false\nauth:\n  failed_proofs_per_minute: 0\n")
    proc, ports = st.start_node_homing(args.idnode, args.idctl, work, "BENCH.1", records, ["--config", config])
    st.NODE["handle"], st.NODE["http"] = ports["handle"], ports["http"]
    try:
        conn = socket.create_connection(("127.0.0.1", ports["handle"]), timeout=10)

        def ex(msg):
            conn.sendall(msg)
            return st.read_message(conn)

        session, key, _ = at.open_session(identity=b"0.NA/BENCH.1", index=300)
        counter = [0]

        def modify(i, session_id=0):
            return at.message(104, at.values_body(HANDLE, [at.url_value(1, "https://bench/%d" % i)]), 10 + i,
                              session_id=session_id)

        def session_write(i):
            counter[0] += 1
            reply = ex(at.with_mac(modify(i, session), key, counter[0]))
            return st.header(reply)["rc"]

        # Authenticate the session once (its first write answers a challenge).
        counter[0] += 1
        challenge = ex(at.with_mac(modify(0, session), key, counter[0]))
        assert st.header(challenge)["rc"] == 402
        assert st.header(ex(at.answer(challenge, identity=b"0.NA/BENCH.1", secret=SECRET)))["rc"] == 1

        def resolve(i):
            return st.header(ex(st.resolution_request(HANDLE, request_id=i)))["rc"]

        cold = [0]

        def resolve_storage(i):
            cold[0] += 1
            return st.header(ex(st.resolution_request("BENCH.1/cold%d" % cold[0], request_id=i)))["rc"]

        def challenged_write(i):
            challenge = ex(modify(i))
            return st.header(ex(at.answer(challenge, identity=b"0.NA/BENCH.1", secret=SECRET)))["rc"]

        loads = {"resolve": resolve, "resolve_storage": resolve_storage, "session": session_write,
                 "challenge": challenged_write}
        for name, run in loads.items():  # warm-up, by count
            for i in range(max(1, args.ops // 10)):
                assert run(i) == 1, name
        per_op = {name: [] for name in loads}
        for _ in range(args.rounds):
            for name, run in loads.items():
                before = node_cpu_seconds(proc.pid)
                for i in range(args.ops):
                    rc = run(i)
                    if rc != 1:
                        raise SystemExit("%s: rc %d" % (name, rc))
                per_op[name].append((node_cpu_seconds(proc.pid) - before) / args.ops * 1e6)
        conn.close()
        result = {"ops_per_round": args.ops, "rounds": args.rounds}
        for name, values in per_op.items():
            result[name + "_cpu_us"] = {"median": round(statistics.median(values), 2),
                                        "min": round(min(values), 2), "max": round(max(values), 2)}
        ratios_session = [s / r for s, r in zip(per_op["session"], per_op["resolve"])]
        ratios_challenge = [c / s for c, s in zip(per_op["challenge"], per_op["session"])]
        ratios_storage = [s / r for s, r in zip(per_op["session"], per_op["resolve_storage"])]
        result["session_over_resolve_storage"] = {"median": round(statistics.median(ratios_storage), 2),
                                                  "min": round(min(ratios_storage), 2),
                                                  "max": round(max(ratios_storage), 2)}
        result["session_over_resolve"] = {"median": round(statistics.median(ratios_session), 2),
                                          "min": round(min(ratios_session), 2), "max": round(max(ratios_session), 2)}
        result["challenge_over_session"] = {"median": round(statistics.median(ratios_challenge), 2),
                                            "min": round(min(ratios_challenge), 2),
                                            "max": round(max(ratios_challenge), 2)}
        print(json.dumps(result))
    finally:
        harness.stop(proc)


if __name__ == "__main__":
    main()
