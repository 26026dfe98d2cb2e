#!/bin/bash
# A/B timing of two pipeprof binaries on a noisy machine: runs them
# alternately N times on the same scenario and prints each pair, then the
# means and minimums. Build each side with
#   cargo build --profile bench -p tack-bench --bin pipeprof
# and copy $CARGO_TARGET_DIR/release/pipeprof aside before building the other.
#
# usage: bench/ab.sh N SCENARIO FLOWS BURSTS BINARY_A BINARY_B
#   e.g. bench/ab.sh 8 established 1000000 20000 /tmp/pipeprof.old /tmp/pipeprof.new
set -euo pipefail
if [ $# -ne 6 ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
n=$1 scenario=$2 flows=$3 bursts=$4 a=$5 b=$6
ns() { "$1" "$scenario" "$flows" "$bursts" 2>&1 | grep -o '[0-9.]* ns/packet' | cut -d' ' -f1; }
echo "A=$a B=$b: $scenario flows=$flows bursts=$bursts, ns per packet"
for _ in $(seq "$n"); do
    echo "$(ns "$a") $(ns "$b")"
done | awk '{ print; sa += $1; sb += $2; k++
              if (k == 1 || $1 < ma) ma = $1; if (k == 1 || $2 < mb) mb = $2 }
            END { printf "mean A %.1f B %.1f   min A %.1f B %.1f\n", sa / k, sb / k, ma, mb }'
