#!/usr/bin/env bash
# Issue #3's processing figure with the built-in noop: one node at cap 64 works off N queued
# no-op tasks (the built-in completes without a thread). Rate = (N - 1) / (last completion -
# first start), both from the tasks' own records in Redis. Its own redis-server on a free
# loopback port; stops exactly what it started.  Usage: scripts/bench-noop.sh BUILD [N]
set -euo pipefail
build=${1:-build}
n=${2:-100000}
bin=$build/shoal
tmp=$(mktemp -d /tmp/shoal-bench-noop-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --daemonize no --logfile "$tmp/redis.log" & pids+=($!)
for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
url="redis://127.0.0.1:$port/0"
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
