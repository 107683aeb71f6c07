#!/usr/bin/env bash
# scripts/bench-api.sh [BUILD]: the keyed API's figures for the README. Starts its own
# redis-server and one shoal node (with an API key) on free loopback ports, registers 100 more
# nodes by running lua/register.lua with redis-cli (alive for an hour), then measures at a fixed
# rate over keep-alive connections (bench/ping_latency.c):
#   1. GET /api/octopusservernodes/summary (101 nodes) with the key: target p99 < 5 ms;
#   2. ping alone, then ping while the API traffic of 1 runs: target p99 < 1 ms both times;
#   3. GET /api (Octopus's root document) and GET /api/spaces with the key: target p99 < 1 ms,
#      and ping while both run: target p99 < 1 ms;
#   4. a 1 GiB PackageRepository.push through Octopus's own client (tests/octoclient, npm ci on
#      first run): time and the node's peak RSS (BENCH_OCTO_MIB, default 1024; 0 skips it).
# Stops exactly the PIDs it started.
#   BENCH_SECONDS (default 10), BENCH_API_RATE (default 500/s), BENCH_RATE (ping, default 5000/s)
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-10}
api_rate=${BENCH_API_RATE:-500}
ping_rate=${BENCH_RATE:-5000}
key=bench-key-0123456789-$RANDOM$RANDOM
. "$(dirname "$0")/bench-lib.sh"
bench_init api

bench_redis

now=$(date +%s%3N)
for i in $(seq -w 1 100); do
  n=fleet-$i
  redis-cli -p "$rport" --eval lua/register.lua "{shoal}:node:$n" "{shoal}:alive:$n" '{shoal}:nodes' \
    '{shoal}:stats' '{shoal}:layout' , "$n" "instance$i" "$now" 3600000 5 0.1.0 "host$i" "$i" "10.0.0.$i:8080" \
    default 5000 1 >/dev/null
done
[ "$(redis-cli -p "$rport" scard '{shoal}:nodes')" = 100 ] || { echo "registration failed" >&2; exit 1; }

nport=$(free_port)
SHOAL_API_KEY=$key "$build/shoal" worker --redis "redis://127.0.0.1:$rport/0" --name bench-node \
  --listen "127.0.0.1:$nport" --log-level warn 2>"$tmp/node.log" & pids+=($!)
for _ in $(seq 1 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/api/octopusservernodes/ping")" = 200 ] && break
  sleep 0.05
done
nodes=$(curl -s -H "X-Octopus-ApiKey: $key" "http://127.0.0.1:$nport/api/octopusservernodes/summary" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Nodes"]))')
size=$(curl -s -H "X-Octopus-ApiKey: $key" "http://127.0.0.1:$nport/api/octopusservernodes/summary" | wc -c)

summary=$("$build/ping_latency" "$nport" /api/octopusservernodes/summary 10 "$api_rate" "$secs" \
          "X-Octopus-ApiKey: $key")
ping_alone=$("$build/ping_latency" "$nport" /api/octopusservernodes/ping 100 "$ping_rate" "$secs")
"$build/ping_latency" "$nport" /api/octopusservernodes/summary 10 "$api_rate" "$((secs + 1))" \
  "X-Octopus-ApiKey: $key" >"$tmp/api-bg.txt" & bg=$!
ping_busy=$("$build/ping_latency" "$nport" /api/octopusservernodes/ping 100 "$ping_rate" "$secs")
wait "$bg"

root=$("$build/ping_latency" "$nport" /api 10 "$api_rate" "$secs" "X-Octopus-ApiKey: $key")
spaces=$("$build/ping_latency" "$nport" "/api/spaces?partialName=Default&skip=0&take=2147483647" 10 \
         "$api_rate" "$secs" "X-Octopus-ApiKey: $key")
"$build/ping_latency" "$nport" /api 10 "$api_rate" "$((secs + 1))" "X-Octopus-ApiKey: $key" \
  >"$tmp/root-bg.txt" & bg1=$!
"$build/ping_latency" "$nport" /api/spaces 10 "$api_rate" "$((secs + 1))" \
  "X-Octopus-ApiKey: $key" >"$tmp/spaces-bg.txt" & bg2=$!
ping_octo=$("$build/ping_latency" "$nport" /api/octopusservernodes/ping 100 "$ping_rate" "$secs")
wait "$bg1" "$bg2"

echo "fleet: $nodes nodes in /summary ($size bytes), key required"
echo "summary with key:  $summary (target p99 < 5 ms)"
echo "ping alone:        $ping_alone (target p99 < 1 ms)"
echo "ping + API load:   $ping_busy (target p99 < 1 ms)"
echo "  (API load meanwhile: $(cat "$tmp/api-bg.txt"))"
echo "GET /api with key:        $root (target p99 < 1 ms)"
echo "GET /api/spaces with key: $spaces (target p99 < 1 ms)"
echo "ping + /api + /api/spaces: $ping_octo (target p99 < 1 ms)"
if [ "${BENCH_OCTO_MIB:-1024}" != 0 ]; then
  echo "Octopus's client push: $(tests/octoclient/run.sh "$build/shoal" "${BENCH_OCTO_MIB:-1024}" 2>&1 |
    grep -E '^# push|passed' | tr '\n' ' ')"
fi
