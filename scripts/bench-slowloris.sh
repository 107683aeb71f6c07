#!/usr/bin/env bash
# bench-slowloris.sh [BUILD] [--short]: ping while a slowloris flood holds the HTTP edge (make
# bench). Starts its own redis-server and one node with the default HTTP limits (per address
# 256, per node 4,096, head deadline 10 s), then runs bench/slowloris.c: 2,000 connections from
# 127.0.0.2 and 300 from 127.0.0.3-12 trickling request heads one byte a second (reconnecting
# when closed) while 127.0.0.1 pings on a new connection per ping at 100/s. Prints ping
# p50/p99/max before and during the flood, the connections refused and timed out, the node's
# RSS before/during/after, and its shoal_http_* metrics. Stops exactly the PIDs it started.
#   BENCH_SECONDS (default 20)
# --short: the functional test (CTest http_slowloris_short): 300 from one address over a
# per-address cap of 50, 60 from others, a 1 s head deadline, 4 s; asserts only that every ping
# is answered 200, the node lives and connections over the cap are refused (no timing).
set -euo pipefail
build=${1:-build}
short=${2:-}
. "$(dirname "$0")/bench-lib.sh"
bench_init slowloris
bench_redis

nport=$(free_port)
flags=()
args=()
if [ "$short" = "--short" ]; then
  flags=(--http-max-connections-per-ip 50 --http-head-timeout 1s)
  args=(--hog 300 --others 60 --other-ips 3 --seconds 4 --ping-rate 50 --check)
else
  args=(--seconds "${BENCH_SECONDS:-20}")
fi
"$build/shoal" worker --redis "$url" --name bench-slowloris --listen "127.0.0.1:$nport" --cap 0 \
  --log-level warn "${flags[@]}" 2>"$tmp/node.log" &
node=$!; pids+=($node)
wait_http "$nport" /api/octopusservernodes/ping || { echo "bench-slowloris: the node did not start" >&2; exit 1; }
echo "slowloris flood against one node, $(nproc) cores, $(date -u +%Y-%m-%d) (target: ping p99 < 5 ms, RSS flat)"
rc=0
"$build/slowloris" "$nport" "$node" "${args[@]}" || rc=$?
kill -0 "$node" 2>/dev/null || { echo "bench-slowloris: the node died" >&2; cat "$tmp/node.log" >&2; exit 1; }
exit $rc
