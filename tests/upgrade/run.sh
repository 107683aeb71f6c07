#!/usr/bin/env bash
# The rolling-upgrade check (ctest upgrade_mixed, part of `make test`).
# Usage: tests/upgrade/run.sh BUILD/shoal
#
# Fleets upgrade one node at a time, so every build must run beside the previous one on one
# namespace (docs/redis.md, "Layout version"). This builds the commit named in tests/upgrade/FROM
# (the last landed build; move it forward when a round lands) into build-upgrade/<commit>/ once,
# then tests/upgrade/mixed.py runs nodes and CLIs of both builds against one Redis.
# A clone without that commit (a shallow clone) fails here with the reason: the check is
# never skipped.
set -euo pipefail
new=${1:?usage: tests/upgrade/run.sh BUILD/shoal}
new=$(cd "$(dirname "$new")" && pwd)/$(basename "$new")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
from=$(tr -d '[:space:]' <"$here/FROM")
if ! git -C "$root" cat-file -e "$from^{commit}" 2>/dev/null; then
  echo "FAIL previous build: commit $from (tests/upgrade/FROM) is not in this clone;" \
    "fetch the history (git fetch --unshallow) to run the rolling-upgrade check"
  exit 1
fi
dir=$root/build-upgrade/$from
old=$dir/build/shoal
(
  flock 9
  if [ ! -x "$old" ]; then
    echo "building the previous build $from in $dir (once)"
    rm -rf "$dir" && mkdir -p "$dir/src"
    git -C "$root" archive "$from" | tar -x -C "$dir/src"
    cmake -S "$dir/src" -B "$dir/build" -DSHOAL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$dir/build" --target shoal -j "$(nproc)" >"$dir/build.log" 2>&1 ||
      { tail -30 "$dir/build.log"; echo "FAIL previous build: $from did not build"; exit 1; }
  fi
) 9>"$root/build-upgrade.lock"
echo "previous build: $("$old" version) ($from); new build: $("$new" version)"
exec timeout 240 /usr/bin/python3 -B "$here/mixed.py" "$old" "$new"
