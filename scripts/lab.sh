#!/usr/bin/env bash
# The Tack lab: network namespaces with clients, a router, real servers and the
# appliance's port, on one machine. No route leads out of the lab.
#
#   scripts/lab.sh up   [--prefix P] [--nodes N] [--queues Q]
#                                       build it (default prefix: tk); --nodes
#                                       adds N cluster nodes P-n1..P-nN, each
#                                       with its port lb0 on the segment, and
#                                       a client P-c0 (10.0.0.50) on the
#                                       segment, its route to the VIPs on-link;
#                                       --queues (or TACK_LAB_QUEUES) gives
#                                       lb0 and its bridge end p-lb Q queues
#                                       each way (a multi-queue veth: what
#                                       p-lb sends on queue q, lb0 receives on
#                                       its queue q), for several workers over
#                                       net_af_xdp (configs/lab-xdp.yaml; tack
#                                       runs with LD_PRELOAD=$state/combined_channels.so,
#                                       built here from lab/combined_channels.c,
#                                       state being /run/tack-lab-P)
#   scripts/lab.sh steer [--prefix P] --config PROFILE [--tack BIN]
#                                       attach tack's steering program for the
#                                       profile's port to p-lb (tcx egress):
#                                       each frame is sent to lb0 on the queue
#                                       of the worker that owns it, so the
#                                       workers hand nothing over (see
#                                       docs/benchmarking-lab.md, "Two workers
#                                       in the lab"). Compiled from the
#                                       profile's services: run it again after
#                                       changing them (a reload does not)
#   scripts/lab.sh unsteer [--prefix P] remove it
#   scripts/lab.sh down [--prefix P]    remove it (processes, namespaces, files)
#   scripts/lab.sh status [--prefix P]
#
# Topology (P = prefix):
#
#   P-c1 (11.1.2.3, 11.200.0.1 /8; fd00:c1::2, fd00:c1::3)  ─┐
#   P-c2 (172.16.1.5, 172.16.200.9 /16)                      ─┼─ P-rtr ── r0 10.0.0.254, fd00::fe ─┐
#   P-c3 (198.18.5.1, 198.18.5.77 /24)                       ─┘                                    │
#                                                                                  P-sw: bridge br0 (10.0.0.0/24, fd00::/64)
#   P-lb: lb0, the appliance's port (no kernel address; DPDK binds it with net_af_packet or net_af_xdp) ┤
#   P-s1 10.0.0.11, P-s2 10.0.0.12, P-s3 10.0.0.13 (fd00::11..13): nginx :80, UDP echo :5353 ──────┘
#
# Each server's nginx answers "NAME CLIENT-ADDRESS" on every path but /site/,
# which serves the files a test puts in $state/NAME/site/ (logged in
# $state/NAME/site.log; /site/checkout/ moves to https:// on the same host).
#
# Clients route everything to the router; the router sends the VIP networks
# 10.100.0.0/24 and fd00:100::/64 to the appliance (10.0.0.1 / fd00::1, which
# the appliance answers ARP/NDP for). Servers route by default through the
# appliance (NAT); replies sourced from a VIP (direct server return) go straight
# to the router by a policy route, and the DSR VIPs sit on the servers' loopback.
set -euo pipefail

P=tk
NODES=0
QUEUES=${TACK_LAB_QUEUES:-1}
CONFIG=
TACK=${TACK:-tack}
cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) P=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --queues) QUEUES=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --tack) TACK=$2; shift 2 ;;
    *) echo "lab.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
state=/run/tack-lab-$P
SERVERS="s1 s2 s3"
CLIENTS="c1 c2 c3"
# Virtual addresses the servers hold on loopback for direct server return.
DSR_VIPS="10.100.0.12 10.100.0.22"

ns() { ip netns exec "$P-$1" "${@:2}"; }
quiet_offloads() { ns "$1" ethtool -K "$2" tx off rx off >/dev/null 2>&1 || true; }

# veth NS_A IF_A NS_B IF_B [QUEUES]
link() {
  local ta="$P$RANDOM" tb="$P$RANDOM" q=${5:-1}
  ip link add "$ta" numtxqueues "$q" numrxqueues "$q" type veth peer name "$tb" numtxqueues "$q" numrxqueues "$q"
  ip link set "$ta" netns "$P-$1"; ip link set "$tb" netns "$P-$3"
  ns "$1" ip link set "$ta" name "$2"; ns "$3" ip link set "$tb" name "$4"
  quiet_offloads "$1" "$2"; quiet_offloads "$3" "$4"
  ns "$1" ip link set "$2" up; ns "$3" ip link set "$4" up
}

# Names of the cluster nodes' namespaces (n1 n2 ...).
node_names() { local i; for i in $(seq 1 "$NODES"); do echo "n$i"; done; }

mkns() {
  ip netns add "$P-$1"
  ns "$1" ip link set lo up
  ns "$1" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ns "$1" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
  ns "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

up() {
  if ip netns list | grep -q "^$P-lb\b"; then
    echo "lab.sh: lab '$P' is already up (scripts/lab.sh down --prefix $P)" >&2; exit 1
  fi
  mkdir -p "$state"
  for n in sw lb rtr $CLIENTS $SERVERS; do mkns "$n"; done

  # The L2 segment.
  ns sw ip link add br0 type bridge
  ns sw ip link set br0 up
  ns sw sysctl -qw net.ipv6.conf.br0.disable_ipv6=1 2>/dev/null || true
  plug() { link "$1" "$2" sw "$3" "${4:-1}"; ns sw ip link set "$3" master br0; ns sw sysctl -qw "net.ipv6.conf.$3.disable_ipv6=1" 2>/dev/null || true; }
  # The appliance (and the cluster nodes), each with its port lb0.
  for n in lb $(node_names); do
    [ "$n" = lb ] || mkns "$n"
    plug "$n" lb0 "p-$n" "$QUEUES"
    ns "$n" sysctl -qw net.ipv6.conf.lb0.disable_ipv6=1
  # lb0 stays DPDK's: af_packet sees every frame before the ingress hook,
  # which keeps the namespace's own stack (where the appliance's kernel
  # interfaces live, see docs/operations.md "Exception path") from taking
  # frames addressed to the appliance a second time. On a bare-metal
  # server the kernel does not see a DPDK-bound NIC at all.
    ns "$n" nft -f - <<'NFT'
table netdev tack_lab {
  chain lb0_in { type filter hook ingress device "lb0" priority 0; policy drop; }
}
NFT
  done
  plug rtr r0 p-rtr
  for s in $SERVERS; do plug "$s" eth0 "p-$s"; done
  if [ "$NODES" -gt 0 ]; then
    # A client beside the nodes, for the elected scheduler's entry: it
    # reaches the VIPs on the segment, through whichever node answers ARP.
    mkns c0
    plug c0 eth0 p-c0
    ns c0 ip addr add 10.0.0.50/24 dev eth0
    ns c0 ip route add 10.100.0.0/24 dev eth0
  fi

  # Router.
  ns rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  ns rtr ip addr add 10.0.0.254/24 dev r0
  ns rtr ip -6 addr add fd00::fe/64 dev r0
  ns rtr ip route add 10.100.0.0/24 via 10.0.0.1
  ns rtr ip -6 route add fd00:100::/64 via fd00::1
  link rtr rc1 c1 eth0
  link rtr rc2 c2 eth0
  link rtr rc3 c3 eth0
  ns rtr ip addr add 11.0.0.254/8 dev rc1
  ns rtr ip -6 addr add fd00:c1::1/64 dev rc1
  ns rtr ip addr add 172.16.0.254/16 dev rc2
  ns rtr ip addr add 198.18.5.254/24 dev rc3

  # Clients: several source addresses each, inside one classful network.
  ns c1 ip addr add 11.1.2.3/8 dev eth0
  ns c1 ip addr add 11.200.0.1/8 dev eth0
  ns c1 ip -6 addr add fd00:c1::2/64 dev eth0
  ns c1 ip -6 addr add fd00:c1::3/64 dev eth0
  ns c1 ip route add default via 11.0.0.254
  ns c1 ip -6 route add default via fd00:c1::1
  ns c2 ip addr add 172.16.1.5/16 dev eth0
  ns c2 ip addr add 172.16.200.9/16 dev eth0
  ns c2 ip route add default via 172.16.0.254
  ns c3 ip addr add 198.18.5.1/24 dev eth0
  ns c3 ip addr add 198.18.5.77/24 dev eth0
  ns c3 ip route add default via 198.18.5.254

  # Servers.
  i=0
  for s in $SERVERS; do
    i=$((i + 1))
    ns "$s" ip addr add "10.0.0.1$i/24" dev eth0
    ns "$s" ip -6 addr add "fd00::1$i/64" dev eth0
    ns "$s" ip route add default via 10.0.0.1
    ns "$s" ip -6 route add default via fd00::1
    # Direct server return: the VIPs on loopback, never answered in ARP,
    # and replies from them routed straight to the router.
    ns "$s" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    for v in $DSR_VIPS; do ns "$s" ip addr add "$v/32" dev lo; done
    ns "$s" ip rule add from 10.100.0.0/24 lookup 100
    ns "$s" ip route add default via 10.0.0.254 table 100
    mkdir -p "$state/$s"
    cat > "$state/$s/nginx.conf" <<NGINX
worker_processes 1;
daemon on;
pid $state/$s/nginx.pid;
error_log $state/$s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 120s;
  keepalive_requests 100000;
  client_body_temp_path $state/$s/body;
  proxy_temp_path $state/$s/proxy;
  fastcgi_temp_path $state/$s/fastcgi;
  uwsgi_temp_path $state/$s/uwsgi;
  scgi_temp_path $state/$s/scgi;
  server {
    listen 80 reuseport backlog=4096;
    listen [::]:80 reuseport backlog=4096;
    location / {
      default_type text/plain;
      add_header X-Server $s always;
      return 200 "$s \$remote_addr\n";
    }
    # A small web site for browser tests (files put in $state/$s/site/ by the
    # test), each request logged; its secure section moves to HTTPS on the
    # same host (served, when a test starts it, by a TLS nginx of its own).
    location /site/ {
      include /etc/nginx/mime.types;
      root $state/$s;
      access_log $state/$s/site.log;
      add_header X-Server $s always;
    }
    location /site/checkout/ {
      access_log $state/$s/site.log;
      return 301 https://\$host\$request_uri;
    }
  }
}
NGINX
    ns "$s" nginx -c "$state/$s/nginx.conf" -p "$state/$s" >/dev/null 2>&1 || ns "$s" nginx -c "$state/$s/nginx.conf" -p "$state/$s"
    ns "$s" setsid python3 "$here/lab/udp_echo.py" "$s" 5353 </dev/null >/dev/null 2>&1 &
  done
  if [ "$QUEUES" -gt 1 ]; then
    # DPDK 22.11's net_af_xdp binds several queues only on a device that
    # reports combined channels, which a veth does not (see the shim).
    cc -O2 -shared -fPIC -o "$state/combined_channels.so" "$here/lab/combined_channels.c" -ldl
    echo "lb0 has $QUEUES queues; run tack with LD_PRELOAD=$state/combined_channels.so for net_af_xdp"
  fi
  echo "lab '$P' is up: appliance port lb0 in namespace $P-lb; clients $CLIENTS; servers $SERVERS"
}

down() {
  for n in sw lb rtr c0 $CLIENTS $SERVERS n1 n2 n3 n4 n5 n6 n7 n8; do
    if ip netns list | grep -q "^$P-$n\b"; then
      for pid in $(ip netns pids "$P-$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$P-$n" 2>/dev/null || true
    fi
  done
  rm -rf "$state"
}

steer() {
  [ -n "$CONFIG" ] || { echo "lab.sh steer: --config PROFILE is needed" >&2; exit 2; }
  ip netns exec "$P-sw" "$TACK" steering-program --config "$CONFIG" --attach p-lb
}

unsteer() {
  ip netns exec "$P-sw" "$TACK" steering-program --detach p-lb
}

status() {
  ip netns list | grep "^$P-" || echo "lab '$P' is down"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  steer) steer ;;
  unsteer) unsteer ;;
  *) echo "usage: scripts/lab.sh up|down|status|steer|unsteer [--prefix P]" >&2; exit 2 ;;
esac
