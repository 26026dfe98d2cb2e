#!/usr/bin/env bash
# User-space instructions per request of tack-proxy and HAProxy, counted by
# valgrind's callgrind: repeatable on a noisy machine (the count does not depend
# on other load), but blind to the kernel's share (about two thirds of either
# proxy's CPU time on loopback) and to cache misses.
#
# Same backends (two nginx), same configuration and request mix as run.sh: for
# each scenario a fixed number of HTTP/1.1 keep-alive requests (h2load --h1,
# 50 connections) after a warm-up; counters are zeroed before and dumped after
# (callgrind_control), so start-up is not counted.
#
# Usage: bench/proxy/callgrind.sh [requests=20000]
# Env:   CARGO_TARGET_DIR, SKIP_BUILD=1, HYPER=1 (also tack-proxy with
#        `fast_path: false`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-20000}
target=${CARGO_TARGET_DIR:-$root/target}

for t in haproxy nginx h2load valgrind callgrind_control curl; do
  command -v "$t" >/dev/null || { echo "callgrind: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$root" && cargo build --release -p tack-proxy >&2)
fi
bin="$target/release/tack-proxy"
[ -x "$bin" ] || { echo "callgrind: $bin not built" >&2; exit 1; }

work=$(mktemp -d /tmp/tack-proxy-cg.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Give them 5 s to stop (valgrind writes its profile), then make sure.
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "callgrind: nothing on port $1" >&2; cat "$work"/*.log >&2 2>/dev/null; exit 1; }

b1=$(free_port); b2=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$b1; location / { return 200 "s1\n"; } }
  server { listen 127.0.0.1:$b2; location / { return 200 "s2\n"; } }
}
CONF
nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$b1"; wait_port "$b2"

hp=$(free_port); tk=$(free_port); hy=$(free_port)
cat > "$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    option http-keep-alive
frontend pinned
    bind 127.0.0.1:$hp
    default_backend ck
frontend insert
    bind 127.0.0.1:$((hp + 1))
    default_backend ck
frontend urihash
    bind 127.0.0.1:$((hp + 2))
    default_backend uh
backend ck
    balance roundrobin
    cookie SERVERID insert indirect nocache
    server s1 127.0.0.1:$b1 cookie s1
    server s2 127.0.0.1:$b2 cookie s2
backend uh
    balance uri
    hash-type consistent
    server s1 127.0.0.1:$b1
    server s2 127.0.0.1:$b2
CONF
tack_yaml() { # base-port fast-path
  cat <<CONF
frontends:
  - { name: pinned, bind: ["127.0.0.1:$1"], backend: ck, access_log: false, fast_path: $2 }
  - { name: insert, bind: ["127.0.0.1:$(($1 + 1))"], backend: ck, access_log: false, fast_path: $2 }
  - { name: urihash, bind: ["127.0.0.1:$(($1 + 2))"], backend: uh, access_log: false, fast_path: $2 }
backends:
  - name: ck
    cookie: { name: SERVERID, mode: insert, indirect: true, nocache: true }
    servers:
      - { name: s1, address: "127.0.0.1:$b1", cookie: s1 }
      - { name: s2, address: "127.0.0.1:$b2", cookie: s2 }
  - name: uh
    balance: { algorithm: uri }
    hash_type: consistent
    servers:
      - { name: s1, address: "127.0.0.1:$b1" }
      - { name: s2, address: "127.0.0.1:$b2" }
CONF
}
tack_yaml "$tk" true >"$work/tack.yaml"
tack_yaml "$hy" false >"$work/tack-hyper.yaml"

vg() { exec valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1.%p" "${@:2}"; }
vg haproxy haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!); hpid=$!
RUST_LOG=warn vg tack "$bin" --threads 1 --config "$work/tack.yaml" >"$work/tack.log" 2>&1 &
pids+=($!); tpid=$!
names=(haproxy tack); bases=("$hp" "$tk"); vpids=("$hpid" "$tpid")
if [ "${HYPER:-0}" = 1 ]; then
  RUST_LOG=warn vg hyper "$bin" --threads 1 --config "$work/tack-hyper.yaml" >"$work/tack-hyper.log" 2>&1 &
  pids+=($!); names+=(tack-hyper); bases+=("$hy"); vpids+=($!)
fi
for b in "${bases[@]}"; do for i in 0 1 2; do wait_port $((b + i)); done; done

# Instructions counted between a zero and a dump of process $1, divided by $n.
measure() { # pid port scenario
  local hdr=() path=/
  [ "$3" = pinned ] && hdr=(-H "Cookie: SERVERID=s1")
  [ "$3" = urihash ] && path=/objects/item-42.jpg
  h2load --h1 -n 2000 -c 50 -t 1 "${hdr[@]}" "http://127.0.0.1:$2$path" >/dev/null
  callgrind_control -z "$1" >/dev/null 2>&1 || { echo "callgrind: cannot reach pid $1" >&2; exit 1; }
  local out
  out=$(h2load --h1 -n "$n" -c 50 -t 1 "${hdr[@]}" "http://127.0.0.1:$2$path")
  grep -q "$n succeeded" <<<"$out" || { echo "callgrind: requests failed on port $2: $out" >&2; exit 1; }
  callgrind_control -d "$1" >/dev/null 2>&1 || { echo "callgrind: cannot dump pid $1" >&2; exit 1; }
  local f
  for _ in $(seq 100); do
    f=$(ls -t "$work"/cg.*."$1".* 2>/dev/null | head -1 || true)
    [ -n "$f" ] && grep -q '^totals:\|^summary:' "$f" && break
    sleep 0.1
  done
  awk -v n="$n" '/^(summary|totals):/ {printf "%.0f\n", $2 / n; exit}' "$f"
  rm -f "$f"
}

printf '\n%-9s' scenario; for nm in "${names[@]}"; do printf ' %12s' "$nm"; done; printf ' %12s\n' "tack/hap"
for sc in pinned insert urihash; do
  case $sc in pinned) i=0 ;; insert) i=1 ;; urihash) i=2 ;; esac
  vals=()
  for k in "${!names[@]}"; do vals+=("$(measure "${vpids[$k]}" $((${bases[$k]} + i)) $sc)"); done
  printf '%-9s' "$sc"; for v in "${vals[@]}"; do printf ' %12s' "$v"; done
  printf ' %12s\n' "$(awk -v a="${vals[1]}" -v b="${vals[0]}" 'BEGIN{printf "%.2f", a/b}')"
done
echo
echo "user-space instructions per request (callgrind Ir), $n HTTP/1.1 keep-alive requests per scenario over 50 connections"
