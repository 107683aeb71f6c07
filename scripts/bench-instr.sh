#!/usr/bin/env bash
# bench-instr.sh BUILD [CAP] [N]: the instructions redis-server executes per task, counted by
# valgrind's callgrind (zeroed before each step, dumped after it): N/5 tasks enqueued one per
# awaited call, N in calls of 1,000, then one bench_node (C handler `count`) working the N off
# at CAP (10); N is 5000. A count of
# instructions does not depend on the machine's load as microseconds do, so two builds can be
# compared on a busy machine (the node's batches still depend on timing a little: run it twice).
# Redis runs about 50 times slower under callgrind, so N stays small. Its own redis-server on a
# free loopback port; stops what it started.
set -euo pipefail
build=${1:-build} cap=${2:-10} n=${3:-5000}
command -v valgrind > /dev/null || { echo "bench-instr: valgrind missing (scripts/deps.sh)" >&2; exit 2; }
. "$(dirname "$0")/bench-lib.sh"
bench_init instr
rport=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" \
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  > "$tmp/valgrind.log" 2>&1 & vpid=$!; pids+=($vpid)
for _ in $(seq 1 300); do redis-cli -p "$rport" ping > /dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$rport/0"
# ir: the instructions counted since the last zeroing (a dump, then its total: the newest dump).
ir() {
  callgrind_control -d "$vpid" > /dev/null 2>&1
  awk '/^(summary|totals):/ { print $2; exit }' "$(ls -v "$tmp"/cg.*.* | tail -1)"
}
zero() { callgrind_control -z "$vpid" > /dev/null 2>&1; redis-cli -p "$rport" config resetstat > /dev/null; }
calls() { redis-cli -p "$rport" info commandstats | tr -d '\r' | awk -F'[=,:]' '$1 == "cmdstat_evalsha" { print $3 }'; }
zero
timeout 300 "$build/bench_tasks" "$url" shoal "$tmp" enqueue single "$((n / 5))" i > /dev/null
single=$(ir)
zero
timeout 120 "$build/bench_tasks" "$url" shoal "$tmp" enqueue bulk "$n" i > /dev/null
bulk=$(ir)
zero
timeout 300 "$build/bench_tasks" "$url" shoal "$tmp" drain calls "$n" "$cap" "$build/bench_node" > /dev/null
process=$(ir) ncalls=$(calls)
awk -v s="$single" -v b="$bulk" -v p="$process" -v n="$n" -v cap="$cap" -v calls="$ncalls" 'BEGIN {
  printf "redis-server instructions per task (callgrind): enqueue single %.0f, enqueue bulk %.0f, " \
         "process cap %d %.0f (%d tasks, %d script calls)\n", s / (n / 5), b / n, cap, p / n, n, calls }'
