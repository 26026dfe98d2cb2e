#!/usr/bin/env bash
# Tack's throughput harness, one command: installs what it needs (scripts/setup.sh:
# DPDK with dpdk-testpmd, gnuplot), builds tack, tackctl and the generator
# tackgen in release mode, then runs bench/throughput.py: the same traffic over
# net_memif into tack (a NAT profile) and into dpdk-testpmd io-fwd, alternating,
# and prints tack's rate as a fraction of testpmd's per row, with the machine and
# the date. Tables and the plot go to bench/results/.
#
#   ./scripts/bench.sh            # the matrix: 1K-10M flows, UDP/TCP, IPv4/IPv6 (< 10 min on 2 CPUs)
#   ./scripts/bench.sh --quick    # 1K and 1M flows, UDP/IPv4 (< 2 min)
#   ./scripts/bench.sh --smoke    # a few thousand frames, checked (the test suite runs this)
#   ./scripts/bench.sh --help     # every option (flows, sizes, new-flow shares, workers...)
#
# Needs root (DPDK's memif and EAL). Hugepages are not needed (--huge uses them).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh >&2

export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-$(pwd)/target}
echo "bench.sh: building tack, tackctl and tackgen (release)" >&2
cargo build --release --quiet -p tack-control --bin tack --bin tackctl
cargo build --release --quiet -p tack-bench --bin tackgen

export TACK_BIN=$target/release/tack TACKCTL_BIN=$target/release/tackctl TACKGEN_BIN=$target/release/tackgen
exec python3 bench/throughput.py "$@"
