-- queue_stats.lua: what /metrics shows of the fleet's queues, in one call per refresh whatever
-- the number of queues: ready depth and oldest ready task per queue, and the fleet counters.
--
-- KEYS[1] queue names {NS}:queues   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] scheduled set {NS}:scheduled
-- ARGV: 1 key prefix "{NS}:"
-- Returns {ready, running, avail_cap, scheduled, queue, depth, oldest, queue, depth, oldest, ...}
-- sorted by queue name: depth counts the queue's ready list entries (a task canceled while
-- queued stays there until a claim drops it), oldest is the queue time (ms) of the oldest
-- still-queued task at the head of its lists, 0 when none.
-- Cost: O(queues x priority levels), each head read at most 8 entries deep.
local prefix = ARGV[1]
local s = redis.call('HMGET', KEYS[2], 'ready', 'running', 'avail_cap')
local out = {tonumber(s[1] or '0') or 0, tonumber(s[2] or '0') or 0, tonumber(s[3] or '0') or 0,
  redis.call('ZCARD', KEYS[3])}
local queues = redis.call('SMEMBERS', KEYS[1])
table.sort(queues)
for _, q in ipairs(queues) do
  local depth, oldest = 0, 0
  for _, p in ipairs(redis.call('ZRANGE', prefix .. 'qp:' .. q, 0, -1)) do
    local list = prefix .. 'q:' .. q .. ':' .. p
    depth = depth + redis.call('LLEN', list)
    for _, id in ipairs(redis.call('LRANGE', list, 0, 7)) do
      local f = redis.call('HMGET', prefix .. 'task:' .. id, 'state', 'queued')
      if f[1] == 'Queued' then
        local t = tonumber(f[2])
        if t and (oldest == 0 or t < oldest) then oldest = t end
        break
      end
    end
  end
  out[#out + 1] = q
  out[#out + 1] = depth
  out[#out + 1] = oldest
end
return out
