#!/usr/bin/env bash
# Peers side by side in the lab of scripts/lab.sh: the same VIP
# (10.100.0.10:80) and the same three nginx servers, served in turn from the
# appliance's namespace on the same veth (lb0) by
#
#   tack-nat        Tack, NAT, one worker, net_af_packet (the lab's default path)
#   tack-nat-xdp    Tack, NAT, one worker, net_af_xdp (native XDP on the veth)
#   tack-fnat       Tack, full NAT (two local addresses), net_af_packet
#   tack-sticky     Tack, NAT with persistence (per client address), net_af_packet
#   haproxy         HAProxy, mode tcp, one thread, stick table on the source address
#   nft             the kernel: nftables DNAT over a jhash map, conntrack
#
# one after the other, in alternating rounds. Each peer gets two wrk runs
# from client c1: keep-alive (32 connections) and one request per
# connection (`Connection: close`). Per run: requests/s, wrk's p50/p99
# latency (of the request on an open connection: wrk starts its clock when
# it writes the request, so a connection's set-up time is not in it), the
# CPU seconds of the load balancer (user + system of the tack or haproxy
# process; for nftables the machine's softirq time, where the kernel
# forwards) and the machine's softirq time for every peer (the other hops'
# kernel work is in it too), and the requests per LB CPU-second. The
# summary gives the median over the rounds and ratios to HAProxy and
# nftables.
#
#   bench/peers.sh [--rounds N] [--seconds S] [--peers "tack-nat haproxy ..."]
#                  [--out FILE] [--prefix P] [--tack PATH]
#   bench/peers.sh --smoke      one short round of tack-nat, haproxy and nft
#                               (seconds; checks every peer answers, no speed)
#
# Defaults: 2 rounds of 5 s runs, every peer, results in
# bench/peers-results-YYYY-MM-DD.txt (the summary, then every run).
# Needs root (namespaces), wrk, haproxy, nftables, nginx (scripts/setup.sh);
# builds tack (release) unless --tack or $TACK names a binary. The machine's
# other load shows in the figures: compare the ratios of one run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ROUNDS=2
SECONDS_PER_RUN=5
PEERS="tack-nat tack-nat-xdp tack-fnat tack-sticky haproxy nft"
OUT=""
P="pb$$"
TACK_BIN=${TACK:-}
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --peers) PEERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --prefix) P=$2; shift 2 ;;
    --tack) TACK_BIN=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "peers.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  ROUNDS=1; SECONDS_PER_RUN=1; PEERS="tack-nat haproxy nft"
fi
case "$ROUNDS$SECONDS_PER_RUN" in *[!0-9]*) echo "peers.sh: --rounds and --seconds take whole numbers" >&2; exit 2 ;; esac
for p in $PEERS; do
  case "$p" in tack-nat|tack-nat-xdp|tack-fnat|tack-sticky|haproxy|nft) ;;
    *) echo "peers.sh: unknown peer $p" >&2; exit 2 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "peers.sh: needs root (network namespaces)" >&2; exit 2; }
for c in wrk haproxy nft nginx python3; do
  command -v "$c" >/dev/null || { echo "peers.sh: $c is missing (scripts/setup.sh)" >&2; exit 2; }
done
if [ -z "$TACK_BIN" ]; then
  (cd "$root" && cargo build --release -q -p tack-control --bin tack)
  TACK_BIN=${CARGO_TARGET_DIR:-$root/target}/release/tack
fi
[ -x "$TACK_BIN" ] || { echo "peers.sh: no tack binary at $TACK_BIN" >&2; exit 2; }

work=$(mktemp -d /tmp/tack-peers.XXXXXX)
raw=$work/raw.tsv
peer_pid=""
ns() { ip netns exec "$P-$1" "${@:2}"; }

cleanup() {
  stop_peer || true
  "$root/scripts/lab.sh" down --prefix "$P" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/scripts/lab.sh" up --prefix "$P" >/dev/null

# --- the peers -------------------------------------------------------------

SERVERS='[ { name: s1, address: 10.0.0.11 }, { name: s2, address: 10.0.0.12 }, { name: s3, address: 10.0.0.13 } ]'

# tack_profile NAME DEVICE SERVICE-LINES
tack_profile() {
  cat > "$work/$1.yaml" <<EOF
eal:
  hugepages: false
  lcores: "(0,1)@(0,1)"
  log_level: error
runtime:
  idle: backoff
mempool: { mbufs: 8191, cache: 128 }
ports:
  - name: lan
    device: $2
    addresses: [10.0.0.1/24]
workers:
  - { lcore: 1, port: lan, queue: 0 }
routes:
  - { prefix: 0.0.0.0/0, via: 10.0.0.254 }
management:
  socket: $work/$1.sock
services:
  - name: web
    vip: 10.100.0.10
    port: 80
    servers: $SERVERS
$3
EOF
}
tack_profile tack-nat "net_af_packet0,iface=lb0" "    mode: nat"
tack_profile tack-nat-xdp "net_af_xdp0,iface=lb0" "    mode: nat"
tack_profile tack-fnat "net_af_packet0,iface=lb0" "    mode: fullnat
    local_addresses: [10.0.0.201, 10.0.0.202]"
tack_profile tack-sticky "net_af_packet0,iface=lb0" "    mode: nat
    persistence: { timeout: 5 }"

cat > "$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 10.100.0.10:80
  default_backend be
backend be
  balance roundrobin
  stick-table type ip size 100k expire 30m
  stick on src
  server s1 10.0.0.11:80
  server s2 10.0.0.12:80
  server s3 10.0.0.13:80
EOF

cat > "$work/nft.conf" <<'EOF'
table ip peers_lb {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 10.100.0.10 tcp dport 80 dnat to jhash ip saddr . tcp sport mod 3 map { 0 : 10.0.0.11, 1 : 10.0.0.12, 2 : 10.0.0.13 }
  }
}
EOF

# The kernel of the appliance's namespace takes lb0 (for haproxy and nft):
# the lab's ingress drop goes, 10.0.0.1 moves to the kernel, which routes.
kernel_takes_lb0() {
  ns lb nft delete table netdev tack_lab
  ns lb ip addr add 10.0.0.1/24 dev lb0
  ns lb ip route add default via 10.0.0.254
  ns lb sysctl -qw net.ipv4.ip_forward=1
}
# ... and gives it back to DPDK as scripts/lab.sh left it.
kernel_leaves_lb0() {
  ns lb ip addr flush dev lb0
  ns lb ip addr del 10.100.0.10/32 dev lo 2>/dev/null || true
  ns lb sysctl -qw net.ipv4.ip_forward=0
  ns lb nft delete table ip peers_lb 2>/dev/null || true
  ns lb nft -f - <<'NFT'
table netdev tack_lab {
  chain lb0_in { type filter hook ingress device "lb0" priority 0; policy drop; }
}
NFT
}

# Waits until the VIP answers from client c1 (up to 20 s).
wait_vip() {
  local i
  for i in $(seq 100); do
    if ns c1 curl -s -m 1 -o /dev/null http://10.100.0.10/; then return 0; fi
    sleep 0.2
  done
  echo "peers.sh: $1 does not answer on the VIP" >&2
  return 1
}

current=""
start_peer() {
  current=$1
  case "$1" in
    tack-*)
      # Not through ns(): a function in the background is a subshell, and
      # $! must be the load balancer itself (ip netns exec execs it).
      ip netns exec "$P-lb" "$TACK_BIN" run --config "$work/$1.yaml" >"$work/$1.log" 2>&1 &
      peer_pid=$!
      ;;
    haproxy)
      kernel_takes_lb0
      ns lb ip addr add 10.100.0.10/32 dev lo
      ip netns exec "$P-lb" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
      peer_pid=$!
      ;;
    nft)
      kernel_takes_lb0
      ns lb nft -f "$work/nft.conf"
      peer_pid=""
      ;;
  esac
  wait_vip "$1" || { cat "$work/$1.log" 2>/dev/null >&2 || true; exit 1; }
}

stop_peer() {
  if [ -n "$peer_pid" ]; then
    kill -TERM "$peer_pid" 2>/dev/null || true
    wait "$peer_pid" 2>/dev/null || true
    peer_pid=""
  fi
  case "$current" in haproxy|nft) kernel_leaves_lb0 ;; esac
  current=""
}

# --- measuring -------------------------------------------------------------

# CPU ticks (user + system) of process $1, or the machine's softirq ticks.
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
softirq_ticks() { awk '/^cpu / { print $8 }' /proc/stat; }
HZ=$(getconf CLK_TCK)

# run ROUND PEER TEST: one wrk run; appends a line to the raw table.
run() {
  local round=$1 peer=$2 test=$3 hdr=() out lb0 lb1 sq0 sq1
  [ "$test" = close ] && hdr=(-H "Connection: close")
  sq0=$(softirq_ticks)
  lb0=0; [ -n "$peer_pid" ] && lb0=$(proc_ticks "$peer_pid")
  out=$(ns c1 wrk -t1 -c32 -d"${SECONDS_PER_RUN}s" --timeout 2s --latency "${hdr[@]}" http://10.100.0.10/ 2>&1)
  sq1=$(softirq_ticks)
  lb1=0; [ -n "$peer_pid" ] && lb1=$(proc_ticks "$peer_pid")
  if [ "$peer" = nft ]; then lb0=$sq0; lb1=$sq1; fi
  echo "$out" | python3 "$here/peers_parse.py" "$round" "$peer" "$test" \
    "$(( lb1 - lb0 ))" "$(( sq1 - sq0 ))" "$HZ" >> "$raw"
}

printf 'round\tpeer\ttest\trequests\tseconds\trps\tp50_ms\tp99_ms\terrors\tlb_cpu_s\tsoftirq_s\n' > "$raw"
for round in $(seq "$ROUNDS"); do
  order=$PEERS
  # Alternate the order every other round.
  [ $((round % 2)) = 0 ] && order=$(echo "$PEERS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for peer in $order; do
    start_peer "$peer"
    run "$round" "$peer" keepalive
    run "$round" "$peer" close
    stop_peer
  done
done

header="Peers in the lab: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r)
$ROUNDS round(s) of ${SECONDS_PER_RUN} s per run; wrk -t1 -c32 from c1; $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nft --version); tack $("$TACK_BIN" --version 2>/dev/null | cut -d' ' -f2)"
summary=$(python3 "$here/peers_parse.py" --summary < "$raw")
if [ -z "$OUT" ] && [ "$SMOKE" = 0 ]; then
  OUT=$here/peers-results-$(date -u +%Y-%m-%d).txt
fi
report="$header

$summary

Raw runs:
$(column -t -s "$(printf '\t')" < "$raw")"
echo "$report"
if [ -n "$OUT" ]; then
  echo "$report" > "$OUT"
  echo "written to $OUT" >&2
fi
