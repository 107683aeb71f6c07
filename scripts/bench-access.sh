#!/usr/bin/env bash
# scripts/bench-access.sh [BUILD]: how fast access changes reach the fleet, and what the check
# costs. Starts its own redis-server and three shoal nodes (A, B, C) on free loopback ports,
# stops exactly the PIDs it started.
#   The nodes run with --auth-fail-limit 0: polling with a revoked key is what a brute force looks
#   like, and would lock the benchmark out.
#   1. Revocation: BENCH_ACCESS_CHANGES (default 400) times: a new key (POST on A) that B and C
#      accept, then DELETE on A; from just before that DELETE is sent (so the Redis write is
#      inside the figure) to the first 403 on B and on C, each polled back to back over a
#      keep-alive connection. Prints p50/p99/max over both nodes: target p99 < 50 ms.
#   2. The check's cost: GET /api/octopusservernodes/summary p99 at a fixed rate
#      (bench/ping_latency.c) with a Redis-held key and with the --api-key key (the check as it
#      was before Redis-held keys: one digest compare), interleaved over BENCH_ROUNDS (default
#      3) rounds; prints each and the medians: target: Redis-held adds at most 5 %. Then ping
#      p99 while that keyed load runs (target < 1 ms).
#   BENCH_SECONDS (default 5) per latency run; BENCH_API_RATE (default 500/s).
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-5}
rate=${BENCH_API_RATE:-500}
rounds=${BENCH_ROUNDS:-3}
changes=${BENCH_ACCESS_CHANGES:-400}
boot=bench-boot-key-$RANDOM$RANDOM$RANDOM
. "$(dirname "$0")/bench-lib.sh"
bench_init access

bench_redis

ports=()
for n in a b c; do
  p=$(free_port)
  SHOAL_API_KEY=$boot "$build/shoal" worker --redis "$url" --name "access-$n" --auth-fail-limit 0 \
    --listen "127.0.0.1:$p" --log-level warn 2>"$tmp/node-$n.log" & pids+=($!)
  ports+=("$p")
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/api/octopusservernodes/ping")" = 200 ] && break
    sleep 0.05
  done
done

/usr/bin/python3 - "$boot" "$changes" "$tmp/loadkey" "${ports[@]}" <<'PY'
import http.client, json, sys, time
boot, changes, keyfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ports = [int(p) for p in sys.argv[4:]]
conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=5) for p in ports]
def req(i, method, path, key, body=None):
    c = conns[i]
    h = {"X-Octopus-ApiKey": key}
    if body is not None:
        h["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, data
st, _ = req(0, "POST", "/api/users", boot, json.dumps({"Username": "bench", "Role": "viewer"}))
assert st in (201, 409), st
lat = []
for n in range(changes):
    st, data = req(0, "POST", "/api/users/Users-bench/apikeys", boot, json.dumps({"Purpose": "b%d" % n}))
    assert st == 201, (st, data)
    k = json.loads(data)
    key, kid = k["ApiKey"], k["Id"]
    for i in (1, 2):                      # B and C take it (bounded: 2 s)
        end = time.monotonic() + 2
        while req(i, "GET", "/api", key)[0] != 200:
            assert time.monotonic() < end, "node did not take a new key"
    t0 = time.monotonic()
    st, _ = req(0, "DELETE", "/api/users/Users-bench/apikeys/" + kid, boot)
    assert st == 200, st
    pending = {1, 2}
    end = t0 + 5
    while pending:                        # B and C, back to back, until each refuses
        for i in list(pending):
            if req(i, "GET", "/api", key)[0] == 403:
                lat.append((time.monotonic() - t0) * 1000)
                pending.discard(i)
        assert time.monotonic() < end, "a revoked key was still accepted after 5 s"
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print("revocation on A -> refused on B and C: %d changes, %d refusals: p50 %.2f ms, p99 %.2f ms,"
      " max %.2f ms (target p99 < 50 ms)" % (changes, len(lat), q(0.5), q(0.99), lat[-1]))
st, data = req(0, "POST", "/api/users/Users-bench/apikeys", boot, json.dumps({"Purpose": "load"}))
with open(keyfile, "w") as f:            # the load key, for the runs below (never printed)
    f.write(json.loads(data)["ApiKey"])
PY

key=$(cat "$tmp/loadkey")
a=${ports[0]}
redis_runs=() file_runs=()
p99() { sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p'; }
for ((r = 1; r <= rounds; r++)); do
  order=(redis file)
  (( r % 2 == 0 )) && order=(file redis)
  for which in "${order[@]}"; do
    k=$key; [ "$which" = file ] && k=$boot
    out=$("$build/ping_latency" "$a" /api/octopusservernodes/summary 10 "$rate" "$secs" "X-Octopus-ApiKey: $k")
    echo "summary, $which-held key, round $r: $out"
    v=$(echo "$out" | p99)
    if [ "$which" = redis ]; then redis_runs+=("$v"); else file_runs+=("$v"); fi
  done
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mr=$(med "${redis_runs[@]}") mf=$(med "${file_runs[@]}")
echo "summary p99 medians: Redis-held key $mr ms, --api-key key $mf ms: $(awk -v r="$mr" -v f="$mf" \
  'BEGIN {printf "%+.1f %%", (r - f) / f * 100}') (target: at most +5 %)"
"$build/ping_latency" "$a" /api/octopusservernodes/summary 10 "$rate" "$((secs + 1))" \
  "X-Octopus-ApiKey: $key" >/dev/null & bg=$!
echo "ping + keyed load (Redis-held key): $("$build/ping_latency" "$a" /api/octopusservernodes/ping 100 5000 "$secs") (target p99 < 1 ms)"
wait "$bg"
