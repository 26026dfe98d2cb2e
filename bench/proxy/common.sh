# Shared set-up of the bench/proxy scripts (sourced):
# the tools check, the build, a work directory removed on exit with every
# process started, the two nginx backends, and the HAProxy and tack-proxy
# configurations of the three scenarios (pinned, insert, urihash) on three
# consecutive ports each.
#
# The caller sets `me` (the name in messages) and `root` (the repository).

target=${CARGO_TARGET_DIR:-$root/target}

# bench_init TOOL...: checks the tools, builds tack-proxy (unless SKIP_BUILD=1),
# makes the work directory and the clean-up.
bench_init() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$me: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
  done
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release -p tack-proxy >&2)
  fi
  bin="$target/release/tack-proxy"
  [ -x "$bin" ] || { echo "$me: $bin not built" >&2; exit 1; }
  work=$(mktemp -d "/tmp/tack-proxy-$me.XXXXXX")
  pids=()
  trap cleanup EXIT INT TERM
}

cleanup() {
  local p alive
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A free port whose two successors are free too (one per scenario).
free_ports3() {
  local base off
  base=$(free_port)
  for off in 1 2; do
    python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',$((base + off))))" 2>/dev/null \
      || { echo "$me: port $((base + off)) busy, re-run" >&2; exit 1; }
  done
  echo "$base"
}

wait_port() {
  for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done
  echo "$me: nothing on port $1" >&2
  cat "$work"/*.log "$work"/nginx.err >&2 2>/dev/null
  exit 1
}

# start_backends WORKERS [COMMAND PREFIX...]: two nginx servers on $b1 and
# $b2, answering with their name.
start_backends() {
  local workers=$1
  shift
  b1=$(free_port); b2=$(free_port)
  cat > "$work/nginx.conf" <<CONF
worker_processes $workers;
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
  "$@" nginx -c "$work/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  wait_port "$b1"; wait_port "$b2"
}

# haproxy_head: the global and defaults sections every benchmark's HAProxy
# runs with (one thread, HTTP keep-alive).
haproxy_head() {
  cat <<CONF
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
CONF
}

# haproxy_cfg BASE: the scenarios on BASE, BASE+1, BASE+2.
haproxy_cfg() {
  haproxy_head
  cat <<CONF
frontend pinned
    bind 127.0.0.1:$1
    default_backend ck
frontend insert
    bind 127.0.0.1:$(($1 + 1))
    default_backend ck
frontend urihash
    bind 127.0.0.1:$(($1 + 2))
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
}

# tack_yaml BASE FAST_PATH: the same for tack-proxy.
tack_yaml() {
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

# scenario_request SCENARIO: sets `hdr` (extra request headers) and `path`.
scenario_request() {
  hdr=(); path=/
  [ "$1" = pinned ] && hdr=(-H "Cookie: SERVERID=s1")
  [ "$1" = urihash ] && path=/objects/item-42.jpg
  return 0
}

# CPU time (user and system, all threads) a process has used, in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# measure_wrk PID WRK-ARGS...: runs wrk (on $lcore, $conns connections, $dur
# seconds, --latency) and prints "req/s p99-ms req-per-CPU-second user-us
# sys-us": requests per second, the 99% latency line in ms, requests per
# CPU-second of process PID (robust to other load on the machine: what one
# core delivers when fully busy), and its user and system CPU microseconds per
# request. Errors wrk reports go to stderr.
measure_wrk() {
  local pid=$1 u0 s0 u1 s1
  shift
  read -r u0 s0 <<<"$(cpu_ticks "$pid")"
  taskset -c "$lcore" wrk -t1 -c"$conns" -d"${dur}s" --latency "$@" >"$work/wrk.out" 2>&1
  read -r u1 s1 <<<"$(cpu_ticks "$pid")"
  if grep -q -E 'Non-2xx|Socket errors' "$work/wrk.out"; then
    echo "$me: errors ($*): $(grep -E 'Non-2xx|Socket errors' "$work/wrk.out")" >&2
  fi
  awk -v us=$((u1 - u0)) -v sy=$((s1 - s0)) -v hz="$hz" '
       / requests in / {n=$1}
       /^Requests\/sec:/ {rps=$2}
       $1=="99%" {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                  if (u=="us") v=v/1000; else if (u=="s") v=v*1000; p99=v}
       END {cpu = us + sy
            printf "%s %.2f %.0f %.2f %.2f\n", rps, p99, (cpu > 0) ? n / (cpu / hz) : 0,
                   (n > 0) ? us / hz * 1e6 / n : 0, (n > 0) ? sy / hz * 1e6 / n : 0}' "$work/wrk.out"
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
range() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.0f-%.0f", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }

# The result table of the scenarios' alternating rounds. Each proxy (index k
# of `names`) collects measure_wrk's five figures per round: requests/s,
# p99 ms, requests per CPU-second, user and system µs per request.
table_head() {
  printf '\n%-9s %-10s %11s %16s %8s %15s %9s %9s\n' scenario proxy "req/s(med)" "req/s range" "p99 ms" "req/CPU-second" "user us" "sys us"
}
# rounds_reset K...: no rounds yet for proxies K.
rounds_reset() {
  local k
  declare -gA R P C U S
  for k in "$@"; do R[$k]=""; P[$k]=""; C[$k]=""; U[$k]=""; S[$k]=""; done
}
# round_add K "FIGURES": one round of proxy K.
round_add() {
  local a b c d e
  read -r a b c d e <<<"$2"
  R[$1]="${R[$1]} $a"; P[$1]="${P[$1]} $b"; C[$1]="${C[$1]} $c"; U[$1]="${U[$1]} $d"; S[$1]="${S[$1]} $e"
}
# table_row SC K: proxy K's medians in scenario SC (and the range of its requests/s).
table_row() {
  printf '%-9s %-10s %11.0f %16s %8s %15.0f %9s %9s\n' "$1" "${names[$2]}" "$(echo "${R[$2]}" | median)" \
    "$(echo "${R[$2]}" | range)" "$(echo "${P[$2]}" | median)" "$(echo "${C[$2]}" | median)" \
    "$(echo "${U[$2]}" | median)" "$(echo "${S[$2]}" | median)"
}
# table_ratio SC LABEL K BASE: proxy K's requests/s and requests per CPU-second over BASE's.
table_ratio() {
  printf '%-9s %-14s %7s %16s %8s %15s\n' "$1" "$2" \
    "$(ratio "$(echo "${R[$3]}" | median)" "$(echo "${R[$4]}" | median)")" "" "" \
    "$(ratio "$(echo "${C[$3]}" | median)" "$(echo "${C[$4]}" | median)")"
}
