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

# take_at_once NS CAP "NODE FLAGS" ENQUEUE ARGS...: a node named bench-NS in namespace NS at cap
# CAP, ping at $rate from half a second before the tasks are queued at once until 3 s after.
# Leaves the node running: its PID in $node_pid, its running tasks after in $taken, the probe's
# line in $probe_out.
take_at_once() {
  local ns=$1 cap=$2 flags=$3 port probe; shift 3
  port=$(free_port)
  # shellcheck disable=SC2086 # the flags are words
  "$build/shoal" worker --redis "$url" --namespace "$ns" --name "bench-$ns" --listen "127.0.0.1:$port" \
    --cap "$cap" $flags --grace 1s --log-level warn 2>"$tmp/$ns.log" &
  node_pid=$!; pids+=($node_pid)
  wait_http "$port" /api/octopusservernodes/ping || { echo "bench-busy: the $ns node did not start" >&2; exit 1; }
  sleep 1
  "$build/ping_latency" "$port" /api/octopusservernodes/ping 10 "$rate" 3 >"$tmp/$ns.out" &
  probe=$!
  sleep 0.5
  "$build/shoal" enqueue --redis "$url" --namespace "$ns" "$@" >/dev/null
  wait "$probe"
  taken=$(redis-cli -p "$rport" ZCARD "{$ns}:running:bench-$ns")
  probe_out=$(cat "$tmp/$ns.out")
}

# A burst of exec tasks: each spawn holds the loop until its child has exec'd.
take_at_once burst 64 "--allow-exec /bin/sleep" --count 64 --timeout 60s -- /bin/sleep 30
echo "a node at cap 64 taking 64 exec tasks at once ($taken running after): $probe_out (target p99 < 1 ms)"
kill -TERM "$node_pid"; wait "$node_pid" 2>/dev/null || true

# A node at the highest cap filling up (the fill itself takes well under a second).
take_at_once fill 10000 "" --type sleep --count 10000 -- 120s
fill=$node_pid
echo "a node at cap 10000 taking 10000 sleep tasks ($taken running after): $probe_out (target p99 < 1 ms)"

# That node's Redis calls at its size: heartbeats (cancelling.lua's pass) and a reconcile (forced
# by cutting the subscriber links), then its death and another node's recovery of its tasks
# (recover.lua, 128 running-set entries a call). SLOWLOG keeps every call of 1 ms or more.
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
