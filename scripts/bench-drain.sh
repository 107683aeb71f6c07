#!/usr/bin/env bash
# bench-drain.sh BUILD [BUILD...]: one node working off a queue, the builds interleaved round by
# round (docs/benchmarks.md, "Methodology"), medians: tasks/s, Redis CPU and the node's CPU per
# task, at each cap. Each run has a redis-server of its own (no persistence, a free loopback
# port): `bench_tasks enqueue bulk N i`, then `bench_tasks drain` with bench_node (C handler
# `count`) at that cap; the node's CPU is what bash's `times` reports for it.
# Knobs: ROUNDS (5), CAPS ("10 50 64"), N (20000) tasks a run, WORK_US (0) each task's own time
#   (bench_node's SHOAL_BENCH_WORK_US: a sleep in the handler). Stops exactly what it started.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
ROUNDS=${ROUNDS:-5} CAPS=${CAPS:-10 50 64} N=${N:-20000} WORK_US=${WORK_US:-0}
here=$(cd "$(dirname "$0")" && pwd)
builds=()
for b in "$@"; do
  for bin in bench_tasks bench_node; do
    [ -x "$b/$bin" ] || { echo "bench-drain: no $b/$bin" >&2; exit 2; }
  done
  builds+=("$(cd "$b" && pwd)")
done
. "$here/bench-lib.sh"
bench_init drain
trap 'exit 130' INT TERM
# The node runs under this wrapper, which reports the node's CPU (bash's `times`) when it ends.
cat > "$tmp/node.sh" <<'EOF'
#!/usr/bin/env bash
"$NODE_BIN" "$@" & p=$!
trap 'kill -TERM $p; wait $p; times > "$NODE_TIMES"; exit 0' TERM
wait $p
times > "$NODE_TIMES"
EOF
chmod +x "$tmp/node.sh"

# run BUILD CAP: one run; appends "BUILD CAP rate redis_us node_us" to $tmp/results.
run() {
  local b=$1 cap=$2 dir=$tmp/run out
  rm -rf "$dir" && mkdir -p "$dir"
  bench_redis   # sets $url; its PID is the last of $pids
  timeout 120 "$b/bench_tasks" "$url" shoal "$dir" enqueue bulk "$N" i > /dev/null
  out=$(NODE_BIN=$b/bench_node NODE_TIMES=$dir/times SHOAL_BENCH_WORK_US=$WORK_US \
    timeout $((120 + N / 500)) "$b/bench_tasks" "$url" shoal "$dir" drain d "$N" "$cap" "$tmp/node.sh")
  kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  for _ in $(seq 1 100); do [ -s "$dir/times" ] && break; sleep 0.05; done
  python3 - "$b" "$cap" "$N" "$dir/times" "$out" >> "$tmp/results" <<'PY'
import json, re, sys
b, cap, n, times, out = sys.argv[1:]
v = {json.loads(l)["metric"]: json.loads(l)["value"] for l in out.splitlines() if l.startswith("{")}
# bash's `times`: the shell's user and sys, then its children's (the node): "0m0.210s 0m0.030s"
secs = [int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", open(times).read())]
node = sum(secs[2:4]) if len(secs) >= 4 else float("nan")
print(b, cap, v["d"], v["redis_cpu_us_d"], node * 1e6 / int(n))
PY
}

for ((r = 1; r <= ROUNDS; r++)); do
  order=("${builds[@]}")
  if (( r % 2 == 0 )); then   # the other way round on even rounds
    order=(); for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("${builds[$i]}"); done
  fi
  for cap in $CAPS; do
    for b in "${order[@]}"; do run "$b" "$cap"; done
  done
  echo "bench-drain: round $r/$ROUNDS done" >&2
done
python3 - "$tmp/results" "$ROUNDS" "$N" "$WORK_US" "${builds[@]}" <<'PY'
import collections, statistics, sys
path, rounds, n, work, *builds = sys.argv[1:]
d = collections.defaultdict(list)
for line in open(path):
    b, cap, rate, rcpu, ncpu = line.split()
    d[(int(cap), b)].append((float(rate), float(rcpu), float(ncpu)))
print("bench-drain: %s rounds, %s tasks a run, each task %s us (medians; the runs' rates in brackets)"
      % (rounds, n, work))
for cap in sorted({k[0] for k in d}):
    for b in builds:
        v = d[(cap, b)]
        print("cap %-4d %-40s %8.0f tasks/s  Redis %5.1f us  node %5.1f us a task  [%s]"
              % (cap, b[-40:], statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                 statistics.median(x[2] for x in v), " ".join("%.0f" % x[0] for x in v)))
PY
