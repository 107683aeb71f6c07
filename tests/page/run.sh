#!/usr/bin/env bash
# The Nodes page test (ctest nodes_page): headless Chromium against real nodes.
# Usage: tests/page/run.sh BUILD/shoal BUILD_DIR
# Installs playwright-core from package-lock.json when missing (npm ci; node_modules is not
# committed), then runs nodes.test.js, which prints "N passed, M failed" last and saves
# BUILD_DIR/nodes-page.png. Needs node, npm, Debian's chromium, redis-server, redis-cli.
set -uo pipefail
bin=${1:?usage: tests/page/run.sh BUILD/shoal BUILD_DIR}
build=${2:?usage: tests/page/run.sh BUILD/shoal BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
missing=()
for tool in node npm redis-server redis-cli; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "nodes page test needs: ${missing[*]} (scripts/deps.sh installs them)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
  (cd "$here" && timeout 120 npm ci --no-audit --no-fund) >&2 || {
    echo "npm ci failed in $here" >&2
    echo "0 passed, 1 failed"
    exit 1
  }
fi
exec timeout 170 node "$here/nodes.test.js" "$bin" "$build"
