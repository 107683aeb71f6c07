#!/usr/bin/env bash
# bench-tls.sh BUILD [ROUNDS]: the task figures over TLS beside plain, in one run, interleaved.
# One redis-server with a plain port and a TLS port (certificates made here with openssl); in
# each round, in turn (plain then TLS, TLS then plain on even rounds): N (20000) tasks enqueued
# in bulk, then worked off by one bench_node at cap 10 and at cap 64 (C handler), and the idle
# latency (LAT_K samples). Prints each figure's median over rounds for both, the ratio, and
# Redis CPU per task (the TLS work is Redis's too). Stops exactly what it started.
set -euo pipefail
build=${1:-build} rounds=${2:-3}
N=${N:-20000} LAT_K=${LAT_K:-100}
build=$(cd "$build" && pwd)
. "$(dirname "$0")/bench-lib.sh"
bench_init tls
cd "$tmp"
{
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
  printf 'subjectAltName=DNS:localhost\n' > san.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 2 -extfile san.cnf
} > openssl.log 2>&1
rport=$(free_port) tport=$(free_port)
redis-server --port "$rport" --tls-port "$tport" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --daemonize no --logfile "$tmp/redis.log" --tls-cert-file server.pem \
  --tls-key-file server.key --tls-ca-cert-file ca.pem --tls-auth-clients no & pids+=($!)
for _ in $(seq 1 200); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
ca=$tmp/ca.pem   # bench_tasks (the C client) and bench_node read SHOAL_REDIS_CA, for TLS only
plain="redis://127.0.0.1:$rport/0" tls="rediss://localhost:$tport/0"
cpu() { redis-cli -p "$rport" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {s+=$2} END {print s}'; }
raw=$tmp/raw
for ((r = 1; r <= rounds; r++)); do
  order=(plain tls); (( r % 2 == 0 )) && order=(tls plain)
  for kind in "${order[@]}"; do
    url=$plain env=(env -u SHOAL_REDIS_CA)
    [ "$kind" = tls ] && url=$tls env=(env SHOAL_REDIS_CA="$ca")
    for cap in 10 64; do
      env -u SHOAL_REDIS_CA timeout 120 "$build/bench_tasks" "$plain" shoal "$tmp" enqueue bulk "$N" i > /dev/null
      c0=$(cpu)
      v=$("${env[@]}" timeout 300 "$build/bench_tasks" "$url" shoal "$tmp" drain "d$cap" "$N" "$cap" "$build/bench_node" \
          | python3 -c 'import json,sys; print([json.loads(l)["value"] for l in sys.stdin if "\"d" in l][0])')
      c1=$(cpu)
      echo "$kind cap$cap $v $(awk -v a="$c0" -v b="$c1" -v n="$N" 'BEGIN {print (b - a) * 1e6 / n}')" >> "$raw"
    done
    l=$("${env[@]}" timeout 120 "$build/bench_tasks" "$url" shoal "$tmp" latency "$LAT_K" 64 "$build/bench_node" \
        | python3 -c 'import json,sys; d={json.loads(l)["metric"]: json.loads(l)["value"] for l in sys.stdin}; print(d["lat_p50_ms"], d["lat_p99_ms"])')
    echo "$kind lat $l" >> "$raw"
  done
done
python3 - "$raw" "$N" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(kind, what, i):
    return statistics.median(float(r[i]) for r in rows if r[0] == kind and r[1] == what)
print("TLS beside plain, N=%s, %s interleaved rounds (medians)" % (sys.argv[2], sys.argv[3]))
for what, label in (("cap10", "process, one node, cap 10"), ("cap64", "process, one node, cap 64")):
    p, t = med("plain", what, 2), med("tls", what, 2)
    print("%-28s plain %8.0f/s (Redis CPU %5.1f us/task)  TLS %8.0f/s (Redis CPU %5.1f us/task)  TLS/plain %.2f"
          % (label, p, med("plain", what, 3), t, med("tls", what, 3), t / p))
print("%-28s plain p50 %.3f ms p99 %.3f ms  TLS p50 %.3f ms p99 %.3f ms"
      % ("latency enqueue -> handler", med("plain", "lat", 2), med("plain", "lat", 3),
         med("tls", "lat", 2), med("tls", "lat", 3)))
PY
