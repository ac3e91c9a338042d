# Shared by the benchmark scripts (sourced, not run): arguments, the build to use, peers from
# Debian, a scratch directory and the processes to stop when the script ends.
#   need_build TARGET...      builds build/release (or $IDNODE_BUILD) if a target is missing
#   need_packages CMD=PKG...  installs the Debian package of each missing command
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
records=1000000
seconds=10
prefixes=0     # compare.sh: delegated prefix handles loaded into idnode's data (--prefixes N)
baseline=""    # compare.sh: the build directory of another revision to measure beside (--baseline DIR)
while (($#)); do
  case $1 in
    --records) records=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --prefixes) prefixes=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done
build=${IDNODE_BUILD:-build/release}
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo

need_packages() {
  local pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*=}" >/dev/null
  done
}

need_build() {
  local target
  for target in "$@"; do
    if [[ ! -x $build/$target ]]; then
      cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$build" -j2 >/dev/null
      return
    fi
  done
}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Fills idnode's answer cache with every identifier of key file $3 ($4 of them): sequential
# passes over UDP port $1, each twice as long as the last, until /metrics on HTTP port $2 counts
# them all (a server measured half-cold would be charged for its storage reads).
warm_cache() {
  local seconds=10 entries=0
  for _ in 1 2 3 4 5; do
    taskset -c 1 "$build/src/cmd/idbench" run --protocol udp --server "127.0.0.1:$1" --keys "$3" \
      --order sequential --seconds "$seconds" >/dev/null 2>&1
    entries=$(curl -s "127.0.0.1:$2/metrics" | awk '/^idnode_cache_entries / {print int($2)}')
    [ "${entries:-0}" -ge "$4" ] && return 0
    seconds=$((seconds * 2))
  done
  echo "warning: the cache holds ${entries:-0} of $4 answers" >&2
}

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
cpu_us_per() { python3 -c "print(round(($2-$1)/$(getconf CLK_TCK)*1e6/max(1,$3),2))"; }

# The HTTP peer: fetches idnode's JSON answers for 10,000 of the keys in $1 from its HTTP port $2,
# writes them as static files with a wrk script that asks for them at random ($work/paths.lua),
# and starts nginx on port $3, pinned to core 0, serving those files.
start_nginx_peer() {
  local keys=$1 idnode_port=$2 nginx_port=$3
  mkdir -p "$work/www"
  python3 - "$keys" "$work/www" "$idnode_port" <<'PY'
import os, random, sys, urllib.request
keys, www, port = sys.argv[1], sys.argv[2], sys.argv[3]
all_keys = [l.strip() for l in open(keys) if l.strip()]
sample = random.Random(3).sample(all_keys, min(10000, len(all_keys)))
for handle in sample:
    body = urllib.request.urlopen("http://127.0.0.1:%s/api/handles/%s" % (port, handle)).read()
    path = os.path.join(www, "api", "handles", handle)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(body)
open(os.path.join(www, "paths.txt"), "w").write("".join("/api/handles/%s\n" % h for h in sample))
PY
  cat >"$work/paths.lua" <<LUA
local paths = {}
for line in io.lines("$work/www/paths.txt") do paths[#paths + 1] = line end
math.randomseed(7)
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
LUA
  cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; default_type application/json; types { }
  server { listen 127.0.0.1:$nginx_port; root $work/www; location / { try_files \$uri =404; } } }
CONF
  taskset -c 0 nginx -c "$work/nginx.conf" -g "daemon off;" &
  pids+=($!)
  sleep 0.5
}
