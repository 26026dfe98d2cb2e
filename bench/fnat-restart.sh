#!/usr/bin/env bash
# Full NAT across a crash, in the lab: the connection rate and the servers'
# PAWS drops right after `tack` is killed (kill -9) under load and started
# again, with the previous instance's walk checkpoint and without it.
#
#   sudo bench/fnat-restart.sh [--rounds N]     (default 2; about 80 s a run)
#
# Each run: `tack` (one worker, a full-NAT service with one local address)
# serves `wrk -c16` with one request per connection for 3 s, is killed 1.5 s
# later, started again, and serves the same for 3 s; the servers'
# `TcpExtPAWSTimewait` counters are read around the second run. Between runs
# the script waits 65 s, so that the servers forget every tuple (Linux keeps
# TIME_WAIT a minute). Builds `tack` in release unless $TACK names a binary.
# The lab's prefix is fr<pid>; it is removed at exit.
set -euo pipefail
ROUNDS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "fnat-restart.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
if [ -z "${TACK:-}" ]; then
  cargo build --release -q -p tack-control --bin tack
  TACK=${CARGO_TARGET_DIR:-target}/release/tack
fi
P=fr$$
D=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  scripts/lab.sh down --prefix "$P" >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
scripts/lab.sh up --prefix "$P" >/dev/null
cat >"$D/p.yaml" <<YAML
eal:
  hugepages: false
  lcores: "(0,1)@(0,1)"
runtime:
  idle: backoff
mempool:
  mbufs: 8191
  cache: 128
ports:
  - name: lan
    device: net_af_packet0,iface=lb0
    rx_queues: 1
    addresses: [10.0.0.1/24, fd00::1/64]
workers:
  - { lcore: 1, port: lan, queue: 0 }
routes:
  - { prefix: 0.0.0.0/0, via: 10.0.0.254 }
exception:
  enabled: true
management:
  socket: $D/tack.sock
services:
  - name: fnat
    vip: 10.100.0.11
    port: 80
    mode: fullnat
    local_addresses: [10.0.0.201]
    servers: [ { name: s1, address: 10.0.0.11 }, { name: s2, address: 10.0.0.12 }, { name: s3, address: 10.0.0.13 } ]
YAML
paws() {
  local t=0 n s
  for s in s1 s2 s3; do
    n=$(ip netns exec "$P-$s" nstat -az TcpExtPAWSTimewait | awk '/TcpExtPAWSTimewait/ { print $2 }')
    t=$((t + n))
  done
  echo "$t"
}
start() {
  ip netns exec "$P-lb" "$TACK" run --config "$D/p.yaml" >"$D/out" 2>&1 &
  pid=$!
  sleep 2
}
rate() {
  ip netns exec "$P-c1" wrk -t1 -c16 -d3s -H "Connection: close" http://10.100.0.11/ |
    awk '/Requests\/sec/ { printf "%.0f", $2 }'
}
printf '%-6s %-11s %16s %16s %12s\n' round checkpoint "conn/s before" "conn/s after" "PAWS drops"
for round in $(seq "$ROUNDS"); do
  for mode in kept removed; do
    rm -f "$D/tack.fnat" "$D/tack.fnat.walk"
    start
    before=$(rate)
    sleep 1.5
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    [ "$mode" = removed ] && rm -f "$D/tack.fnat.walk"
    p0=$(paws)
    start
    grep -q "resumed ahead" "$D/out" || [ "$mode" = removed ] || echo "warning: the walks were not resumed" >&2
    after=$(rate)
    p1=$(paws)
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    printf '%-6s %-11s %16s %16s %12s\n' "$round" "$mode" "$before" "$after" "$((p1 - p0))"
    sleep 65
  done
done
