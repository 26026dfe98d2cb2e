#!/usr/bin/env bash
# BGP with BFD for the cluster lab: BIRD 2 on the router (P-rtr) peering with
# each node (P-n1..P-nN, through the node's kernel interface tack-lan, that
# is through the appliance's exception path), the nodes announcing the VIPs,
# and the router installing one multipath (ECMP) route per VIP, hashed on
# the L4 five-tuple. A node whose BFD session fails (its appliance died, its
# link is down or silent) is withdrawn within about 150 ms.
#
#   scripts/lab/bgp.sh up --prefix P --nodes N VIP...
#   scripts/lab/bgp.sh down --prefix P
#
# Node i has the address 10.0.0.(1+i) and AS 65000+i; the router is
# 10.0.0.254, AS 65000. The configuration files are written to
# /run/tack-lab-P/bird-*.conf, and /run/tack-lab-P/notify-nI.sh is node I's
# `cluster.notify` program (it withdraws the VIPs while the node drains).
set -euo pipefail
cmd=${1:-}; shift || true
P=tk; NODES=3; VIPS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) P=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    *) VIPS+=("$1"); shift ;;
  esac
done
state=/run/tack-lab-$P
ns() { ip netns exec "$P-$1" "${@:2}"; }

bird_in() { # NS NAME: start bird in namespace NS with $state/bird-NAME.conf
  ns "$1" bird -c "$state/bird-$2.conf" -s "$state/bird-$2.ctl" -P "$state/bird-$2.pid"
}

up() {
  mkdir -p "$state"
  ns rtr sysctl -qw net.ipv4.fib_multipath_hash_policy=1
  {
    echo "router id 10.0.0.254;"
    echo "protocol device { scan time 1; }"
    echo "protocol kernel { ipv4 { import none; export all; }; merge paths on; }"
    echo "protocol bfd { interface \"r0\" { min rx interval 50 ms; min tx interval 50 ms; multiplier 3; }; }"
    echo "template bgp node { local 10.0.0.254 as 65000; hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; bfd on; ipv4 { import all; export none; }; }"
    for i in $(seq 1 "$NODES"); do
      echo "protocol bgp n$i from node { neighbor 10.0.0.$((1 + i)) as $((65000 + i)); }"
    done
  } > "$state/bird-rtr.conf"
  bird_in rtr rtr
  for i in $(seq 1 "$NODES"); do
    {
      echo "router id 10.0.0.$((1 + i));"
      echo "protocol device { scan time 1; }"
      echo "protocol static vips { ipv4; $(for v in "${VIPS[@]}"; do printf 'route %s/32 blackhole; ' "$v"; done)}"
      echo "protocol bfd { interface \"tack-lan\" { min rx interval 50 ms; min tx interval 50 ms; multiplier 3; }; }"
      echo "protocol bgp rtr { local 10.0.0.$((1 + i)) as $((65000 + i)); neighbor 10.0.0.254 as 65000; hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; bfd on; ipv4 { import none; export all; next hop self; }; }"
    } > "$state/bird-n$i.conf"
    # The appliance's cluster.notify: withdraw the VIPs while it drains.
    cat > "$state/notify-n$i.sh" <<NOTIFY
#!/bin/sh
case "\$1" in
  draining) exec birdc -s "$state/bird-n$i.ctl" disable vips ;;
  active) exec birdc -s "$state/bird-n$i.ctl" enable vips ;;
esac
NOTIFY
    chmod +x "$state/notify-n$i.sh"
    # It connects once the node's appliance has made tack-lan, and again
    # after the appliance restarts.
    bird_in "n$i" "n$i"
  done
}

down() {
  for f in "$state"/bird-*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -f "$state"/bird-* "$state"/notify-*
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
