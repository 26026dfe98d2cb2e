#!/usr/bin/env bash
# HTTPS: tack-proxy against HAProxy, same certificate, same nginx backends,
# same run. Both terminate TLS (ECDSA P-256 certificate, TLS 1.3 as wrk's
# OpenSSL negotiates it) and forward plain HTTP/1.1 to two nginx servers,
# round robin. Scenarios:
#   keepalive - wrk keeps its connections: HTTPS requests per CPU-second
#   newconn   - `Connection: close` on every request: each request is a new TCP
#               connection and a full TLS handshake (wrk does not resume
#               sessions): handshakes (= requests) per CPU-second
# Each proxy is pinned to one core (HAProxy nbthread 1, tack-proxy --threads 1);
# wrk and nginx share the other. Prints requests/s, p99, requests per
# CPU-second of the proxy process and its user/system CPU per request; the
# tack/haproxy ratios; and tack-proxy's handshake counter as a cross-check.
#
# Usage: bench/proxy/tls.sh [duration-seconds=10] [connections=50]
# Env:   ROUNDS (default 3), PROXY_CORE (default 0), LOAD_CORE (default 1),
#        CARGO_TARGET_DIR, SKIP_BUILD=1
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dur=${1:-10}
conns=${2:-50}
pcore=${PROXY_CORE:-0}
lcore=${LOAD_CORE:-1}
me=bench-tls
# shellcheck source=bench/proxy/common.sh
. "$here/common.sh"
bench_init haproxy nginx wrk taskset curl openssl
start_backends 2 taskset -c "$lcore"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

hp=$(free_port); tk=$(free_port); mt=$(free_port)
{ haproxy_head; cat <<CONF
frontend https
    bind 127.0.0.1:$hp ssl crt $work/haproxy.pem alpn http/1.1
    default_backend app
backend app
    balance roundrobin
    server s1 127.0.0.1:$b1
    server s2 127.0.0.1:$b2
CONF
} >"$work/haproxy.cfg"
cat >"$work/tack.yaml" <<CONF
frontends:
  - name: https
    bind: ["127.0.0.1:$tk"]
    backend: app
    access_log: false
    http2: false
    tls:
      certificates: [{ cert: "$work/cert.pem", key: "$work/key.pem" }]
backends:
  - name: app
    servers:
      - { name: s1, address: "127.0.0.1:$b1" }
      - { name: s2, address: "127.0.0.1:$b2" }
metrics:
  listen: "127.0.0.1:$mt"
CONF

taskset -c "$pcore" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
hpid=$!
pids+=($hpid)
RUST_LOG=warn taskset -c "$pcore" "$bin" --threads 1 --config "$work/tack.yaml" >"$work/tack.log" 2>&1 &
tpid=$!
pids+=($tpid)
wait_tls() {
  for _ in $(seq 400); do curl -sk -o /dev/null "https://127.0.0.1:$1/" && return 0; sleep 0.05; done
  echo "$me: nothing on port $1" >&2; cat "$work"/*.log >&2; exit 1
}
wait_tls "$hp"; wait_tls "$tk"
for p in "$hp" "$tk"; do
  echo "$me: port $p: $(curl -s --cacert "$work/cert.pem" -w ' %{http_version}' "https://127.0.0.1:$p/" | tr -d '\n')" >&2
done

handshakes() { curl -s "http://127.0.0.1:$mt/metrics" | awk '/^tack_proxy_frontend_tls_handshakes_total/ {print $2}'; }

rounds=${ROUNDS:-3}
table_head
names=(haproxy tack); ports=("$hp" "$tk"); ppids=("$hpid" "$tpid")
for sc in keepalive newconn; do
  hdr=()
  [ "$sc" = newconn ] && hdr=(-H "Connection: close")
  for k in 0 1; do
    taskset -c "$lcore" wrk -t1 -c"$conns" -d1s "${hdr[@]}" "https://127.0.0.1:${ports[$k]}/" >/dev/null 2>&1
  done
  rounds_reset 0 1
  h0=$(handshakes)
  for _ in $(seq "$rounds"); do
    for k in 0 1; do
      round_add "$k" "$(measure_wrk "${ppids[$k]}" "${hdr[@]}" "https://127.0.0.1:${ports[$k]}/")"
    done
  done
  h1=$(handshakes)
  for k in 0 1; do table_row "$sc" "$k"; done
  table_ratio "$sc" "tack/hap" 1 0
  echo "$sc: tack-proxy TLS handshakes during the rounds: $((h1 - h0))"
  unset R P C U S
done
echo
echo "proxy core: $pcore; wrk + nginx core: $lcore; $rounds alternating rounds of ${dur}s per proxy and scenario, $conns connections"
echo "keepalive: HTTPS requests per CPU-second; newconn: one TLS handshake per request, so req/CPU-second = handshakes/CPU-second"
echo "req/CPU-second: requests served per second of CPU the proxy process used (user+system, all threads)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
