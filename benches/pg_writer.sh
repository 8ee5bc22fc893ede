#!/usr/bin/env bash
# Capture writer throughput into a local Postgres (issue 9, item 6): starts a throwaway
# Postgres from Debian's binaries (initdb + pg_ctl in a temp dir, as `nobody` when run as root,
# on a free loopback port, with its default durability: fsync and synchronous_commit on), then
# runs examples/writer_bench.rs against it with records of ~2 KB, and stops and removes it.
#
#   benches/pg_writer.sh                    # 100,000 records of 2 KiB
#   benches/pg_writer.sh --records 20000    # shorter
#   benches/pg_writer.sh --no-build         # use the built example as it is
#
# Target: >= 20,000 records/s of 2 KB through the whole writer.
set -euo pipefail
cd "$(dirname "$0")/.."
records=100000
size=2048
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --records) records="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
say() { printf 'pg_writer: %s\n' "$*" >&2; }

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ -z "$bin" ]]; then
    say "Postgres is not installed: scripts/install-test-deps.sh installs it"
    exit 1
fi
if [[ "$build" == 1 ]]; then
    say "cargo build --release --example writer_bench"
    cargo build --release --example writer_bench >&2
fi
target="${CARGO_TARGET_DIR:-target}"
bench="$target/release/examples/writer_bench"

dir=$(mktemp -d /tmp/aloud-pgbench-XXXXXX)
as=()
if [[ "$(id -u)" == 0 ]]; then
    chown nobody: "$dir"
    as=(runuser -u nobody --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
printf 'bench-secret\n' > "$dir/pw"
chmod 600 "$dir/pw"
[[ ${#as[@]} -gt 0 ]] && chown nobody: "$dir/pw"
say "initdb $dir/data (Postgres $(basename "$(dirname "$bin")"))"
(cd "$dir" && "${as[@]}" "$bin/initdb" -D "$dir/data" -U aloud --pwfile="$dir/pw" \
    --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 >/dev/null)
(cd "$dir" && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir" start >/dev/null)
"$bin/pg_isready" -h 127.0.0.1 -p "$port" -t 10 >/dev/null
url="postgres://aloud:bench-secret@127.0.0.1:$port/postgres?sslmode=disable"
say "writer_bench --database postgres://aloud:***@127.0.0.1:$port/postgres --records $records --size $size"
"$bench" --database "$url" --records "$records" --size "$size"
