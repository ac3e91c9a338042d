#!/usr/bin/env bash
# Replication against its peer (compare.sh's replication section; runs alone too): a Knot DNS
# primary and secondary (AXFR at start, then NOTIFY + IXFR for DNS UPDATEs), and an idnode source
# and replica (snapshot, then the changelog stream over mutual TLS), on this machine, holding the
# same N OIDs (default 1,000,000: compare.sh's zone, a NAPTR and a TXT each; idnode: the URL and
# the description). Servers are pinned to core 0, the generator and prober to core 1.
#   1. Bootstrap: from starting an empty replica to its last record answerable (Knot: the
#      secondary answers the zone's last OID, which it serves only once the whole AXFR is in;
#      idnode: the replica reports every shard's snapshot applied and answers the last OID).
#   2. Lag: --rate writes/s (default 5,000) offered for --seconds to the primary, and probe writes
#      followed at the replica over DNS, from the write's acknowledgement to the replica's answer
#      (benchmarks/replication_lag.py). Knot: DNS UPDATEs from replication_lag.py, every 20th
#      probed. idnode: Handle CREATE_HANDLE with the HS_SECKEY challenge, the load from idbench
#      (Python's challenge-response tops out near 2,000/s on one core), plus 100 probe writes/s
#      from replication_lag.py. Three paired rounds, the order alternating: the median p50 and p99
#      with their range.
# Prints a table and writes benchmarks/RESULTS-replication.md.
#   benchmarks/replication_compare.sh [--records N] [--seconds S] [--rate R]
rate=5000
args=()
while (($#)); do
  case $1 in
    --rate) rate=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"
source "$(dirname "$0")/common.sh"
need_packages knotd=knot kdig=knot-dnsutils openssl=openssl
$sudo systemctl stop knot 2>/dev/null || true
need_build src/cmd/idnode src/cmd/idctl
lagpy=benchmarks/replication_lag.py

echo "== data: $records OIDs"
python3 tests/integration/gen_records.py "$records" "$work/records.jsonl"
python3 - "$work/records.jsonl" "$work/oid-res.org.zone" "$work/oids.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as r, open(sys.argv[2], "w") as z, open(sys.argv[3], "w") as o:
    z.write("$ORIGIN oid-res.org.\n$TTL 86400\n@ SOA ns.oid-res.org. admin.oid-res.org. 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n")
    for i, line in enumerate(r):
        values = json.loads(line)["values"][:2]
        url, desc = values[0]["data"]["value"], values[1]["data"]["value"]
        name = "%d.3001.156.2.1" % i
        z.write('%s NAPTR 100 10 "U" "E2U+http" "!^.*$!%s!" .\n' % (name, url))
        z.write('%s TXT "%s"\n' % (name, desc))
        o.write(json.dumps({"handle": "OID/1.2.156.3001.%d" % i, "values": values}) + "\n")
PY
last_oid="1.2.156.3001.$((records - 1))"

# ---- Knot: primary and secondary -----------------------------------------------------------------
kp=53153
ks=53154
mkdir -p "$work/knot-primary/db" "$work/knot-secondary/db"
cp "$work/oid-res.org.zone" "$work/knot-primary/"
knot_conf() {  # knot_conf DIR PORT ROLE
  cat <<CONF
server:
  listen: 127.0.0.1@$2
  rundir: $1
  udp-workers: 1
  tcp-workers: 1
  # Zone events (DDNS, NOTIFY, refresh, transfers) run on the background workers.
  background-workers: 2
database:
  storage: $1/db
log:
  - target: stderr
    any: ${KNOT_LOG_LEVEL:-warning}
remote:
  - id: primary
    address: 127.0.0.1@$kp
  - id: secondary
    address: 127.0.0.1@$ks
acl:
  - id: local
    address: 127.0.0.1
    action: [transfer, notify, update]
template:
  - id: default
    storage: $1
    file: "%s.zone"
    semantic-checks: off
    # No zone-file rewrite per change: the journal keeps them (durable, as idnode's RocksDB).
    zonefile-sync: -1
    # Enough history for IXFR at thousands of changes a second (the default depth, 20
    # changesets, makes the primary fall back to AXFR).
    journal-max-depth: 1000000
    journal-max-usage: 4G
    acl: local
CONF
  if [[ $3 == primary ]]; then
    printf 'zone:\n  - domain: oid-res.org\n    zonefile-load: whole\n    journal-content: changes\n    notify: secondary\n'
  else
    printf 'zone:\n  - domain: oid-res.org\n    master: primary\n    journal-content: all\n'
  fi
}
knot_conf "$work/knot-primary" $kp primary >"$work/knot-primary/knot.conf"
knot_conf "$work/knot-secondary" $ks secondary >"$work/knot-secondary/knot.conf"
taskset -c 0 knotd -c "$work/knot-primary/knot.conf" 2>"$work/knot-primary.log" &
pids+=($!)
kdig_ok() { kdig @127.0.0.1 -p "$1" +short +timeout=1 +retry=0 "$2" NAPTR 2>/dev/null | grep -q E2U; }
for _ in $(seq 1200); do kdig_ok $kp "$((records - 1)).3001.156.2.1.oid-res.org" && break; sleep 0.5; done
kdig_ok $kp "$((records - 1)).3001.156.2.1.oid-res.org" || { echo "knot primary did not load"; exit 1; }

echo "== Knot secondary: AXFR of $records OIDs"
start_ns=$(date +%s%N)
taskset -c 1 python3 $lagpy wait-answer --dns $ks --name "$last_oid" --since "$start_ns" >"$work/knot-bootstrap" &
waiter=$!
taskset -c 0 knotd -c "$work/knot-secondary/knot.conf" 2>"$work/knot-secondary.log" &
pids+=($!)
wait $waiter || { echo "the Knot secondary did not answer"; tail "$work/knot-secondary.log"; exit 1; }
knot_boot=$(cat "$work/knot-bootstrap")
echo "Knot secondary answers the last OID after $knot_boot s"

# ---- idnode: source and replica ------------------------------------------------------------------
certs="$work/certs"
mkdir -p "$certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$certs/ca.key" \
  -out "$certs/ca.crt" -days 2 -subj "/CN=bench CA" 2>/dev/null
for name in source replica; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$certs/$name.key" \
    -out "$certs/$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$name" >"$certs/$name.ext"
  openssl x509 -req -in "$certs/$name.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial \
    -out "$certs/$name.crt" -days 2 -extfile "$certs/$name.ext" 2>/dev/null
done
echo "bench-secret" >"$work/secret"
echo '{"handle":"OID/admin","values":[{"index":300,"type":"HS_SECKEY","data":{"format":"string","value":"bench-secret"},"permissions":"1100"}]}' >>"$work/oids.jsonl"
"$build/src/cmd/idctl" import --data-dir "$work/source" "$work/oids.jsonl" 2>&1 | tail -1
rp=$((20000 + RANDOM % 20000))
node_conf() {  # node_conf NAME
  cat <<CONF
handle: {port: 0, workers: 1}
http: {port: 0}
dns: {port: 0, workers: 1}
cache: {capacity_bytes: 1GiB}
node: {demo: false}
auth: {server_admins: ["300:OID/admin"]}
replication:
  name: $1
  certificate: $certs/$1.crt
  private_key: $certs/$1.key
  ca: $certs/ca.crt
CONF
  if [[ $1 == source ]]; then
    printf '  listen: 127.0.0.1:%d\n  peers: ["replica OID"]\n' $rp
  else
    printf '  sources: ["source 127.0.0.1:%d OID"]\n' $rp
  fi
}
node_conf source >"$work/source.yaml"
node_conf replica >"$work/replica.yaml"
taskset -c 0 "$build/src/cmd/idnode" --config "$work/source.yaml" --data-dir "$work/source" --home OID \
  >"$work/source.out" 2>"$work/source.log" &
pids+=($!)
for _ in $(seq 600); do grep -q "idnode ready" "$work/source.out" && break; sleep 0.1; done
sp=$(grep -o 'handle=127.0.0.1:[0-9]*' "$work/source.out" | cut -d: -f2)

echo "== idnode replica: snapshot of $records OIDs"
# Fixed ports, so that the prober is running before the replica starts (as for Knot).
rdp=$((rp + 1))
rwp=$((rp + 2))
sed -i "s/^http: {port: 0}/http: {port: $rwp}/; s/^dns: {port: 0, workers: 1}/dns: {port: $rdp, workers: 1}/" "$work/replica.yaml"
start_ns=$(date +%s%N)
taskset -c 1 python3 $lagpy wait-answer --http "$rwp" --dns "$rdp" --name "$last_oid" --since "$start_ns" \
  >"$work/idnode-bootstrap" &
waiter=$!
taskset -c 0 "$build/src/cmd/idnode" --config "$work/replica.yaml" --data-dir "$work/replica" \
  >"$work/replica.out" 2>"$work/replica.log" &
pids+=($!)
wait $waiter || { echo "the idnode replica did not answer"; tail "$work/replica.log"; exit 1; }
idnode_boot=$(cat "$work/idnode-bootstrap")
echo "idnode replica answers the last OID after $idnode_boot s"
digests=$(for p in $(grep -o 'http=127.0.0.1:[0-9]*' "$work/source.out" | cut -d: -f2) $rwp; do
  curl -s "127.0.0.1:$p/api/digest?prefix=OID" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['records'], d['digest'][:12])"
done | sort -u | wc -l)
[[ $digests == 1 ]] || echo "warning: the replica's digest differs from the source's" >&2

# ---- lag under writes ---------------------------------------------------------------------------
echo "== lag at $rate writes/s for ${seconds}s: 3 paired rounds"
: >"$work/lag.jsonl"
for round in 1 2 3; do
  order=(knot idnode)
  ((round % 2 == 0)) && order=(idnode knot)
  for server in "${order[@]}"; do
    if [[ $server == knot ]]; then
      taskset -c 1 python3 $lagpy lag knot --primary $kp --replica-dns $ks --rate "$rate" \
        --seconds "$seconds" --connections 64 | tee -a "$work/lag.jsonl"
    else
      # The load from idbench (C++), this tool's own writes the probes.
      taskset -c 1 python3 $lagpy lag idnode --primary "$sp" --secret "$work/secret" --replica-dns "$rdp" \
        --background-rate "$rate" --idbench "$build/src/cmd/idbench" --background-json "$work/background.json" \
        --rate 100 --sample 1 --seconds "$seconds" --connections 4 | tee -a "$work/lag.jsonl"
    fi
  done
done
read -r table <<<"$(python3 - "$work/lag.jsonl" "$knot_boot" "$idnode_boot" "$rate" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
knot_boot, idnode_boot, rate = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def med(server, key):
    v = sorted(r[key] for r in rows if r["server"] == server)
    return v[len(v) // 2], v[0], v[-1]
out = []
out.append("| bootstrap: empty replica to its last record answerable, s (Knot: AXFR) | %.2f | %.2f | %.2fx |" % (
    idnode_boot, knot_boot, idnode_boot / knot_boot))
for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
    i, k = med("idnode", key), med("knot", key)
    out.append("| lag %s ms, write acknowledged to replica answering (Knot: NOTIFY + IXFR; median of 3 rounds, range) | %.1f (%.1f-%.1f) | %.1f (%.1f-%.1f) | %.4fx |" % (
        label, i[0], i[1], i[2], k[0], k[1], k[2], i[0] / k[0]))
i, k = med("idnode", "rate"), med("knot", "rate")
b = med("idnode", "background_rate")
out.append("| writes/s acknowledged, offered %s/s (idnode: idbench's load + 100/s probe writes; Knot: DNS UPDATEs, every 20th probed) | %d | %d | |" % (
    rate, b[0] + i[0], k[0]))
u = sum(r["unanswered"] for r in rows if r["server"] == "idnode"), sum(r["unanswered"] for r in rows if r["server"] == "knot")
out.append("| probes never answered within 30 s | %d | %d | |" % u)
print("\\n".join(out))
PY
)"
table=$(printf '%b' "$table")
header="| measure | idnode | Knot DNS | ratio |
|---|---|---|---|"
echo
echo "$header"
echo "$table"
{
  echo "# Replication against Knot DNS"
  echo
  echo "$(date -u +%Y-%m-%d) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;"
  echo "$records OIDs; servers on core 0, generator and prober on core 1; ${seconds}s per lag round at $rate writes/s."
  echo "Produced by benchmarks/replication_compare.sh. Goals: bootstrap ratio <= 1.0; lag p99 < 100 ms and below Knot's."
  echo
  echo "$header"
  echo "$table"
} >benchmarks/RESULTS-replication.md
echo "wrote benchmarks/RESULTS-replication.md"
if [[ -n ${KNOT_LOG_LEVEL:-} ]]; then tail -40 "$work/knot-secondary.log"; tail -20 "$work/knot-primary.log"; head -30 "$work/replica.log"; fi
