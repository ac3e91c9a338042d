#!/bin/sh
# Entry point of a node of the compose topology (docker/compose.yaml): waits for the certificates
# of the `certs` service, writes the node's config from the template docker/topology/NAME.yaml
# (the address to bind comes from the environment, so the same files serve a bridge network and
# the loopback-only host network of docker/compose.host.yaml; peers are named by host name),
# seeds a fresh data dir, runs idnode.
#   node.sh NAME      env: BIND (the address this node listens on)
# A server of the mirror site (NAME siteK, K 0-2) is written from the one template site.yaml, its
# position K and its ports filled in.
set -eu
name=$1
template=$name
index=0
case $name in
  site[0-2]) index=${name#site} template=site ;;
esac
certs=/certs
for _ in $(seq 600); do
  [ -f "$certs/done" ] && break
  sleep 0.1
done
[ -f "$certs/done" ] || { echo "node.sh: no certificates in $certs after 60 s" >&2; exit 1; }
config=/var/lib/idnode/$name.yaml
sed -e "s/@BIND@/${BIND}/g" -e "s/@INDEX@/$index/g" -e "s/@HANDLE_PORT@/$((32641 + 10000 * index))/g" \
  -e "s/@HTTP_PORT@/$((38000 + 10000 * index))/g" "/etc/idnode/topology/$template.yaml" >"$config"
data=/var/lib/idnode/data
if [ ! -d "$data" ] && [ -f "/etc/idnode/topology/$name.seed.jsonl" ]; then
  # The seed records, and the admin identity of the node's prefix with the generated secret.
  secret=$(cat "$certs/admin.secret")
  seed=/var/lib/idnode/seed.jsonl
  sed -e "s/@SECRET@/$secret/g" "/etc/idnode/topology/$name.seed.jsonl" >"$seed"
  idctl import --data-dir "$data" "$seed"
fi
exec idnode --config "$config" --data-dir "$data" --bind "$BIND"
