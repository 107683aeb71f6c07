# bench-lib.sh: what every benchmark script shares; source it, don't run it.
#   bench_init NAME   a temp dir in $tmp, the PIDs started (append to pids), and an EXIT trap
#                     that stops exactly those PIDs (TERM, then wait) and removes $tmp
#   free_port         a free TCP port on 127.0.0.1
#   bench_redis       its own redis-server (no persistence) on a free loopback port: sets
#                     $rport and $url (redis://127.0.0.1:$rport/0); fails if it does not answer
#   wait_http PORT PATH   until 127.0.0.1:PORT answers PATH (10 s at most)
#   bench_slowest     after a run on bench_redis: the slowest shoal script call (EVALSHA; the
#                     benchmarks' own EVAL helpers are not counted) Redis saw (SLOWLOG
#                     records every command of 1 ms or more) and how many took over 5 ms

bench_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}

bench_init() {
  tmp=$(mktemp -d "/tmp/shoal-bench-$1-XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

free_port() {   # below the ephemeral range: scripts/ports.py says why
  python3 "$(dirname "${BASH_SOURCE[0]}")/ports.py"
}

bench_redis() {
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --daemonize no --logfile "$tmp/redis.log" --slowlog-log-slower-than 1000 \
    --slowlog-max-len 100000 & pids+=($!)
  for _ in $(seq 1 200); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$rport" ping >/dev/null 2>&1 || { echo "bench: redis-server did not start" >&2; exit 1; }
  url="redis://127.0.0.1:$rport/0"
}

wait_http() {
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$1$2" && return 0; sleep 0.05; done
  return 1
}

bench_slowest() {
  /usr/bin/python3 - "$rport" <<'PY'
import sys
import redis
r = redis.Redis(port=int(sys.argv[1]))
durs = [e["duration"] for e in r.slowlog_get(100000)
        if e["command"].split()[:1] and e["command"].split()[0].upper() == b"EVALSHA"]
worst = max(durs) / 1000 if durs else 0.0
print("slowest script call over this benchmark: %.2f ms (calls of 1 ms or more: %d, over 5 ms: %d;"
      " target: none over 5 ms)" % (worst, len(durs), sum(1 for d in durs if d > 5000)))
PY
}
