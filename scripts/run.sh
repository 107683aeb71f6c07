#!/usr/bin/env bash
# make run: starts a loopback redis-server (data under build/redis) unless SHOAL_REDIS_URL is
# set, then a node in the foreground. Ctrl-C stops the node (it drains and deregisters), then
# the redis-server this script started. Extra worker flags: make run ARGS="--cap 8".
set -euo pipefail
bin=${1:-build/shoal}
shift || true
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    echo "run: redis-server (pid $redis_pid) stopped" >&2
  fi
}
trap cleanup EXIT
if [ -z "${SHOAL_REDIS_URL:-}" ]; then
  dir=$(dirname "$bin")/redis
  mkdir -p "$dir"
  port=${SHOAL_RUN_REDIS_PORT:-6379}
  if redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "run: a redis-server already answers on 127.0.0.1:$port; using it" >&2
  else
    redis-server --port "$port" --bind 127.0.0.1 --dir "$(cd "$dir" && pwd)" --appendonly yes \
      --save "" --daemonize no --logfile redis.log &
    redis_pid=$!
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    echo "run: redis-server on 127.0.0.1:$port (pid $redis_pid, data in $dir)" >&2
  fi
  export SHOAL_REDIS_URL="redis://127.0.0.1:$port/0"
fi
# A local development node: it may run programs from /usr/bin and /bin (production nodes allow
# nothing by default) and keeps uploaded packages under build/, unless told otherwise.
export SHOAL_ALLOW_EXEC=${SHOAL_ALLOW_EXEC:-/usr/bin/,/bin/}
export SHOAL_PACKAGE_DIR=${SHOAL_PACKAGE_DIR:-$(dirname "$bin")/packages}
echo "run: this node may run programs from $SHOAL_ALLOW_EXEC (SHOAL_ALLOW_EXEC)" >&2
# Foreground: Ctrl-C reaches the node, which drains and deregisters; then cleanup stops redis.
set +e
"$bin" worker ${ARGS:-} "$@"
code=$?
exit $code
