#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (Python SDKs into
# ./.venv, npm packages from tests/clients/package-lock.json, Chromium from Debian when
# absent), then runs every test. CI calls this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
export ALOUD_TEST_PYTHON="$PWD/.venv/bin/python"
export ALOUD_TEST_INSPECT_PYTHON="$PWD/.venv-inspect/bin/python"
export ALOUD_TEST_CLIENTS="$PWD/tests/clients"
export ALOUD_REQUIRE_CLIENTS=1
cargo test --locked --all-targets
