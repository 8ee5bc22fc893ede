#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind (callgrind): a figure that does not move
# with this machine's noise, for A/B-ing a change to the request path before the timed benches.
# Closed-loop throughput on these 2-core VMs moves 5-10% between rounds; this count repeats to
# within about 0.2%. It counts user-space instructions only: the kernel's share, cache misses and
# scheduling are not in it, so a cut of N% here is worth less than N% of throughput (see
# benches/README.md, "The pieces"). Everything the process does in the counted window (its
# timers, the admin listener) is divided among the requests: a figure to compare, not a cost of
# one request alone.
#
#   benches/instructions.sh                         this tree's release aloud
#   benches/instructions.sh --aloud-bin A --base B  two binaries side by side (B is the baseline)
#   benches/instructions.sh --capture               capture on, into SQLite: the writer's work too
#
# aloud runs capture off (unless --capture), the admin listener on (metrics and the dashboard's
# live cells), one route to examples/fast_upstream, and serves GET /fast/json over 4 keep-alive
# connections from examples/mini_load. Counting starts after a warm-up and stops before the
# dump. Writes a markdown table to stdout and to $CARGO_TARGET_DIR/bench/instructions.md. All
# traffic goes to 127.0.0.1; every process this script starts is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ALOUD_BIN=""
BASE_BIN=""
SECONDS_LOAD=4
BUILD=1
CAPTURE=0
QUEUE_MAX=""
KEEP=""

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    cat <<'EOF'
options:
  --aloud-bin PATH   the binary to count (default: target/release/aloud, built here)
  --base PATH        a second binary, counted the same way and reported beside it
  --seconds S        seconds of counted load per binary (default 4; about 1,000 requests/s
                     get through under callgrind here)
  --capture          capture every exchange (`capture = "full"`) into a SQLite file; the
                     warm-up's records are settled before counting starts, and counting stops
                     only once every record is (queue and spill empty, written + replayed +
                     dropped unchanged between two looks at the admin listener's metrics), so
                     building, redacting and writing each record is in the figure
  --queue-max SIZE   with --capture: the writer's `queue_max` (say 64KiB: records then overflow
                     to the spill and are replayed from it, the path at saturation)
  --keep DIR         copy each binary's callgrind output to DIR (for callgrind_annotate)
  --no-build         do not run cargo build
EOF
}

while (($#)); do
    case $1 in
        --aloud-bin) ALOUD_BIN=$2; shift ;;
        --base) BASE_BIN=$2; shift ;;
        --seconds) SECONDS_LOAD=$2; shift ;;
        --no-build) BUILD=0 ;;
        --capture) CAPTURE=1 ;;
        --queue-max) QUEUE_MAX=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { echo "instructions: $*" >&2; }
die() { log "$*"; exit 1; }
[[ -z $QUEUE_MAX || $CAPTURE == 1 ]] || die "--queue-max needs --capture"

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    log "valgrind not found: apt-get install -y valgrind"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >&2 || die "cannot install valgrind"
fi

for tool in curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

if ((BUILD)); then
    log "building (release): fast_upstream, mini_load${ALOUD_BIN:-, aloud}"
    # aloud on its own, without the dev-dependencies' features (benches/proxy_hop.sh says why).
    if [[ -z $ALOUD_BIN ]]; then
        (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin aloud) >&2
    fi
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet \
        --example fast_upstream --example mini_load) >&2
fi
EX=$TARGET_DIR/release/examples
ALOUD_BIN=${ALOUD_BIN:-$TARGET_DIR/release/aloud}
for b in "$EX/fast_upstream" "$EX/mini_load" "$ALOUD_BIN" ${BASE_BIN:+"$BASE_BIN"}; do
    [[ -x $b ]] || die "$b missing: build it or drop --no-build"
done
# Absolute: valgrind starts in each binary's own work directory.
ALOUD_BIN=$(realpath "$ALOUD_BIN")
[[ -n $BASE_BIN ]] && BASE_BIN=$(realpath "$BASE_BIN")

WORK=$(mktemp -d)
# Every process started here is listed in a file: `count` runs in a subshell (a process
# substitution), whose variables the main shell's cleanup would not see.
PIDFILE=$WORK/pids
: >"$PIDFILE"
cleanup() {
    local p
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$PIDFILE"
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=benches/ports.sh
source "$ROOT/benches/ports.sh"

: >"$WORK/upstream.out"
"$EX/fast_upstream" --listen 127.0.0.1:0 >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
echo $! >>"$PIDFILE"
UPSTREAM=""
for _ in $(seq 500); do
    UPSTREAM=$(sed -n 's/^listening on //p' "$WORK/upstream.out")
    [[ -n $UPSTREAM ]] && break
    sleep 0.02
done
[[ -n $UPSTREAM ]] || die "fast_upstream did not report its address"

# drained: with capture on, waits until every record is settled. The queue and the spill must
# be empty, and the records settled (written, replayed or dropped) the same in two looks in a
# row: a record the overflow thread holds is in neither gauge. Each look is made with counting
# off, so the scrape is not in the figure; counting is off when it returns.
drained() {
    local queued="" spill="" settled="" last="" metrics counting=$1
    for _ in $(seq 120); do
        sleep 0.5
        ((counting)) && callgrind_control -i off "$pid" >/dev/null 2>&1
        metrics=$(curl -s --max-time 5 -H 'Connection: close' "http://127.0.0.1:$admin/metrics" || true)
        queued=$(sed -n 's/^aloud_capture_queued_bytes //p' <<<"$metrics" | head -1)
        spill=$(sed -n 's/^aloud_capture_spill_bytes //p' <<<"$metrics" | head -1)
        settled=$(awk '/^aloud_capture_(written|replayed|dropped)_total / {n += $2} END {print n + 0}' <<<"$metrics")
        if [[ $queued == 0 && $spill == 0 && $settled == "$last" ]]; then
            return 0
        fi
        last=$settled
        ((counting)) && callgrind_control -i on "$pid" >/dev/null 2>&1
    done
    die "$name: capture did not drain (queued: ${queued:-unknown} bytes, spill: ${spill:-unknown} bytes)"
}

# count NAME BIN -> prints "instructions<TAB>requests"
count() {
    local name=$1 bin=$2 dir="$WORK/$1" port admin pid line ok total capture route_capture=""
    mkdir -p "$dir"
    port=$(free_port)
    admin=$(free_port)
    if ((CAPTURE)); then
        capture="enabled = true
database = \"$dir/capture.db\"${QUEUE_MAX:+
queue_max = \"$QUEUE_MAX\"}"
        route_capture='capture = "full"'
    else
        capture="enabled = false"
    fi
    cat >"$dir/aloud.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[admin]
listen = "127.0.0.1:$admin"

[capture]
$capture

[[routes]]
name = "fast"
prefix = "/fast"
upstream = "http://$UPSTREAM"
api = "openai"
$route_capture
EOF
    # CALLGRIND_EXTRA: more callgrind options (say --separate-threads=yes, with --keep).
    (cd "$dir" && RUST_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no ${CALLGRIND_EXTRA:-} \
        --callgrind-out-file="$dir/cg.out" "$bin" serve --config "$dir/aloud.toml") \
        >"$dir/out" 2>"$dir/err" &
    pid=$!
    echo "$pid" >>"$PIDFILE"
    local up=0
    for _ in $(seq 300); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/fast/json") == 200 ]]; then
            up=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited: $(tail -5 "$dir/err")"
        sleep 0.2
    done
    ((up)) || die "$name did not answer 200 on /fast/json within 60 s under valgrind"
    # Warm-up: pools, caches and the ETA history fill before anything is counted.
    "$EX/mini_load" -c 4 -z 2 "http://127.0.0.1:$port/fast/json" >/dev/null
    # The warm-up's records are written before counting starts.
    ((CAPTURE)) && drained 0
    callgrind_control -i on "$pid" >/dev/null 2>&1
    line=$("$EX/mini_load" -c 4 -z "$SECONDS_LOAD" "http://127.0.0.1:$port/fast/json")
    ((CAPTURE)) && drained 1
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ok=$(cut -f4 <<<"$line")
    [[ ${ok:-0} -gt 0 ]] || die "$name served no request: $line"
    # One file per thread with --separate-threads=yes: their totals add up.
    total=0
    local f part
    [[ -z $KEEP ]] || mkdir -p "$KEEP"
    for f in "$dir"/cg.out.1*; do
        [[ -e $f ]] || break
        part=$(callgrind_annotate "$f" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d , || true)
        total=$((total + ${part:-0}))
        [[ -z $KEEP ]] || cp "$f" "$KEEP/$name.${f##*/}"
    done
    ((total > 0)) || die "$name: no callgrind totals"
    printf '%s\t%s\n' "$total" "$ok"
}

REPORT="$TARGET_DIR/bench/instructions.md"
mkdir -p "$(dirname "$REPORT")"
{
    echo "# Instructions per request (callgrind)"
    echo
    echo "GET /fast/json through aloud ($( ((CAPTURE)) && echo "capture full into SQLite${QUEUE_MAX:+, queue_max $QUEUE_MAX}" || echo 'capture off'), admin on) to examples/fast_upstream, 4 connections,"
    echo "${SECONDS_LOAD} s counted after a 2 s warm-up. User-space instructions of the aloud process only."
    echo
    echo "| binary | requests | instructions per request |"
    echo "|---|---:|---:|"
    IFS=$'\t' read -r total ok < <(count aloud "$ALOUD_BIN")
    per=$((total / ok))
    echo "| $ALOUD_BIN | $ok | $per |"
    if [[ -n $BASE_BIN ]]; then
        IFS=$'\t' read -r btotal bok < <(count base "$BASE_BIN")
        bper=$((btotal / bok))
        echo "| $BASE_BIN (base) | $bok | $bper |"
        echo
        awk -v a="$per" -v b="$bper" 'BEGIN { printf "Change against the base: %+.1f%%\n", (a - b) * 100 / b }'
    fi
} | tee "$REPORT"
