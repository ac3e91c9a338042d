#!/usr/bin/env bash
# The peer comparison (one command): idnode next to the servers people would otherwise pick, on
# the same machine, in one run, with the same N identifiers (default 1,000,000). Servers are pinned
# to core 0 and load generators to core 1; peers come from Debian packages (installed here).
#   1. DNS and Handle/UDP against Knot DNS, every pair driven by the same generator with the same
#      settings (idbench: one socket, 64 in flight; Knot and idnode's DNS front end asked for the same
#      OIDs as ORS names, idnode's Handle/UDP for the same identifiers), every cache warmed by count
#      (each key asked once) before the measurements, and three paired rounds (each server measured
#      once a round, the order rotating): the median ratio and its range. CPU per answer depends on
#      how full each receive batch is, so a ratio between two load generators compares the
#      generators as much as the servers. dnsperf against Knot and idnode's DNS stays as a second
#      view.
#   2. Handle/UDP of this build beside another revision's (--baseline BUILD_DIR: the same data, the
#      same rounds), and with --prefixes N that many delegated prefixes in the table.
#   3. HTTP: wrk against idnode's JSON API and nginx serving the same JSON documents as files
#      (benchmarks/http_ab.sh measures the same for this build and another revision, paired).
#   4. Storage: registry cold reads against raw RocksDB (registry_bench).
#   5. Replication against a Knot primary and secondary (benchmarks/replication_compare.sh: AXFR
#      bootstrap time, NOTIFY + IXFR lag under DNS UPDATEs), appended to RESULTS.md.
#   Also: RSS with everything loaded and cached (idnode vs Knot), p99 at 80% of peak (open loop),
#   and idbench's own ceiling against a trivial responder.
# Prints one table and writes benchmarks/RESULTS.md.
#   benchmarks/compare.sh [--records N] [--seconds S] [--prefixes N] [--baseline BUILD_DIR]
compare_args="$*"
source "$(dirname "$0")/common.sh"
need_packages knotd=knot kdig=knot-dnsutils dnsperf=dnsperf nginx=nginx-light wrk=wrk
$sudo systemctl stop knot nginx 2>/dev/null || true
need_build src/cmd/idnode src/cmd/idctl src/cmd/idbench benchmarks/registry_bench benchmarks/stall_probe
rss_mb() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status"; }
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

echo "== data: $records identifiers"
# The same content for every server: a 40-byte URL and a 45-byte description per identifier (plus
# an HS_ADMIN for idnode), so Handle answers and DNS answers carry the same data.
python3 tests/integration/gen_records.py "$records" "$work/records.jsonl"
python3 -c "
import json, sys
with open('$work/records.jsonl') as f, open('$work/keys.txt', 'w') as k:
    for line in f:
        k.write(json.loads(line)['handle'] + '\n')
"
"$build/src/cmd/idctl" import --data-dir "$work/data" "$work/records.jsonl" 2>&1 | tail -1
# The identity that idbench's write mix authenticates as: 300:0.NA/88.100.1, with an HS_SECKEY.
echo "bench-secret" >"$work/secret"
cat >"$work/identity.jsonl" <<'JSON'
{"handle":"0.NA/88.100.1","values":[{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/88.100.1","index":300,"permissions":"111111111111"}}},{"index":300,"type":"HS_SECKEY","data":{"format":"string","value":"bench-secret"},"permissions":"1100"}]}
JSON
"$build/src/cmd/idctl" import --data-dir "$work/data" "$work/identity.jsonl" >/dev/null 2>&1

# ---- 1. the servers of the paired rounds ---------------------------------------------------------
echo "== Knot DNS: zone of $records OIDs (1.2.156.3001.<n>: a NAPTR with the URL, a TXT with the description)"
mkdir -p "$work/knot"
python3 - "$records" "$work/knot/oid-res.org.zone" "$work/dns-queries.txt" "$work/records.jsonl" "$work/oid-keys.txt" <<'PY'
import json, random, sys
n, zone, queries, records, oid_keys = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
with open(zone, "w") as z, open(records) as r, open(oid_keys, "w") as k:
    z.write("$ORIGIN oid-res.org.\n$TTL 86400\n@ SOA ns.oid-res.org. admin.oid-res.org. 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n")
    for i, line in enumerate(r):
        values = json.loads(line)["values"]
        url, desc = values[0]["data"]["value"], values[1]["data"]["value"]
        name = "%d.3001.156.2.1" % i
        z.write('%s NAPTR 100 10 "U" "E2U+http" "!^.*$!%s!" .\n' % (name, url))
        z.write('%s TXT "%s"\n' % (name, desc))
        k.write("1.2.156.3001.%d\n" % i)
rng = random.Random(7)
with open(queries, "w") as q:
    for i in rng.sample(range(n), min(n, 100000)):
        q.write("%d.3001.156.2.1.oid-res.org NAPTR\n" % i)
PY
knot_port=53053
cat >"$work/knot/knot.conf" <<CONF
server:
  listen: 127.0.0.1@$knot_port
  rundir: $work/knot
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: $work/knot/db
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: $work/knot
    file: "%s.zone"
    semantic-checks: off
    zonefile-load: whole
    journal-content: none
zone:
  - domain: oid-res.org
CONF
taskset -c 0 knotd -c "$work/knot/knot.conf" 2>"$work/knot/knot.log" &
knot_pid=$!
pids+=($knot_pid)
for _ in $(seq 600); do
  kdig @127.0.0.1 -p $knot_port +short 1.3001.156.2.1.oid-res.org TXT 2>/dev/null | grep -q part && break
  sleep 0.5
done

echo "== idnode DNS: the same $records OIDs"
python3 - "$work/records.jsonl" "$work/oids.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as r, open(sys.argv[2], "w") as o:
    for i, line in enumerate(r):
        values = json.loads(line)["values"][:2]  # the URL and the description, as in the zone
        o.write(json.dumps({"handle": "OID/1.2.156.3001.%d" % i, "values": values}) + "\n")
PY
"$build/src/cmd/idctl" import --data-dir "$work/data-dns" "$work/oids.jsonl" 2>&1 | tail -1
cat >"$work/idnode-dns.yaml" <<CONF
handle: {port: 0, workers: 1}
http: {port: 0}
dns: {port: 0, workers: 1}
cache: {capacity_bytes: 2GiB}
node: {demo: false, home: [OID]}
CONF
taskset -c 0 "$build/src/cmd/idnode" --config "$work/idnode-dns.yaml" --data-dir "$work/data-dns" >"$work/idnode-dns.out" 2>"$work/idnode-dns.log" &
idnode_dns_pid=$!
pids+=($idnode_dns_pid)
for _ in $(seq 300); do grep -q "idnode ready" "$work/idnode-dns.out" && break; sleep 0.1; done
dp=$(grep -o 'dns=127.0.0.1:[0-9]*' "$work/idnode-dns.out" | cut -d: -f2)

# Delegated prefixes in the table (--prefixes N): 0.NA/<prefix> records with an HS_SITE each, as a
# top-level node holds them for its secondary nodes' enterprise prefixes.
if ((prefixes > 0)); then
  python3 - "$prefixes" "$work/prefixes.jsonl" <<'PY'
import base64, json, struct, sys
n, path = int(sys.argv[1]), sys.argv[2]
site = (struct.pack(">HBBHBB", 1, 2, 11, 1, 0x80, 2) + struct.pack(">I", 0) + struct.pack(">I", 0) +
        struct.pack(">I", 1) + struct.pack(">i", 1) + bytes(12) + bytes([127, 0, 0, 2]) + struct.pack(">I", 0) +
        struct.pack(">I", 1) + bytes([3, 1]) + struct.pack(">I", 2641))
value = base64.b64encode(site).decode()
with open(path, "w") as f:
    for i in range(n):
        prefix = "86.%d.%d" % (100 + i // 1000, 10000 + i % 1000)
        f.write(json.dumps({"handle": "0.NA/" + prefix, "values": [
            {"index": 1, "type": "HS_SITE", "data": {"format": "base64", "value": value}}]}) + "\n")
PY
  "$build/src/cmd/idctl" import --data-dir "$work/data" "$work/prefixes.jsonl" 2>&1 | tail -1
fi
cat >"$work/idnode.yaml" <<CONF
handle: {port: 0, workers: 1}
http: {port: 0}
dns: {port: 0}
cache: {capacity_bytes: 2GiB}
node: {demo: false, home: [88.100.0, 88.100.1, 88.100.2, 88.100.3, 88.100.4, 88.100.5, 88.100.6]}
CONF
# The other revision reads a copy of the same data (neither node writes the other's).
if [[ -n $baseline ]]; then cp -a "$work/data" "$work/data-baseline"; fi
start_idnode() {  # start_idnode NAME BINARY DATA: the node's Handle and HTTP ports in $hp / $wp
  taskset -c 0 "$2" --config "$work/idnode.yaml" --data-dir "$3" >"$work/$1.out" 2>"$work/$1.log" &
  pids+=($!)
  eval "$1_pid=$!"
  for _ in $(seq 600); do grep -q "idnode ready" "$work/$1.out" && break; sleep 0.1; done
  eval "$1_hp=$(grep -o 'handle=127.0.0.1:[0-9]*' "$work/$1.out" | cut -d: -f2)"
  eval "$1_wp=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/$1.out" | cut -d: -f2)"
}
echo "== idnode"
start_idnode idnode "$build/src/cmd/idnode" "$work/data"
idnode_pid_main=$idnode_pid
hp=$idnode_hp
wp=$idnode_wp
if [[ -n $baseline ]]; then
  echo "== idnode of $baseline"
  start_idnode base "$baseline/src/cmd/idnode" "$work/data-baseline"
fi

# Every cache warmed by count: each key asked once, in order (Knot too, for the same treatment).
warm() {  # warm PROTOCOL PORT KEYS
  taskset -c 1 "$build/src/cmd/idbench" run --protocol "$1" --server "127.0.0.1:$2" --keys "$3" \
    --order sequential --requests "$records" --seconds 600 --concurrency 64 >/dev/null 2>&1
}
warm dns $knot_port "$work/oid-keys.txt"
warm dns "$dp" "$work/oid-keys.txt"
warm udp "$hp" "$work/keys.txt"
[[ -n $baseline ]] && warm udp "$base_hp" "$work/keys.txt"
entries=$(curl -s "127.0.0.1:$wp/metrics" | awk '/^idnode_cache_entries / {print int($2)}')
echo "idnode's answer cache: ${entries:-0} of $records identifiers"

# ---- the paired rounds -------------------------------------------------------------------------
# One measurement: idbench (one socket, 64 in flight, uniform random keys) for $seconds against
# PID's server; writes $work/round-NAME-R.json with the answers and the server's CPU ticks.
measure() {  # measure NAME PID PROTOCOL PORT KEYS ROUND
  local t0 t1
  t0=$(ticks "$2")
  taskset -c 1 "$build/src/cmd/idbench" run --protocol "$3" --server "127.0.0.1:$4" --keys "$5" \
    --seconds "$seconds" --concurrency 64 --json "$work/round-$1-$6.json" >/dev/null 2>&1
  t1=$(ticks "$2")
  python3 - "$work/round-$1-$6.json" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, t0, t1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))
r["server_cpu_us_per_answer"] = (t1 - t0) / hz * 1e6 / max(1, r["answered"])
json.dump(r, open(path, "w"))
PY
}
servers=("knot $knot_pid dns $knot_port $work/oid-keys.txt"
         "dns $idnode_dns_pid dns $dp $work/oid-keys.txt"
         "udp $idnode_pid_main udp $hp $work/keys.txt")
[[ -n $baseline ]] && servers+=("base $base_pid udp $base_hp $work/keys.txt")
for round in 1 2 3; do
  n=${#servers[@]}
  for ((k = 0; k < n; ++k)); do
    # shellcheck disable=SC2086
    measure ${servers[$(((k + round) % n))]} "$round"
  done
done
# The median of three rounds of each pair's ratio (measured in the same round), and its range.
read -r knot_qps knot_cpu dns_qps dns_cpu udp_qps udp_cpu r_dns_qps r_dns_cpu r_udp_qps r_udp_cpu \
  r_base_cpu r_base_qps base_cpu <<<"$(python3 - "$work" "${baseline:+base}" <<'PY'
import json, statistics, sys
work, base = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
def runs(name):
    return [json.load(open("%s/round-%s-%d.json" % (work, name, r))) for r in (1, 2, 3)]
def med(xs): return statistics.median(xs)
def ratio(a, b, key):
    xs = sorted(x[key] / y[key] for x, y in zip(a, b))
    return "%.2fx (%.2f-%.2f)" % (med(xs), xs[0], xs[-1])
knot, dns, udp = runs("knot"), runs("dns"), runs("udp")
qps, cpu = "requests_per_second", "server_cpu_us_per_answer"
out = ["%.0f" % med([r[qps] for r in knot]), "%.2f" % med([r[cpu] for r in knot]),
       "%.0f" % med([r[qps] for r in dns]), "%.2f" % med([r[cpu] for r in dns]),
       "%.0f" % med([r[qps] for r in udp]), "%.2f" % med([r[cpu] for r in udp]),
       ratio(dns, knot, qps), ratio(dns, knot, cpu), ratio(udp, knot, qps), ratio(udp, knot, cpu)]
if base:
    b = runs("base")
    out += [ratio(udp, b, cpu), ratio(udp, b, qps), "%.2f" % med([r[cpu] for r in b])]
else:
    out += ["n/a", "n/a", "n/a"]
print(" ".join(o.replace(" ", "_") for o in out))
PY
)"
echo "paired rounds: Knot $knot_qps/s $knot_cpu us; idnode DNS $dns_qps/s $dns_cpu us; idnode UDP $udp_qps/s $udp_cpu us"

# ---- the second view: dnsperf against Knot and idnode's DNS ----------------------------------------
dnsperf_run() {  # dnsperf_run PORT PID: "qps cpu_us_per_answer"
  local out t0 t1 done_
  t0=$(ticks "$2")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$work/dns-queries.txt" -l "$seconds" -c 1 -q 64 2>&1)
  t1=$(ticks "$2")
  done_=$(echo "$out" | awk '/Queries completed/ {print $3}')
  echo "$(echo "$out" | awk '/Queries per second/ {print $4}') $(cpu_us_per "$t0" "$t1" "$done_")"
}
read -r knot_dnsperf_qps knot_dnsperf_cpu <<<"$(dnsperf_run $knot_port $knot_pid)"
read -r dns_dnsperf_qps dns_dnsperf_cpu <<<"$(dnsperf_run "$dp" $idnode_dns_pid)"
knot_rss=$(rss_mb $knot_pid)
kill $knot_pid $idnode_dns_pid; wait $knot_pid $idnode_dns_pid 2>/dev/null || true
if [[ -n $baseline ]]; then kill "$base_pid"; wait "$base_pid" 2>/dev/null || true; fi
idnode_pid=$idnode_pid_main

# ---- 2. Handle/UDP: idnode's open loop, RSS ----------------------------------------------------------
idnode_rss=$(rss_mb $idnode_pid)
udp_json="$work/round-udp-2.json"
udp_p99=$(json "$udp_json" "['latency_us']['p99']")
udp_busy=$(python3 -c "import json; r=json.load(open('$udp_json')); print(round(100*r['server_cpu_us_per_answer']*r['answered']/1e6/r['seconds']))")
# Open loop at 80% of that peak: p99 from each request's intended send time; the median of three
# runs (one stall of the machine moves a single run's p99 by milliseconds), with idbench's own
# lag behind its schedule.
open_rate=$(python3 -c "print(int($udp_qps*0.8))")
for run in 1 2 3; do
  taskset -c 1 "$build/src/cmd/idbench" run --protocol udp --server 127.0.0.1:$hp --keys "$work/keys.txt" --seconds "$seconds" \
    --rate "$open_rate" --concurrency 4096 --json "$work/open$run.json" >/dev/null 2>&1
done
# And at half the peak: where the tail stands when the server has room.
half_rate=$(python3 -c "print(int($udp_qps*0.5))")
taskset -c 1 "$build/src/cmd/idbench" run --protocol udp --server 127.0.0.1:$hp --keys "$work/keys.txt" --seconds "$seconds" \
  --rate "$half_rate" --concurrency 4096 --json "$work/half.json" >/dev/null 2>&1
half_p99=$(json "$work/half.json" "['latency_us']['p99']")
read -r open_p99 open_p99_range open_lag <<<"$(python3 - "$work"/open{1,2,3}.json <<'PY'
import json, sys
runs = sorted((json.load(open(f)) for f in sys.argv[1:]), key=lambda r: r["latency_us"]["p99"])
print(runs[1]["latency_us"]["p99"], "%.0f-%.0f" % (runs[0]["latency_us"]["p99"], runs[-1]["latency_us"]["p99"]),
      runs[1]["send_lag_us"]["p999"])
PY
)"
echo "idnode UDP: open loop at $open_rate/s: p99 $open_p99 us; RSS ${idnode_rss} MiB"
# The registration path: a tenth of the requests are authenticated writes (create or modify, each
# answering a challenge; every write is synced before it is acknowledged), over TCP.
taskset -c 1 "$build/src/cmd/idbench" run --protocol tcp --server 127.0.0.1:$hp --keys "$work/keys.txt" --seconds "$seconds" \
  --writes 0.1 --write-prefix 88.100.1 --identity 300:0.NA/88.100.1 --secret-file "$work/secret" \
  --json "$work/writes.json" >/dev/null 2>&1
mix_qps=$(json "$work/writes.json" "['requests_per_second']")
mix_writes=$(python3 -c "import json; r=json.load(open('$work/writes.json')); print(round(r['write_codes'].get('1',0)/r['seconds']))")
mix_write_p99=$(json "$work/writes.json" "['write_latency_us']['p99']")
echo "idnode TCP with 10% writes: $mix_qps answers/s, $mix_writes successful writes/s, write p99 $mix_write_p99 us"

# ---- 3. HTTP: idnode vs nginx ------------------------------------------------------------------
np=$((wp + 1))
start_nginx_peer "$work/keys.txt" "$wp" "$np"
wrk_rps() { taskset -c 1 wrk -t1 -c32 -d"${seconds}s" -s "$work/paths.lua" "http://127.0.0.1:$1" 2>&1 | awk '/Requests\/sec/ {print $2}'; }
http_idnode=$(wrk_rps "$wp")
http_nginx=$(wrk_rps "$np")
kill $idnode_pid; wait $idnode_pid 2>/dev/null || true

# ---- idbench's ceiling -------------------------------------------------------------------------
taskset -c 0 "$build/src/cmd/idbench" responder --port 0 --seconds $((seconds + 5)) >"$work/responder.out" &
responder_pid=$!
pids+=($responder_pid)
sleep 0.3
rp=$(grep -o '127.0.0.1:[0-9]*' "$work/responder.out" | cut -d: -f2)
t0=$(ticks $responder_pid)
taskset -c 1 "$build/src/cmd/idbench" run --protocol udp --server 127.0.0.1:$rp --keys "$work/keys.txt" --seconds "$seconds" \
  --json "$work/ceiling.json" >/dev/null 2>&1
t1=$(ticks $responder_pid)
ceiling=$(json "$work/ceiling.json" "['requests_per_second']")
# When the responder's own core is saturated, the ceiling measured is the responder's, a lower
# bound of idbench's.
responder_busy=$(python3 -c "print(round(100*($t1-$t0)/$(getconf CLK_TCK)/$seconds))")

# ---- the machine's own stalls --------------------------------------------------------------------
# A thread spinning on core 1 (the load generator's core), with core 0 idle, then busy: on a VM
# whose vCPUs share host cores, the second run shows the host taking the CPU away for
# milliseconds, which no server can hide from an open-loop p99.
stalls() { awk '{print $7 " (longest " $13 " ms)"}' <<<"$1"; }
probe_idle=$(taskset -c 1 "$build/benchmarks/stall_probe" --seconds "$seconds")
taskset -c 0 sh -c 'while :; do :; done' &
spinner_pid=$!
pids+=($spinner_pid)
probe_busy=$(taskset -c 1 "$build/benchmarks/stall_probe" --seconds "$seconds")
kill $spinner_pid

# ---- 4. storage --------------------------------------------------------------------------------
storage=$("$build/benchmarks/registry_bench" --records "$(( records < 1000000 ? records : 1000000 ))" \
  --benchmark_filter='Get' --benchmark_min_time=0.5 2>/dev/null | grep "cold get (cache off)")

ratio() { python3 -c "print(round($1/$2,2))"; }
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, Linux $(uname -r)"
table=$(cat <<TABLE
| measure | idnode | peer | ratio |
|---|---|---|---|
| DNS answers/s, idnode's DNS front end vs Knot (both idbench, 64 in flight; median of 3 paired rounds, range) | $dns_qps | $knot_qps | ${r_dns_qps//_/ } |
| DNS server CPU us per answer (lower is better; same rounds) | $dns_cpu | $knot_cpu | ${r_dns_cpu//_/ } |
| Handle/UDP answers/s vs Knot DNS answers/s (both idbench, 64 in flight; same rounds) | $udp_qps | $knot_qps | ${r_udp_qps//_/ } |
| Handle/UDP server CPU us per answer vs Knot's (lower is better; same rounds) | $udp_cpu | $knot_cpu | ${r_udp_cpu//_/ } |
| Handle/UDP server CPU us per answer, this build vs ${baseline:-a baseline (--baseline)} (same rounds; $prefixes delegated prefixes in this build's table) | $udp_cpu | ${base_cpu} | ${r_base_cpu//_/ } |
| second view, dnsperf (1 socket, 64 in flight): DNS answers/s, idnode vs Knot | $dns_dnsperf_qps | $knot_dnsperf_qps | $(ratio "$dns_dnsperf_qps" "$knot_dnsperf_qps")x |
| second view, dnsperf: DNS server CPU us per answer | $dns_dnsperf_cpu | $knot_dnsperf_cpu | $(ratio "$dns_dnsperf_cpu" "$knot_dnsperf_cpu")x |
| HTTP requests/s (wrk) vs nginx static files | $http_idnode | $http_nginx | $(ratio "$http_idnode" "$http_nginx")x |
| RSS MiB, all records loaded and cached, vs Knot | $idnode_rss | $knot_rss | $(ratio "$idnode_rss" "$knot_rss")x |
| UDP p99 us at 80% of peak (open loop, from intended send time; median of 3 runs: $open_p99_range) | $open_p99 | goal < 1000 | |
| UDP p99 us at 50% of peak (open loop, one run) | $half_p99 | | |
| idbench's own lag behind its open-loop schedule at 80%, p99.9 us (included in the p99 above) | $open_lag | | |
| machine: stalls > 1 ms of a thread spinning on core 1 in ${seconds}s, core 0 busy vs idle | $(stalls "$probe_busy") | $(stalls "$probe_idle") | |
| UDP p99 us, closed loop at peak | $udp_p99 | | |
| Handle/TCP with 10% authenticated writes: answers/s (writes/s) | $mix_qps ($mix_writes) | n/a | |
| write p99 us (challenge round trip and fsync included) | $mix_write_p99 | | |
| idbench ceiling (trivial responder, its core ${responder_busy}% busy) vs its rate against idnode (idnode's core ${udp_busy}% busy) | $ceiling | $udp_qps | $(ratio "$ceiling" "$udp_qps")x |
| storage: $storage | | | |
TABLE
)
echo
echo "$table"
{
  echo "# Benchmark results"
  echo
  echo "$(date -u +%Y-%m-%d) on $machine; $records identifiers; servers on core 0, load on core 1; ${seconds}s per run."
  echo "Produced by benchmarks/compare.sh $compare_args. Goals: Handle/UDP CPU per answer <= 1.0x Knot's and answers/s >= Knot's;"
  echo "HTTP >= 0.7x nginx; p99 < 1 ms at 80% of peak; RSS <= 2x Knot's."
  echo
  echo "$table"
} >benchmarks/RESULTS.md
echo "wrote benchmarks/RESULTS.md"

# ---- 5. replication against Knot (its own script, its own servers) --------------------------------
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
echo "== replication: benchmarks/replication_compare.sh"
bash benchmarks/replication_compare.sh --records "$records" --seconds "$seconds"
{
  echo
  echo "## Replication"
  echo
  tail -n +3 benchmarks/RESULTS-replication.md
} >>benchmarks/RESULTS.md
