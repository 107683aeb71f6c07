#!/usr/bin/env bash
# bench-tasks.sh BUILD_DIR: the task-queue figures (throughput, Redis memory and CPU per task,
# idle latency, claim cost against queue depth and fleet size), measured as ../shared/bench-peers
# measures its peers (bench/bench_tasks.c says how each is taken). Starts its own redis-server
# on a free loopback port (--save '' --appendonly no, as bench-peers), runs bench_tasks, which
# starts and stops its own bench_node processes, stops exactly the PIDs it started, and prints
# one line per figure with its target.
# Knobs: N (100000) tasks per enqueue/process step (and awaited calls of the floor step); LAT_K
#   (200) latency samples; CAP (64) the node's cap for the process and latency figures; CLAIM_BACKLOG (1000000) and CLAIM_BATCH
#   (10000) for claim cost; CLAIM_NODES (100) fleet size for claim cost; ROUNDS (1): figures
#   are medians over rounds; RAW_OUT: also append the raw JSON lines (bench-peers' format) there;
#   CLAIM=0 skips the claim-cost steps (the hot-path figures only, about 20 s at N=20000).
# Every step runs under `timeout`; the whole run takes about 1.5 min per round at the defaults.
set -euo pipefail
build=${1:-build}
N=${N:-100000} LAT_K=${LAT_K:-200} CAP=${CAP:-64} ROUNDS=${ROUNDS:-1}
CLAIM_BACKLOG=${CLAIM_BACKLOG:-1000000} CLAIM_BATCH=${CLAIM_BATCH:-10000} CLAIM_NODES=${CLAIM_NODES:-100}
for v in N LAT_K CAP ROUNDS CLAIM_BACKLOG CLAIM_BATCH CLAIM_NODES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench-tasks: $v must be a positive integer" >&2; exit 2; }
done
for b in bench_tasks bench_node; do
  [ -x "$build/$b" ] || { echo "bench-tasks: $build/$b missing (cmake --build $build --target bench_tasks bench_node)" >&2; exit 2; }
done
build=$(cd "$build" && pwd)
. "$(dirname "$0")/bench-lib.sh"
bench_init tasks
trap 'exit 130' INT TERM

bench_redis
url0="redis://127.0.0.1:$rport/0" url1="redis://127.0.0.1:$rport/1" url=$url0
raw="$tmp/raw.jsonl"

# bt SECONDS COMMAND ARGS...: one bench_tasks step under a deadline; its figures go to $out.
out=$raw
bt() {
  local secs=$1; shift
  if ! BENCH_RUN=$round timeout -k 5 "$secs" "$build/bench_tasks" "$url" shoal "$tmp" "$@" \
      >> "$out" 2>> "$tmp/steps.log"; then
    echo "bench-tasks: step '$*' failed or timed out; its log:" >&2
    tail -20 "$tmp/steps.log" >&2
    exit 1
  fi
}
node="$build/bench_node"
drain_secs=$((120 + N / 1000))
for ((round = 1; round <= ROUNDS; round++)); do
  echo "bench-tasks: round $round/$ROUNDS" >&2
  bt 600 enqueue single "$N" i;  bt 300 floor "$N"
  bt "$drain_secs" drain drain_c10 "$N" 10 "$node"
  bt 300 enqueue bulk "$N" i;    bt "$drain_secs" drain drain_c50 "$N" 50 "$node"
  bt 300 enqueue bulk "$N" i;    bt "$drain_secs" drain drain_cap "$N" "$CAP" "$node"
  bt 300 enqueue bulk "$N" none
  bt $((60 + LAT_K / 20)) latency "$LAT_K" "$CAP" "$node"
  # Claim cost: CLAIM_BATCH tasks claimed 64 at a time with 1,000 vs CLAIM_BACKLOG queued
  # behind them, and with 1 vs CLAIM_NODES nodes registered; then a real node processes
  # CLAIM_BATCH from the deep queue that leaves, and from a queue 1,000 deep.
  [ "${CLAIM:-1}" = 0 ] && continue
  bt 900 claimcost "$CLAIM_BACKLOG" "$CLAIM_BATCH" 64 "$CLAIM_NODES"
  for _ in 1 2; do   # in turn: the deep queue (database 0), a 1,000-deep one (database 1)
    bt 300 drain process_deep "$CLAIM_BATCH" "$CAP" "$node"
    url=$url1 out=/dev/null; bt 300 enqueue bulk $((1000 + CLAIM_BATCH)) i   # the stage only
    out=$raw; bt 300 drain process_shallow "$CLAIM_BATCH" "$CAP" "$node"; url=$url0
  done
done
[ -z "${RAW_OUT:-}" ] || cat "$raw" >> "$RAW_OUT"

python3 - "$raw" "$N" "$CAP" "$LAT_K" "$CLAIM_BACKLOG" "$CLAIM_BATCH" "$CLAIM_NODES" "$ROUNDS" <<'PY'
import json, statistics, sys, os
raw, n, cap, lat_k, backlog, batch, nodes, rounds = sys.argv[1:]
v = {}
for line in open(raw):
    if line.startswith("{"):
        d = json.loads(line); v.setdefault(d["metric"], []).append(d["value"])
def m(k): return statistics.median(v[k]) if k in v else float("nan")
def rate(x): return "{:>10,.0f}".format(x)
def ok(good): return "ok" if good else "MISS"
print("shoal task bench: %d cores, load average %.2f, N=%s, cap %s, LAT_K=%s, %s round(s) (medians)"
      % (os.cpu_count(), os.getloadavg()[0], n, cap, lat_k, rounds))
print("%-52s %10s  %s" % ("", "tasks/s", "Redis CPU per task"))
for k, what in [("enqueue_single", "enqueue single (1 per call, awaited)"),
                ("enqueue_bulk", "enqueue bulk (calls of 1,000)"),
                ("drain_c10", "process C=10 (one node, cap 10)"),
                ("drain_c50", "process C=50 (one node, cap 50)"),
                ("drain_cap", "process cap %s (one node, %s queued)" % (cap, n))]:
    cpu = m("redis_cpu_us_" + k if k.startswith("drain") else "redis_cpu_us_" + k)
    tgt = {"enqueue_bulk": (100000, "target >= 100,000"), "drain_cap": (50000, "target >= 50,000")}.get(k)
    tail = "  (%s: %s)" % (tgt[1], ok(m(k) >= tgt[0])) if tgt else ""
    print("%-52s %s  %6.1f us%s" % (what, rate(m(k)), cpu, tail))
f, fc = m("awaited_floor"), m("redis_cpu_us_awaited_floor")
print("Redis's floor for one awaited call (a script that returns 1, the same client): %s/s, Redis CPU %.1f us;"
      " enqueue single is %.2f of it" % (rate(f).strip(), fc, m("enqueue_single") / f))
b = m("bytes_per_job_bulk_noargs")
print("Redis bytes per queued task, no args: %.1f (target < 200: %s); with the {i} payload: %.1f single, %.1f bulk"
      % (b, ok(b < 200), m("bytes_per_job_single"), m("bytes_per_job_bulk")))
p50, p99 = m("lat_p50_ms"), m("lat_p99_ms")
print("latency enqueue -> handler, idle node: p50 %.3f ms (target < 0.5: %s), p99 %.3f ms (target < 1: %s), max %.3f ms"
      % (p50, ok(p50 < 0.5), p99, ok(p99 < 1), m("lat_max_ms")))
s, d = m("claim_us_call_shallow"), m("claim_us_call_deep")
print("claim cost, server us per claim of 64 (median): %.0f with 1,000 queued, %.0f with %s queued: ratio %.2f (target <= 1.10: %s)"
      % (s, d, "{:,}".format(int(backlog)), d / s, ok(d / s <= 1.10)))
cs, cd = m("complete_us_call_shallow"), m("complete_us_call_deep")
print("complete cost, server us per report of 64 (median): %.0f with 1,000 queued, %.0f with %s queued: ratio %.2f"
      % (cs, cd, "{:,}".format(int(backlog)), cd / cs))
o, f = m("claim_us_call_nodes1"), m("claim_us_call_nodesN")
print("claim cost with %s nodes registered vs 1 (6,400 queued): %.0f vs %.0f us: ratio %.2f (target <= 1.10: %s)"
      % (nodes, f, o, f / o, ok(f / o <= 1.10)))
ps, pd = m("process_shallow"), m("process_deep")
print("process %s tasks, cap %s: %s/s with 1,000 queued behind, %s/s with %s: ratio %.2f; Redis CPU %.1f vs %.1f us/task"
      % ("{:,}".format(int(batch)), cap, "{:,.0f}".format(ps), "{:,.0f}".format(pd), "{:,}".format(int(backlog)),
         pd / ps, m("redis_cpu_us_process_shallow"), m("redis_cpu_us_process_deep")))
PY
bench_slowest
