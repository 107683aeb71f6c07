#!/usr/bin/python3
"""bench-record.py: what a task record's format costs a script, per task (issue 19's question:
is a packed task record the route to 7 us of Redis CPU per task?).

The per-task core of claim.lua and complete.lua, without their fixed and batched parts, run
against three formats of the same record, and against no record at all:
  hash     the layout of today: claim = HMGET of 7 fields + HSET of 5, report = HMGET of 3 +
           HSET of 2 (what the two scripts do for each task)
  msgpack  one string, cmsgpack-packed: claim and report each GET, unpack, pack, SET
  text     one string, fields split by '|': GET, string.find/sub, SET of the joined text
  answer   no record: only the claim's 7-field answer built and returned (the floor of any
           format, with the script call itself)
Each call handles 64 tasks (a claim at cap 64); each variant makes 1,000 calls on 64,000
fresh records. Redis's own time per call (INFO commandstats, usec_per_call of EVALSHA) / 64
is the figure. Variants are interleaved within each round, ROUNDS (default 5) rounds on fresh
data, medians printed. Also the bytes a record takes (MEMORY USAGE) after its claim and report.
Starts its own redis-server on a free loopback port and stops exactly that process.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_port  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", 5))
TASKS, BATCH = 64_000, 64

SETUP = """
local n = tonumber(ARGV[1])
redis.call('FLUSHALL')
for i = 1, n do
  redis.call('HSET', 'h:' .. i, 'state', 'Queued', 'queue', 'default', 'type', 'noop',
    'queued', '1764880000000', 'args', 'i')
  redis.call('SET', 'm:' .. i, cmsgpack.pack({'Queued', 'default', 'noop', 'i',
    1764880000000, 0, 0}))
  redis.call('SET', 't:' .. i, 'Queued|default|noop|1764880000000|0|0|i')
end
return n
"""

VARIANTS = {
    "hash": ("""
local s, out = tonumber(ARGV[1]), {}
for i = s, s + 63 do
  local key = 'h:' .. i
  local f = redis.call('HMGET', key, 'state', 'type', 'args', 'timeout', 'attempt', 'expiry',
    'queued')
  redis.call('HSET', key, 'state', 'Executing', 'node', 'node-1', 'started', '1764880000100',
    'lease', '1764880000100123', 'attempt', '1')
  local n = #out
  out[n + 1] = i; out[n + 2] = 1764880000100123; out[n + 3] = f[2] or ''
  out[n + 4] = f[3] or ''; out[n + 5] = 0; out[n + 6] = 1; out[n + 7] = f[7]
end
return out
""", """
local s = tonumber(ARGV[1])
for i = s, s + 63 do
  local key = 'h:' .. i
  local f = redis.call('HMGET', key, 'lease', 'state', 'node')
  redis.call('HSET', key, 'state', 'Success', 'completed', '1764880000200')
end
return 1
""", "h:"),
    "msgpack": ("""
local s, out = tonumber(ARGV[1]), {}
local unpack_, pack_ = cmsgpack.unpack, cmsgpack.pack
for i = s, s + 63 do
  local key = 'm:' .. i
  local t = unpack_(redis.call('GET', key))
  t[1] = 'Executing'; t[8] = 'node-1'; t[9] = 1764880000100; t[10] = 1764880000100123
  t[7] = 1
  redis.call('SET', key, pack_(t))
  local n = #out
  out[n + 1] = i; out[n + 2] = 1764880000100123; out[n + 3] = t[3]; out[n + 4] = t[4]
  out[n + 5] = 0; out[n + 6] = 1; out[n + 7] = t[5]
end
return out
""", """
local s = tonumber(ARGV[1])
local unpack_, pack_ = cmsgpack.unpack, cmsgpack.pack
for i = s, s + 63 do
  local key = 'm:' .. i
  local t = unpack_(redis.call('GET', key))
  t[1] = 'Success'; t[11] = 1764880000200
  redis.call('SET', key, pack_(t))
end
return 1
""", "m:"),
    "text": ("""
local s, out = tonumber(ARGV[1]), {}
local find, sub = string.find, string.sub
for i = s, s + 63 do
  local key = 't:' .. i
  local v = redis.call('GET', key)
  local a = find(v, '|', 1, true)
  local b = find(v, '|', a + 1, true)
  local c = find(v, '|', b + 1, true)
  local d = find(v, '|', c + 1, true)
  local e = find(v, '|', d + 1, true)
  local g = find(v, '|', e + 1, true)
  redis.call('SET', key, 'Executing' .. sub(v, a, g) .. 'node-1|1764880000100|' ..
    '1764880000100123|1|' .. sub(v, g + 1))
  local n = #out
  out[n + 1] = i; out[n + 2] = 1764880000100123; out[n + 3] = sub(v, b + 1, c - 1)
  out[n + 4] = sub(v, g + 1); out[n + 5] = 0; out[n + 6] = 1; out[n + 7] = sub(v, c + 1, d - 1)
end
return out
""", """
local s = tonumber(ARGV[1])
local find, sub = string.find, string.sub
for i = s, s + 63 do
  local key = 't:' .. i
  local v = redis.call('GET', key)
  local a = find(v, '|', 1, true)
  redis.call('SET', key, 'Success' .. sub(v, a) .. '|1764880000200')
end
return 1
""", "t:"),
    "answer": ("""
local s, out = tonumber(ARGV[1]), {}
for i = s, s + 63 do
  local n = #out
  out[n + 1] = i; out[n + 2] = 1764880000100123; out[n + 3] = 'noop'; out[n + 4] = 'i'
  out[n + 5] = 0; out[n + 6] = 1; out[n + 7] = '1764880000000'
end
return out
""", """
local s = tonumber(ARGV[1])
for i = s, s + 63 do local key = 'x:' .. i end
return 1
""", None),
}


def per_task_us(r, sha):
    """1,000 calls of 64 tasks (pipelined: Redis's own time is the figure, not the round trip)."""
    r.config_resetstat()
    p = r.pipeline(transaction=False)
    for k in range(TASKS // BATCH):
        p.evalsha(sha, 0, k * BATCH + 1)
    p.execute()
    st = r.info("commandstats")["cmdstat_evalsha"]
    return st["usec_per_call"] / BATCH


def main():
    tmp = tempfile.mkdtemp(prefix="shoal-bench-record-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(200):
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        shas = {v: (r.script_load(c), r.script_load(d)) for v, (c, d, _) in VARIANTS.items()}
        figs = {v: ([], []) for v in VARIANTS}
        size = {}
        for _ in range(ROUNDS):
            r.eval(SETUP, 0, TASKS)
            for v, (claim, report) in shas.items():
                figs[v][0].append(per_task_us(r, claim))
                figs[v][1].append(per_task_us(r, report))
                prefix = VARIANTS[v][2]
                if prefix:
                    size[v] = r.memory_usage(prefix + "5")
        rv = r.info("server")["redis_version"]
        print(f"task record formats, per task, Redis {rv}, {ROUNDS} interleaved rounds "
              f"(medians), calls of {BATCH}, Redis time per call / {BATCH}:")
        print(f"  {'format':<9} {'claim us':>9} {'report us':>10} {'sum us':>8} {'bytes':>6}")
        for v, (c, d) in figs.items():
            mc, md = statistics.median(c), statistics.median(d)
            b = size.get(v)
            print(f"  {v:<9} {mc:9.2f} {md:10.2f} {mc + md:8.2f} {b if b else '-':>6}")
    finally:
        proc.terminate()
        proc.wait(10)
        subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    sys.exit(main())
