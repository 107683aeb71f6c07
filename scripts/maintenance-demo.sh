#!/usr/bin/env bash
# The maintenance procedure of README "Run it in production", end to end on loopback: its own
# redis-server, three `shoal worker` nodes and a real HAProxy built from deploy/haproxy.cfg
# (check timings x0.1), with tasks running and a client sending requests through HAProxy. Drains
# one node, waits for it to be idle, restarts it ("patch"), undrains it, and prints each step
# with its timing. Stops only what it started. Needs redis-server, haproxy, python3-yaml
# (scripts/deps.sh). The same script runs in `make test` (tests/deploy/run.sh).
# Usage: scripts/maintenance-demo.sh [build/shoal]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/shoal}
[ -x "$bin" ] || { echo "maintenance-demo: $bin not found; run make build first" >&2; exit 2; }
exec /usr/bin/python3 -B "$here/../tests/deploy/maintenance.py" "$bin"
