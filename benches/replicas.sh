#!/usr/bin/env bash
# Two aloud replicas capturing into one Postgres, each at RATE req/s (open loop), beside one
# replica capturing into SQLite at RATE and the upstream direct at RATE, in one run (issue 9,
# item 6): achieved throughput, p50/p99 and p99 added over direct. See benches/README.md
# ("Two replicas with Postgres").
#
#   benches/replicas.sh                 10 s per target at 2,000 req/s per replica (release build)
#   benches/replicas.sh --via nginx     the two replicas behind nginx round-robin at 2 x RATE
#   benches/replicas.sh --smoke         2 s per target at 500 req/s: proves the harness works
#
# Writes a markdown report to stdout and to $CARGO_TARGET_DIR/bench/replicas.md. All traffic
# stays on 127.0.0.1; the Postgres (Debian's initdb/pg_ctl in a temp dir, as `nobody` when root,
# default durability: fsync and synchronous commit on) and every process this script starts are
# stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

usage() {
    cat <<'EOF'
usage: benches/replicas.sh [options]
  --smoke           2 s per target at 500 req/s per replica (figures mean nothing)
  --duration S      seconds of load per target (default 10; smoke 2)
  --rate R          open-loop req/s per replica (default 2000; smoke 500)
  --conns N         connections per load generator (default 32)
  --via direct|nginx  direct: one oha per replica at R, run together (default); nginx: one oha
                    at 2 x R through nginx round-robin over both replicas
  --debug           use (and build) the debug profile instead of release
  --no-build        do not run cargo build
EOF
}

SMOKE=0 DURATION="" RATE="" CONNS=32 VIA=direct BUILD=1 PROFILE=release
while (($#)); do
    case $1 in
        --smoke) SMOKE=1 ;;
        --duration) DURATION=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --via) VIA=$2; shift ;;
        --debug) PROFILE=debug ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "replicas: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $VIA == direct || $VIA == nginx ]] || { echo "replicas: --via direct or nginx" >&2; exit 2; }
if ((SMOKE)); then DURATION=${DURATION:-2} RATE=${RATE:-500}; else DURATION=${DURATION:-10} RATE=${RATE:-2000}; fi

log() { echo "replicas: $*" >&2; }
die() { log "$*"; exit 1; }

command -v oha >/dev/null || die "oha not found: cargo install oha --locked"
command -v jq >/dev/null || die "jq not found: apt-get install -y jq"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n $PG_BIN ]] || die "Postgres is not installed: scripts/install-test-deps.sh installs it"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ $VIA == direct || -x $NGINX ]] || die "nginx is not installed: scripts/install-test-deps.sh installs it"

# ---------------------------------------------------------------------------------------------
# Processes and cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aloud-replicas.XXXXXX")
chmod 755 "$WORK" # Postgres runs as nobody under it
PIDS=()
AS=()
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$WORK/pg"
    chown nobody: "$WORK/pg"
    AS=(runuser -u nobody --)
fi
cleanup() {
    [[ $BASHPID == "$$" ]] || return 0
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_port PID PORT: poll until PORT accepts connections (15 s at most); fail if PID dies first.
wait_port() {
    local pid=$1 port=$2
    for _ in $(seq 750); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    return 1
}
answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1/json") == 200 ]]; }

# ---------------------------------------------------------------------------------------------
# Build, Postgres, upstream

if ((BUILD)); then
    flags=(--quiet)
    [[ $PROFILE == release ]] && flags+=(--release)
    log "cargo build ($PROFILE): aloud, fast_upstream"
    # aloud on its own, without the dev-dependencies' features (benches/proxy_hop.sh says why).
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build "${flags[@]}" --bin aloud &&
        CARGO_TARGET_DIR=$TARGET_DIR cargo build "${flags[@]}" --example fast_upstream) >&2
fi
ALOUD=$TARGET_DIR/$PROFILE/aloud
UPSTREAM_BIN=$TARGET_DIR/$PROFILE/examples/fast_upstream
[[ -x $ALOUD && -x $UPSTREAM_BIN ]] || die "$ALOUD or $UPSTREAM_BIN missing: drop --no-build"

PG_PORT=$(free_port)
mkdir -p "$WORK/pg"
printf 'bench-secret\n' >"$WORK/pg/pw"
chmod 600 "$WORK/pg/pw"
((${#AS[@]})) && chown nobody: "$WORK/pg/pw"
(cd "$WORK/pg" && "${AS[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -U aloud --pwfile="$WORK/pg/pw" \
    --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 >/dev/null)
(cd "$WORK/pg" && "${AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$WORK/pg" start >/dev/null)
"$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -t 10 >/dev/null || die "Postgres not ready"
PG_URL="postgres://aloud:bench-secret@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
log "Postgres $(basename "$(dirname "$PG_BIN")") on 127.0.0.1:$PG_PORT"

: >"$WORK/upstream.out"
"$UPSTREAM_BIN" --listen 127.0.0.1:0 >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
PIDS+=($!)
UPSTREAM=""
for _ in $(seq 500); do
    UPSTREAM=$(sed -n 's/^listening on //p' "$WORK/upstream.out")
    [[ -n $UPSTREAM ]] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || die "fast_upstream exited: $(cat "$WORK/upstream.err")"
    sleep 0.02
done
[[ -n $UPSTREAM ]] || die "fast_upstream did not report its address"

# start_aloud NAME DATABASE: one replica capturing everything (full, redacted) into DATABASE (a
# SQLite path, or the Postgres URL through database_env with the cluster on); sets URL[NAME].
declare -A URL PID ADDR
start_aloud() {
    local name=$1 db=$2 dir="$WORK/$1" port capture cluster="" pid
    mkdir -p "$dir"
    port=$(free_port)
    if [[ $db == postgres://* ]]; then
        capture="database_env = \"ALOUD_BENCH_DATABASE\""
        cluster=$'[cluster]\nenabled = true'
    else
        capture="database = \"$db\""
    fi
    cat >"$dir/aloud.toml" <<EOF
# Generated by benches/replicas.sh for $name.
[server]
listen = "127.0.0.1:$port"
[admin]
listen = "127.0.0.1:0"
[capture]
$capture
spill_dir = "$dir/spill"
$cluster
[[routes]]
name = "fast"
prefix = "/fast"
upstream = "http://$UPSTREAM"
api = "openai"
capture = "full"
EOF
    ALOUD_BENCH_DATABASE=$PG_URL RUST_LOG=warn "$ALOUD" serve --config "$dir/aloud.toml" \
        >"$dir/out" 2>"$dir/err" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$pid" "$port" && answers "http://127.0.0.1:$port/fast" ||
        die "$name did not come up: $(tail -c 400 "$dir/err")"
    URL[$name]="http://127.0.0.1:$port/fast"
    ADDR[$name]="127.0.0.1:$port"
    PID[$name]=$pid
    log "$name on 127.0.0.1:$port (pid $pid)"
}

start_aloud sqlite "$WORK/sqlite/aloud.db"
start_aloud pg-a "$PG_URL"
start_aloud pg-b "$PG_URL"

if [[ $VIA == nginx ]]; then
    NPORT=$(free_port)
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream aloud {
        server ${ADDR[pg-a]};
        server ${ADDR[pg-b]};
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NPORT;
        location / {
            proxy_pass http://aloud;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
        }
    }
}
EOF
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" -g 'daemon off;' \
        >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port "${PIDS[-1]}" "$NPORT" && answers "http://127.0.0.1:$NPORT/fast" ||
        die "nginx did not come up: $(tail -3 "$WORK/nginx/error.log")"
    URL[nginx]="http://127.0.0.1:$NPORT/fast"
    log "nginx on 127.0.0.1:$NPORT"
fi

# ---------------------------------------------------------------------------------------------
# Load

OHA=(oha --no-tui --output-format json)
oha --help 2>&1 | grep -q -- '--output-format' || OHA=(oha --no-tui -j)
LATCORR=()
oha --help 2>&1 | grep -q -- '--latency-correction' && LATCORR=(--latency-correction)

# run_oha URL RATE OUT: open loop at RATE for DURATION seconds, oha's JSON into OUT.
run_oha() { "${OHA[@]}" -c "$CONNS" -z "${DURATION}s" -q "$2" "${LATCORR[@]}" "$1/json" >"$3" 2>/dev/null; }
# figures OUT -> "rps<TAB>p50_ms<TAB>p99_ms<TAB>ok<TAB>errors"
figures() {
    jq -r '
        (.statusCodeDistribution // {}) as $s
        | ([$s | to_entries[] | select(.key | startswith("2")) | .value] | add // 0) as $ok
        | ([$s | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0) as $bad
        | ([(.errorDistribution // {}) | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0) as $err
        | [ .summary.requestsPerSec, ((.latencyPercentiles.p50 // 0) * 1000),
            ((.latencyPercentiles.p99 // 0) * 1000), $ok, ($bad + $err) ] | map(tostring) | join("\t")' "$1"
}
# stored DATABASE: records `aloud stats` counts in it.
stored() { "$ALOUD" stats --json --database "$1" 2>/dev/null | jq '[.rows[].n] | add // 0'; }
# settle DATABASE N: poll (10 s at most) until N records are stored; prints the count.
settle() {
    local n=0
    for _ in $(seq 200); do
        n=$(stored "$1" || echo 0)
        ((n >= $2)) && break
        sleep 0.05
    done
    echo "$n"
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
WARM=1000
log "warm-up: $WARM requests per replica"
for t in sqlite pg-a pg-b; do "${OHA[@]}" -c 8 -n "$WARM" "${URL[$t]}/json" >/dev/null 2>&1 || true; done
# Each replica also served one readiness probe.
BASE_SQLITE=$(settle "$WORK/sqlite/aloud.db" $((WARM + 1)))
BASE_PG=$(settle "$PG_URL" $((2 * WARM + 2)))

log "direct at $RATE req/s, ${DURATION} s"
run_oha "http://$UPSTREAM" "$RATE" "$WORK/direct.json"
log "one replica, SQLite, at $RATE req/s"
run_oha "${URL[sqlite]}" "$RATE" "$WORK/sqlite.json"
if [[ $VIA == direct ]]; then
    log "two replicas, Postgres, at $RATE req/s each (together)"
    run_oha "${URL[pg-a]}" "$RATE" "$WORK/pg-a.json" &
    A=$!
    run_oha "${URL[pg-b]}" "$RATE" "$WORK/pg-b.json" &
    B=$!
    wait "$A" "$B"
else
    log "two replicas, Postgres, through nginx at $((2 * RATE)) req/s"
    run_oha "${URL[nginx]}" "$((2 * RATE))" "$WORK/pg-nginx.json"
fi

# ---------------------------------------------------------------------------------------------
# Report

declare -A F
for f in "$WORK"/*.json; do
    t=$(basename "$f" .json)
    F[$t]=$(figures "$f")
done
col() { cut -f"$2" <<<"${F[$1]}"; }
DIRECT_P99=$(col direct 3)
row() {
    local label=$1 t=$2 offered=$3 rec=$4
    awk -v l="$label" -v o="$offered" -v rps="$(col "$t" 1)" -v p50="$(col "$t" 2)" -v p99="$(col "$t" 3)" \
        -v d="$DIRECT_P99" -v ok="$(col "$t" 4)" -v err="$(col "$t" 5)" -v rec="$rec" \
        'BEGIN { printf "| %s | %s | %.0f | %.3f | %.3f | %s | %d / %d | %s |\n", l, o, rps, p50, p99,
                 (l == "direct" ? "-" : sprintf("%+.3f", p99 - d)), ok, err, rec }'
}
SQLITE_OK=$(col sqlite 4)
SQLITE_STORED=$(($(settle "$WORK/sqlite/aloud.db" $((BASE_SQLITE + ${SQLITE_OK%.*}))) - BASE_SQLITE))
if [[ $VIA == direct ]]; then
    PG_OK=$(($(col pg-a 4) + $(col pg-b 4)))
else
    PG_OK=$(col pg-nginx 4)
fi
PG_STORED=$(($(settle "$PG_URL" $((BASE_PG + PG_OK))) - BASE_PG))

REPORT=$WORK/report.md
{
    echo "# Two replicas with Postgres vs one with SQLite ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "$PROFILE build; oha $(oha --version | awk '{print $2}') open loop (-q, latency correction), -c $CONNS, ${DURATION} s per"
    echo "target; Postgres $(basename "$(dirname "$PG_BIN")") (fsync on); capture full; load average before: $LOADAVG;"
    echo "$(nproc) cores, nothing pinned (replicas, Postgres, upstream and oha share them)."
    ((SMOKE)) && echo "**Smoke run: figures mean nothing.**"
    echo
    echo "| target | offered req/s | achieved req/s | p50 ms | p99 ms | p99 added ms | 2xx / errors | records stored |"
    echo "|---|---|---|---|---|---|---|---|"
    row direct direct "$RATE" -
    row "1 replica, SQLite" sqlite "$RATE" "$SQLITE_STORED"
    if [[ $VIA == direct ]]; then
        row "2 replicas, Postgres: A" pg-a "$RATE" ""
        row "2 replicas, Postgres: B" pg-b "$RATE" ""
        awk -v o="$((2 * RATE))" -v a="$(col pg-a 1)" -v b="$(col pg-b 1)" -v pa="$(col pg-a 3)" \
            -v pb="$(col pg-b 3)" -v d="$DIRECT_P99" -v ok="$PG_OK" -v rec="$PG_STORED" \
            'BEGIN { m = pa > pb ? pa : pb
                     printf "| **2 replicas, Postgres: together** | %s | %.0f | | %.3f (worse) | %+.3f | %d | %s |\n", o, a + b, m, m - d, ok, rec }'
    else
        row "2 replicas, Postgres, via nginx" pg-nginx "$((2 * RATE))" "$PG_STORED"
    fi
    echo
    echo "\"p99 added\" is the row's p99 minus direct's at the same per-process rate. \"records stored\" is what"
    echo "\`aloud stats\` counts once the writers settled (10 s at most), against the 2xx answers."
} | tee "$REPORT"
mkdir -p "$TARGET_DIR/bench"
cp "$REPORT" "$TARGET_DIR/bench/replicas.md"
