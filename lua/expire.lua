-- expire.lua: turns queued tasks past their queue-time expiry into TimedOut even when no node
-- claims from their queue (claim.lua already does it for the tasks it meets). Looks only at the
-- head of each ready list (lists are in queue-time order) and at scheduled tasks that came due,
-- and drops list entries of tasks canceled while queued. Run by live nodes with the sweep.
--
-- KEYS[1] queue names {NS}:queues   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] finished index {NS}:done   KEYS[4] scheduled set {NS}:scheduled
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 most tasks to finalise per call
-- Returns the number of tasks that became TimedOut.
-- Cost: O(queues * priority levels + finalised + max).
local prefix, now, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local expired = 0
local function human(ms)
  if ms % 86400000 == 0 then return (ms / 86400000) .. 'd' end
  if ms % 3600000 == 0 then return (ms / 3600000) .. 'h' end
  if ms % 60000 == 0 then return (ms / 60000) .. 'm' end
  if ms % 1000 == 0 then return (ms / 1000) .. 's' end
  return ms .. 'ms'
end
local function timeout(key, id, f)
  redis.call('HSET', key, 'state', 'TimedOut', 'completed', now, 'error',
    'not picked up within ' .. human(tonumber(f[2]) - tonumber(f[3])) ..
    ' of its queue time; no node took it before it expired')
  redis.call('ZADD', KEYS[3], now, id)
  expired = expired + 1
end
for _, queue in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, level in ipairs(redis.call('ZRANGE', prefix .. 'qp:' .. queue, 0, -1)) do
    local list = prefix .. 'q:' .. queue .. ':' .. level
    while expired < max do
      local id = redis.call('LINDEX', list, 0)
      if not id then break end
      local key = prefix .. 'task:' .. id
      local f = redis.call('HMGET', key, 'state', 'expiry', 'queued')
      if f[1] ~= 'Queued' then
        redis.call('LPOP', list)
      elseif now >= tonumber(f[2]) then
        redis.call('LPOP', list)
        redis.call('HINCRBY', KEYS[2], 'ready', -1)
        timeout(key, id, f)
      else
        break
      end
    end
    if redis.call('LLEN', list) == 0 then redis.call('ZREM', prefix .. 'qp:' .. queue, level) end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, max)) do
  local key = prefix .. 'task:' .. id
  local f = redis.call('HMGET', key, 'state', 'expiry', 'queued')
  if f[1] ~= 'Queued' then
    redis.call('ZREM', KEYS[4], id)
  elseif now >= tonumber(f[2]) and expired < max then
    redis.call('ZREM', KEYS[4], id)
    timeout(key, id, f)
  end
end
return expired
