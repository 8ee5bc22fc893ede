#!/usr/bin/env bash
# Heartbeats at scale: many concurrent streaming requests through aloud while a slow upstream is
# silent; how late the heartbeats are, what each waiting request costs in memory, and what
# interpreting a chunk costs. See benches/README.md ("Heartbeats at scale").
#
#   benches/heartbeats.sh                     8,000 streams, 20 s waits (the issue's target)
#   benches/heartbeats.sh --streams 2000      a medium run
#   benches/heartbeats.sh --smoke             CI: 200 streams, 3 s waits, under 30 s once built
#
# Writes a markdown report to stdout and to $CARGO_TARGET_DIR/bench/heartbeats.md.
# All traffic goes to 127.0.0.1. Every process this script starts is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

usage() {
    cat <<'EOF'
usage: benches/heartbeats.sh [options]
  --smoke              200 streams, 3 s waits, small state/interpret runs (CI; < 30 s once built)
  --streams N          concurrent streams (default 8000)
  --wait-ms M          upstream silence per stream (default 20000)
  --ramp R             new streams per second (default: N / (wait - 4 s), at least 100)
  --heartbeat-ms MS    aloud's [progress] heartbeat (default 1000)
  --tier T             comments, events or both (default comments; smoke: both)
  --state-streams N    waiting streams for the in-process state_size count (default min(N, 1000); 0 skips)
  --interpret-chunks N chunks for the interpret_cost micro benchmark (default 200000; 0 skips)
  --aloud-bin PATH     aloud binary (default: $ALOUD_BIN or target/release/aloud, built here)
  --no-build           do not run cargo build
  --no-pin             do not pin processes to cores
  --core-load N        core for the upstream and the load client (default 0)
  --core-proxy N       core for aloud (default 1)
  --require-state      exit 1 when aloud's own state per waiting request is over 4 KiB or was not
                       measured (CI: a count of allocations, not a timing, so it holds on a busy
                       machine)
EOF
}

SMOKE=0
STREAMS=""
WAIT_MS=""
RAMP=""
HB_MS=1000
TIER=""
STATE_STREAMS=""
INTERPRET_CHUNKS=""
ALOUD_BIN=${ALOUD_BIN:-}
BUILD=1
PIN=1
REQUIRE_STATE=0
CORE_LOAD=0
CORE_PROXY=1

while (($#)); do
    case $1 in
        --smoke) SMOKE=1 ;;
        --streams) STREAMS=$2; shift ;;
        --wait-ms) WAIT_MS=$2; shift ;;
        --ramp) RAMP=$2; shift ;;
        --heartbeat-ms) HB_MS=$2; shift ;;
        --tier) TIER=$2; shift ;;
        --state-streams) STATE_STREAMS=$2; shift ;;
        --interpret-chunks) INTERPRET_CHUNKS=$2; shift ;;
        --aloud-bin) ALOUD_BIN=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-pin) PIN=0 ;;
        --require-state) REQUIRE_STATE=1 ;;
        --core-load) CORE_LOAD=$2; shift ;;
        --core-proxy) CORE_PROXY=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "heartbeats: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if ((SMOKE)); then
    STREAMS=${STREAMS:-200}
    WAIT_MS=${WAIT_MS:-3000}
    TIER=${TIER:-both}
    STATE_STREAMS=${STATE_STREAMS:-100}
    STATE_HOLD=1
    STATE_FLAGS=(--no-keep)
    INTERPRET_CHUNKS=${INTERPRET_CHUNKS:-20000}
else
    STREAMS=${STREAMS:-8000}
    WAIT_MS=${WAIT_MS:-20000}
    TIER=${TIER:-comments}
    STATE_HOLD=10
    STATE_FLAGS=()
    INTERPRET_CHUNKS=${INTERPRET_CHUNKS:-200000}
fi
STATE_STREAMS=${STATE_STREAMS:-$((STREAMS < 1000 ? STREAMS : 1000))}
if [[ -z $RAMP ]]; then
    # Every stream should be open, and past one heartbeat, before the first one ends.
    RAMP=$(awk -v n="$STREAMS" -v w="$WAIT_MS" 'BEGIN { s = w / 1000 - 4; if (s < 1) s = 1; r = n / s; if (r < 100) r = 100; printf "%.0f", r }')
fi
case $TIER in
    comments) TIERS=(comments) ;;
    events) TIERS=(events) ;;
    both) TIERS=(comments events) ;;
    *) echo "heartbeats: --tier must be comments, events or both" >&2; exit 2 ;;
esac
[[ $STREAMS =~ ^[0-9]+$ && $WAIT_MS =~ ^[0-9]+$ && $HB_MS =~ ^[0-9]+$ ]] || { echo "heartbeats: numbers expected" >&2; exit 2; }

log() { echo "heartbeats: $*" >&2; }
die() { log "$*"; exit 1; }

# Each stream holds a client socket in the load client and, in aloud, one client-side and one
# upstream-side socket: raise the soft open-file limit to the hard one (inherited by children).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((2 * STREAMS + 200 > NOFILE)); then
    log "warning: open-file limit $NOFILE is below 2 x $STREAMS streams + 200: aloud will run out of fds"
fi

# ---------------------------------------------------------------------------------------------
# Processes and cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/heartbeats.XXXXXX")
PIDS=()

cleanup() {
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
    ON_LOAD=(taskset -c "$CORE_LOAD")
    ON_PROXY=(taskset -c "$CORE_PROXY")
    PINNING="upstream and load client on core $CORE_LOAD; aloud on core $CORE_PROXY (one tokio worker)"
else
    ON_LOAD=()
    ON_PROXY=()
    PINNING="none"
fi

# Outside the ephemeral range, where thousands of load connections live.
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

cpu_ticks() {
    local total=0 pid v
    for pid in "$@"; do
        v=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# All CPU (user+nice+system) and steal from /proc/stat, this shell's own and reaped children's
# CPU, and the long-running processes' CPU: "machine steal self ours".
contention_snapshot() {
    local machine steal self ours
    read -r machine steal < <(awk '/^cpu / { print $2 + $3 + $4, $9 }' /proc/stat)
    self=$(sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $12 + $13 + $14 + $15 }')
    ours=$(cpu_ticks "${PIDS[@]}")
    echo "$machine $steal $self $ours"
}
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Build

if ((BUILD)); then
    log "building (release): aloud and the bench examples"
    # aloud on its own, without the dev-dependencies' features (benches/proxy_hop.sh says why).
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin aloud &&
        CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet \
            --example slow_upstream --example heartbeat_load --example state_size \
            --example interpret_cost) >&2
fi
EX=$TARGET_DIR/release/examples
ALOUD_BIN=${ALOUD_BIN:-$TARGET_DIR/release/aloud}
for b in slow_upstream heartbeat_load state_size interpret_cost; do
    [[ -x $EX/$b ]] || die "$EX/$b missing: build the examples or drop --no-build"
done
[[ -x $ALOUD_BIN ]] || die "no aloud binary at $ALOUD_BIN"

# ---------------------------------------------------------------------------------------------
# Start the upstream and aloud

: >"$WORK/upstream.out"
"${ON_LOAD[@]}" "$EX/slow_upstream" --listen 127.0.0.1:0 --wait-ms "$WAIT_MS" \
    >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
UP_PID=$!
PIDS+=("$UP_PID")
UPSTREAM=""
for _ in $(seq 500); do
    UPSTREAM=$(sed -n 's/^listening on //p' "$WORK/upstream.out" 2>/dev/null || true)
    [[ -n $UPSTREAM ]] && break
    kill -0 "$UP_PID" 2>/dev/null || die "slow_upstream exited: $(cat "$WORK/upstream.err")"
    sleep 0.02
done
[[ -n $UPSTREAM ]] || die "slow_upstream did not report its address"
UP_PORT=${UPSTREAM##*:}
log "slow upstream on $UPSTREAM"

APORT=$(free_port)
MAX_CONC=$((STREAMS + 100 > 4096 ? STREAMS + 100 : 4096))
cat >"$WORK/aloud.toml" <<EOF
[server]
listen = "127.0.0.1:$APORT"
max_concurrent_requests = $MAX_CONC
max_connections = $MAX_CONC

[admin]
listen = "127.0.0.1:0"

[progress]
heartbeat = "${HB_MS}ms"

[[routes]]
name = "slow"
prefix = "/slow"
upstream = "http://127.0.0.1:$UP_PORT"
api = "openai"
EOF
RUST_LOG=${RUST_LOG:-warn} "${ON_PROXY[@]}" "$ALOUD_BIN" serve --config "$WORK/aloud.toml" \
    >"$WORK/aloud.out" 2>"$WORK/aloud.err" &
ALOUD_PID=$!
PIDS+=("$ALOUD_PID")
AURL="http://127.0.0.1:$APORT"
if ! wait_port "$ALOUD_PID" "$APORT" 15; then
    die "aloud did not come up: $(tail -c 400 "$WORK/aloud.err")"
fi
# Readiness and warm-up: one short stream through the route answers 200 with [DONE].
curl -s --max-time 10 -H 'content-type: application/json' \
    -d '{"model":"m","stream":true,"messages":[]}' \
    "$AURL/slow/v1/chat/completions?wait_ms=10" | grep -q '^data: \[DONE\]' ||
    die "aloud does not relay a stream from the slow upstream: $(tail -c 400 "$WORK/aloud.err")"
log "aloud on 127.0.0.1:$APORT (pid $ALOUD_PID), $STREAMS streams at $RAMP/s, ${WAIT_MS} ms waits"

# ---------------------------------------------------------------------------------------------
# Measure

declare -A V # V[tier:key] = value from heartbeat_load
SNAP0=$(contention_snapshot)
T0=$(date +%s.%N)
for tier in "${TIERS[@]}"; do
    flags=()
    [[ $tier == events ]] && flags+=(--events)
    log "$tier tier: ramping $STREAMS streams"
    "${ON_LOAD[@]}" "$EX/heartbeat_load" --url "$AURL/slow/v1/chat/completions?wait_ms=$WAIT_MS" \
        --streams "$STREAMS" --ramp "$RAMP" --heartbeat-ms "$HB_MS" --rss-pid "$ALOUD_PID" \
        "${flags[@]}" >"$WORK/load.$tier" 2>"$WORK/load.$tier.err" ||
        log "$tier tier: heartbeat_load failed: $(tail -c 300 "$WORK/load.$tier.err")"
    while IFS='=' read -r k v; do
        [[ -z $k ]] && continue
        if [[ $k == failure ]]; then
            V[$tier:failures]+="${V[$tier:failures]:+; }$v"
        else
            V[$tier:$k]=$v
        fi
    done <"$WORK/load.$tier"
    kill -0 "$ALOUD_PID" 2>/dev/null || die "aloud died during the $tier run: $(tail -c 400 "$WORK/aloud.err")"
done
SNAP1=$(contention_snapshot)
T1=$(date +%s.%N)
read -r OTHER_PCT STEAL_PCT < <(awk -v a="$SNAP0" -v b="$SNAP1" -v t0="$T0" -v t1="$T1" -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    cap = (t1 - t0) * hz * n / 100
    other = (y[1] - x[1]) - (y[3] - x[3]) - (y[4] - x[4]); if (other < 0) other = 0
    printf "%.0f %.0f\n", other / cap, (y[2] - x[2]) / cap }')
ALOUD_ERRLINES=$(grep -c . "$WORK/aloud.err" || true)
ALOUD_ERRTAIL=$(grep -v '^\s*$' "$WORK/aloud.err" | tail -3 | cut -c1-200 || true)

# The in-process count of aloud's own heap per waiting request, against the same upstream.
declare -A S
if ((STATE_STREAMS > 0)); then
    log "state_size: $STATE_STREAMS waiting streams through an in-process aloud"
    "${ON_PROXY[@]}" "$EX/state_size" --upstream "$UPSTREAM" --streams "$STATE_STREAMS" \
        --heartbeat-ms "$HB_MS" --hold-s "$STATE_HOLD" --load-bin "$EX/heartbeat_load" --load-core "$CORE_LOAD" \
        --pin "$PIN" "${STATE_FLAGS[@]}" >"$WORK/state" 2>"$WORK/state.err" ||
        log "state_size failed: $(tail -c 300 "$WORK/state.err")"
    while IFS='=' read -r k v; do [[ -n $k ]] && S[$k]=$v; done <"$WORK/state"
fi

declare -A I
if ((INTERPRET_CHUNKS > 0)); then
    log "interpret_cost: $INTERPRET_CHUNKS chunks per dialect"
    "${ON_PROXY[@]}" "$EX/interpret_cost" --chunks "$INTERPRET_CHUNKS" --format kv \
        >"$WORK/interp" 2>"$WORK/interp.err" || log "interpret_cost failed: $(tail -c 300 "$WORK/interp.err")"
    while IFS='=' read -r k v; do [[ -n $k ]] && I[$k]=$v; done <"$WORK/interp"
fi

# ---------------------------------------------------------------------------------------------
# Report

val() { echo "${V[$1]:-}"; }
num_or_dash() { if [[ -n $1 && $1 != - ]]; then echo "$1"; else echo "-"; fi; }
# met VALUE LIMIT: PASS when VALUE <= LIMIT, MISS when not, n/a when not measured.
met() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-" || b == "") print "n/a"; else if (a + 0 <= b + 0) print "PASS"; else print "**MISS**" }'; }
per_stream_kib() { # tier [plateau|late] -> (sample - idle) / active streams, KiB
    local t=$1 at=${2:-plateau}
    awk -v p="$(val "$t:${at}_rss_kib")" -v i="$(val "$t:idle_rss_kib")" -v n="$(val "$t:${at}_active")" \
        'BEGIN { if (p == "" || i == "" || n == "" || n == 0) print "-"; else printf "%.1f", (p - i) / n }'
}
cpu_per_stream() { # tier -> aloud CPU ms per stream over its whole life (connect, waits, end)
    local t=$1
    awk -v a="$(val "$t:after_cpu_ticks")" -v i="$(val "$t:idle_cpu_ticks")" -v n="$(val "$t:streams")" -v hz="$CLK_TCK" \
        'BEGIN { if (a == "" || i == "" || n == "" || n == 0) print "-"; else printf "%.2f", (a - i) / hz * 1e3 / n }'
}

report() {
    local t
    echo "# aloud heartbeats at scale"
    echo
    echo "- when: $(date -u '+%Y-%m-%d %H:%M:%SZ'); host: $(nproc) cores, $(uname -r); load average at start: $LOADAVG; open-file limit $NOFILE"
    echo "- other load during the measurement: processes not ours used ≈ ${OTHER_PCT}% of the machine's CPU, hypervisor steal ${STEAL_PCT}%$(awk -v o="$OTHER_PCT" -v s="$STEAL_PCT" 'BEGIN { if (o + s > 10) print " — **the machine was busy: treat the figures as noisy**" }')"
    echo "- mode: $( ((SMOKE)) && echo 'smoke (small: proves the harness, figures are indicative only)' || echo full); $STREAMS streams ramped at $RAMP/s; upstream silent ${WAIT_MS} ms after its role chunk; heartbeat ${HB_MS} ms"
    echo "- pinning: $PINNING; aloud: $ALOUD_BIN, RUST_LOG=${RUST_LOG:-warn}, max_concurrent_requests = $MAX_CONC"
    echo "- aloud stderr: $ALOUD_ERRLINES line(s)${ALOUD_ERRTAIL:+; last: \`$(echo "$ALOUD_ERRTAIL" | tr '\n' ' ' | tr '`' "'")\`}"
    echo
    echo "## Heartbeat lateness (ms; arrival at the client minus due time)"
    echo
    echo "Due time: comments tier, the previous line the client got (upstream data or comment) + heartbeat; events tier, the previous \`aloud.progress\` + heartbeat. *first* = the first heartbeat after upstream data, *steady* = after a heartbeat, *server* = from aloud's own \`elapsed_ms\` stamps of consecutive heartbeats (1 ms resolution)."
    echo
    echo "| tier | streams ok / failed | heartbeats | per stream (min / mean) | p50 | p99 | max | > 100 ms late | first p50 / p99 / max | first > 100 ms late | steady p99 / max | server p99 / max |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for t in "${TIERS[@]}"; do
        if [[ -z $(val "$t:streams") ]]; then
            echo "| $t | n/a | | | | | | | | | | |"
            continue
        fi
        echo "| $t | $(($(val "$t:streams") - $(val "$t:failed"))) / $(val "$t:failed") | $(val "$t:late_n") | $(val "$t:beats_per_stream_min") / $(val "$t:beats_per_stream_mean") | $(val "$t:late_p50_ms") | $(val "$t:late_p99_ms") | $(val "$t:late_max_ms") | $(val "$t:late_over100") | $(val "$t:late_first_p50_ms") / $(val "$t:late_first_p99_ms") / $(val "$t:late_first_max_ms") | $(val "$t:late_first_over100") of $(val "$t:late_first_n") | $(val "$t:late_steady_p99_ms") / $(val "$t:late_steady_max_ms") | $(val "$t:late_server_p99_ms") / $(val "$t:late_server_max_ms") |"
    done
    for t in "${TIERS[@]}"; do
        [[ -n $(val "$t:failures") ]] && echo && echo "Failures ($t): $(val "$t:failures")"
        [[ -n $(val "$t:warning") ]] && echo && echo "Warning ($t): $(val "$t:warning")"
    done
    echo
    echo "## aloud's process (from /proc)"
    echo
    echo "| tier | VmRSS idle MiB | at plateau MiB | streams open at plateau | (plateau − idle) / stream KiB | late in the wait MiB | (late − idle) / stream KiB | fds at plateau | VmRSS 1 s after the end MiB | aloud CPU ms per stream |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for t in "${TIERS[@]}"; do
        [[ -z $(val "$t:streams") ]] && continue
        mib() { awk -v k="$1" 'BEGIN { if (k == "") print "-"; else printf "%.1f", k / 1024 }'; }
        echo "| $t | $(mib "$(val "$t:idle_rss_kib")") | $(mib "$(val "$t:plateau_rss_kib")") | $(val "$t:plateau_active") (at $(val "$t:plateau_at_s") s) | $(per_stream_kib "$t") | $(mib "$(val "$t:late_rss_kib")") (at $(val "$t:late_at_s") s) | $(per_stream_kib "$t" late) | $(val "$t:plateau_fds") | $(mib "$(val "$t:after_rss_kib")") | $(cpu_per_stream "$t") |"
    done
    echo
    echo "## aloud's own heap per waiting request (in-process, counting allocator)"
    echo
    if [[ -n ${S[per_stream_bytes]:-} ]]; then
        echo "| streams | live heap idle KiB | at plateau KiB | aloud, per stream B | plain hyper proxy, per stream B | plain proxy keeping the request body, per stream B | aloud's own state per stream B (aloud − plain) | aloud's growth per stream per s of waiting B |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
        echo "| ${S[streams]} | ${S[idle_kib]} | ${S[plateau_kib]} | ${S[per_stream_bytes]} | ${S[baseline_per_stream_bytes]:--} | ${S[keeping_per_stream_bytes]:--} | ${S[own_per_stream_bytes]:--} | ${S[growth_bytes_per_stream_s]:--} |"
    else
        echo "not measured$( ((STATE_STREAMS > 0)) && echo " (state_size failed: $(tail -c 200 "$WORK/state.err" 2>/dev/null | tr '\n' ' '))")"
    fi
    echo
    echo "## Interpretation cost per chunk (µs, one \`StreamInterpreter::feed\` call per upstream event)"
    echo
    if [[ -n ${I[all_p99_us]:-} ]]; then
        echo "| stream | chunks | p50 | p99 | max |"
        echo "|---|---:|---:|---:|---:|"
        for d in openai_chat anthropic responses ollama sse_decoder all; do
            [[ -n ${I[${d}_n]:-} ]] && echo "| $d | ${I[${d}_n]} | ${I[${d}_p50_us]} | ${I[${d}_p99_us]} | ${I[${d}_max_us]} |"
        done
    else
        echo "not measured"
    fi
    echo
    echo "## Targets (issue 7: reported, never asserted)"
    echo
    local c=${TIERS[0]}
    local late99 rss own interp scale=""
    late99=$(val "$c:late_p99_ms")
    rss=$(per_stream_kib "$c")
    own=${S[own_per_stream_bytes]:-${S[per_stream_bytes]:-}}
    interp=${I[all_p99_us]:-}
    ((STREAMS == 8000)) || scale=" — **the target is at 8,000; this run had $STREAMS**"
    echo "The first two rows are issue 7's targets. PASS/MISS never changes the exit status, except the state row's with \`--require-state\`."
    echo
    echo "| target | limit | measured ($c tier, $STREAMS streams) | result |"
    echo "|---|---|---:|---|"
    echo "| heartbeat lateness p99 at 8,000 waiting streams | ≤ 100 ms | $(num_or_dash "$late99") ms (max $(val "$c:late_max_ms")) at $STREAMS streams$scale | $(met "$late99" 100) |"
    echo "| aloud's own state per waiting request (counting allocator, aloud − plain hyper proxy) | ≤ 4 KiB (4096 B) | $(num_or_dash "$own") B at ${S[streams]:-$STATE_STREAMS} streams | $(met "$own" 4096) |"
    echo "| every heartbeat within 100 ms: heartbeats later than that | 0 | $(val "$c:late_over100") of $(val "$c:late_n") (first after data: $(val "$c:late_first_over100") of $(val "$c:late_first_n")) | $(met "$(val "$c:late_over100")" 0) |"
    echo "| steady heartbeats (after a heartbeat), p99 | ≤ 100 ms | $(num_or_dash "$(val "$c:late_steady_p99_ms")") ms | $(met "$(val "$c:late_steady_p99_ms")" 100) |"
    echo "| memory per waiting request, all in (RSS delta / streams), at the plateau | ≤ 64 KiB | $rss KiB | $(met "$rss" 64) |"
    [[ -n $(val "$c:late_at_s") ]] && echo "| the same, late in the wait ($(val "$c:late_at_s") s in) | ≤ 64 KiB | $(per_stream_kib "$c" late) KiB | $(met "$(per_stream_kib "$c" late)" 64) |"
    echo "| interpretation per forwarded chunk (p99) | ≤ 200 µs | $(num_or_dash "$interp") µs | $(met "$interp" 200) |"
    echo "| streams that failed | 0 | $(val "$c:failed") | $(met "$(val "$c:failed")" 0) |"
}

mkdir -p "$TARGET_DIR/bench"
report | tee "$TARGET_DIR/bench/heartbeats.md"
log "report written to $TARGET_DIR/bench/heartbeats.md"
if ((REQUIRE_STATE)); then
    OWN=${S[own_per_stream_bytes]:-}
    [[ -n $OWN ]] || die "--require-state: aloud's own state per waiting request was not measured"
    ((OWN <= 4096)) || die "--require-state: aloud's own state per waiting request is $OWN B, over 4 KiB"
fi
