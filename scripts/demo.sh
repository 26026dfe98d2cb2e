#!/usr/bin/env bash
# Tack demo: installs what is missing, builds, starts the lab (network
# namespaces with clients in class A, B and C networks, a router, three real
# servers and the appliance's port), runs the appliance on configs/lab.yaml,
# drives real traffic through every forwarding mode, shows what it did, and
# removes the lab. Needs root; no hugepages, no DPDK NIC.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

./scripts/setup.sh

echo "==> building (release)"
cargo build --release -q -p tack-control
tack=$root/target/release/tack
tackctl=$root/target/release/tackctl

P=tkdemo
sock=/run/tack/demo.sock
out=$(mktemp -d)
tack_pid=
cleanup() {
  if [ -n "$tack_pid" ] && kill -0 "$tack_pid" 2>/dev/null; then kill -TERM "$tack_pid"; wait "$tack_pid" 2>/dev/null || true; fi
  ./scripts/lab.sh down --prefix $P >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT

echo "==> starting the lab"
./scripts/lab.sh down --prefix $P >/dev/null 2>&1 || true
./scripts/lab.sh up --prefix $P
ns() { ip netns exec "$P-$1" "${@:2}"; }

echo "==> starting tack on configs/lab.yaml in namespace $P-lb"
# (not through the ns function: $! must be tack itself, to signal it)
ip netns exec "$P-lb" "$tack" run --config configs/lab.yaml --socket $sock >"$out/tack.log" 2>&1 &
tack_pid=$!
for _ in $(seq 50); do grep -q "running" "$out/tack.log" 2>/dev/null && break; sleep 0.2; done
cat "$out/tack.log"
ctl() { "$tackctl" --socket $sock "$@"; }

hits() { ns "$1" python3 scripts/lab/hits.py "${@:2}"; }
table() { python3 scripts/lab/summary.py servers; }

echo
echo "==> ping from client c3 (198.18.5.1, through the router): the appliance's own address and a VIP"
ns c3 ping -c 10 -i 0.05 -W 2 10.0.0.1 | sed -n 's/^/    /; /packets transmitted/p'
ns c3 ping -c 10 -i 0.05 -W 2 10.100.0.10 | sed -n 's/^/    /; /packets transmitted/p'
ns c1 ping -6 -c 5 -i 0.05 -W 2 fd00::1 | sed -n 's/^/    /; /packets transmitted/p'

echo
echo "==> 600 new connections from client c1 (11.1.2.3) to web, NAT, weights s1:s2:s3 = 1:2:3"
hits c1 http://10.100.0.10/ 600 | table

echo
echo "==> web-sticky (full NAT, natural-class persistence, 5 min): 20 connections from each source"
printf "    %-14s %-16s %s\n" source "natural class" "answered by"
for pair in c1:11.1.2.3 c1:11.200.0.1 c2:172.16.1.5 c2:172.16.200.9 c3:198.18.5.1 c3:198.18.5.77; do
  c=${pair%%:*}; src=${pair#*:}
  got=$(hits "$c" http://10.100.0.11/ 20 --source "$src" | python3 scripts/lab/summary.py inline)
  case $src in 11.*) cls="A 11.0.0.0/8";; 172.*) cls="B 172.16.0.0/16";; *) cls="C 198.18.5.0/24";; esac
  printf "    %-14s %-16s %s\n" "$src" "$cls" "$got"
done

echo
echo "==> direct server return (web-dsr, Maglev) from c3, full NAT over IPv6 (web6) from c1, UDP echo"
for i in 1 2 3; do printf "    dsr  : %s" "$(ns c3 curl -s -m 3 http://10.100.0.12/)"; echo; done
for i in 1 2 3; do printf "    ipv6 : %s" "$(ns c1 curl -s -m 3 'http://[fd00:100::11]/')"; echo; done
printf "    udp  : %s\n" "$(ns c2 python3 -c "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);s.sendto(b'hello',('10.100.0.10',5353));print(s.recvfrom(100)[0].decode())")"

echo
echo "==> wrk, 5 s, 32 connections through full NAT (web-sticky) from c2"
ns c2 wrk -t2 -c32 -d5s http://10.100.0.11/ | sed 's/^/    /'

echo
echo "==> the exception path: from the appliance's own kernel interface (tack-lan in $P-lb) through the DPDK port"
ns lb ip -br addr show dev tack-lan | sed 's/^/    /'
ns lb ping -c 2 -W 2 10.0.0.11 | sed -n '2,3p' | sed 's/^/    /'
printf "    curl from the appliance: %s" "$(ns lb curl -s -m 3 http://10.0.0.12/)"; echo

echo
echo "==> health checks: nginx stopped on s1, then started again"
ns s1 nginx -c "/run/tack-lab-$P/s1/nginx.conf" -p "/run/tack-lab-$P/s1" -s stop 2>/dev/null
sleep 4
ctl services | sed -n '1,4p' | sed 's/^/    /'
ns s1 nginx -c "/run/tack-lab-$P/s1/nginx.conf" -p "/run/tack-lab-$P/s1"
sleep 3
grep 'tack: health:' "$out/tack.log" | sed 's/^/    /'

echo
echo "==> tackctl services"
ctl services | sed 's/^/    /'
echo
echo "==> tackctl sticky show"
ctl sticky show | sed 's/^/    /'

echo
echo "==> stopping tack: its counters"
kill -TERM "$tack_pid"; wait "$tack_pid" || true; tack_pid=
sed -n '/^port /,$p' "$out/tack.log"
