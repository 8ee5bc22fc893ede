#!/usr/bin/env bash
# A stand-in for `aloud serve --config FILE`, for testing the harness before aloud serves:
# reads listen, prefix and upstream from aloud's config (the one-route form that
# proxy_hop.sh writes) and execs nginx configured like proxy_hop.sh's nginx, in the foreground,
# so the pid the caller holds is nginx's master.
#
#   benches/proxy_hop.sh --aloud-bin benches/nginx_as_aloud.sh
set -euo pipefail

[[ ${1:-} == serve && ${2:-} == --config && -n ${3:-} ]] || {
    echo "usage: nginx_as_aloud.sh serve --config FILE" >&2
    exit 2
}
CONFIG=$3
field() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\\(.*\\)\".*/\\1/p" "$CONFIG" | head -1; }
LISTEN=$(field listen)
PREFIX=$(field prefix)
UPSTREAM=$(field upstream)
[[ -n $LISTEN && -n $PREFIX && -n $UPSTREAM ]] || {
    echo "nginx_as_aloud: $CONFIG needs server.listen and one route's prefix and upstream" >&2
    exit 1
}
UPSTREAM=${UPSTREAM#http://}
UPSTREAM=${UPSTREAM%/}

DIR=$(dirname "$(realpath "$CONFIG")")/nginx_as_aloud
mkdir -p "$DIR/tmp"
cat >"$DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    keepalive_requests 1000000;
    upstream route { server $UPSTREAM; keepalive 128; keepalive_requests 1000000; }
    server {
        listen $LISTEN;
        location $PREFIX/ {
            proxy_pass http://route/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
EOF
exec "$(command -v nginx || echo /usr/sbin/nginx)" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log"
