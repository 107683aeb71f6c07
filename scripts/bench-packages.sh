#!/usr/bin/env bash
# bench-packages.sh BUILD_DIR: the package upload figures the README prints (make bench).
# Starts its own redis-server and shoal node on free loopback ports (package directory on the
# local disk, under /tmp), stops exactly those PIDs, and prints:
#   - a 2 GiB raw upload (Expect: 100-continue), generated on the fly by build/pkg_upload, which
#     checks the node's size and SHA-256 against its own: throughput (target >= 500 MB/s);
#   - ping latency at a fixed rate on the idle node, then while uploads run back to back
#     (target p99 < 1 ms): raw, then multipart, then raw with the probe at real-time priority
#     (root only);
#   - the control: ping of the idle node while build/tcp_blast moves the same MB/s over
#     loopback with no shoal in the path (a sender and a receiver that drops the bytes): what a
#     bulk transfer alone costs a probe sharing this machine's cores, with the ratio to it;
#   - the node's peak resident memory (VmHWM) over all of it (target < 32 MiB);
#   - a 2 GiB multipart upload downloaded back (hash checked), and, for context, what the disk
#     itself takes: dd of 2 GiB of non-zero bytes with fsync right after.
#   BENCH_PKG_MIB (default 2048): upload size; BENCH_PKG_RATE (default 1000): ping rate.
set -euo pipefail
build=${1:-build}
mib=${BENCH_PKG_MIB:-2048}
rate=${BENCH_PKG_RATE:-1000}
bin=$build/shoal
. "$(dirname "$0")/bench-lib.sh"
bench_init pkg

bench_redis

nport=$(free_port)
key=bench-key-0123456789abcdef
"$bin" worker --redis "redis://127.0.0.1:$rport/0" --name bench-pkg --listen "127.0.0.1:$nport" \
  --cap 0 --api-key "$key" --package-dir "$tmp/packages" --log-level warn 2>"$tmp/node.log" &
node=$!; pids+=($node)
for _ in $(seq 1 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/api/octopusservernodes/ping")" = 200 ] && break
  sleep 0.05
done
kib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$node/status)

# 1. A 2 GiB upload on its own: throughput. The client runs at nice 10: it is the load, not
#    what is measured, and on a small VM it competes with the node for the same cores.
up=(nice -n 10 "$build/pkg_upload" "$nport" "$key")
first=$("${up[@]}" "$mib" Bench.1.0.0.zip raw)
# 2. Ping at a fixed rate: on the idle node first (this machine's floor, in the same run), then
#    while uploads run back to back (the first of the same size), twice: with the probe at
#    normal priority, and (root only) with the probe at real-time priority. The probe and the
#    upload client share the node's 2 cores here; at real-time priority the probe's own wake-ups
#    stop counting, as for a load balancer on its own machine, and what is left is the node's.
secs=$(( mib / 256 + 4 ))
probe() { "$@" "$build/ping_latency" "$nport" /api/octopusservernodes/ping 10 "$rate" "$secs"; }
idle_ping=$(probe)
ping_during() {  # [MODE] PREFIX...: the upload line of the first upload, then the ping line
  local mode=raw
  if [ "${1:-}" = multipart ]; then mode=multipart; shift; fi
  probe "$@" > "$tmp/ping.out" &
  local lat=$!
  pids+=($lat)
  local out  # one client process uploads again and again for as long as the probe runs
  out=$("${up[@]}" "$mib" Bench.1.0.1.zip $mode "repeat=$secs")
  wait "$lat" || true
  echo "$out" | head -1
  echo "during $(echo "$out" | sed -n 's/^repeated \([0-9]*\) uploads.*/\1/p') back-to-back uploads: $(cat "$tmp/ping.out")"
}
during=$(ping_during)
mp_during=$(ping_during multipart)  # Octopus's own form (octo push, Octopus.Client)
rt_during=""
if [ "$(id -u)" = 0 ] && chrt -f 10 true 2>/dev/null; then rt_during=$(ping_during chrt -f 10); fi
# 3. The control, right after: the first upload's rate, no shoal in the path.
ctl_rate=$(echo "$during" | head -1 | sed -n 's/.* s: \([0-9]*\) MB\/s.*/\1/p')
nice -n 10 "$build/tcp_blast" $((secs + 1)) "${ctl_rate:-1000}" > "$tmp/blast.out" &
blast=$!; pids+=($blast)
ctl_ping=$(probe)
wait "$blast" || true
p99() { sed -n 's/.* p99 \([0-9.]*\) ms.*/\1/p'; }
multi=$("${up[@]}" "$mib" Bench.2.0.0.zip multipart download)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$node/status)
rm -rf "$tmp/packages"
chunk=$(( mib < 256 ? mib : 256 ))   # MiB of random bytes, repeated up to $mib
dd_line=$(head -c $((chunk << 20)) /dev/urandom > "$tmp/rnd" && for _ in $(seq 1 $((mib / chunk))); do cat "$tmp/rnd"; done \
  | dd of="$tmp/dd.bin" bs=1M iflag=fullblock conv=fsync 2>&1 | tail -1)
rm -f "$tmp/dd.bin" "$tmp/rnd"

echo "package uploads on $(nproc) cores, $(date -u +%Y-%m-%d), ${mib} MiB, loopback to local disk"
echo "raw, Expect: 100-continue: $first (target >= 500 MB/s)"
echo "multipart, then downloaded: $(echo "$multi" | tr '\n' ';' | sed 's/;$//; s/;/; /')"
echo "raw again, with ping at ${rate}/s: $(echo "$during" | head -1)"
echo "ping on the idle node (this machine's floor): $idle_ping"
echo "ping $(echo "$during" | tail -1) (target p99 < 1 ms)"
echo "ping, multipart uploads, $(echo "$mp_during" | tail -1) (target p99 < 1 ms)"
[ -z "$rt_during" ] || echo "ping, probe at real-time priority, $(echo "$rt_during" | tail -1) (target p99 < 1 ms)"
echo "control, ping of the idle node while tcp_blast moves ${ctl_rate:-1000} MB/s over loopback (no shoal in the path; $(cat "$tmp/blast.out")): $ctl_ping"
echo "ping p99 during uploads / during the plain transfer: $(echo "$during" | tail -1 | p99) / $(echo "$ctl_ping" | p99) ms = $(awk -v a="$(echo "$during" | tail -1 | p99)" -v b="$(echo "$ctl_ping" | p99)" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
echo "node resident memory: idle $(kib "$rss_idle"), peak over all uploads $(kib "$hwm") (target < 32 MiB)"
echo "the disk itself, dd of ${mib} MiB non-zero bytes with fsync: $dd_line"
