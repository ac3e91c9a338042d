#!/bin/sh
# Test certificates for the compose topology, made when it starts (never committed): a CA (kept in
# CA_DIR, which only this service mounts), and for each node, in OUT_DIR/NAME (that node's own
# volume): its key and certificate (CN and DNS subjectAltName = the node's replication name), the
# CA certificate, and the demo admin secret of the secondary nodes. No node can read the CA key
# or another node's key; the servers of the mirror site (site0-2) share one server key by design
# (their HS_SITE publishes it for each). Idempotent: what exists is kept.
#   gen-certs.sh CA_DIR OUT_DIR NAME...
set -eu
ca=$1
out=$2
shift 2
mkdir -p "$ca"
chmod 0700 "$ca"
if [ ! -f "$ca/ca.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca/ca.key" \
    -out "$ca/ca.crt" -days 30 -subj "/CN=idnode compose test CA" 2>/dev/null
fi
[ -f "$ca/admin.secret" ] || openssl rand -hex 16 >"$ca/admin.secret"
for name in "$@"; do
  dir=$out/$name
  mkdir -p "$dir"
  if [ ! -f "$dir/$name.crt" ]; then
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$name.key" \
      -out "$ca/$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" >"$ca/$name.ext"
    openssl x509 -req -in "$ca/$name.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
      -out "$dir/$name.crt" -days 30 -extfile "$ca/$name.ext" 2>/dev/null
    rm -f "$ca/$name.csr" "$ca/$name.ext"
  fi
  cp "$ca/ca.crt" "$ca/admin.secret" "$dir/"
  case $name in
    site[0-2])
      # The servers of the mirror site share one server key (their HS_SITE publishes it).
      if [ ! -f "$ca/site-server-key.pem" ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$ca/site-server-key.tmp" 2>/dev/null
        mv "$ca/site-server-key.tmp" "$ca/site-server-key.pem"
      fi
      cp "$ca/site-server-key.pem" "$dir/"
      chmod 0400 "$dir/site-server-key.pem"
      chown idnode "$dir/site-server-key.pem" 2>/dev/null || true
      ;;
  esac
  # The node runs as the unprivileged idnode user: its key readable by it alone.
  chmod 0644 "$dir/$name.crt" "$dir/ca.crt"
  chmod 0400 "$dir/$name.key" "$dir/admin.secret"
  chown idnode "$dir/$name.key" "$dir/admin.secret" 2>/dev/null || true
  touch "$dir/done"
done
