#!/usr/bin/env bash
# bench-calls.sh BUILD [CAP] [N]: what one node's processing costs Redis, in counts that do not
# depend on the machine's load: script calls per task and tasks per call, the commands those
# scripts run per task, and (load-dependent) EVALSHA and inner-command microseconds per task,
# from INFO commandstats while one bench_node (C handler `count`) works off N (20000) queued
# tasks at CAP (10). Its own redis-server on a free loopback port; stops what it started.
set -euo pipefail
build=${1:-build} cap=${2:-10} n=${3:-20000}
. "$(dirname "$0")/bench-lib.sh"
bench_init calls
bench_redis
"$build/bench_tasks" "$url" shoal "$tmp" enqueue bulk "$n" i > /dev/null
redis-cli -p "$rport" config resetstat > /dev/null
"$build/bench_tasks" "$url" shoal "$tmp" drain calls "$n" "$cap" "$build/bench_node" > /dev/null
redis-cli -p "$rport" info commandstats | tr -d '\r' | awk -F'[=,:]' -v n="$n" -v cap="$cap" '
  /^cmdstat/ { if ($1 == "cmdstat_evalsha") { e = $3; eu = $5 }
               else if ($1 != "cmdstat_config" && $1 != "cmdstat_info") { c += $3; u += $5 } }
  END { printf "cap %d, %d tasks: %d script calls (%.2f tasks per call), %.1f us/task in EVALSHA; " \
               "inside them %.2f commands/task, %.1f us/task\n", cap, n, e, n / e, eu / n, c / n, u / n }'
