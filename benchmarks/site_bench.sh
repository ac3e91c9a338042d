#!/usr/bin/env bash
# A multi-server site against the unsplit node it was made from (issue 13): N identifiers
# (default 300,000; idbench gen: 3-6 values of 40-200 bytes) under one prefix are imported into
# one node's data (6 shards), which `idctl site split` turns into three servers' data. idbench
# drives the unsplit node with --server, and the site with --site (it reads the site's HS_SITE
# from server 0 and sends each request to the server the hash picks), over Handle UDP with the
# same settings (64 in flight, uniform random keys). Every server's cache is warmed by count (each
# key asked once) first. Then five paired rounds (the order alternating): the aggregate rate of
# the site, each server's rate, and the site's rate and CPU per answer as ratios to the unsplit
# node's: the median and the range.
#   benchmarks/site_bench.sh [--records N] [--seconds S] [--baseline BUILD_DIR]
# --baseline: another revision's idnode is measured in the same rounds on a copy of the unsplit
# data (one server: the hot path's cost of the site check, which is one atomic load there).
# Servers are pinned to core 0 (the unsplit node and the three site servers alike: the site is
# given the same CPU as the node, so the ratio is what splitting costs or saves per answer, not
# what more machines add), idbench to core 1. Writes benchmarks/RESULTS-site.md.
set -euo pipefail
records_given=0
for a in "$@"; do [[ $a == --records ]] && records_given=1; done
source "$(dirname "$0")/common.sh"
((records_given)) || records=300000
need_build src/cmd/idnode src/cmd/idctl src/cmd/idbench
idctl=$build/src/cmd/idctl
idbench=$build/src/cmd/idbench
prefix=88.100.1
shards=6
servers=3

echo "== data: $records identifiers under $prefix, $shards shards, split into $servers servers"
"$idbench" gen --count "$records" --prefix "$prefix" --out "$work/records.jsonl" --keys "$work/keys.txt" 2>/dev/null
"$idctl" prefix home --data-dir "$work/unsplit" --shards $shards "$prefix" >/dev/null
import_start=$SECONDS
"$idctl" import --data-dir "$work/unsplit" --shards $shards "$work/records.jsonl" 2>&1 | tail -1
echo "imported in $((SECONDS - import_start)) s"
"$idctl" site split --data-dir "$work/unsplit" --shards $shards --servers $servers --out "$work/site" | tail -3
"$idctl" site check --shards $shards "$work"/site/server{0,1,2} --against "$work/unsplit" | tail -1
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/server-key.pem" 2>/dev/null

# Ports free for UDP and TCP on 127.0.0.1: the unsplit node's, then each site server's (Handle,
# HTTP).
read -r -a ports <<<"$(python3 - <<'PY'
import socket
out = []
while len(out) < 8:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); out.append(p)
    except OSError:
        pass
    finally:
        u.close(); t.close()
print(" ".join(map(str, out)))
PY
)"
site_list="\"127.0.0.1:${ports[2]} http=${ports[3]}\", \"127.0.0.1:${ports[4]} http=${ports[5]}\", \"127.0.0.1:${ports[6]} http=${ports[7]}\""
write_config() {  # write_config FILE HANDLE_PORT HTTP_PORT [THIS_SERVER]
  {
    echo "node: {shards: $shards, demo: false}"
    echo "handle: {port: $2, workers: 1}"
    echo "http: {port: $3}"
    echo "dns: {port: 0}"
    echo "cache: {capacity_bytes: 1GiB}"
    echo "auth: {server_key_file: $work/server-key.pem}"
    if [[ -n ${4:-} ]]; then echo "site: {servers: [$site_list], this_server: $4}"; fi
  } >"$1"
}
write_config "$work/unsplit.yaml" "${ports[0]}" "${ports[1]}"
for k in 0 1 2; do write_config "$work/server$k.yaml" "${ports[$((2 + 2 * k))]}" "${ports[$((3 + 2 * k))]}" $k; done

start() {  # start NAME CONFIG DATA [BUILD]
  taskset -c 0 "${4:-$build}/src/cmd/idnode" --config "$2" --data-dir "$3" >"$work/$1.out" 2>"$work/$1.log" &
  pids+=($!)
  eval "$1_pid=$!"
  for _ in $(seq 600); do
    grep -q "idnode ready" "$work/$1.out" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1 did not start:" >&2
  tail -5 "$work/$1.log" >&2
  exit 1
}
if [[ -n $baseline ]]; then
  cp -a "$work/unsplit" "$work/baseline-data"
  base_port=$(python3 -c "
import socket
while True:
    t = socket.socket(); t.bind(('127.0.0.1', 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(('127.0.0.1', p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
")
  # Without auth.server_key_file (older revisions lack it; a one-server node signs nothing here).
  sed -e "s/port: ${ports[0]},/port: $base_port,/" -e "s/http: {port: ${ports[1]}}/http: {port: 0}/" \
    -e "/^auth:/d" "$work/unsplit.yaml" >"$work/baseline.yaml"
fi
start unsplit "$work/unsplit.yaml" "$work/unsplit"
for k in 0 1 2; do start "server$k" "$work/server$k.yaml" "$work/site/server$k"; done
[[ -n $baseline ]] && start baseline "$work/baseline.yaml" "$work/baseline-data" "$baseline"

run() {  # run NAME TARGET_ARGS... : one idbench run, its JSON in $work/NAME.json
  local name=$1
  shift
  taskset -c 1 "$idbench" run --protocol udp "$@" --keys "$work/keys.txt" --json "$work/$name.json" \
    >"$work/$name.out" 2>"$work/$name.err" || { tail -5 "$work/$name.err" >&2; return 1; }
}
echo "== warm every cache by count (each key asked once)"
run warm-unsplit --server "127.0.0.1:${ports[0]}" --order sequential --requests "$records" --seconds 600
run warm-site --site "127.0.0.1:${ports[2]}" --order sequential --requests "$records" --seconds 600
if [[ -n $baseline ]]; then
  run warm-baseline --server "127.0.0.1:$base_port" --order sequential --requests "$records" --seconds 600
fi
grep "^server\|^code" "$work/warm-site.out"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
site_ticks() { echo $(($(ticks "$server0_pid") + $(ticks "$server1_pid") + $(ticks "$server2_pid"))); }
measure() {  # measure unsplit|site ROUND
  local t0 t1
  if [[ $1 == unsplit ]]; then
    t0=$(ticks "$unsplit_pid")
    run "round-unsplit-$2" --server "127.0.0.1:${ports[0]}" --seconds "$seconds" --concurrency 64
    t1=$(ticks "$unsplit_pid")
  elif [[ $1 == baseline ]]; then
    t0=$(ticks "$baseline_pid")
    run "round-baseline-$2" --server "127.0.0.1:$base_port" --seconds "$seconds" --concurrency 64
    t1=$(ticks "$baseline_pid")
  else
    t0=$(site_ticks)
    run "round-site-$2" --site "127.0.0.1:${ports[2]}" --seconds "$seconds" --concurrency 64
    t1=$(site_ticks)
  fi
  echo "$t0 $t1" >"$work/round-$1-$2.ticks"
}
echo "== five paired rounds of $seconds s (Handle UDP, 64 in flight)"
for round in 1 2 3 4 5; do
  if ((round % 2)); then
    measure unsplit $round
    measure site $round
    if [[ -n $baseline ]]; then measure baseline $round; fi
  else
    if [[ -n $baseline ]]; then measure baseline $round; fi
    measure site $round
    measure unsplit $round
  fi
done

python3 - "$work" "$(getconf CLK_TCK)" "$records" "$seconds" "$baseline" <<'PY' | tee benchmarks/RESULTS-site.md
import json, statistics, sys
work, hz, records, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def load(name, r):
    d = json.load(open("%s/round-%s-%d.json" % (work, name, r)))
    t0, t1 = map(int, open("%s/round-%s-%d.ticks" % (work, name, r)).read().split())
    d["cpu_us"] = (t1 - t0) / hz * 1e6 / max(1, d["answered"])
    d["rps"] = d["answered"] / d["seconds"]
    return d
rounds = range(1, 6)
unsplit = [load("unsplit", r) for r in rounds]
site = [load("site", r) for r in rounds]
med = statistics.median
def span(xs, fmt):
    return (fmt + " (" + fmt + "-" + fmt + ")") % (med(xs), min(xs), max(xs))
print("# A three-server site against the unsplit node (benchmarks/site_bench.sh)\n")
print("%d identifiers under 88.100.1 (idbench gen), 6 shards, split by `idctl site split` into 3"
      " servers; Handle UDP, idbench 64 in flight, uniform keys, %s s a round, five paired rounds"
      " (order alternating), every cache warmed by count. All servers on core 0 (the site gets the"
      " unsplit node's CPU), idbench on core 1. Median (range).\n" % (records, seconds))
print("| | requests/s | server CPU us per answer | p99 us | idbench CPU (% of its core) | non-success answers |")
print("|---|---|---|---|---|---|")
for name, rs in (("unsplit node", unsplit), ("site of 3 (aggregate)", site)):
    bad = [sum(n for c, n in r["codes"].items() if c != "1") + r["timeouts"] for r in rs]
    print("| %s | %s | %s | %s | %s | %s |" % (name, span([r["rps"] for r in rs], "%.0f"),
          span([r["cpu_us"] for r in rs], "%.2f"), span([r["latency_us"]["p99"] for r in rs], "%.0f"),
          span([100 * r["client_cpu_seconds"] / r["seconds"] for r in rs], "%.0f"), span(bad, "%d")))
for k in range(3):
    xs = [r["servers"][k]["answered"] / r["seconds"] for r in site]
    share = [r["servers"][k]["answered"] / max(1, r["answered"]) for r in site]
    print("| site server %d (%s) | %s | | | | share of answers %s |" % (
        k, site[0]["servers"][k]["server"], span(xs, "%.0f"), span([100 * s for s in share], "%.1f%%")))
rate = sorted(s["rps"] / u["rps"] for s, u in zip(site, unsplit))
cpu = sorted(s["cpu_us"] / u["cpu_us"] for s, u in zip(site, unsplit))
print("\nSite / unsplit, paired by round: rate %.2fx (%.2f-%.2f), server CPU per answer %.2fx (%.2f-%.2f)."
      % (med(rate), rate[0], rate[-1], med(cpu), cpu[0], cpu[-1]))
if len(sys.argv) > 5 and sys.argv[5]:
    base = [load("baseline", r) for r in rounds]
    rate = sorted(u["rps"] / b["rps"] for u, b in zip(unsplit, base))
    cpu = sorted(u["cpu_us"] / b["cpu_us"] for u, b in zip(unsplit, base))
    print("\nThis build's one-server node / %s's (same data, same rounds): rate %.2fx (%.2f-%.2f), server CPU"
          " per answer %.2fx (%.2f-%.2f); baseline %.0f requests/s, %.2f us per answer."
          % (sys.argv[5], med(rate), rate[0], rate[-1], med(cpu), cpu[0], cpu[-1],
             med([b["rps"] for b in base]), med([b["cpu_us"] for b in base])))
PY
