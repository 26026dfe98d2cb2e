#!/usr/bin/env bash
# Two workers in the lab (docs/benchmarking-lab.md, "Two workers in the
# lab"): one worker over net_af_packet against two workers over
# net_af_packet (PACKET_FANOUT_HASH), over net_af_xdp without the steering
# program and over net_af_xdp with it (tack steering-program on p-lb), on
# the lab's NAT service (configs/lab.yaml's `web`, 10.100.0.10:80). Each
# setup gets two wrk runs from c1 (one thread, 32 connections, SECONDS
# each): keep-alive, and one request per connection (Connection: close);
# and the share of the frames the workers received that they handed to the
# other. ROUNDS rounds, the order of the setups reversed every other round;
# each connection run starts once no connection of the previous is left in
# TIME_WAIT.
#
#   bench/two-workers.sh [ROUNDS] [SECONDS]
#
# As root, with a built tack (TACK, default target/release/tack; TACKCTL
# beside it). Builds its own lab (prefix tw<pid>, two-queue lb0) and
# removes it at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-2}
SECS=${2:-8}
TACK=${TACK:-$here/target/release/tack}
TACKCTL=${TACKCTL:-$(dirname "$TACK")/tackctl}
P=tw$$
state=/run/tack-lab-$P
dir=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || kill -INT "$pid" 2>/dev/null || true
  [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
  "$here/scripts/lab.sh" down --prefix "$P"
  rm -rf "$dir"
}
trap cleanup EXIT
"$here/scripts/lab.sh" up --prefix "$P" --queues 2 >/dev/null

# The setups' profiles, from the shipped lab profiles.
sed -e 's/device: net_af_packet0,iface=lb0,qpairs=2/device: net_af_packet0,iface=lb0/' \
    -e 's/rx_queues: 2/rx_queues: 1/' -e '/{ lcore: 2, port: lan, queue: 1 }/d' \
    -e 's/lcores: "(0,1,2)@(0,1)"/lcores: "(0,1)@(0,1)"/' \
    "$here/configs/lab.yaml" > "$dir/packet1.yaml"
cp "$here/configs/lab.yaml" "$dir/packet2.yaml"
cp "$here/configs/lab-xdp.yaml" "$dir/xdp2.yaml"
cp "$here/configs/lab-xdp.yaml" "$dir/xdp2-steered.yaml"
SETUPS="packet1 packet2 xdp2 xdp2-steered"

counters() { # rx_packets steered_out
  "$TACKCTL" --socket "$dir/tack.sock" counters |
    awk '$1 == "rx_packets" { r = $2 } $1 == "steered_out" { s = $2 } END { print r + 0, s + 0 }'
}

wrk_rps() { # URL [wrk args]: requests/s
  ip netns exec "$P-c1" wrk -t1 -c32 -d"${SECS}s" --timeout 5s "${@:2}" "$1" |
    awk '/^Requests\/sec/ { printf "%d", $2 }'
}

# The connection runs leave tens of thousands of connections in TIME_WAIT on
# the servers; the next run's clients reuse their ports and lose SYNs to
# them (from 11 000 to 500 connections/s here). Waits (up to 70 s) until
# they are gone.
drain_time_wait() {
  local n
  for _ in $(seq 70); do
    n=0
    for h in c1 s1 s2 s3; do
      n=$((n + $(ip netns exec "$P-$h" ss -Htan state time-wait | wc -l)))
    done
    [ "$n" -gt 100 ] || return 0
    sleep 1
  done
}

run_setup() {
  local s=$1
  ip netns exec "$P-sw" "$TACK" steering-program --detach p-lb >/dev/null 2>&1 || true
  LD_PRELOAD=$state/combined_channels.so ip netns exec "$P-lb" \
    "$TACK" run --config "$dir/$s.yaml" --socket "$dir/tack.sock" > "$dir/$s.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q running "$dir/$s.log" && break; sleep 0.1; done
  if [ "$s" = xdp2-steered ]; then
    ip netns exec "$P-sw" "$TACK" steering-program --config "$dir/$s.yaml" --attach p-lb >/dev/null
  fi
  sleep 4 # the health checks bring the servers up
  read -r rx0 st0 < <(counters)
  local ka cl
  ka=$(wrk_rps http://10.100.0.10/)
  drain_time_wait
  cl=$(wrk_rps http://10.100.0.10/ -H "Connection: close")
  read -r rx1 st1 < <(counters)
  kill -INT "$pid"
  wait "$pid" || true
  pid=
  local share
  share=$(awk -v r=$((rx1 - rx0)) -v s=$((st1 - st0)) 'BEGIN { printf "%.1f", r ? 100 * s / r : 0 }')
  printf "%-13s keep-alive %6s req/s   one per connection %6s req/s   handed over %5s %% of %d frames\n" \
    "$s" "$ka" "$cl" "$share" $((rx1 - rx0))
}

for r in $(seq "$ROUNDS"); do
  order=$SETUPS
  [ $((r % 2)) -eq 1 ] || order=$(echo "$SETUPS" | tr ' ' '\n' | tac | tr '\n' ' ')
  echo "round $r"
  for s in $order; do run_setup "$s"; done
done
