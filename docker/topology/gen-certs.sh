#!/bin/sh
# Test certificates for the compose topology, made when it starts (never committed): a CA, a key
# and a certificate per node (CN and DNS subjectAltName = the node's replication name), and the
# demo admin secret of the secondary nodes. Idempotent: an existing set is kept.
#   gen-certs.sh DIR NAME...
set -eu
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
    -days 30 -subj "/CN=idnode compose test CA" 2>/dev/null
fi
for name in "$@"; do
  [ -f "$name.crt" ] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" \
    -days 30 -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
done
[ -f admin.secret ] || openssl rand -hex 16 >admin.secret
# The nodes run as the unprivileged idnode user.
chmod 0644 ./*.crt admin.secret
chmod 0640 ./*.key
chgrp idnode ./*.key 2>/dev/null || true
touch done
