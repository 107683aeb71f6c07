#!/usr/bin/env bash
# Enqueue a task with nothing but redis-cli: lua/enqueue.lua takes 4 keys, then the key prefix,
# the time (epoch ms), the wake channel, the task count, and 9 fields per task:
#   queue type args priority queue-time(0=now) expiry-ms timeout-ms attempts node-loss-budget
# Prints the new task's number (its id is ServerTasks-<n>).
# Usage: examples/enqueue.sh [redis-cli connection flags...]     e.g. -p 6379
set -euo pipefail
cd "$(dirname "$0")/.."
redis-cli "$@" --eval lua/enqueue.lua \
  '{shoal}:seq' '{shoal}:stats' '{shoal}:scheduled' '{shoal}:queues' , \
  '{shoal}:' "$(date +%s%3N)" '{shoal}:wake' 1 \
  default noop '' 0 0 86400000 0 1 1
