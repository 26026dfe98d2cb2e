#!/usr/bin/env bash
# The elected scheduler for the cluster lab (cluster.entry: scheduler):
# keepalived's VRRP on each node (P-n1..P-nN), spoken through the node's
# kernel interface tack-lan, that is through the appliance's exception path,
# unicast between the nodes' addresses. The node VRRP elects calls
# `tackctl cluster scheduler active` and takes the VIPs (the appliance sends
# the gratuitous ARPs); the others are told `standby`. The VIPs are not
# keepalived's: the appliance answers for them, the kernel never holds them.
# VRRPv3 advertises at least one address: keepalived puts 10.0.0.10 on the
# elected node's tack-lan (it only marks the master in the node's kernel; the
# appliance does not answer ARP for it).
#
#   scripts/lab/vrrp.sh up --prefix P --nodes N --tackctl PATH
#   scripts/lab/vrrp.sh down --prefix P
#
# Node i (address 10.0.0.(1+i)) has priority 200 - i, adverts every 100 ms
# (VRRPv3), and no preemption: the first node whose timer runs out at start
# is elected, and a node that comes back does not take the role back. The
# state changes go to tack through keepalived's notify FIFO, read in order
# by lab/vrrp-notify.sh. Node i's appliance must listen on the management
# socket /run/tack-lab-P/nI.sock. Files: /run/tack-lab-P/vrrp-*.
set -euo pipefail
cmd=${1:-}; shift || true
P=tk; NODES=3; TACKCTL=tackctl
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) P=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --tackctl) TACKCTL=$2; shift 2 ;;
    *) echo "vrrp.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
state=/run/tack-lab-$P
here=$(cd "$(dirname "$0")" && pwd)
ns() { ip netns exec "$P-$1" "${@:2}"; }

up() {
  mkdir -p "$state"
  for i in $(seq 1 "$NODES"); do
    local me=10.0.0.$((1 + i)) peers="" j
    for j in $(seq 1 "$NODES"); do
      [ "$j" = "$i" ] || peers="$peers 10.0.0.$((1 + j))"
    done
    cat > "$state/vrrp-n$i.conf" <<CONF
global_defs {
  router_id n$i
  vrrp_version 3
  script_user root
  enable_script_security
  vrrp_garp_master_delay 0
  # The state changes reach tack in order (see lab/vrrp-notify.sh).
  vrrp_notify_fifo $state/vrrp-n$i.fifo
  vrrp_notify_fifo_script "$here/vrrp-notify.sh $TACKCTL $state/n$i.sock"
}
vrrp_instance tack {
  state BACKUP
  nopreempt
  interface tack-lan
  virtual_router_id 42
  priority $((200 - i))
  advert_int 0.1
  unicast_src_ip $me
  unicast_peer {$(for p in $peers; do printf '\n    %s' "$p"; done)
  }
  virtual_ipaddress {
    10.0.0.10/32 dev tack-lan
  }
}
CONF
    ns "n$i" keepalived --vrrp --dont-fork --log-console --log-detail \
      --use-file "$state/vrrp-n$i.conf" --pid "$state/vrrp-n$i.pid" \
      --vrrp_pid "$state/vrrp-n$i.vrrp.pid" --checkers_pid "$state/vrrp-n$i.chk.pid" \
      </dev/null >"$state/vrrp-n$i.log" 2>&1 &
  done
}

down() {
  local f
  for f in "$state"/vrrp-n*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.2
  rm -f "$state"/vrrp-*
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
