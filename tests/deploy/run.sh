#!/usr/bin/env bash
# The deploy/ checks (ctest deploy_checks, part of `make test`). Usage: tests/deploy/run.sh BUILD/shoal
#   check_files.py  manifests, compose, haproxy.cfg, systemd unit, Dockerfile, settings names
#   maintenance.py  the maintenance procedure through a real HAProxy in front of three nodes
#   probes.py       kubelet-style readiness/liveness on SIGTERM and drain; HEALTHCHECK; memory;
#                   a node runs with each shipped set of settings
#   acl.py          the Redis ACL user of docs/operations.md, for real
#   privsep.py      the image's privilege separation (file capabilities, --exec-user), as root
#   package.py      cmake --install and the .deb
# Each prints PASS/FAIL/SKIP lines; this script counts them and ends with "N passed, M failed"
# (what CI reads), exiting non-zero on any failure. Everything runs on 127.0.0.1 and stops only
# the processes it started.
set -uo pipefail
bin=${1:?usage: tests/deploy/run.sh BUILD/shoal}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
passed=0 failed=0 skipped=0
missing=()
for tool in redis-server redis-cli haproxy; do command -v "$tool" >/dev/null || missing+=("$tool"); done
$py -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deploy checks need: ${missing[*]} (scripts/deps.sh installs them)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
for check in check_files maintenance access probes acl privsep package; do
  echo "=== $check"
  start=$EPOCHREALTIME
  out=$(timeout 120 $py -B "$here/$check.py" "$bin" 2>&1)
  code=$?
  printf '%s\n' "$out"
  p=$(grep -c '^PASS ' <<<"$out")
  f=$(grep -c '^FAIL ' <<<"$out")
  s=$(grep -c '^SKIP ' <<<"$out")
  if [ "$code" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $check exited $code without a FAIL line"
    f=1
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "=== $check: $p passed, $f failed, $s skipped in ${secs}s"
done
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
