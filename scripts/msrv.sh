#!/usr/bin/env bash
# Checks, offline and with the one toolchain CI has, that Cargo.toml's `rust-version` is true.
#
# What is checked, and how:
# - Library APIs: clippy's `incompatible_msrv` lint reads `rust-version` and refuses any std
#   item stabilised after it. It runs in CI's clippy step (`-D warnings`); this script runs it
#   again on the library alone, so a local `scripts/msrv.sh` says the same.
# - Dependencies: every locked dependency's declared `rust-version` must not be newer than ours
#   (a newer one would not build on our stated minimum).
# What is not checked: language features. rustc accepts newer syntax whatever `rust-version`
# says, and an older toolchain cannot be installed offline. The newest language feature used is
# let chains (1.88, edition 2024 only), and that is why `rust-version` is 1.88; keep it in step
# when using a newer one.
set -euo pipefail
cd "$(dirname "$0")/.."
ours=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
echo "rust-version: $ours"
cargo metadata --locked --format-version 1 | python3 -c '
import json, sys
ours = tuple(int(x) for x in sys.argv[1].split("."))
newer = []
for p in json.load(sys.stdin)["packages"]:
    v = p.get("rust_version")
    if v and tuple(int(x) for x in v.split(".")) > ours + (0,) * (3 - len(ours)):
        newer.append(" ".join((p["name"], p["version"], "needs Rust", v)))
if newer:
    sys.exit("dependencies newer than rust-version " + sys.argv[1] + ":\n" + "\n".join(newer))
' "$ours"
cargo clippy --locked --lib -- -D clippy::incompatible_msrv
echo "rust-version $ours holds for library APIs and dependencies"
