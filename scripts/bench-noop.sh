#!/usr/bin/env bash
# Issue #3's processing figure with the built-in noop: one node at cap 64 works off N queued
# no-op tasks (the built-in completes without a thread). Rate = (N - 1) / (last completion -
# first start), both from the tasks' own records in Redis. Its own redis-server on a free
# loopback port; stops exactly what it started.  Usage: scripts/bench-noop.sh BUILD [N]
set -euo pipefail
build=${1:-build}
n=${2:-100000}
bin=$build/shoal
. "$(dirname "$0")/bench-lib.sh"
bench_init noop
bench_redis
port=$rport
"$bin" enqueue --redis "$url" --type noop --count "$n" > /dev/null
cpu() { redis-cli -p "$port" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {s+=$2} END {print s}'; }
c0=$(cpu)
"$bin" worker --redis "$url" --name noop-bench --cap 64 --listen 127.0.0.1:0 --log-level warn \
  2>"$tmp/node.log" & node=$!; pids+=($node)
for _ in $(seq 1 1200); do
  [ "$(redis-cli -p "$port" zcard '{shoal}:done')" -ge "$n" ] && break
  sleep 0.05
done
c1=$(cpu)
first=$(redis-cli -p "$port" eval "local m for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  local s = tonumber(redis.call('hget', '{shoal}:task:' .. id, 'started'))
  if s and (not m or s < m) then m = s end end return m" 1 '{shoal}:done')
last=$(redis-cli -p "$port" zrange '{shoal}:done' -1 -1 withscores | tail -1)
awk -v n="$n" -v f="$first" -v l="$last" -v c0="$c0" -v c1="$c1" 'BEGIN {
  printf "built-in noop, one node at cap 64, %d queued: %d tasks/s (first start to last completion %d ms; Redis CPU %.1f us/task) (target >= 50,000)\n",
         n, (n - 1) * 1000 / (l - f), l - f, (c1 - c0) * 1e6 / n }'
bench_slowest
