#!/usr/bin/env bash
# The server benchmark of the server issue: idnode loaded with N identifiers (1,000,000 by
# default), resolved over UDP (idbench) and over HTTP (wrk), next to a peer run in the
# same script: nginx serving the same JSON documents as static files, loaded by the same wrk.
# Server pinned to core 0, load generator to core 1. Reports requests/s, p50/p99 latency, the
# ratio idnode/nginx, and idnode's CPU microseconds per answered UDP query (the figure that does
# not depend on the load generator; Knot spends about 6.5 us per DNS answer on this machine).
#   benchmarks/server_bench.sh [--records N] [--seconds S]     (needs a release build in build/release)
# Not run in CI: it installs nginx and wrk from Debian and takes a few minutes.
source "$(dirname "$0")/common.sh"
need_packages nginx=nginx-light wrk=wrk
need_build src/cmd/idnode src/cmd/idctl src/cmd/idbench

echo "== preparing $records identifiers"
python3 tests/integration/gen_records.py "$records" "$work/records.jsonl"
"$build/src/cmd/idctl" import --data-dir "$work/data" "$work/records.jsonl" 2>&1 | tail -1
homes=()
for i in 0 1 2 3 4 5 6; do homes+=(--home "88.100.$i"); done

# Keys: a random sample of 100,000 identifiers (the same ones for every run).
python3 - "$records" "$work/keys.txt" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
with open(path, "w") as f:
    for i in rng.sample(range(n), min(n, 100000)):
        f.write("88.100.%d/SN%07d\n" % (i % 7, i))
PY

taskset -c 0 "$build/src/cmd/idnode" --data-dir "$work/data" --handle-port 0 --http-port 0 --dns-port 0 --workers 1 --no-demo \
  "${homes[@]}" >"$work/idnode.out" 2>"$work/idnode.log" &
pids+=($!)
idnode_pid=$!
for _ in $(seq 100); do grep -q "idnode ready" "$work/idnode.out" && break; sleep 0.1; done
handle_port=$(grep -o 'handle=127.0.0.1:[0-9]*' "$work/idnode.out" | cut -d: -f2)
http_port=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/idnode.out" | cut -d: -f2)


echo "== Handle over UDP (warm-up passes fill the cache, then the measured pass)"
warm_cache "$handle_port" "$http_port" "$work/keys.txt" "$(wc -l <"$work/keys.txt")"
t0=$(ticks $idnode_pid)
taskset -c 1 "$build/src/cmd/idbench" run --protocol udp --server "127.0.0.1:$handle_port" --keys "$work/keys.txt" \
  --seconds "$seconds" --concurrency 64 --json "$work/udp.json" >/dev/null 2>&1
t1=$(ticks $idnode_pid)
udp=$(python3 -c "import json; r = json.load(open('$work/udp.json')); print(json.dumps({'qps': round(r['requests_per_second']), 'answered': r['answered'], 'p50_us': r['latency_us']['p50'], 'p99_us': r['latency_us']['p99']}))")
udp_answered=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['answered'])" "$udp")
udp_cpu_us=$(cpu_us_per "$t0" "$t1" "$udp_answered")
echo "$udp"

echo "== static JSON documents for nginx (the API's answers for the same keys)"
nginx_port=$((http_port + 1))
start_nginx_peer "$work/keys.txt" "$http_port" "$nginx_port"

run_wrk() {
  taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -s "$work/paths.lua" "http://127.0.0.1:$1" 2>&1
}
echo "== HTTP: idnode"
idnode_wrk=$(run_wrk "$http_port")
echo "$idnode_wrk" | grep -E "Requests/sec|50%|99%"
echo "== HTTP: nginx static files (peer)"
nginx_wrk=$(run_wrk "$nginx_port")
echo "$nginx_wrk" | grep -E "Requests/sec|50%|99%"

rps() { echo "$1" | awk '/Requests\/sec/ {print $2}'; }
pct() { echo "$1" | awk -v p="$2" '$1==p {print $2}'; }
idnode_rps=$(rps "$idnode_wrk")
nginx_rps=$(rps "$nginx_wrk")
echo
echo "== results ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $records identifiers)"
printf "%-28s %12s %10s %10s\n" "path" "requests/s" "p50" "p99"
printf "%-28s %12s %10s %10s\n" "Handle/UDP idnode" "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['qps'])" "$udp")" \
  "$(python3 -c "import json,sys; print(str(json.loads(sys.argv[1])['p50_us'])+'us')" "$udp")" \
  "$(python3 -c "import json,sys; print(str(json.loads(sys.argv[1])['p99_us'])+'us')" "$udp")"
printf "%-28s %12s %10s %10s\n" "HTTP idnode" "$idnode_rps" "$(pct "$idnode_wrk" 50%)" "$(pct "$idnode_wrk" 99%)"
printf "%-28s %12s %10s %10s\n" "HTTP nginx static (peer)" "$nginx_rps" "$(pct "$nginx_wrk" 50%)" "$(pct "$nginx_wrk" 99%)"
echo "HTTP ratio idnode/nginx: $(python3 -c "print(round($idnode_rps/$nginx_rps,2))")x (goal >= 0.7x)"
echo "UDP server CPU per answered query: ${udp_cpu_us} us (Knot on this kind of machine: about 6.5 us)"
