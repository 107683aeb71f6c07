#!/usr/bin/env bash
# bench-busy.sh [BUILD]: ping while every task slot is busy (make bench). Starts its own
# redis-server and one node with --cap 2×cores, measures ping at a fixed rate on the idle node
# (the machine's floor, same run), then fills every slot with a CPU-bound exec task (a shell
# loop, timeout 60 s) and measures again. Then a node at cap 64 takes 64 exec tasks at once
# (`sleep 30`) and ping is measured while they are spawned. Then a node at the highest cap (10,000) takes
# 10,000 `sleep` tasks at once and ping is measured while it fills (its loop handles 40 claim
# answers of up to 256 tasks each: what each one costs shows here), and the slowest Redis call
# while it runs and while another node recovers its tasks after SIGKILL. Stops exactly the PIDs it
# started; the tasks' programs die with the node (exec-child's PR_SET_PDEATHSIG).
#   BENCH_SECONDS (default 10), BENCH_BUSY_RATE (ping, default 1000/s)
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-10}
rate=${BENCH_BUSY_RATE:-1000}
cap=$(( $(nproc) * 2 ))
. "$(dirname "$0")/bench-lib.sh"
bench_init busy
bench_redis

nport=$(free_port)
"$build/shoal" worker --redis "$url" --name bench-busy --listen "127.0.0.1:$nport" --cap "$cap" \
  --allow-exec /bin/sh --grace 1s --log-level warn 2>"$tmp/node.log" &
node=$!; pids+=($node)
wait_http "$nport" /api/octopusservernodes/ping || { echo "bench-busy: the node did not start" >&2; exit 1; }
probe() { "$build/ping_latency" "$nport" /api/octopusservernodes/ping 10 "$rate" "$secs"; }

idle=$(probe)
for _ in $(seq 1 "$cap"); do
  "$build/shoal" enqueue --redis "$url" --timeout 60s -- /bin/sh -c 'while :; do :; done' >/dev/null
done
running=0
for _ in $(seq 1 100); do   # until every slot runs one (10 s at most)
  running=$("$build/shoal" stats --redis "$url" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["Running"])' 2>/dev/null || echo 0)
  [ "$running" -ge "$cap" ] && break
  sleep 0.1
done
[ "$running" -ge "$cap" ] || { echo "bench-busy: only $running of $cap slots busy" >&2; exit 1; }
busy=$(probe)

echo "ping with every task slot busy, $(nproc) cores, $(date -u +%Y-%m-%d): cap $cap, $running CPU-bound exec tasks running (nice 10)"
echo "idle node: $idle"
echo "all slots busy: $busy (target p99 < 1 ms)"

# A node at the highest cap filling up: ping from half a second before the 10,000 tasks are
# queued until 3 s after (the fill itself takes well under a second).
# A burst of exec tasks: each spawn holds the loop until its child has exec'd.
bport=$(free_port)
"$build/shoal" worker --redis "$url" --namespace burst --name bench-burst --listen "127.0.0.1:$bport" \
  --cap 64 --allow-exec /bin/sleep --grace 1s --log-level warn 2>"$tmp/burst.log" &
burst=$!; pids+=($burst)
wait_http "$bport" /api/octopusservernodes/ping || { echo "bench-busy: the burst node did not start" >&2; exit 1; }
sleep 1
"$build/ping_latency" "$bport" /api/octopusservernodes/ping 10 "$rate" 3 >"$tmp/burst.out" &
probe_pid=$!
sleep 0.5
"$build/shoal" enqueue --redis "$url" --namespace burst --count 64 --timeout 60s -- /bin/sleep 30 >/dev/null
wait "$probe_pid"
started=$(redis-cli -p "$rport" ZCARD '{burst}:running:bench-burst')
echo "a node at cap 64 taking 64 exec tasks at once ($started running after): $(cat "$tmp/burst.out") (target p99 < 1 ms)"
kill -TERM "$burst"; wait "$burst" 2>/dev/null || true

fport=$(free_port)
"$build/shoal" worker --redis "$url" --namespace fill --name bench-fill --listen "127.0.0.1:$fport" \
  --cap 10000 --grace 1s --log-level warn 2>"$tmp/fill.log" &
fill=$!; pids+=($fill)
wait_http "$fport" /api/octopusservernodes/ping || { echo "bench-busy: the cap-10000 node did not start" >&2; exit 1; }
sleep 1
"$build/ping_latency" "$fport" /api/octopusservernodes/ping 10 "$rate" 3 >"$tmp/fill.out" &
probe_pid=$!
sleep 0.5
"$build/shoal" enqueue --redis "$url" --namespace fill --type sleep --count 10000 -- 120s >/dev/null
wait "$probe_pid"
filled=$(redis-cli -p "$rport" ZCARD '{fill}:running:bench-fill')
echo "a node at cap 10000 taking 10000 sleep tasks ($filled running after): $(cat "$tmp/fill.out") (target p99 < 1 ms)"

# That node's Redis calls at its size: heartbeats (cancelling.lua's pass) and a reconcile (forced
# by cutting the subscriber links), then its death and another node's recovery of its tasks
# (recover.lua, 256 tasks a call). SLOWLOG keeps every call of 1 ms or more.
redis-cli -p "$rport" SLOWLOG RESET >/dev/null
redis-cli -p "$rport" CLIENT KILL TYPE pubsub >/dev/null
sleep 6
echo "a node at cap 10000 running 10000 (heartbeats, a reconcile): $(bench_slowest)"
redis-cli -p "$rport" SLOWLOG RESET >/dev/null
kill -KILL "$fill"
wait "$fill" 2>/dev/null || true
hport=$(free_port)
"$build/shoal" worker --redis "$url" --namespace fill --name bench-heir --listen "127.0.0.1:$hport" \
  --cap 0 --log-level warn 2>"$tmp/heir.log" &
pids+=($!)
requeued=0
for _ in $(seq 1 300); do   # its TTL (15 s) and the recovery pass: 30 s at most
  requeued=$(redis-cli -p "$rport" LLEN '{fill}:q:default:0')
  [ "$requeued" -ge 10000 ] && break
  sleep 0.1
done
echo "its 10000 tasks recovered by another node after SIGKILL ($requeued requeued): $(bench_slowest)"
