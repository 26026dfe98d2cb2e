#!/usr/bin/env bash
# tack-proxy against HAProxy, same backends, same persistence, same run.
#
# Each proxy is pinned to one core (taskset; HAProxy nbthread 1, tack-proxy
# --threads 1), the load generator (wrk, HTTP/1.1 keep-alive) and the nginx
# backends share the other core. Scenarios:
#   pinned  - clients send the persistence cookie (SERVERID=s1): cookie lookup, no insert
#   insert  - clients send no cookie: round robin + Set-Cookie insert on every response
#   urihash - balance uri, consistent hashing, no cookie
# Prints requests/s and p99 latency per proxy and the ratio tack/haproxy, and
# the proxy's CPU per request (user and system microseconds, from /proc).
#
# Usage: bench/proxy/run.sh [duration-seconds=10] [connections=50]
# Env:   ROUNDS (default 3), PROXY_CORE (default 0), LOAD_CORE (default 1),
#        CARGO_TARGET_DIR, SKIP_BUILD=1,
#        HYPER=1 also runs a second tack-proxy with `fast_path: false` (every
#        request through hyper, the path before the HTTP/1.1 fast path) in the
#        same alternating rounds, pinned to the same core.
# Medians over alternating rounds; the range shows how noisy the machine was.
# bench/proxy/callgrind.sh counts user-space instructions per request instead
# (noise-free, without the kernel's share).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dur=${1:-10}
conns=${2:-50}
pcore=${PROXY_CORE:-0}
lcore=${LOAD_CORE:-1}
me=bench
# shellcheck source=bench/proxy/common.sh
. "$here/common.sh"
bench_init haproxy nginx wrk taskset curl
start_backends 2 taskset -c "$lcore"

hp_base=$(free_ports3); tk_base=$(free_ports3); hy_base=$(free_ports3)
hp_port() { echo $((hp_base + $1)); }
tk_port() { echo $((tk_base + $1)); }
hy_port() { echo $((hy_base + $1)); }
haproxy_cfg "$hp_base" >"$work/haproxy.cfg"
tack_yaml "$tk_base" true >"$work/tack.yaml"
tack_yaml "$hy_base" false >"$work/tack-hyper.yaml"

taskset -c "$pcore" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
hpid=$!
pids+=($hpid)
RUST_LOG=warn taskset -c "$pcore" "$bin" --threads 1 --config "$work/tack.yaml" >"$work/tack.log" 2>&1 &
tpid=$!
pids+=($tpid)
ypid=""
if [ "${HYPER:-0}" = 1 ]; then
  RUST_LOG=warn taskset -c "$pcore" "$bin" --threads 1 --config "$work/tack-hyper.yaml" >"$work/tack-hyper.log" 2>&1 &
  ypid=$!
  pids+=($ypid)
  for i in 0 1 2; do wait_port "$(hy_port $i)"; done
fi
for i in 0 1 2; do wait_port "$(hp_port $i)"; wait_port "$(tk_port $i)"; done

# Sanity: both answer and insert the same cookie.
hsc=$(curl -si "http://127.0.0.1:$(hp_port 1)/" | grep -i '^set-cookie' | tr -d '\r')
tsc=$(curl -si "http://127.0.0.1:$(tk_port 1)/" | grep -i '^set-cookie' | tr -d '\r')
echo "haproxy: $hsc" >&2
echo "tack:    $tsc" >&2

run_wrk() { # port scenario pid
  local hdr path
  scenario_request "$2"
  measure_wrk "$3" "${hdr[@]}" "http://127.0.0.1:$1$path"
}

rounds=${ROUNDS:-3}
table_head
for sc in pinned insert urihash; do
  case $sc in pinned) i=0 ;; insert) i=1 ;; urihash) i=2 ;; esac
  names=(haproxy tack); ports=("$(hp_port $i)" "$(tk_port $i)"); ppids=("$hpid" "$tpid")
  if [ -n "$ypid" ]; then names+=(tack-hyper); ports+=("$(hy_port $i)"); ppids+=("$ypid"); fi
  for k in "${!names[@]}"; do
    taskset -c "$lcore" wrk -t1 -c"$conns" -d1s "http://127.0.0.1:${ports[$k]}/" >/dev/null 2>&1
  done
  rounds_reset "${!names[@]}"
  # alternate the proxies so machine noise hits them alike
  for _ in $(seq "$rounds"); do
    for k in "${!names[@]}"; do
      round_add "$k" "$(run_wrk "${ports[$k]}" $sc "${ppids[$k]}")"
    done
  done
  for k in "${!names[@]}"; do table_row "$sc" "$k"; done
  for k in "${!names[@]}"; do
    [ "$k" = 0 ] && continue
    table_ratio "$sc" "${names[$k]}/hap" "$k" 0
  done
  unset R P C U S
done
echo
echo "proxy core: $pcore; wrk + nginx core: $lcore; $rounds alternating rounds of ${dur}s per proxy and scenario, $conns connections, HTTP/1.1 keep-alive"
echo "req/CPU-second: requests served per second of CPU the proxy process used (user+system, all threads);"
echo "user us / sys us: the proxy's user and system CPU microseconds per request (medians)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
