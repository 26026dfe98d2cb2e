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
me=callgrind
# shellcheck source=bench/proxy/common.sh
. "$here/common.sh"
bench_init haproxy nginx h2load valgrind callgrind_control curl
start_backends 1
hp=$(free_ports3); tk=$(free_ports3); hy=$(free_ports3)
haproxy_cfg "$hp" >"$work/haproxy.cfg"
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
  local hdr path
  scenario_request "$3"
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
