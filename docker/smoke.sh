#!/usr/bin/env bash
# The compose topology (docker/compose.yaml), run for real with podman on this kind of machine:
# builds the image, brings up the top-level node, the two secondary nodes and the three-server
# mirror site with docker/compose.host.yaml (host network, 127.0.0.1 only), resolves through them,
# writes on a secondary node over the Handle admin protocol and sees the write at the top-level
# node and at the other secondary node, prints the top's replication status, checks that each
# site server pulls its share of 88 and that identifiers asked at site0 are answered there or,
# after a 301, at the server the hash picks, and tears everything down (containers and volumes). Not part of CI (the image build alone takes minutes).
#   docker/smoke.sh [--no-build]
# Podman setup it expects (see README "Containers"): the runc runtime, cgroupfs, and a
# containers.conf whose [containers] section sets default_ulimits = [] (CONTAINERS_CONF, default
# /root/podman/containers.conf here), and a localhost/debian:12 and debian:12-slim base image
# (debootstrap --variant=minbase bookworm, then podman import).
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-/root/podman/containers.conf}
compose=(podman-compose --podman-path "$PWD/docker/podman-host-network.sh" -p idnode-smoke
         -f docker/compose.yaml -f docker/compose.host.yaml)
log() { printf '\n== %s\n' "$*"; }
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
down() {
  log "teardown"
  "${compose[@]}" down -v >/dev/null 2>&1 || true
  podman volume rm -f idnode-smoke_ca idnode-smoke_top-certs idnode-smoke_sn1-certs \
    idnode-smoke_sn2-certs idnode-smoke_top-data idnode-smoke_sn1-data idnode-smoke_sn2-data \
    idnode-smoke_site{0,1,2}-certs idnode-smoke_site{0,1,2}-data >/dev/null 2>&1 || true
  echo "containers left: $(podman ps -a --filter label=io.podman.compose.project=idnode-smoke -q | wc -l)"
}

if [[ ${1:-} != --no-build ]]; then
  log "build the image (docker/Dockerfile)"
  start=$SECONDS
  podman build -q --format docker -f docker/Dockerfile -t localhost/idnode:latest . >/dev/null
  echo "built in $((SECONDS - start)) s"
fi
down >/dev/null
trap down EXIT

log "up: top (88), sn1 (88.100), sn2 (88.200), the mirror site site0-2 (88 by the hash)"
"${compose[@]}" up -d >/tmp/idnode-smoke-up.log 2>&1 || { cat /tmp/idnode-smoke-up.log; fail "compose up"; }
wait_http() {  # wait_http PORT PATH PATTERN SECONDS
  local deadline=$((SECONDS + $4))
  while ((SECONDS < deadline)); do
    curl -fsS "http://127.0.0.1:$1$2" 2>/dev/null | grep -q "$3" && return 0
    sleep 0.2
  done
  return 1
}
for node in top:8000 sn1:18000 sn2:28000; do
  wait_http "${node#*:}" /healthz . 60 || { podman logs "idnode-smoke_${node%%:*}_1" 2>&1 | tail -20; fail "${node%%:*} not healthy"; }
  echo "${node%%:*}: healthy on 127.0.0.1:${node#*:}"
done

log "resolve"
curl -fsS http://127.0.0.1:18000/api/handles/88.100/SN0001 | head -c 300; echo
wait_http 8000 /api/handles/88.100/SN0001 sn1.example.cn 60 || fail "the top does not answer 88.100/SN0001 from its mirror"
echo "top answers 88.100/SN0001 from its mirror of sn1"
wait_http 28000 /api/handles/88.100/SN0001 sn1.example.cn 60 || fail "sn2 does not answer 88.100/SN0001 (through the top)"
echo "sn2 answers 88.100/SN0001 (sn1 -> top -> sn2)"
wait_http 18000 /api/handles/88/TOP01 top.example.cn 60 || fail "sn1 does not answer the top's 88/TOP01"
echo "sn1 answers the top's 88/TOP01"

log "write on sn1 (CREATE_HANDLE over the Handle protocol, HS_SECKEY challenge-response)"
secret=$(podman exec idnode-smoke_sn1_1 cat /certs/admin.secret)
handle="88.100/SMOKE-$(date +%s)"
python3 - "$handle" "$secret" <<'PY'
import sys
sys.path.insert(0, "tests/integration")
import hierarchy_test as ht
handle, secret = sys.argv[1], sys.argv[2].encode()
answers = ht.tcp_admin(12641, ht.OC_CREATE, ht.values_body(handle, [ht.encode_value(1, "URL", b"https://sn1.example.cn/smoke")]),
                       identity=("88.100/admin", 300, secret))
rc = answers[-1]["rc"]
print("CREATE_HANDLE %s at sn1: rc %d" % (handle, rc))
sys.exit(0 if rc == 1 else 1)
PY
start=$(date +%s%N)
wait_http 8000 "/api/handles/$handle" smoke 30 || fail "the write did not reach the top"
echo "the top answers $handle after $(( ($(date +%s%N) - start) / 1000000 )) ms"
wait_http 28000 "/api/handles/$handle" smoke 30 || fail "the write did not reach sn2"
echo "sn2 answers $handle"
curl -fsS "http://127.0.0.1:8000/api/handles/$handle"; echo

log "a write at the top under 88.100 is not taken (the mirror is read-only: 302 with the owner's site once idctl prefix mirror recorded it, else 301)"
python3 - "$secret" <<'PY'
import sys
sys.path.insert(0, "tests/integration")
import hierarchy_test as ht
answers = ht.tcp_admin(2641, ht.OC_CREATE, ht.values_body("88.100/NOT-HERE", [ht.encode_value(1, "URL", b"x")]),
                       identity=("88.100/admin", 300, sys.argv[1].encode()))
rc = answers[-1]["rc"]
print("CREATE_HANDLE 88.100/NOT-HERE at the top: rc %d" % rc)
sys.exit(0 if rc in (301, 302) else 1)
PY

log "the resolver page and the dashboard's numbers, from the image (assets compiled in)"
wait_http 8000 "/?id=$handle" 'id="values"' 30 || fail "the top's resolver page does not show $handle"
wait_http 8000 "/ui/assets/ui.css" "prefers-color-scheme" 10 || fail "the top serves no stylesheet"
wait_http 8000 /api/stats '"direction"' 30 || fail "the top's /api/stats shows no replication link"
curl -fsS http://127.0.0.1:8000/api/stats | python3 -c "
import json, sys
s = json.load(sys.stdin)
print('top /api/stats: prefixes', {k: s['prefixes'][k] for k in ('homed', 'delegated', 'mirrored')},
      'links', [(l['peer'], l['direction'], l['state'], l['lag_entries']) for l in s['replication']['links']])
"

log "replication status at the top"
podman exec idnode-smoke_top_1 idctl replication status --http 127.0.0.1:8000
log "digests of 88.100 (sn1, top, sn2)"
for port in 18000 8000 28000; do curl -fsS "http://127.0.0.1:$port/api/digest?prefix=88.100"; echo; done

log "the mirror site: three servers, each pulling its share of 88 from the top"
for node in site0:38000 site1:48000 site2:58000; do
  wait_http "${node#*:}" /healthz . 60 || { podman logs "idnode-smoke_${node%%:*}_1" 2>&1 | tail -20; fail "${node%%:*} not healthy"; }
done
curl -fsS http://127.0.0.1:38000/api/site | python3 -c "
import json, sys
servers = json.load(sys.stdin)['site']['servers']
assert len(servers) == 3, servers
print('site0 publishes a site of %d servers' % len(servers))" || fail "site0's /api/site"
for k in 0 1 2; do
  deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$((38000 + 10000 * k))/api/replication" | grep -q "server $k of 3 by the site hash"; do
    ((SECONDS < deadline)) || fail "site$k does not pull its share"
    sleep 0.2
  done
done
echo "each server pulls its share (server k of 3 by the site hash)"
# Every identifier of 88 and the smoke write, asked at site0 as a client would: its own answered
# there, the others' after a 301 at the server the hash picks.
routed=0
for handle in 88/TOP01 88/TOP02 88/TOP03 88/TOP04 88/TOP05 88/TOP06 88/TOP07 88/TOP08 88/TOP09 88/TOP10 "$handle"; do
  deadline=$((SECONDS + 60))
  until out=$(podman exec idnode-smoke_site0_1 idctl resolve "$handle" --server udp://127.0.0.1:32641 2>&1); do
    ((SECONDS < deadline)) || { echo "$out"; fail "the site does not answer $handle"; }
    sleep 0.2
  done
  grep -q "by the site's hash" <<<"$out" && routed=$((routed + 1))
done
echo "the site answers all 11 identifiers asked at site0 ($routed of them after a 301, at the server the hash picks)"
((routed > 0 && routed < 11)) || fail "the hash should send some identifiers to site0 and some elsewhere"
if [[ -x build/release/src/cmd/idbench ]]; then
  out=$(build/release/src/cmd/idbench run --protocol udp --site 127.0.0.1:32641 --pattern '88/TOP0{1..9}' \
    --order sequential --requests 9 --seconds 30 2>&1) || { echo "$out"; fail "idbench --site"; }
  grep -q "^code 1: 9$" <<<"$out" || { echo "$out"; fail "idbench --site: not every key answered"; }
  grep "^server" <<<"$out"
fi

echo
echo "smoke: OK"
