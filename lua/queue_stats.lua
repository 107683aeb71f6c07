-- queue_stats.lua: what /metrics and `shoal stats` show of the fleet's queues, one slice of
-- the queue names per call: ready depth and oldest ready task per queue, and the fleet
-- counters. The caller calls again with the cursor returned until it is '0'.
--
-- KEYS[1] queue names {NS}:queues   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] scheduled set {NS}:scheduled
-- ARGV: 1 key prefix "{NS}:", 2 SSCAN cursor ('0' starts; absent = '0')
-- Returns {ready, running, avail_cap, scheduled, next cursor, queue, depth, oldest, ...}
-- (queues in no order): depth counts the queue's ready list entries (a task canceled while
-- queued stays there until a claim or the expiry pass drops it), oldest is the queue time
-- (ms) of the oldest still-queued task at the head of its lists, 0 when none.
-- Bound: SSCAN COUNT 64 queue names per call, times their priority levels, each list head read
-- at most 8 entries deep.
local prefix = ARGV[1]
local s = redis.call('HMGET', KEYS[2], 'ready', 'running', 'avail_cap')
local scan = redis.call('SSCAN', KEYS[1], ARGV[2] or '0', 'COUNT', 64)
local out = {tonumber(s[1] or '0') or 0, tonumber(s[2] or '0') or 0, tonumber(s[3] or '0') or 0,
  redis.call('ZCARD', KEYS[3]), scan[1]}
for _, q in ipairs(scan[2]) do
  local depth, oldest = 0, 0
  for _, p in ipairs(redis.call('ZRANGE', prefix .. 'qp:' .. q, 0, -1)) do
    local list = prefix .. 'q:' .. q .. ':' .. p
    local len = redis.pcall('LLEN', list)
    if type(len) == 'number' then
      depth = depth + len
      for _, id in ipairs(redis.call('LRANGE', list, 0, 7)) do
        local f = redis.pcall('HMGET', prefix .. 'task:' .. id, 'state', 'queued')
        if not f.err and f[1] == 'Queued' then
          local t = tonumber(f[2] or '')
          if t and (oldest == 0 or t < oldest) then oldest = t end
          break
        end
      end
    end
  end
  out[#out + 1] = q
  out[#out + 1] = depth
  out[#out + 1] = oldest
end
return out
