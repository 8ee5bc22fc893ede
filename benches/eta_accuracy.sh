#!/usr/bin/env bash
# How good is aloud's ETA? Replays corpora of exchanges through the estimator and reports the
# median and p90 absolute percentage error of the remaining time at 25%, 50% and 75% of each
# call's duration, how often the fraction went backwards or reached 1 early (must be never),
# and what an estimator update and query cost. See benches/README.md.
#
#   benches/eta_accuracy.sh                 simulator corpora, 5000 calls each (release build)
#   benches/eta_accuracy.sh --db aloud.db   plus the ok exchanges of a capture database
#   benches/eta_accuracy.sh --smoke         CI: 3000 calls, debug build
#
# A real llama.cpp server is used when `llama-server` is on PATH and LLAMA_MODEL names a GGUF
# file: it is started on a loopback port with aloud in front (capture on, a temporary database),
# sent LLAMA_CALLS requests of varied prompt and answer lengths, and that database becomes the
# captures corpus. Without them the llama.cpp corpus is skipped, and the report says so.
#
# Writes a markdown report to stdout and to $CARGO_TARGET_DIR/bench/eta_accuracy.md. Exits
# non-zero when the target (median error at 25% <= 20% on sim-mix) is missed or the fraction
# misbehaves. Every process this script starts is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=release
CALLS=""
DB=""
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; PROFILE=debug ;;
        --debug) PROFILE=debug ;;
        --calls) CALLS=$2; shift ;;
        --db) DB=$2; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

PIDS=()
TMP=$(mktemp -d)
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

cd "$ROOT"
build_flags=()
[ "$PROFILE" = release ] && build_flags=(--release)
echo "building (${PROFILE})..." >&2
bins=(--example eta_accuracy)
# aloud itself is only needed to put in front of llama.cpp.
command -v llama-server >/dev/null 2>&1 && bins+=(--bin aloud)
cargo build -q "${build_flags[@]}" "${bins[@]}" >&2
BIN_DIR=$TARGET_DIR/$PROFILE

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    local url=$1 deadline=$((SECONDS + ${2:-60}))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}

LLAMA_NOTE=""
if [ -z "$DB" ]; then
    if ! command -v llama-server >/dev/null 2>&1; then
        LLAMA_NOTE="llama.cpp corpus SKIPPED: llama-server is not on PATH"
    elif [ -z "${LLAMA_MODEL:-}" ] || [ ! -f "${LLAMA_MODEL:-}" ]; then
        LLAMA_NOTE="llama.cpp corpus SKIPPED: set LLAMA_MODEL to a GGUF file"
    else
        lport=$(free_port); aport=$(free_port)
        llama-server -m "$LLAMA_MODEL" --host 127.0.0.1 --port "$lport" >"$TMP/llama.log" 2>&1 &
        PIDS+=($!)
        wait_http "http://127.0.0.1:$lport/health" 300 || { echo "llama-server did not come up" >&2; exit 1; }
        cat >"$TMP/aloud.toml" <<TOML
[server]
listen = "127.0.0.1:$aport"
[capture]
database = "$TMP/llama.db"
[[routes]]
name = "llama"
prefix = "/llama"
upstream = "http://127.0.0.1:$lport"
api = "openai"
capture = "full"
TOML
        "$BIN_DIR/aloud" serve --config "$TMP/aloud.toml" >"$TMP/aloud.log" 2>&1 &
        PIDS+=($!)
        wait_http "http://127.0.0.1:$aport/healthz" 60 || { echo "aloud did not come up" >&2; exit 1; }
        n=${LLAMA_CALLS:-60}
        echo "llama.cpp: $n calls through aloud..." >&2
        for i in $(seq 1 "$n"); do
            words=$(( (i * 37) % 400 + 10 )); tokens=$(( (i * 53) % 200 + 16 ))
            prompt=$(python3 -c "print(' '.join(['tell me more about rivers'] * $words))")
            curl -fsS -o /dev/null "http://127.0.0.1:$aport/llama/v1/chat/completions" \
                -H 'content-type: application/json' \
                -d "{\"model\":\"local\",\"stream\":true,\"max_tokens\":$tokens,\"messages\":[{\"role\":\"user\",\"content\":\"$prompt\"}]}"
        done
        kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
        DB=$TMP/llama.db
        LLAMA_NOTE="llama.cpp corpus: $n calls to $(basename "$LLAMA_MODEL") (reported as captures)"
    fi
fi

args=()
[ "$SMOKE" = 1 ] && args+=(--smoke)
[ -n "$CALLS" ] && args+=(--calls "$CALLS")
[ -n "$DB" ] && args+=(--db "$DB")
mkdir -p "$TARGET_DIR/bench"
status=0
"$BIN_DIR/examples/eta_accuracy" "${args[@]}" >"$TMP/report.md" || status=$?
[ -n "$LLAMA_NOTE" ] && printf '\n%s\n' "$LLAMA_NOTE" >>"$TMP/report.md"
[ -n "$LLAMA_NOTE" ] && echo "$LLAMA_NOTE" >&2
cp "$TMP/report.md" "$TARGET_DIR/bench/eta_accuracy.md"
cat "$TMP/report.md"
exit $status
