#!/bin/sh
# fuzz.sh BUILD_DIR SECONDS: runs every libFuzzer target in BUILD_DIR/tests/fuzz for SECONDS
# each. The corpus grows in BUILD_DIR/fuzz-corpus/<target> (seeded from tests/fuzz/corpus/<target>);
# crashes land in BUILD_DIR/fuzz-artifacts/<target>/. Prints one summary line per target and
# exits non-zero if any target crashed (or found a leak, or broke an invariant).
set -u
build=${1:?usage: fuzz.sh BUILD_DIR SECONDS}
seconds=${2:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
dir="$build/tests/fuzz"
[ -d "$dir" ] || { echo "fuzz.sh: no $dir (configure with CC=clang -DSHOAL_FUZZ=ON)" >&2; exit 2; }

status=0
found=0
for bin in "$dir"/fuzz_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    found=1
    name=$(basename "$bin")
    corpus="$build/fuzz-corpus/$name"
    artifacts="$build/fuzz-artifacts/$name/"
    log="$build/fuzz-$name.log"
    mkdir -p "$corpus" "$artifacts"
    seeds="$src/tests/fuzz/corpus/$name"
    [ -d "$seeds" ] || seeds=
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$corpus" $seeds >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    units=$(ls "$corpus" | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "$name: ok, ${execs:-?} runs in ${seconds}s (${rate:-?}/s), ${cov:-cov: ?}, corpus $units"
    else
        status=1
        crash=$(ls -t "$artifacts" 2>/dev/null | head -n 1)
        echo "$name: FAILED (exit $rc) after ${execs:-?} runs; input: $artifacts$crash; log: $log"
    fi
done
[ "$found" -eq 1 ] || { echo "fuzz.sh: no fuzz_* targets in $dir" >&2; exit 2; }
exit $status
