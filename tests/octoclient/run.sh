#!/usr/bin/env bash
# Octopus's own API client against shoal (ctest octoclient).
# Usage: tests/octoclient/run.sh BUILD/shoal [PACKAGE_MIB]
# Installs @octopusdeploy/api-client from package-lock.json when missing (npm ci; node_modules
# is not committed), then runs client.test.js, which prints "N passed, M failed" last.
# PACKAGE_MIB: the size of the package pushed through the client (64 in make test).
set -uo pipefail
bin=${1:?usage: tests/octoclient/run.sh BUILD/shoal [PACKAGE_MIB]}
here=$(cd "$(dirname "$0")" && pwd)
for tool in node npm redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "octoclient test needs $tool" >&2; echo "0 passed, 1 failed"; exit 1; }
done
if [ ! -f "$here/node_modules/@octopusdeploy/api-client/package.json" ] || [ ! -f "$here/node_modules/@octopusdeploy/octopackjs/package.json" ]; then
  (cd "$here" && timeout 120 npm ci --no-audit --no-fund) >&2 || {
    echo "npm ci failed in $here" >&2
    echo "0 passed, 1 failed"
    exit 1
  }
fi
exec timeout 300 node "$here/client.test.js" "$bin" "${2:-64}"
