#!/usr/bin/env bash
# bench-ab.sh: the same benchmarks on two builds, interleaved, in one run (docs/benchmarks.md,
# "Methodology"): round r runs every script on A then B (B then A on even rounds), so drift of
# the machine falls on both alike. Prints each run's output under a "== SCRIPT BUILD round r"
# heading; compare medians across rounds.
#   scripts/bench-ab.sh BUILD_A BUILD_B [ROUNDS] [SCRIPT...]
#   SCRIPT defaults to: bench.sh bench-busy.sh bench-tasks.sh bench-noop.sh bench-api.sh
#   Knobs pass through to the scripts (BENCH_SECONDS, N, BENCH_PKG_MIB, ...). Both builds run
#   with this checkout's scripts, so a build from an older commit must have the binaries they
#   call.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-2}
shift $(( $# >= 3 ? 3 : 2 ))
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=(bench.sh bench-busy.sh bench-tasks.sh bench-noop.sh bench-api.sh)
for dir in "$a" "$b"; do
  [ -x "$dir/shoal" ] || { echo "bench-ab: no $dir/shoal" >&2; exit 2; }
done
for ((r = 1; r <= rounds; r++)); do
  order=("$a" "$b")
  (( r % 2 == 0 )) && order=("$b" "$a")
  for s in "${scripts[@]}"; do
    for dir in "${order[@]}"; do
      echo "== $s $dir round $r ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
      "scripts/$s" "$dir" 2>&1 || echo "bench-ab: $s on $dir failed ($?)"
    done
  done
done
