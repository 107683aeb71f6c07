#!/usr/bin/env bash
# make bench: the figures the README prints. Starts its own redis-server, shoal node and nginx
# on free loopback ports, stops exactly those PIDs, and prints one line per figure.
#   BENCH_SECONDS (default 10): length of each run; BENCH_RATE (default 5000): fixed rate for
#   the latency runs.
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-10}
scripts/deps.sh wrk nginx-light >/dev/null
bin=$build/shoal
. "$(dirname "$0")/bench-lib.sh"
bench_init main

bench_redis

nport=$(free_port)
"$bin" worker --redis "$url" --name bench-node --listen "127.0.0.1:$nport" --log-level warn \
  2>"$tmp/node.log" & node=$!; pids+=($node)
wait_http "$nport" /healthz
for _ in $(seq 1 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/api/octopusservernodes/ping")" = 200 ] && break
  sleep 0.05
done
sleep 2
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$node/status)

gport=$(free_port)
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path $tmp/nginx; proxy_temp_path $tmp/nginx; fastcgi_temp_path $tmp/nginx;
  uwsgi_temp_path $tmp/nginx; scgi_temp_path $tmp/nginx;
  server { listen 127.0.0.1:$gport; location / { return 200; } }
}
NGINX
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" & pids+=($!)
wait_http "$gport" /

run_wrk() { # url -> "rps p50 p99"
  wrk -t2 -c100 -d"${secs}s" --latency "$1" > "$tmp/wrk.out" 2>&1
  awk '
    function ms(v) { if (v ~ /us$/) return v+0/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return (v+0)*1000; return v }
    /Requests\/sec/ {rps=$2}
    $1=="50%" {p50=$2} $1=="99%" {p99=$2}
    /Non-2xx/ {bad=$NF}
    END {printf "%s %s %s %s\n", rps, p50, p99, (bad==""?0:bad)}' "$tmp/wrk.out"
}
read -r n_rps n_p50 n_p99 _ < <(run_wrk "http://127.0.0.1:$gport/")
read -r s_rps s_p50 s_p99 s_bad < <(run_wrk "http://127.0.0.1:$nport/api/octopusservernodes/ping")
rss_loaded=$(awk '/VmRSS/ {print $2}' /proc/$node/status)
# Latency at a fixed rate (5,000 requests/s over 100 keep-alive connections), same for both.
rate=${BENCH_RATE:-5000}
lat_nginx=$("$build/ping_latency" "$gport" / 100 "$rate" "$secs")
lat_shoal=$("$build/ping_latency" "$nport" /api/octopusservernodes/ping 100 "$rate" "$secs")

drain=$("$build/drain_latency" "$url" shoal bench-node "$nport" 400)

ratio=$(awk -v a="$s_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a/b}')
echo "shoal bench on $(nproc) cores, $(date -u +%Y-%m-%d), wrk -t2 -c100 -d${secs}s"
printf '%-44s %12s %10s %10s\n' "" "requests/s" "p50" "p99"
printf '%-44s %12s %10s %10s\n' "nginx 1 worker, return 200" "$n_rps" "$n_p50" "$n_p99"
printf '%-44s %12s %10s %10s\n' "shoal ping (200, node JSON body)" "$s_rps" "$s_p50" "$s_p99"
echo "ping/nginx requests/s ratio: $ratio (target >= 0.5); non-200 answers from ping: $s_bad"
echo "fixed-rate latency, nginx: $lat_nginx"
echo "fixed-rate latency, ping:  $lat_shoal (target p99 < 1 ms)"
echo "$drain (target p99 < 50 ms)"
echo "node resident memory: idle $((rss_idle / 1024)).$(( (rss_idle % 1024) * 10 / 1024 )) MiB (target < 8 MiB), after 100 keep-alive connections $((rss_loaded / 1024)).$(( (rss_loaded % 1024) * 10 / 1024 )) MiB"
