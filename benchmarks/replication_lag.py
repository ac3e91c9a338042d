#!/usr/bin/env python3
"""The load generator and prober of the replication comparison (benchmarks/replication_compare.sh):
the same code drives Knot DNS and idnode, and the same DNS prober asks both replicas.

  replication_lag.py wait-answer --dns PORT --name NAME [--timeout S] [--since EPOCH_NS]
      polls the DNS server on 127.0.0.1:PORT every 20 ms until NAME (NAPTR) is answered; prints the
      seconds since EPOCH_NS (taken before the replica was started), else since this command
      started (bootstrap: the replica's last record answerable). With --http PORT (an idnode
      replica), first waits for its /api/replication links to be streaming.

  replication_lag.py lag knot --primary PORT --replica-dns PORT [--rate R] [--seconds S]
  replication_lag.py lag idnode --primary PORT --secret FILE --replica-dns PORT [...]
      offers R writes/s (open loop: write i is due at start + i/R) for S seconds, each a new
      OID's record: to Knot as a DNS UPDATE adding a NAPTR (UDP, one in flight per due time), to
      idnode as a Handle CREATE_HANDLE with a URL (TCP, the HS_SECKEY challenge answered, over
      --connections connections). Every --sample'th write is probed: from its acknowledgement, the
      replica is asked for the OID's NAPTR (poll interval 1 ms, growing to a tenth of the time
      waited so far) until it answers; the lag is the time from the acknowledgement to that answer.
      Prints one JSON line: writes acknowledged, the achieved rate, the lag p50/p90/p99/max in ms,
      probes unanswered.
      idnode with --background-rate R --idbench PATH: the load comes from idbench instead (C++,
      --writes 1.0 over TCP at R/s: Python's challenge-response tops out near 2,000 writes/s on
      one core), and this tool's own writes, at --rate, are the probes (--sample 1); the JSON then
      adds the background's achieved rate.
"""
import argparse
import asyncio
import json
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import hierarchy_test as ht  # noqa: E402  (the Handle client of the integration tests)

APEX = "oid-res.org"
WRITE_ARC = "1.2.156.9999"  # written OIDs: 1.2.156.9999.<run>.<i>


def dns_name(oid):
    labels = list(reversed(oid.split("."))) + APEX.split(".")
    return b"".join(bytes([len(p)]) + p.encode() for p in labels) + b"\0"


def dns_query(qid, oid, qtype=35):
    return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + dns_name(oid) + struct.pack(">HH", qtype, 1)


def char_string(s):
    b = s.encode()
    return bytes([len(b)]) + b


def dns_update(qid, oid, url):
    """RFC 2136: zone oid-res.org SOA IN; one RR to add: the OID's NAPTR (as compare.sh's zone)."""
    rdata = struct.pack(">HH", 100, 10) + char_string("U") + char_string("E2U+http") + \
        char_string("!^.*$!%s!" % url) + b"\0"
    zone = b"".join(bytes([len(p)]) + p.encode() for p in APEX.split(".")) + b"\0"
    return (struct.pack(">HHHHHH", qid, 0x2800, 1, 0, 1, 0) + zone + struct.pack(">HH", 6, 1) +
            dns_name(oid) + struct.pack(">HHIH", 35, 1, 60, len(rdata)) + rdata)


class Dns(asyncio.DatagramProtocol):
    """One UDP socket: requests matched to answers by id."""

    def __init__(self):
        self.waiting = {}
        self.next_id = random.randrange(65536)

    def datagram_received(self, data, addr):
        if len(data) < 12:
            return
        future = self.waiting.pop(struct.unpack(">H", data[:2])[0], None)
        if future is not None and not future.done():
            future.set_result(data)

    async def ask(self, transport, address, make, timeout):
        for _ in range(65536):
            self.next_id = (self.next_id + 1) & 0xFFFF
            if self.next_id not in self.waiting:
                break
        qid = self.next_id
        future = asyncio.get_running_loop().create_future()
        self.waiting[qid] = future
        transport.sendto(make(qid), address)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self.waiting.pop(qid, None)
            return None


def answered(reply):
    if reply is None:
        return False
    flags, _, ancount = struct.unpack(">HHH", reply[2:8])
    return flags & 0xF == 0 and ancount > 0


async def udp_endpoint(port):
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Dns, remote_addr=("127.0.0.1", port))


async def wait_answer(args):
    # From --since (time.time_ns() of the replica's launch, taken before it), else from now.
    start = time.monotonic() - ((time.time_ns() - args.since) / 1e9 if args.since else 0)
    if args.http:
        # First the replica's own word that every shard's snapshot is in (its link streaming).
        import urllib.request
        while True:
            if time.monotonic() - start > args.timeout:
                print("timeout", file=sys.stderr)
                return 1
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/replication" % args.http, timeout=2) as r:
                    links = json.load(r)["links"]
                if links and all(link["state"] == "streaming" for link in links):
                    break
            except OSError:
                pass
            await asyncio.sleep(0.02)
    transport, dns = await udp_endpoint(args.dns)
    while time.monotonic() - start < args.timeout:
        if answered(await dns.ask(transport, None, lambda q: dns_query(q, args.name), 0.5)):
            print("%.3f" % (time.monotonic() - start))
            return 0
        await asyncio.sleep(0.02)
    print("timeout", file=sys.stderr)
    return 1


async def read_message(reader):
    head = await reader.readexactly(20)
    return head + await reader.readexactly(struct.unpack(">I", head[16:20])[0])


async def lag(args):
    loop = asyncio.get_running_loop()
    run = random.randrange(1 << 30)
    total = int(args.rate * args.seconds)
    lags, unanswered, acked = [], [0], [0]
    probe_transport, probe_dns = await udp_endpoint(args.replica_dns)
    probes = []

    async def probe(oid, acked_at):
        waited = 0.0
        while waited < 30:
            if answered(await probe_dns.ask(probe_transport, None, lambda q: dns_query(q, oid), 0.2)):
                lags.append((time.monotonic() - acked_at) * 1000)
                return
            waited = time.monotonic() - acked_at
            await asyncio.sleep(max(0.001, waited / 10))
        unanswered[0] += 1

    def on_ack(i, oid):
        acked[0] += 1
        if i % args.sample == 0:
            probes.append(asyncio.ensure_future(probe(oid, time.monotonic())))

    background = None
    if getattr(args, "background_rate", 0) and args.server == "idnode":
        background = await asyncio.create_subprocess_exec(
            args.idbench, "run", "--protocol", "tcp", "--server", "127.0.0.1:%d" % args.primary,
            "--pattern", "OID/1.2.156.3001.{0..999}", "--writes", "1.0", "--write-prefix", "OID",
            "--identity", args.identity, "--secret-file", args.secret, "--rate", str(args.background_rate),
            "--seconds", str(args.seconds + 0.2), "--concurrency", "64", "--connections", "16",
            "--json", args.background_json, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    start = time.monotonic() + 0.2
    counter = iter(range(total))

    # Writes are offered for --seconds: a server that acknowledges fewer than due in that time
    # is not given longer (its achieved rate is reported).
    deadline = start + args.seconds

    async def due(i):
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return time.monotonic() < deadline

    if args.server == "knot":
        transport, dns = await udp_endpoint(args.primary)

        async def one(i):
            if not await due(i):
                return
            oid = "%s.%d.%d" % (WRITE_ARC, run, i)
            reply = await dns.ask(transport, None,
                                  lambda q: dns_update(q, oid, "https://example.cn/w/%d" % i), 10)
            if reply is not None and struct.unpack(">H", reply[2:4])[0] & 0xF == 0:
                on_ack(i, oid)

        async def worker():
            for i in counter:
                if time.monotonic() >= deadline:
                    break
                await one(i)
        await asyncio.gather(*(worker() for _ in range(args.connections)))
    else:
        secret = open(args.secret, "rb").read().strip()
        identity = (args.identity.split(":", 1)[1], int(args.identity.split(":", 1)[0]), secret)

        async def worker():
            reader, writer = await asyncio.open_connection("127.0.0.1", args.primary)
            try:
                for i in counter:
                    if not await due(i):
                        break
                    oid = "%s.%d.%d" % (WRITE_ARC, run, i)
                    body = ht.values_body("OID/" + oid, [ht.encode_value(1, "URL", b"https://example.cn/w/%d" % i)])
                    writer.write(ht.message(ht.OC_CREATE, body, ht.next_request_id(), flags=0))
                    challenge = ht.decode_message(await read_message(reader))
                    if challenge["rc"] == 402:
                        writer.write(ht.challenge_answer(challenge, identity, ht.next_request_id()))
                        answer = ht.decode_message(await read_message(reader))
                    else:
                        answer = challenge
                    if answer["rc"] == 1:
                        on_ack(i, oid)
            finally:
                writer.close()
        await asyncio.gather(*(worker() for _ in range(args.connections)))
    elapsed = max(time.monotonic(), deadline) - start
    await asyncio.gather(*probes)
    background_rate = None
    if background is not None:
        await background.wait()
        try:
            background_rate = round(json.load(open(args.background_json))["requests_per_second"])
        except (OSError, ValueError, KeyError):
            background_rate = -1
    lags.sort()

    def pct(p):
        return round(lags[min(len(lags) - 1, int(p / 100 * len(lags)))], 2) if lags else None
    print(json.dumps({"server": args.server, "writes": acked[0], "due": total, "rate": round(acked[0] / elapsed),
                      "probes": len(lags), "unanswered": unanswered[0], "p50_ms": pct(50), "p90_ms": pct(90),
                      "p99_ms": pct(99), "max_ms": round(lags[-1], 2) if lags else None,
                      "background_rate": background_rate}))
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait-answer")
    w.add_argument("--dns", type=int, required=True)
    w.add_argument("--name", required=True)
    w.add_argument("--timeout", type=float, default=900)
    w.add_argument("--since", type=int, default=0)
    w.add_argument("--http", type=int, default=0, help="first wait for /api/replication to say streaming")
    lg = sub.add_parser("lag")
    lg.add_argument("server", choices=("knot", "idnode"))
    lg.add_argument("--primary", type=int, required=True)
    lg.add_argument("--replica-dns", type=int, required=True)
    lg.add_argument("--rate", type=float, default=5000)
    lg.add_argument("--seconds", type=float, default=10)
    lg.add_argument("--sample", type=int, default=20)
    lg.add_argument("--connections", type=int, default=16)
    lg.add_argument("--secret")
    lg.add_argument("--identity", default="300:OID/admin")
    lg.add_argument("--background-rate", type=float, default=0)
    lg.add_argument("--idbench")
    lg.add_argument("--background-json", default="/tmp/replication_lag_background.json")
    args = parser.parse_args()
    return asyncio.run(wait_answer(args) if args.command == "wait-answer" else lag(args))


if __name__ == "__main__":
    sys.exit(main())
