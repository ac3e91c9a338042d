#!/usr/bin/env bash
# The JSON API's hot path before and after a change, measured as compare.sh measures HTTP: wrk
# (one thread, 32 connections, 10,000 identifiers asked at random) against idnode's
# GET /api/handles/{handle}, and nginx serving the same answers as static files (compare.sh's HTTP
# peer). Here the revision given by --baseline (its build directory) runs beside this build, on a
# copy of the same data, so that compare.sh's HTTP ratio (idnode / nginx) is had for both in the
# same rounds, with this / baseline beside it.
#   - N identifiers (--records, default 200,000; gen_records.py, as compare.sh) under 7 prefixes;
#   - servers pinned to core 0, wrk and idbench to core 1;
#   - each idnode warmed by count: every one of the 10,000 sampled identifiers asked once over
#     HTTP (idbench, sequential), which fills its rendered-JSON cache;
#   - five rounds (IDNODE_AB_ROUNDS) of --seconds each (default 8), the order of the three servers
#     rotating; the median of each ratio, paired by round, and its range.
# Appends a section to benchmarks/RESULTS-ui.md.
#   benchmarks/http_ab.sh --baseline BUILD_DIR [--records N] [--seconds S]
default_records=200000
[[ " $* " == *" --records "* ]] || set -- "$@" --records "$default_records"
[[ " $* " == *" --seconds "* ]] || set -- "$@" --seconds 8
source "$(dirname "$0")/common.sh"
[[ -n $baseline ]] || { echo "usage: $0 --baseline BUILD_DIR [--records N] [--seconds S]"; exit 2; }
need_packages nginx=nginx-light wrk=wrk
need_build src/cmd/idnode src/cmd/idctl src/cmd/idbench

echo "== data: $records identifiers"
python3 tests/integration/gen_records.py "$records" "$work/records.jsonl"
"$build/src/cmd/idctl" import --data-dir "$work/data" "$work/records.jsonl" 2>&1 | tail -1
cp -a "$work/data" "$work/data-baseline"
cat >"$work/idnode.yaml" <<CONF
handle: {port: 0, workers: 1}
http: {port: 0}
dns: {enabled: false}
cache: {capacity_bytes: 1GiB}
node: {demo: false, home: [88.100.0, 88.100.1, 88.100.2, 88.100.3, 88.100.4, 88.100.5, 88.100.6]}
CONF
start_node() {  # start_node NAME BINARY DATA: its HTTP port in ${NAME}_wp
  taskset -c 0 "$2" --config "$work/idnode.yaml" --data-dir "$3" >"$work/$1.out" 2>"$work/$1.log" &
  pids+=($!)
  eval "$1_pid=$!"
  for _ in $(seq 600); do grep -q "idnode ready" "$work/$1.out" && break; sleep 0.1; done
  eval "$1_wp=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/$1.out" | cut -d: -f2)"
}
start_node this "$build/src/cmd/idnode" "$work/data"
start_node base "$baseline/src/cmd/idnode" "$work/data-baseline"
np=$((this_wp + 1))
while ss -ltn | grep -q ":$np "; do np=$((np + 1)); done
python3 -c "
import json
with open('$work/records.jsonl') as f, open('$work/keys.txt', 'w') as k:
    for line in f: k.write(json.loads(line)['handle'] + '\n')
"
start_nginx_peer "$work/keys.txt" "$this_wp" "$np"
sed 's#^/api/handles/##' "$work/www/paths.txt" >"$work/sample-keys.txt"
for port in "$this_wp" "$base_wp"; do
  taskset -c 1 "$build/src/cmd/idbench" run --protocol http --server "127.0.0.1:$port" \
    --keys "$work/sample-keys.txt" --order sequential --requests "$(wc -l <"$work/sample-keys.txt")" \
    --seconds 120 --concurrency 32 >/dev/null 2>&1
done

wrk_rps() { taskset -c 1 wrk -t1 -c32 -d"${seconds}s" -s "$work/paths.lua" "http://127.0.0.1:$1" 2>&1 | awk '/Requests\/sec/ {print $2}'; }
names=(this base nginx)
ports=("$this_wp" "$base_wp" "$np")
: >"$work/rounds.txt"
for round in $(seq 1 "${IDNODE_AB_ROUNDS:-5}"); do
  declare -A rps=()
  for k in 0 1 2; do
    i=$(((k + round) % 3))
    rps[${names[$i]}]=$(wrk_rps "${ports[$i]}")
  done
  echo "round $round: this ${rps[this]}  baseline ${rps[base]}  nginx ${rps[nginx]}"
  echo "${rps[this]} ${rps[base]} ${rps[nginx]}" >>"$work/rounds.txt"
done

summary=$(python3 - "$work/rounds.txt" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
def line(name, values, digits=2, unit="x"):
    return "| %s | %s | %s-%s |" % (name, ("%.*f%s" % (digits, statistics.median(values), unit)),
                                    "%.*f" % (digits, min(values)), "%.*f" % (digits, max(values)))
print("| | median | range |")
print("|---|---|---|")
print(line("this build, requests/s", [r[0] for r in rows], 0, ""))
print(line("baseline, requests/s", [r[1] for r in rows], 0, ""))
print(line("nginx, requests/s", [r[2] for r in rows], 0, ""))
print(line("**compare.sh's HTTP ratio after** (this / nginx)", [r[0] / r[2] for r in rows]))
print(line("**compare.sh's HTTP ratio before** (baseline / nginx)", [r[1] / r[2] for r in rows]))
print(line("this / baseline", [r[0] / r[1] for r in rows]))
PY
)
echo "$summary"
{
  echo
  echo "## JSON API before and after: $(git rev-parse --short HEAD) vs $baseline ($(date -u +%F))"
  echo
  echo "$records identifiers; wrk -t1 -c32, ${seconds}s per run, 10,000 identifiers at random;"
  echo "${IDNODE_AB_ROUNDS:-5} rounds, the order rotating; servers on core 0, wrk on core 1; each idnode warmed by"
  echo "count."
  echo
  echo "$summary"
} >>benchmarks/RESULTS-ui.md
