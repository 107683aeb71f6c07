#!/usr/bin/env bash
# bench-peers.sh BUILD_DIR: shoal next to established task queues, in one invocation on one
# machine. Runs ../shared/bench-peers/run.sh (it needs root, apt, Node.js >= 18 and npm; see its
# README), then scripts/bench-tasks.sh with the same N, LAT_K and ROUNDS, and prints both
# results and a side-by-side table with shoal/peer ratios per figure.
# Knobs: PEERS ("bullmq bee sidekiq beanstalkd ceiling"), ROUNDS (1), N (20000), LAT_K (200),
#   PEERS_DIR (../shared/bench-peers next to this repository), BENCH_WORKDIR, REDIS_PORT and
#   BEANSTALK_PORT (free loopback ports by default); bench-tasks.sh's own knobs pass through.
# Both halves start and stop their own servers by PID; run.sh bounds every peer with timeout.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
peers_dir=${PEERS_DIR:-$root/../shared/bench-peers}
[ -f "$peers_dir/run.sh" ] || { echo "bench-peers: no $peers_dir/run.sh (set PEERS_DIR)" >&2; exit 2; }
export PEERS=${PEERS:-bullmq bee sidekiq beanstalkd ceiling} ROUNDS=${ROUNDS:-1} N=${N:-20000}
export LAT_K=${LAT_K:-200}
free_port() { python3 "$root/scripts/ports.py"; }   # below the ephemeral range
export REDIS_PORT=${REDIS_PORT:-$(free_port)} BEANSTALK_PORT=${BEANSTALK_PORT:-$(free_port)}
tmp=$(mktemp -d /tmp/shoal-bench-peers-XXXXXX)
child=""
cleanup() {
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== peers: PEERS=\"$PEERS\" ROUNDS=$ROUNDS N=$N LAT_K=$LAT_K (bench-peers/run.sh)"
# In the background + wait, so that Ctrl-C / TERM reach run.sh (it stops its peers by PID).
RESULTS_DIR="$tmp/peers" bash "$peers_dir/run.sh" & child=$!
set +e; wait "$child"; prc=$?; set -e; child=""
[ "$prc" -eq 0 ] || echo "bench-peers: run.sh exited $prc (3: a peer failed in some round; see its log)" >&2
ls "$tmp"/peers/raw-*.jsonl >/dev/null 2>&1 || { echo "bench-peers: run.sh left no raw results" >&2; exit 1; }

echo; echo "== shoal: scripts/bench-tasks.sh $build (N=$N LAT_K=$LAT_K ROUNDS=$ROUNDS)"
RAW_OUT="$tmp/shoal.jsonl" "$root/scripts/bench-tasks.sh" "$build" & child=$!
set +e; wait "$child"; src=$?; set -e; child=""
[ "$src" -eq 0 ] || { echo "bench-peers: bench-tasks.sh exited $src" >&2; exit 1; }

echo; echo "== side by side (same run, same machine; medians over rounds; ratio = shoal / peer)"
python3 - "$tmp/shoal.jsonl" "$tmp"/peers/raw-*.jsonl <<'PY'
import json, statistics, sys
vals = {}
for path in sys.argv[1:]:
    for line in open(path):
        if line.startswith("{"):
            d = json.loads(line)
            m = d["metric"].replace("server_cpu_us_", "redis_cpu_us_")   # beanstalkd's own CPU
            vals.setdefault((d["peer"], m), []).append(float(d["value"]))
order = ["shoal", "bullmq", "bee-queue", "sidekiq", "rq", "celery", "beanstalkd"]
peers = [p for p in order if any(k[0] == p for k in vals)]
cols = [("enqueue_single", "enq single/s", "+"), ("enqueue_bulk", "enq bulk/s", "+"),
        ("drain_c10", "proc C=10/s", "+"), ("drain_c50", "proc C=50/s", "+"),
        ("bytes_per_job_single", "B/job single", "-"), ("bytes_per_job_bulk", "B/job bulk", "-"),
        ("lat_p50_ms", "lat p50 ms", "-"), ("lat_p99_ms", "lat p99 ms", "-"),
        ("redis_cpu_us_enqueue_bulk", "CPU us enq bulk", "-"), ("redis_cpu_us_drain_c50", "CPU us C=50", "-")]
def med(p, m):
    xs = vals.get((p, m))
    return statistics.median(xs) if xs else None
def fmt(x):
    if x is None: return "n/a"
    return "{:,.0f}".format(x) if x >= 100 else "{:.2f}".format(x)
w = 16
print("%-12s" % "" + "".join("%*s" % (w, c[1]) for c in cols))
for p in peers:
    print("%-12s" % p + "".join("%*s" % (w, fmt(med(p, c[0]))) for c in cols))
print("\nshoal / peer (higher is better for rates, lower for bytes, latency and CPU):")
for p in peers[1:]:
    cells = []
    for m, _, _ in cols:
        s, q = med("shoal", m), med(p, m)
        cells.append("%*s" % (w, "%.2f" % (s / q) if s is not None and q else "n/a"))
    print("%-12s" % p + "".join(cells))

# Issue 19's targets, against the best Redis-backed peer of this run (beanstalkd is not one, but
# the latency and the awaited enqueue are held against every peer).
redis_peers = [p for p in peers if p not in ("shoal", "beanstalkd")]
def best(m, peers_, high=True):
    xs = [(med(p, m), p) for p in peers_ if med(p, m) is not None]
    return (max if high else min)(xs) if xs else (None, "n/a")
def row(what, target, value, ok):
    print("  %-58s %-28s %s" % (what, target, "n/a" if value is None else value + ("  ok" if ok else "  MISS")))
print("\nissue 19's targets (this run):")
for m, what, k in (("drain_c10", "process C=10, shoal / best Redis peer", 2.0),
                   ("drain_c50", "process C=50, shoal / best Redis peer", 3.0)):
    q, who = best(m, redis_peers)
    s = med("shoal", m)
    r = s / q if s is not None and q else None
    row(what, ">= %.0f" % k, None if r is None else "%.2f (%s)" % (r, who), r is not None and r >= k)
for m, what, k in (("lat_p50_ms", "latency enqueue -> handler p50, ms", 0.3),
                   ("lat_p99_ms", "latency enqueue -> handler p99, ms", 0.8)):
    s = med("shoal", m)
    row(what, "< %.1f" % k, None if s is None else "%.3f" % s, s is not None and s < k)
q, who = best("enqueue_single", peers[1:])
s = med("shoal", "enqueue_single")
r = s / q if s is not None and q else None
row("enqueue single (awaited), shoal / best peer", ">= 1", None if r is None else "%.2f (%s)" % (r, who),
    r is not None and r >= 1)
f = med("shoal", "awaited_floor")
if q and f:
    print("  %-58s %-28s %s" % ("  (%s / Redis's floor for one awaited call)" % who, "", "%.2f" % (q / f)))
s = med("shoal", "redis_cpu_us_enqueue_single")
row("enqueue single, Redis CPU us per task", "<= 20", None if s is None else "%.1f" % s, s is not None and s <= 20)
s = med("shoal", "redis_cpu_us_awaited_floor")
if s is not None:
    print("  %-58s %-28s %.1f" % ("  (Redis CPU us of its floor: an awaited call of `return 1`)", "", s))
PY
exit "$prc"
