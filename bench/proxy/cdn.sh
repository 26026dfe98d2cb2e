#!/usr/bin/env bash
# CDN rewriting and the page cache: tack-proxy (`cdn:` + `cache:`) against
# nginx (`sub_filter` + `proxy_cache`) on the same page in the same run. Both
# proxy one nginx origin that serves a 20 kB HTML page with 60 URLs under
# /static/ (images, scripts, stylesheets) and rewrite them to a CDN base.
# Scenarios:
#   miss - the origin says `Cache-Control: no-store`: every request goes to the
#          origin and the page is rewritten each time
#   hit  - the origin says `max-age=600`: after a warm-up request every request
#          is a cache hit (tack-proxy stores the rewritten page; nginx stores the
#          origin's page and runs sub_filter on each hit)
# Each proxy is pinned to one core (nginx `master_process off`, tack-proxy
# --threads 1); wrk and the origin share the other. Prints requests/s, p99,
# requests per CPU-second of the proxy process and its user/system CPU per
# request, the tack/nginx ratios, and checks first that both proxies send the
# same rewritten page and that the hit scenario hits.
#
# Usage: bench/proxy/cdn.sh [duration-seconds=10] [connections=50]
# Env:   ROUNDS (default 3), PROXY_CORE (default 0), LOAD_CORE (default 1),
#        CARGO_TARGET_DIR, SKIP_BUILD=1
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dur=${1:-10}
conns=${2:-50}
pcore=${PROXY_CORE:-0}
lcore=${LOAD_CORE:-1}
me=bench-cdn
# shellcheck source=bench/proxy/common.sh
. "$here/common.sh"
bench_init nginx wrk taskset curl python3

# The page: 60 asset URLs among 20 kB of text.
mkdir -p "$work/site"
python3 - "$work/site/page.html" <<'PY'
import sys
out = ['<!DOCTYPE html>\n<html><head><title>Bench page</title>']
for i in range(10):
    out.append(f'<link rel="stylesheet" href="/static/css/s{i}.css">')
    out.append(f'<script src="/static/js/app{i}.js"></script>')
out.append('</head><body>')
for i in range(40):
    out.append(f'<p>Paragraph {i}: ' + 'lorem ipsum dolor sit amet, ' * 14 + '</p>')
    out.append(f'<img src="/static/img/photo{i}.jpg" alt="photo {i}" width="64" height="64">')
    out.append(f'<a href="/articles/{i}.html">article {i}</a>')
out.append('</body></html>\n')
open(sys.argv[1], 'w').write('\n'.join(out))
PY

origin=$(free_port); np=$(free_port); tk=$(free_port); mt=$(free_port)
cdn="http://cdn.example.net/static/"
# Workers run as this user (the work directory is private to it).
cat >"$work/origin.conf" <<CONF
user $(id -un);
worker_processes 1;
pid $work/origin.pid;
error_log $work/origin.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  types { text/html html; }
  server {
    listen 127.0.0.1:$origin;
    location /miss/ { alias $work/site/; add_header Cache-Control "no-store"; etag on; }
    location /hit/ { alias $work/site/; add_header Cache-Control "max-age=600"; }
    location = / { return 200 "origin\n"; }
  }
}
CONF
mkdir -p "$work/ngx"
# One process (no master), so its CPU time is the proxy's.
cat >"$work/proxy.conf" <<CONF
master_process off;
pid $work/proxy.pid;
error_log $work/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/ngx/body;
  proxy_temp_path $work/ngx/proxy;
  fastcgi_temp_path $work/ngx/fcgi;
  uwsgi_temp_path $work/ngx/uwsgi;
  scgi_temp_path $work/ngx/scgi;
  proxy_cache_path $work/ngx/cache keys_zone=pages:10m max_size=64m;
  upstream origin { server 127.0.0.1:$origin; keepalive 64; }
  server {
    listen 127.0.0.1:$np;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Accept-Encoding "";
      proxy_cache pages;
      add_header X-Cache \$upstream_cache_status;
      sub_filter_types text/html;
      sub_filter_once off;
      sub_filter '"/static/' '"$cdn';
    }
  }
}
CONF
cat >"$work/tack.yaml" <<CONF
frontends:
  - name: www
    bind: ["127.0.0.1:$tk"]
    backend: origin
    access_log: false
    http2: false
    cdn:
      rules: [{ prefix: "/static/", to: "$cdn" }]
    cache: { max_bytes: 64MiB }
backends:
  - name: origin
    servers: [{ name: o1, address: "127.0.0.1:$origin" }]
metrics:
  listen: "127.0.0.1:$mt"
CONF

taskset -c "$lcore" nginx -c "$work/origin.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$origin"
taskset -c "$pcore" nginx -c "$work/proxy.conf" -g 'daemon off;' 2>"$work/nginx-proxy.log" &
npid=$!
pids+=($npid)
RUST_LOG=warn taskset -c "$pcore" "$bin" --threads 1 --config "$work/tack.yaml" >"$work/tack.log" 2>&1 &
tpid=$!
pids+=($tpid)
wait_port "$np"; wait_port "$tk"

# Both proxies send the same page, with every /static/ URL on the CDN.
for sc in miss hit; do
  curl -s "http://127.0.0.1:$np/$sc/page.html" >"$work/nginx-$sc.html"
  curl -s "http://127.0.0.1:$tk/$sc/page.html" >"$work/tack-$sc.html"
  n=$(grep -o "\"$cdn" "$work/tack-$sc.html" | wc -l || true)
  if ! cmp -s "$work/nginx-$sc.html" "$work/tack-$sc.html" || [ "$n" != 60 ] || grep -q '"/static/' "$work/tack-$sc.html"; then
    echo "$me: $sc: the proxies' pages differ or are not rewritten ($n CDN URLs)" >&2
    diff "$work/nginx-$sc.html" "$work/tack-$sc.html" | head >&2 || true
    head -c 600 "$work/tack-$sc.html" >&2; cat "$work/tack.log" >&2
    exit 1
  fi
done
echo "$me: page $(wc -c <"$work/tack-hit.html") bytes rewritten, 60 URLs on $cdn, same bytes from both proxies" >&2
echo "$me: nginx on port $np, tack-proxy on port $tk, origin on port $origin" >&2
echo "$me: nginx on a second hit: $(curl -s -D - -o /dev/null "http://127.0.0.1:$np/hit/page.html" | tr -d '\r' | grep -i '^x-cache')" >&2

counter() { curl -s "http://127.0.0.1:$mt/metrics" | awk -v m="$1" '$1 ~ "^"m"[{]" {print $2}'; }

rounds=${ROUNDS:-3}
table_head
names=(nginx tack); ports=("$np" "$tk"); ppids=("$npid" "$tpid")
for sc in miss hit; do
  url_of() { echo "http://127.0.0.1:${ports[$1]}/$sc/page.html"; }
  for k in 0 1; do taskset -c "$lcore" wrk -t1 -c"$conns" -d1s "$(url_of $k)" >/dev/null 2>&1; done
  rounds_reset 0 1
  h0=$(counter tack_proxy_cache_hits_total); m0=$(counter tack_proxy_cache_misses_total)
  for _ in $(seq "$rounds"); do
    for k in 0 1; do
      round_add "$k" "$(measure_wrk "${ppids[$k]}" "$(url_of $k)")"
    done
  done
  h1=$(counter tack_proxy_cache_hits_total); m1=$(counter tack_proxy_cache_misses_total)
  for k in 0 1; do table_row "$sc" "$k"; done
  table_ratio "$sc" "tack/nginx" 1 0
  echo "$sc: tack-proxy cache hits $((h1 - h0)), misses $((m1 - m0)) during the rounds"
  unset R P C U S
done
echo
echo "proxy core: $pcore; wrk + origin core: $lcore; $rounds alternating rounds of ${dur}s per proxy and scenario, $conns connections"
echo "req/CPU-second: requests served per second of CPU the proxy process used (user+system, all threads)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
