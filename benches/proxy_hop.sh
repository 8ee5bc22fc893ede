#!/usr/bin/env bash
# What one proxy hop costs: direct to a fast local upstream, through nginx, through aloud with
# capture off and through aloud capturing everything into SQLite, side by side in one run.
# See benches/README.md for what each figure means.
#
#   benches/proxy_hop.sh            full run, pinned (~3 minutes of load plus builds)
#   benches/proxy_hop.sh --no-pin   the same, processes placed by the scheduler
#   benches/proxy_hop.sh --smoke    tiny durations for CI (under 60 s once built)
#
# Writes a markdown report to stdout and to $CARGO_TARGET_DIR/bench/proxy_hop.md.
# All traffic goes to 127.0.0.1. Every process this script starts is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

usage() {
    cat <<'EOF'
usage: benches/proxy_hop.sh [options]
  --smoke              tiny durations, no oha install (falls back to examples/mini_load)
  --duration S         seconds per load point and round (default 5; smoke 1)
  --rounds N           rounds of every load point, medians reported (default 3; smoke 1)
  --rates "R1 R2"      open-loop rates in requests/s (default "2000 5000")
  --conns N            connections for the closed-loop max-throughput run (default 64)
  --rate-conns N       connections for the open-loop runs (default 32)
  --chunks N           events per stream for the per-chunk delay (default 1000)
  --gap-us U           microseconds between stream events (default 1000; smoke 100)
  --stream-runs N      streams per target, interleaved (default 3; smoke 1)
  --targets LIST       comma-separated subset of direct,nginx,aloud,aloud+capture (default all four),
                       plus the optional aloud+telemetry: capture off, OTLP traces on (sample 1.0)
                       to nginx's /v1/traces, which answers 200 at once (nginx is started for it),
                       and aloud-bare: capture, metrics (the admin listener) and traces all off,
                       the baseline issue 8's cost is measured against
  --capture MODE       what the aloud+capture target captures: full (default) or metadata
  --aloud-bin PATH     aloud binary (default: $ALOUD_BIN or target/release/aloud, built here)
  --require-aloud      exit non-zero when an aloud target does not come up, serves nothing, or
                       (aloud+capture) stores no record (default: report n/a)
  --load oha|mini      force a load generator (default: oha, or mini_load if oha is missing in smoke)
  --no-build           do not run cargo build (use what is in target/release)
  --no-pin             do not pin processes to cores
  --aloud-workers N    [server] workers for every aloud target (default: unset, one per core the
                       process may use; pinned, that is 1). nginx runs 1 worker either way
  --core-load N        core for upstream, load generator and stream client (default 0)
  --core-proxy N       core for the proxy under test (default 1)
EOF
}

SMOKE=0
DURATION=""
ROUNDS=""
RATES="2000 5000"
CONNS=64
RATE_CONNS=32
CHUNKS=1000
GAP_US=""
STREAM_RUNS=""
TARGETS="direct,nginx,aloud,aloud+capture"
ALOUD_BIN=${ALOUD_BIN:-}
REQUIRE_ALOUD=0
CAPTURE=full
LOAD=""
BUILD=1
PIN=1
CORE_LOAD=0
CORE_PROXY=1
ALOUD_WORKERS=""

while (($#)); do
    case $1 in
        --smoke) SMOKE=1 ;;
        --duration) DURATION=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --rates) RATES=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --rate-conns) RATE_CONNS=$2; shift ;;
        --chunks) CHUNKS=$2; shift ;;
        --gap-us) GAP_US=$2; shift ;;
        --stream-runs) STREAM_RUNS=$2; shift ;;
        --targets) TARGETS=$2; shift ;;
        --aloud-bin) ALOUD_BIN=$2; shift ;;
        --require-aloud) REQUIRE_ALOUD=1 ;;
        --capture) CAPTURE=$2; shift ;;
        --load) LOAD=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-pin) PIN=0 ;;
        --aloud-workers) ALOUD_WORKERS=$2; shift ;;
        --core-load) CORE_LOAD=$2; shift ;;
        --core-proxy) CORE_PROXY=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "proxy_hop: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

case $CAPTURE in
    full | metadata) ;;
    *) echo "proxy_hop: --capture must be full or metadata (the aloud target is the one with capture off)" >&2; exit 2 ;;
esac

if ((SMOKE)); then
    DURATION=${DURATION:-1}
    ROUNDS=${ROUNDS:-1}
    GAP_US=${GAP_US:-100}
    STREAM_RUNS=${STREAM_RUNS:-1}
    WARMUP=1
else
    DURATION=${DURATION:-5}
    ROUNDS=${ROUNDS:-3}
    GAP_US=${GAP_US:-1000}
    STREAM_RUNS=${STREAM_RUNS:-3}
    WARMUP=2
fi

log() { echo "proxy_hop: $*" >&2; }
die() { log "$*"; exit 1; }
want() { [[ ",$TARGETS," == *",$1,"* ]]; }

# ---------------------------------------------------------------------------------------------
# Processes and cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/proxy_hop.XXXXXX")
PIDS=()

cleanup() {
    # A subshell that catches the signal too (timeout and Ctrl-C signal the whole process group)
    # must not clean up under the main shell's feet: only the main shell does.
    [[ $BASHPID == "$$" ]] || return 0
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((PIN)) && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    # Command prefixes (not functions: a backgrounded function runs in a subshell, and $! would
    # then be that subshell rather than the process we need to measure and kill).
    ON_LOAD=(taskset -c "$CORE_LOAD")
    ON_PROXY=(taskset -c "$CORE_PROXY")
    PINNING="upstream, load generator and stream client on core $CORE_LOAD; proxy under test on core $CORE_PROXY"
else
    PIN=0
    ON_LOAD=()
    ON_PROXY=()
    PINNING="none"
fi

# shellcheck source=benches/ports.sh
source "$ROOT/benches/ports.sh"

# wait_port PID PORT TIMEOUT_S: poll until PORT accepts connections; fail if PID dies first.
wait_port() {
    local pid=$1 port=$2 tries=$(($3 * 50))
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    return 1
}

# Resident memory (kB) summed over the given pids.
rss_kb() {
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# CPU time (clock ticks, user + system, all threads) summed over the given pids.
cpu_ticks() {
    local total=0 pid v
    for pid in "$@"; do
        # Fields after "(comm) ": state is 1st, utime 12th, stime 13th.
        v=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# How busy the machine was with work other than ours: all CPU time (user + nice + system, from
# /proc/stat) minus this script's own and its reaped children's (oha, chunk_delay, curl, jq: their
# times reach cutime/cstime once reaped) minus the long-running processes it started. Also
# hypervisor steal. Prints "other_ticks steal_ticks" since the snapshot given as arguments.
contention_snapshot() {
    local machine steal self ours
    read -r machine steal < <(awk '/^cpu / { print $2 + $3 + $4, $9 }' /proc/stat)
    self=$(sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $12 + $13 + $14 + $15 }')
    ours=$(cpu_ticks "${PIDS[@]}")
    echo "$machine $steal $self $ours"
}
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Tools and builds

if [[ -z $LOAD ]]; then
    if command -v oha >/dev/null; then
        LOAD=oha
    elif ((SMOKE)); then
        LOAD=mini
    else
        log "oha not found: cargo install oha --locked"
        cargo install oha --locked >&2
        LOAD=oha
    fi
fi
if [[ $LOAD == oha ]] && ! command -v jq >/dev/null; then
    log "jq not found (needed to read oha's JSON): apt-get install -y jq"
    apt-get install -y -qq jq >&2 || die "could not install jq; try --load mini"
fi

if { want nginx || want aloud+telemetry; } && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    log "nginx not found: apt-get install -y nginx-light"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2 ||
        log "could not install nginx; its column will be n/a"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if ((BUILD)); then
    log "building (release): aloud and the bench examples"
    # Two builds: with an example in the same build, aloud would get the dev-dependencies'
    # features too (tokio's test-util, whose pausable clock costs every `Instant::now`: about
    # 2% of a proxied request's instructions, benches/instructions.sh).
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin aloud &&
        CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet \
            --example fast_upstream --example chunk_delay --example mini_load) >&2
fi
EX=$TARGET_DIR/release/examples
ALOUD_BIN=${ALOUD_BIN:-$TARGET_DIR/release/aloud}
for b in fast_upstream chunk_delay mini_load; do
    [[ -x $EX/$b ]] || die "$EX/$b missing: build the examples or drop --no-build"
done

if [[ $LOAD == oha ]]; then
    OHA_HELP=$(oha --help 2>&1)
    OHA_FLAGS=()
    grep -q -- '--no-tui' <<<"$OHA_HELP" && OHA_FLAGS+=(--no-tui)
    if grep -q -- '--output-format' <<<"$OHA_HELP"; then
        OHA_FLAGS+=(--output-format json)
    else
        OHA_FLAGS+=(-j)
    fi
    OHA_LATCORR=()
    grep -q -- '--latency-correction' <<<"$OHA_HELP" && OHA_LATCORR=(--latency-correction)
    LOAD_DESC="oha $(oha --version 2>/dev/null | awk '{print $2}')"
else
    LOAD_DESC="examples/mini_load (fallback; oha not installed)"
fi

# load URL CONNS SECONDS [RATE] -> "rps<TAB>p50_ms<TAB>p99_ms<TAB>ok<TAB>errors"
load() {
    local url=$1 conns=$2 secs=$3 rate=${4:-}
    if [[ $LOAD == oha ]]; then
        local args=(-c "$conns" -z "${secs}s")
        [[ -n $rate ]] && args+=(-q "$rate" "${OHA_LATCORR[@]}")
        "${ON_LOAD[@]}" oha "${OHA_FLAGS[@]}" "${args[@]}" "$url" 2>/dev/null | jq -r '
            (.statusCodeDistribution // {}) as $s
            | ([$s | to_entries[] | select(.key | startswith("2")) | .value] | add // 0) as $ok
            | ([$s | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0) as $bad
            | ([(.errorDistribution // {}) | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0) as $err
            | [ .summary.requestsPerSec, ((.latencyPercentiles.p50 // 0) * 1000),
                ((.latencyPercentiles.p99 // 0) * 1000), $ok, ($bad + $err) ]
            | map(tostring) | join("\t")'
    else
        local args=(-c "$conns" -z "$secs")
        [[ -n $rate ]] && args+=(-q "$rate")
        "${ON_LOAD[@]}" "$EX/mini_load" "${args[@]}" "$url"
    fi
}

# ---------------------------------------------------------------------------------------------
# Start the upstream and the proxies

: >"$WORK/upstream.out" # exists before the child's redirection opens it: no race with the poll
"${ON_LOAD[@]}" "$EX/fast_upstream" --listen 127.0.0.1:0 >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
UP_PID=$!
PIDS+=("$UP_PID")
UPSTREAM=""
for _ in $(seq 500); do
    UPSTREAM=$(sed -n 's/^listening on //p' "$WORK/upstream.out" 2>/dev/null || true)
    [[ -n $UPSTREAM ]] && break
    kill -0 "$UP_PID" 2>/dev/null || die "fast_upstream exited: $(cat "$WORK/upstream.err")"
    sleep 0.02
done
[[ -n $UPSTREAM ]] || die "fast_upstream did not report its address"
UP_PORT=${UPSTREAM##*:}
log "upstream on $UPSTREAM"

declare -A URL PROC_PIDS NOTE RSS
ACTIVE=()
if want direct; then
    URL[direct]="http://$UPSTREAM"
    ACTIVE+=(direct)
fi

# Check that /fast/json answers 200 through a proxy.
answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1/json") == 200 ]]; }

TRACES_URL=""
if want nginx || want aloud+telemetry; then
    if [[ -x $NGINX ]]; then
        NPORT=$(free_port)
        mkdir -p "$WORK/nginx/tmp"
        cat >"$WORK/nginx/nginx.conf" <<EOF
# Generated by benches/proxy_hop.sh: one worker, a keepalive upstream pool, no buffering.
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    keepalive_requests 1000000;
    upstream fast {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NPORT;
        # The aloud+telemetry target's OTLP collector: takes every batch, answers 200 at once.
        location = /v1/traces {
            client_max_body_size 64m;
            return 200;
        }
        location /fast/ {
            proxy_pass http://fast/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
EOF
        "${ON_PROXY[@]}" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" \
            >"$WORK/nginx/stdout" 2>&1 &
        NGINX_PID=$!
        PIDS+=("$NGINX_PID")
        if wait_port "$NGINX_PID" "$NPORT" 10 && answers "http://127.0.0.1:$NPORT/fast"; then
            workers=$(pgrep -P "$NGINX_PID" | tr '\n' ' ' || true)
            for w in $workers; do PIDS+=("$w"); done
            # shellcheck disable=SC2206
            PROC_PIDS[nginx]="$NGINX_PID $workers"
            URL[nginx]="http://127.0.0.1:$NPORT/fast"
            TRACES_URL="http://127.0.0.1:$NPORT/v1/traces"
            want nginx && ACTIVE+=(nginx)
            log "nginx on 127.0.0.1:$NPORT (master $NGINX_PID, workers $workers)"
        else
            NOTE[nginx]="did not come up: $(tail -3 "$WORK/nginx/error.log" "$WORK/nginx/stdout" 2>/dev/null | tr '\n' ' ')"
            log "nginx ${NOTE[nginx]}"
        fi
    else
        NOTE[nginx]="nginx not installed"
    fi
fi

# start_aloud TARGET CAPTURE: one aloud process with its own generated config and its own
# database directory under $WORK/TARGET. CAPTURE is off (capture disabled) or a route capture mode
# (full: every exchange, redacted, into SQLite). EXTRA is more TOML (the telemetry target's).
start_aloud() {
    local t=$1 capture=$2 extra=${3:-} admin=${4-127.0.0.1:0} dir="$WORK/$1" port pid rc children enabled=true mode=$2
    if [[ ! -x $ALOUD_BIN ]]; then
        NOTE[$t]="no binary at $ALOUD_BIN"
        ((REQUIRE_ALOUD)) && die "$t is required (--require-aloud)"
        return 0
    fi
    [[ $capture == off ]] && enabled=false mode=off
    mkdir -p "$dir"
    local attempt
    # Another process may bind the port between free_port and aloud: then again on another.
    for attempt in 1 2 3; do
        port=$(free_port)
        cat >"$dir/aloud.toml" <<EOF
# Generated by benches/proxy_hop.sh for the $t target.
[server]
listen = "127.0.0.1:$port"
${ALOUD_WORKERS:+workers = $ALOUD_WORKERS}

[admin]
listen = "$admin"

[capture]
enabled = $enabled
database = "$dir/aloud.db"
$extra
[[routes]]
name = "fast"
prefix = "/fast"
upstream = "http://127.0.0.1:$UP_PORT"
api = "openai"
capture = "$mode"
EOF
        # Quiet logs: nginx runs with access_log off, so aloud is not charged for per-request lines.
        RUST_LOG=${RUST_LOG:-warn} "${ON_PROXY[@]}" "$ALOUD_BIN" serve --config "$dir/aloud.toml" \
            >"$dir/aloud.out" 2>"$dir/aloud.err" &
        pid=$!
        PIDS+=("$pid")
        if wait_port "$pid" "$port" 15 && answers "http://127.0.0.1:$port/fast"; then
            # Children too, should there be any (there are with benches/nginx_as_aloud.sh).
            children=$(pgrep -P "$pid" | tr '\n' ' ' || true)
            for c in $children; do PIDS+=("$c"); done
            PROC_PIDS[$t]="$pid $children"
            URL[$t]="http://127.0.0.1:$port/fast"
            DB[$t]="$dir/aloud.db"
            ACTIVE+=("$t")
            unset "NOTE[$t]"
            log "$t on 127.0.0.1:$port (pid $pid, capture $capture)"
            return 0
        fi
        if kill -0 "$pid" 2>/dev/null; then
            NOTE[$t]="not answering 200 on /fast/json within 15 s"
            break
        fi
        wait "$pid" && rc=0 || rc=$?
        unset "PIDS[-1]" # this attempt's process is gone (its pid may be reused)
        NOTE[$t]="exited with status $rc before serving: $(tail -c 300 "$dir/aloud.err" | tr '\n' ' ')"
        grep -q 'Address already in use' "$dir/aloud.err" || break
        log "$t: port $port was taken before aloud bound it (attempt $attempt of 3)"
    done
    log "$t ${NOTE[$t]}"
    ((REQUIRE_ALOUD)) && die "$t is required (--require-aloud)"
    return 0
}

declare -A DB
want aloud && start_aloud aloud off
want aloud-bare && start_aloud aloud-bare off "" ""
want aloud+capture && start_aloud aloud+capture "$CAPTURE"
if want aloud+telemetry; then
    if [[ -n $TRACES_URL ]]; then
        start_aloud aloud+telemetry off "
[telemetry]
otlp_endpoint = \"$TRACES_URL\"
sample = 1.0
"
    else
        NOTE[aloud+telemetry]="needs nginx (its /v1/traces is the collector): ${NOTE[nginx]:-not started}"
    fi
fi

[[ -n ${URL[direct]:-} || ${#ACTIVE[@]} -gt 0 ]] || die "nothing to measure"

# Idle RSS: after start (and one readiness request), before any load.
for t in "${ACTIVE[@]}"; do
    if [[ -n ${PROC_PIDS[$t]:-} ]]; then
        # shellcheck disable=SC2086
        RSS[$t]=$(rss_kb ${PROC_PIDS[$t]})
    fi
done

# ---------------------------------------------------------------------------------------------
# Measure. Each kind of measurement runs over all targets before the next kind starts, so that
# slow drift in machine load (the machine is shared) spreads over the targets alike.

declare -A R # R[target:key] = value
fmt3() { awk -v x="$1" 'BEGIN { if (x == "" || x == "nan") print "-"; else printf "%.3f", x }'; }
fmt0() { awk -v x="$1" 'BEGIN { if (x == "" || x == "nan") print "-"; else printf "%.0f", x }'; }
sub3() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan") print "-"; else printf "%+.3f", a - b }'; }
diff3() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan") print "-"; else printf "%.3f", a - b }'; }

SNAP0=$(contention_snapshot)
T0=$(date +%s.%N)
log "warm-up: ${WARMUP} s closed loop per target"
for t in "${ACTIVE[@]}"; do load "${URL[$t]}/json" 16 "$WARMUP" >/dev/null; done

# measure POINT CONNS [RATE]: one round of one load point over every target, appending each
# figure to a space-separated list (the median is taken over rounds) and summing CPU ticks,
# 2xx answers and errors (so CPU per request is over all rounds).
declare -A L
measure() {
    local point=$1 conns=$2 rate=${3:-} t c0 c1 rps="" p50 p99 ok err what
    for t in "${ACTIVE[@]}"; do
        if [[ -n $rate ]]; then what="open loop $rate req/s"; else what="closed loop -c $conns"; fi
        log "$what, ${DURATION} s, round $round/$ROUNDS: $t"
        c0=0 c1=0 rps="" ok="" err=""
        # shellcheck disable=SC2086
        [[ -z ${PROC_PIDS[$t]:-} ]] || c0=$(cpu_ticks ${PROC_PIDS[$t]})
        IFS=$'\t' read -r rps p50 p99 ok err < <(load "${URL[$t]}/json" "$conns" "$DURATION" ${rate:+"$rate"}) || true
        ok=${ok:-0} err=${err:-0}
        [[ -n $rps ]] || { rps=0 p50=nan p99=nan; log "no result from the load generator for $t"; }
        # Each round's figures, so a round the host stalled shows beside the median.
        log "  $t: $(fmt0 "$rps") req/s, p50 $(fmt3 "$p50") ms, p99 $(fmt3 "$p99") ms"
        # shellcheck disable=SC2086
        [[ -z ${PROC_PIDS[$t]:-} ]] || c1=$(cpu_ticks ${PROC_PIDS[$t]})
        L[$t:$point:rps]+="$rps " L[$t:$point:p50]+="$p50 " L[$t:$point:p99]+="$p99 "
        L[$t:$point:ok]=$((${L[$t:$point:ok]:-0} + ${ok%.*}))
        L[$t:$point:err]=$((${L[$t:$point:err]:-0} + ${err%.*}))
        L[$t:$point:ticks]=$((${L[$t:$point:ticks]:-0} + c1 - c0))
    done
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

for round in $(seq "$ROUNDS"); do
    for rate in $RATES; do measure "$rate" "$RATE_CONNS" "$rate"; done
    measure max "$CONNS"
done
for t in "${ACTIVE[@]}"; do
    for point in $RATES max; do
        for k in rps p50 p99; do R[$t:$point:$k]=$(median "${L[$t:$point:$k]:-}"); done
        R[$t:$point:ok]=${L[$t:$point:ok]:-0}
        R[$t:$point:err]=${L[$t:$point:err]:-0}
        if [[ -n ${PROC_PIDS[$t]:-} ]]; then
            R[$t:$point:cpu]=$(awk -v d="${L[$t:$point:ticks]:-0}" -v hz="$CLK_TCK" -v n="${R[$t:$point:ok]}" \
                'BEGIN { if (n > 0) print d / hz * 1e6 / n; else print "" }')
        fi
    done
done

log "per-chunk delay: $STREAM_RUNS x $CHUNKS events, gap $GAP_US us"
CD_ARGS=(--chunks "$CHUNKS" --gap-us "$GAP_US" --runs "$STREAM_RUNS" --format tsv)
for t in "${ACTIVE[@]}"; do
    if [[ $t == direct ]]; then CD_ARGS+=(--upstream "${URL[$t]}"); else CD_ARGS+=(--via "$t=${URL[$t]}"); fi
done
"${ON_LOAD[@]}" "$EX/chunk_delay" "${CD_ARGS[@]}" >"$WORK/chunks.tsv" 2>"$WORK/chunks.err" || log "chunk_delay: $(cat "$WORK/chunks.err")"
while IFS=$'\t' read -r name n p50 p99 max errs; do
    R[$name:chunk:n]=$n R[$name:chunk:p50]=$p50 R[$name:chunk:p99]=$p99 R[$name:chunk:max]=$max R[$name:chunk:err]=$errs
done <"$WORK/chunks.tsv"

SNAP1=$(contention_snapshot)
T1=$(date +%s.%N)
# shellcheck disable=SC2086
read -r OTHER_PCT STEAL_PCT < <(awk -v a="$SNAP0" -v b="$SNAP1" -v t0="$T0" -v t1="$T1" -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    cap = (t1 - t0) * hz * n / 100
    other = (y[1] - x[1]) - (y[3] - x[3]) - (y[4] - x[4]); if (other < 0) other = 0
    printf "%.0f %.0f\n", other / cap, (y[2] - x[2]) / cap }')

for t in "${ACTIVE[@]}"; do
    # shellcheck disable=SC2086
    for pid in ${PROC_PIDS[$t]:-}; do
        kill -0 "$pid" 2>/dev/null || NOTE[$t]="process $pid died during the run; figures after that are errors"
    done
done

# Records the capture target stored: proof that the capture row measured capture. The writer
# batches, so poll a little for the first rows (readers do not block the writer in WAL mode).
stored_rows() {
    if [[ ! -e $1 ]]; then echo 0; return; fi
    sqlite3 -readonly -cmd '.timeout 2000' "$1" 'SELECT count(*) FROM captures' 2>/dev/null || true
}
declare -A ROWS
for t in "${ACTIVE[@]}"; do
    [[ -n ${DB[$t]:-} && $t != aloud ]] || continue
    if ! command -v sqlite3 >/dev/null; then
        ROWS[$t]="n/a (no sqlite3)"
        continue
    fi
    for _ in $(seq 50); do
        ROWS[$t]=$(stored_rows "${DB[$t]}")
        [[ ${ROWS[$t]:-0} -gt 0 ]] && break
        sleep 0.1
    done
done

# A broken harness fails the run (--require-aloud); figures that miss their targets never do.
if ((REQUIRE_ALOUD)); then
    for t in aloud aloud-bare aloud+capture aloud+telemetry; do
        want "$t" || continue
        [[ -z ${NOTE[$t]:-} ]] || die "$t: ${NOTE[$t]}"
        served=0
        for point in $RATES max; do served=$((served + ${R[$t:$point:ok]:-0})); done
        ((served > 0)) || die "$t answered no request with 2xx under load"
        if [[ $t == aloud+capture && ${ROWS[$t]:-} =~ ^[0-9]+$ && ${ROWS[$t]} == 0 ]]; then
            die "$t stored no capture record in ${DB[$t]}: $(tail -c 300 "$WORK/$t/aloud.err" | tr '\n' ' ')"
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# Report

ALL=()
for t in direct nginx aloud aloud-bare aloud+capture aloud+telemetry; do want "$t" && ALL+=("$t"); done
val() { echo "${R[$1]:-}"; }
us2ms() { awk -v x="$1" 'BEGIN { if (x == "") print ""; else print x / 1000 }'; }
# verdict A B: PASS when A <= B, MISS when not, n/a when either is missing.
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-") print "n/a"; else if (a + 0 <= b + 0) print "PASS"; else print "**MISS**" }'; }

report() {
    local first_rate t rate
    first_rate=${RATES%% *}
    echo "# aloud proxy hop benchmark"
    echo
    echo "- when: $(date -u '+%Y-%m-%d %H:%M:%SZ'); host: $(nproc) cores, $(uname -r); load average at start: $LOADAVG"
    echo "- other load during the measurement: processes not ours used ≈ ${OTHER_PCT}% of the machine's CPU, hypervisor steal ${STEAL_PCT}%$(awk -v o="$OTHER_PCT" -v s="$STEAL_PCT" 'BEGIN { if (o + s > 10) print " — **the machine was busy: treat the figures as noisy**" }')"
    echo "- mode: $( ((SMOKE)) && echo 'smoke (tiny durations: figures are not meaningful)' || echo full); load generator: $LOAD_DESC"
    echo "- upstream: examples/fast_upstream (1 thread), /json = 341-byte JSON; pinning: $PINNING"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') 1 worker, keepalive upstream pool, proxy_buffering off, access_log off"
    echo "- aloud: $ALOUD_BIN, RUST_LOG=${RUST_LOG:-warn}, workers: ${ALOUD_WORKERS:-default (one per core it may use)}; \`aloud\`: capture off (\`[capture] enabled = false\`), metrics on (the default admin listener); \`aloud+capture\`: route \`capture = \"$CAPTURE\"\` into its own SQLite database$([[ -n ${ROWS[aloud+capture]:-} ]] && echo " (${ROWS[aloud+capture]} records stored by the end of the run)")"
    want aloud-bare && echo "- \`aloud-bare\`: capture, metrics (\`[admin] listen = \"\"\`) and traces off"
    want aloud+telemetry && echo "- \`aloud+telemetry\`: capture off, metrics on, \`[telemetry]\` OTLP/HTTP export of every exchange's span (sample 1.0) to nginx's \`/v1/traces\` (answers 200 at once)"
    for t in "${ALL[@]}"; do
        if [[ -n ${NOTE[$t]:-} ]]; then echo "- **$t**: ${NOTE[$t]}"; fi
    done
    echo
    echo "## Latency at fixed open-loop rates (ms, corrected for coordinated omission)"
    echo
    echo "Each point: median of $ROUNDS round(s) of ${DURATION} s at the rate, $RATE_CONNS connections (proxy CPU and error counts: over all rounds). Added = target minus direct at the same rate."
    echo
    echo "| rate (req/s) | target | achieved req/s | p50 | p99 | p50 added | p99 added | proxy CPU µs/req | non-2xx/errors |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for rate in $RATES; do
        for t in "${ALL[@]}"; do
            if [[ -z $(val "$t:$rate:rps") ]]; then
                echo "| $rate | $t | n/a | | | | | | |"
                continue
            fi
            local added50="-" added99="-"
            if [[ $t != direct && -n $(val "direct:$rate:p50") ]]; then
                added50=$(sub3 "$(val "$t:$rate:p50")" "$(val "direct:$rate:p50")")
                added99=$(sub3 "$(val "$t:$rate:p99")" "$(val "direct:$rate:p99")")
            fi
            echo "| $rate | $t | $(fmt0 "$(val "$t:$rate:rps")") | $(fmt3 "$(val "$t:$rate:p50")") | $(fmt3 "$(val "$t:$rate:p99")") | $added50 | $added99 | $(fmt0 "$(val "$t:$rate:cpu")") | $(val "$t:$rate:err") |"
        done
    done
    echo
    echo "## Max throughput (closed loop, $CONNS connections, median of $ROUNDS round(s) of ${DURATION} s)"
    echo
    echo "| target | req/s | vs nginx | p50 ms | p99 ms | proxy CPU µs/req | non-2xx/errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in "${ALL[@]}"; do
        if [[ -z $(val "$t:max:rps") ]]; then
            echo "| $t | n/a | | | | | |"
            continue
        fi
        local vs="-"
        [[ -n $(val "nginx:max:rps") ]] && vs=$(awk -v a="$(val "$t:max:rps")" -v b="$(val "nginx:max:rps")" 'BEGIN { printf "%.2f×", a / b }')
        echo "| $t | $(fmt0 "$(val "$t:max:rps")") | $vs | $(fmt3 "$(val "$t:max:p50")") | $(fmt3 "$(val "$t:max:p99")") | $(fmt0 "$(val "$t:max:cpu")") | $(val "$t:max:err") |"
    done
    echo
    echo "## Per-chunk delay (SSE, $STREAM_RUNS stream(s) × $CHUNKS events, $GAP_US µs apart; ms)"
    echo
    echo "Delay = time the client read the event minus the time the upstream stamped into it."
    echo
    echo "| target | events | p50 | p99 | max | p99 added | stream errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in "${ALL[@]}"; do
        if [[ -z $(val "$t:chunk:n") || $(val "$t:chunk:n") == 0 ]]; then
            echo "| $t | n/a | | | | | $(val "$t:chunk:err") |"
            continue
        fi
        local added="-"
        [[ $t != direct && -n $(val "direct:chunk:p99") ]] && added=$(sub3 "$(us2ms "$(val "$t:chunk:p99")")" "$(us2ms "$(val "direct:chunk:p99")")")
        echo "| $t | $(val "$t:chunk:n") | $(fmt3 "$(us2ms "$(val "$t:chunk:p50")")") | $(fmt3 "$(us2ms "$(val "$t:chunk:p99")")") | $(fmt3 "$(us2ms "$(val "$t:chunk:max")")") | $added | $(val "$t:chunk:err") |"
    done
    echo
    echo "## Idle memory (VmRSS after start, before load)"
    echo
    echo "| target | VmRSS MB | processes summed |"
    echo "|---|---:|---|"
    for t in nginx aloud aloud-bare aloud+capture aloud+telemetry; do
        want "$t" || continue
        if [[ -n ${RSS[$t]:-} ]]; then
            # shellcheck disable=SC2086
            echo "| $t | $(awk -v k="${RSS[$t]}" 'BEGIN { printf "%.1f", k / 1024 }') | $(set -- ${PROC_PIDS[$t]}; echo "$#") |"
        else
            echo "| $t | n/a | |"
        fi
    done
    echo
    echo "## Targets for aloud (issue 7: reported, never asserted)"
    echo
    echo "Against nginx in this same run. p99 added = the target's p99 minus direct's p99 at $first_rate req/s (open loop); throughput = closed loop, $CONNS connections. PASS/MISS never changes the exit status."
    echo
    local n_add n_max n_ch a_ch a_rss limit ch_limit="-"
    n_add=$(diff3 "$(val "nginx:$first_rate:p99")" "$(val "direct:$first_rate:p99")")
    n_max=$(val "nginx:max:rps")
    limit=$(awk -v n="$n_add" 'BEGIN { if (n == "-") print "-"; else { l = 1.25 * n; if (l < 0.2) l = 0.2; printf "%.3f", l } }')
    echo "| target | check | goal | nginx | measured | result |"
    echo "|---|---|---|---:|---:|---|"
    # target_rows TARGET LABEL FACTOR LATENCY_GOAL LATENCY_LIMIT: the throughput and p99 rows.
    target_rows() {
        local t=$1 label=$2 factor=$3 goal=$4 lim=$5 a_max a_add min_max="-" ratio=""
        a_max=$(val "$t:max:rps")
        a_add=$(diff3 "$(val "$t:$first_rate:p99")" "$(val "direct:$first_rate:p99")")
        if [[ -n $n_max ]]; then
            min_max=$(awk -v n="$n_max" -v f="$factor" 'BEGIN { printf "%.0f", f * n }')
            [[ -n $a_max ]] && ratio=$(awk -v a="$a_max" -v n="$n_max" 'BEGIN { printf " (%.2f×)", a / n }')
        fi
        echo "| $label | max throughput (req/s) | ≥ $factor × nginx's = $min_max | $(fmt0 "$n_max") | $(fmt0 "$a_max")$ratio | $(verdict "$min_max" "${a_max:--}") |"
        echo "| $label | p99 added at $first_rate req/s (ms) | $goal = $lim | $n_add | $a_add | $(verdict "$a_add" "$lim") |"
    }
    target_rows aloud "aloud, capture off" 0.7 "≤ max(0.2, 1.25 × nginx's)" "$limit"
    target_rows aloud+capture "aloud+capture ($CAPTURE)" 0.6 "≤ 0.5" 0.500
    a_ch=$(us2ms "$(val "aloud:chunk:p99")")
    n_ch=$(us2ms "$(val "nginx:chunk:p99")")
    [[ -n $n_ch ]] && ch_limit=$(awk -v n="$n_ch" 'BEGIN { printf "%.3f", n + 0.2 }')
    echo "| aloud, capture off | per-chunk p99 (ms) | ≤ nginx's + 0.2 = $ch_limit | $(fmt3 "$n_ch") | $(fmt3 "$a_ch") | $(verdict "${a_ch:--}" "$ch_limit") |"
    if want aloud+telemetry; then
        # Issue 8: metrics and an enabled OTLP exporter cost at most 5% of max throughput and
        # 0.05 ms of p99, against aloud with both off (aloud-bare; plain aloud, whose metrics
        # are on by default, when aloud-bare was not run) in this same run.
        local t_max a_max t_add a_add99 min_max="-" lim99="-" base=aloud
        want aloud-bare && base=aloud-bare
        a_max=$(val "$base:max:rps")
        t_max=$(val "aloud+telemetry:max:rps")
        a_add99=$(diff3 "$(val "$base:$first_rate:p99")" "$(val "direct:$first_rate:p99")")
        t_add=$(diff3 "$(val "aloud+telemetry:$first_rate:p99")" "$(val "direct:$first_rate:p99")")
        [[ -n $a_max ]] && min_max=$(awk -v n="$a_max" 'BEGIN { printf "%.0f", 0.95 * n }')
        [[ $a_add99 != "-" ]] && lim99=$(awk -v n="$a_add99" 'BEGIN { printf "%.3f", n + 0.05 }')
        echo "| aloud+telemetry (metrics + traces) | max throughput (req/s) | ≥ 0.95 × $base's = $min_max | $(fmt0 "$n_max") | $(fmt0 "$t_max") | $(verdict "$min_max" "${t_max:--}") |"
        echo "| aloud+telemetry (metrics + traces) | p99 added at $first_rate req/s (ms) | ≤ $base's + 0.05 = $lim99 | $n_add | $t_add | $(verdict "$t_add" "$lim99") |"
    fi
    a_rss=$([[ -n ${RSS[aloud]:-} ]] && awk -v k="${RSS[aloud]}" 'BEGIN { printf "%.1f", k / 1024 }' || echo -)
    echo "| aloud, capture off | idle RSS (MB) | ≤ 20 | $([[ -n ${RSS[nginx]:-} ]] && awk -v k="${RSS[nginx]}" 'BEGIN { printf "%.1f", k / 1024 }' || echo -) | $a_rss | $(verdict "$a_rss" 20) |"
}

mkdir -p "$TARGET_DIR/bench"
report | tee "$TARGET_DIR/bench/proxy_hop.md"
log "report written to $TARGET_DIR/bench/proxy_hop.md"
