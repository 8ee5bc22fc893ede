#!/usr/bin/env bash
# Cross-replica event lag of the side channel: two aloud replicas sharing a throwaway Postgres,
# N requests on replica A in the events tier, each watched by a subscriber on replica B
# (examples/cluster_lag.rs). See benches/README.md ("Cross-replica lag").
#
#   benches/cluster_lag.sh                      1,000 concurrent waits, 8 s each (the issue's target)
#   benches/cluster_lag.sh --requests 200       a smaller run
#   benches/cluster_lag.sh --smoke              100 waits of 2 s
#
# All traffic stays on 127.0.0.1; the Postgres (Debian's initdb/pg_ctl, run as `nobody` when
# root) lives in a temp dir and is stopped and removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REQUESTS=1000
THINK_MS=8000
HB_MS=500
BUILD=1
while (($#)); do
    case $1 in
        --smoke) REQUESTS=100; THINK_MS=2000 ;;
        --requests) REQUESTS=$2; shift ;;
        --think-ms) THINK_MS=$2; shift ;;
        --heartbeat-ms) HB_MS=$2; shift ;;
        --no-build) BUILD=0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z $PG_BIN ]]; then
    apt-get install -y postgresql >/dev/null
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
DIR=$(mktemp -d /tmp/aloud-lag-XXXXXX)
AS=()
if [[ $(id -u) == 0 ]]; then
    chown nobody: "$DIR"
    AS=(runuser -u nobody --)
fi
cleanup() {
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${AS[@]}" "$PG_BIN/initdb" -D "$DIR/data" -U aloud --auth=trust --no-sync >/dev/null
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/pg.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c fsync=off" start >/dev/null

if ((BUILD)); then
    (cd "$ROOT" && cargo build --release --example cluster_lag >&2)
fi
ulimit -n 65536 2>/dev/null || true
echo "cluster_lag: $REQUESTS requests, think ${THINK_MS} ms, heartbeat ${HB_MS} ms" >&2
"$TARGET_DIR/release/examples/cluster_lag" --database "postgres://aloud@127.0.0.1:$PORT/postgres" \
    --requests "$REQUESTS" --think-ms "$THINK_MS" --heartbeat-ms "$HB_MS"
