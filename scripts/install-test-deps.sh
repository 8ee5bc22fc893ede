#!/usr/bin/env bash
# Installs what the real-client tests (tests/sdk_clients.rs) need, and nothing when it is
# already there:
#   .venv/                      python3 -m venv, then tests/clients/requirements.txt (pinned)
#   tests/clients/node_modules  npm ci from tests/clients/package-lock.json (pinned)
#   /usr/bin/chromium           Debian's chromium, only when absent (needs root, as in CI)
#   /usr/bin/prometheus         Debian's prometheus (and promtool), only when absent (root too);
#                               its service is kept from starting: the tests run the binary
#   /usr/lib/postgresql, nginx  Debian's postgresql and nginx-light, likewise (tests/replicas.rs)
# Safe to run again; works without stdin (CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
clients="$root/tests/clients"

say() { printf 'install-test-deps: %s\n' "$*"; }

# --- Python SDKs -------------------------------------------------------------------------
venv="$root/.venv"
req="$clients/requirements.txt"
stamp="$venv/.requirements.txt"
if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv with $(command -v python3) ($(python3 --version 2>&1))"
    python3 -m venv "$venv"
fi
if [[ -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
    say "python SDKs already installed ($(grep -E '^(openai|anthropic|opentelemetry-proto)==' "$req" | paste -sd ' '))"
else
    say "pip install -r tests/clients/requirements.txt"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$req"
    cp "$req" "$stamp"
fi

# --- inspect_ai, datasets and pandas: exported datasets loaded by their real consumers ----
# A venv of its own: its dependency tree is large and must not move the SDK pins above.
ivenv="$root/.venv-inspect"
ireq="$clients/requirements-inspect.txt"
istamp="$ivenv/.requirements.txt"
if [[ ! -x "$ivenv/bin/python" ]]; then
    say "creating $ivenv"
    python3 -m venv "$ivenv"
fi
if [[ -f "$istamp" ]] && cmp -s "$ireq" "$istamp"; then
    say "inspect_ai already installed ($(grep -E '^inspect_ai==' "$ireq"))"
else
    say "pip install -r tests/clients/requirements-inspect.txt"
    "$ivenv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$ireq"
    cp "$ireq" "$istamp"
fi

# --- Node SDKs ---------------------------------------------------------------------------
lock="$clients/package-lock.json"
nm_lock="$clients/node_modules/.package-lock.json"
node_stamp="$clients/node_modules/.aloud-package-lock.json"
if [[ -f "$nm_lock" && -f "$node_stamp" ]] && cmp -s "$lock" "$node_stamp"; then
    say "node packages already installed (node $(node --version))"
else
    say "npm ci in tests/clients (node $(node --version))"
    (cd "$clients" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    cp "$lock" "$node_stamp"
fi

# --- Chromium ----------------------------------------------------------------------------
if [[ -x /usr/bin/chromium ]]; then
    say "chromium already installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
else
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo -n)
    fi
    say "apt-get install chromium (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium </dev/null
    say "installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
fi
# --- Debian packages whose service is not wanted ------------------------------------------
# The tests start these themselves, in temp dirs on ports of their own, so the packages' own
# services (and Postgres's default cluster) must not start: a policy-rc.d that denies every
# start is in place while the package installs (only when the machine has none of its own).
apt_install_quiet() { # PACKAGE
    local sudo=() policy=/usr/sbin/policy-rc.d own_policy=0 status=0
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo -n)
    fi
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    say "apt-get install $1 (Debian), its service not started"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$1" </dev/null || status=$?
    if [[ "$own_policy" == 1 ]]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    if [[ "$status" != 0 ]]; then
        exit "$status"
    fi
}

# Prometheus: tests/prometheus.rs starts the binary itself with a 1 s scrape of aloud.
if [[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]]; then
    say "prometheus already installed ($(/usr/bin/prometheus --version 2>&1 | head -n 1))"
else
    apt_install_quiet prometheus
    say "installed $(/usr/bin/prometheus --version 2>&1 | head -n 1)"
fi
# Postgres: tests/support/postgres.rs runs initdb/pg_ctl in a temp dir as an unprivileged user.
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    say "postgres already installed ($(ls /usr/lib/postgresql | sort -n | tail -n 1))"
else
    apt_install_quiet postgresql
    say "installed postgres $(ls /usr/lib/postgresql | sort -n | tail -n 1)"
fi
# nginx: tests/replicas.rs runs it itself (a generated config in a temp dir, its own port).
if command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; then
    say "nginx already installed ($("$(command -v nginx || echo /usr/sbin/nginx)" -v 2>&1))"
else
    apt_install_quiet nginx-light
    say "installed $(/usr/sbin/nginx -v 2>&1)"
fi
say "done"
