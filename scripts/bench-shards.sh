#!/usr/bin/env bash
# bench-shards.sh BUILD [ROUNDS]: namespaces are the unit of scale, measured (issue 18). Two
# redis-servers stand for two primaries (two cluster shards); each round runs, in turn (the
# order rotates every round):
#   one   namespace ns1 on primary A, one node (cap 64, built-in noop) works off N queued tasks
#   two   ns1 on A and ns2 on B, one node each, at the same time
#   same  ns1 and ns2 both on A, one node each, at the same time (one primary's CPU shared)
# The rate of a namespace is (N - 1) / (last completion - first start) from its tasks' own
# records; the aggregate of a two-namespace run is 2N over the union of both windows. Prints
# each figure's median over rounds, the aggregate against one namespace, and Redis CPU per task
# on each primary. Stops exactly what it started. On a 2-core machine the two-primary run shares
# the cores with both nodes: read its ratio as a floor, not as what two machines would give.
set -euo pipefail
build=${1:-build} rounds=${2:-3}
N=${N:-50000}
build=$(cd "$build" && pwd)
bin=$build/shoal
. "$(dirname "$0")/bench-lib.sh"
bench_init shards
bench_redis
portA=$rport urlA=$url
bench_redis
portB=$rport urlB=$url
cpu() { redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {s+=$2} END {print s}'; }
# first start and last completion (ms) of namespace $2 on port $1
window() {
  local f l
  f=$(redis-cli -p "$1" eval "local m for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
    local s = tonumber(redis.call('hget', KEYS[2] .. id, 'started'))
    if s and (not m or s < m) then m = s end end return m" 2 "{$2}:done" "{$2}:task:")
  l=$(redis-cli -p "$1" zrange "{$2}:done" -1 -1 withscores | tail -1)
  echo "$f $l"
}
# run MODE PORT NS ...: enqueues N noop tasks in each (port, namespace) pair, then starts one
# node per pair at once and waits (60 s at most) until every one is done; appends to $raw the
# mode, "first last" per pair and the Redis CPU used on each primary. (Not in a subshell: the
# nodes' PIDs must reach the EXIT trap.)
run() {
  local mode=$1
  shift
  local pairs=("$@") nodes=() i port ns
  redis-cli -p "$portA" flushall > /dev/null
  redis-cli -p "$portB" flushall > /dev/null
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    port=${pairs[i]} ns=${pairs[i + 1]}
    "$bin" enqueue --redis "redis://127.0.0.1:$port/0" --namespace "$ns" --type noop \
      --count "$N" > /dev/null
  done
  local c0A c0B
  c0A=$(cpu "$portA") c0B=$(cpu "$portB")
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    port=${pairs[i]} ns=${pairs[i + 1]}
    "$bin" worker --redis "redis://127.0.0.1:$port/0" --namespace "$ns" --name "bench-$ns" \
      --cap 64 --listen 127.0.0.1:0 --log-level warn 2>> "$tmp/node.log" & nodes+=($!) pids+=($!)
  done
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    port=${pairs[i]} ns=${pairs[i + 1]}
    for _ in $(seq 1 1200); do
      [ "$(redis-cli -p "$port" zcard "{$ns}:done")" -ge "$N" ] && break
      sleep 0.05
    done
    [ "$(redis-cli -p "$port" zcard "{$ns}:done")" -ge "$N" ] \
      || { echo "bench-shards: $ns on $port did not finish" >&2; exit 1; }
  done
  local c1A c1B
  c1A=$(cpu "$portA") c1B=$(cpu "$portB")
  local ticks=0 hz
  hz=$(getconf CLK_TCK)
  for p in "${nodes[@]}"; do ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  for p in "${nodes[@]}"; do kill -TERM "$p"; wait "$p" || true; done
  {
    printf '%s' "$mode"
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do printf ' %s' "$(window "${pairs[i]}" "${pairs[i + 1]}")"; done
    awk -v a="$c0A" -v b="$c1A" -v c="$c0B" -v d="$c1B" -v t="$ticks" -v hz="$hz" \
      'BEGIN {print " cpu", b - a, d - c, t / hz}'
  } >> "$raw"
}
raw=$tmp/raw
modes=(one two same)
for ((r = 0; r < rounds; r++)); do
  echo "bench-shards: round $((r + 1))/$rounds" >&2
  for ((k = 0; k < 3; k++)); do
    mode=${modes[(r + k) % 3]}
    case $mode in
      one) run one "$portA" ns1 ;;
      two) run two "$portA" ns1 "$portB" ns2 ;;
      same) run same "$portA" ns1 "$portA" ns2 ;;
    esac
  done
done
python3 - "$raw" "$N" "$rounds" "$(nproc)" <<'PY'
import statistics, sys
n, rounds, cores = int(sys.argv[2]), sys.argv[3], sys.argv[4]
res = {}
for line in open(sys.argv[1]):
    f = line.split()
    mode, nums = f[0], f[1:]
    ci = nums.index("cpu")
    wins = [(float(nums[i]), float(nums[i + 1])) for i in range(0, ci, 2)]
    cpu_a, cpu_b, cpu_nodes = float(nums[ci + 1]), float(nums[ci + 2]), float(nums[ci + 3])
    each = [(n - 1) * 1000 / (l - s) for s, l in wins]
    agg = len(wins) * n * 1000 / (max(l for _, l in wins) - min(s for s, _ in wins))
    res.setdefault(mode, []).append((agg, each, cpu_a * 1e6 / n, cpu_b * 1e6 / n,
                                     cpu_nodes * 1e6 / (n * len(wins))))
def med(mode, f):
    return statistics.median(f(x) for x in res[mode])
print("namespaces as the unit of scale: built-in noop, one node per namespace at cap 64, N=%d "
      "per namespace, %s interleaved rounds (medians), %s cores" % (n, rounds, cores))
one = med("one", lambda x: x[0])
print("%-44s %8.0f tasks/s                       Redis CPU %5.1f us/task  node CPU %5.1f us/task"
      % ("one namespace on one primary", one, med("one", lambda x: x[2]), med("one", lambda x: x[4])))
for mode, label in (("two", "two namespaces on two primaries, at once"),
                    ("same", "two namespaces on one primary, at once")):
    agg = med(mode, lambda x: x[0])
    a, b = med(mode, lambda x: x[1][0]), med(mode, lambda x: x[1][1])
    cpu = ("Redis CPU A %5.1f B %5.1f us/task" % (med(mode, lambda x: x[2]), med(mode, lambda x: x[3]))
           if mode == "two" else "Redis CPU %5.1f us/task (both)" % (med(mode, lambda x: x[2]) / 2))
    print("%-44s %8.0f tasks/s (%6.0f + %6.0f)  %s  node CPU %5.1f us/task  aggregate/one %.2f"
          % (label, agg, a, b, cpu, med(mode, lambda x: x[4]), agg / one))
PY
