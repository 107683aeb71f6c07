#!/usr/bin/env bash
# The suite under ASan+UBSan (make test SANITIZE=1). ctest runs verbose into BUILD/ctest.log;
# the terminal gets each test's Criterion summary. A sanitizer report anywhere in the log fails
# the run: Criterion does not fail a test whose process LeakSanitizer flags at exit. When a test
# fails, its name and the last lines of its own output are printed last, where a CI log that
# keeps only its tail still shows them.
set -uo pipefail
build=${1:?usage: ctest-sanitize.sh BUILD [JOBS]}
jobs=${2:-2}
log=$build/ctest.log
ctest --test-dir "$build" --output-on-failure -V -j "$jobs" 2>&1 | tee "$log" |
	grep --line-buffered -E '^[0-9]+: \[====\]|^[0-9]+: \[FAIL\]|tests passed|tests failed'
rc=${PIPESTATUS[0]}
if grep -qE 'ERROR: (Leak|Address)Sanitizer|runtime error:' "$log"; then
	grep -E -A20 'ERROR: (Leak|Address)Sanitizer|runtime error:' "$log" | head -80
	echo "sanitizer report found (see $log)"
	rc=1
fi
if [ "$rc" -ne 0 ]; then
	# "  13 - test_lua_tasks (Failed)" under "The following tests FAILED:"
	failed=$(sed -n '/The following tests FAILED:/,$p' "$log" | grep -E '^[[:space:]]+[0-9]+ - ' || true)
	while read -r num _ name rest; do
		[ -n "${num:-}" ] || continue
		echo "---- last 60 lines of test $num ($name $rest) ----"
		grep -E "^$num: " "$log" | tail -60
	done <<<"$failed"
	echo "failed:"
	echo "$failed"
fi
exit "$rc"
