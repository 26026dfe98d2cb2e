#!/usr/bin/env bash
# Installs what is missing, then runs every check and test of the project:
# formatting, clippy, unit/property/fixture tests, the fuzz corpora replays,
# DPDK tests on virtual devices and the end-to-end tests in network namespaces.
# Needs root (namespaces, af_packet). Hugepages are not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

./scripts/setup.sh

export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1
step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

# --all-targets type-checks the benchmarks too (run them with cargo bench -p tack-bench).
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, property, fixture, corpus replay, DPDK vdev, end-to-end)"
cargo test --workspace

printf '\nall tests passed in %ss\n' "$(( $(date +%s) - t0 ))"
