-- expire.lua: turns queued tasks past their queue-time expiry into TimedOut even when no node
-- claims from their queue (claim.lua already does it for the tasks it meets), drops list
-- entries of tasks canceled while queued, and forgets queue names nobody uses. Looks only at
-- the head of each ready list (lists are in queue-time order) and at scheduled tasks that came
-- due. Run by live nodes with the sweep, a slice per call: the node calls again with the
-- cursor returned until it is '0' (one pass over the queue names).
--
-- KEYS[1] queue names {NS}:queues   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] finished index {NS}:done   KEYS[4] scheduled set {NS}:scheduled
-- KEYS[5] queue activity {NS}:qseen
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 budget (units of work per call, below),
--   4 SSCAN cursor over the queue names ('0' starts a pass), 5 idle (ms): a queue name with no
--   ready task and no enqueue for this long is removed from {NS}:queues
-- Returns {expired, next cursor ('0': the pass is over), more (1: the budget ran out first)}.
-- Bound: SSCAN COUNT 32 queue names per call and their priority levels, plus `budget` units:
--   1 per id popped without a change (canceled, not a task), 4 per task made TimedOut, 1 per
--   due scheduled entry looked at (promoted to its ready list when not expired). Queue names are re-added by whatever pushes to a queue
--   (enqueue, promotion, requeue), so removing an idle one loses nothing.
local prefix, now, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cursor, idle = ARGV[4] or '0', tonumber(ARGV[5] or '') or 3600000
if KEYS[1] ~= tostring(prefix) .. 'queues' or not now or not budget then
  return redis.error_reply('BADARGS the prefix must be the keys\' own; now and budget are numbers')
end
local expired, more = 0, 0
local function human(ms)
  if ms % 86400000 == 0 then return (ms / 86400000) .. 'd' end
  if ms % 3600000 == 0 then return (ms / 3600000) .. 'h' end
  if ms % 60000 == 0 then return (ms / 60000) .. 'm' end
  if ms % 1000 == 0 then return (ms / 1000) .. 's' end
  return ms .. 'ms'
end
-- A record that is not a hash is not a task (nil); numbers are read with defaults.
local function read(key)
  local f = redis.pcall('HMGET', key, 'state', 'expiry', 'queued')
  if f.err then return nil end
  return f
end
local function timeout(key, id, f)
  local queued = tonumber(f[3] or '') or now
  local expiry = tonumber(f[2] or '') or (queued + 86400000)
  redis.call('HSET', key, 'state', 'TimedOut', 'completed', now, 'error',
    'not picked up within ' .. human(expiry - queued) ..
    ' of its queue time; no node took it before it expired')
  redis.call('ZADD', KEYS[3], now, id)
  expired = expired + 1
  budget = budget - 4
end
local function is_due(f)
  local queued = tonumber(f[3] or '') or now
  return now >= (tonumber(f[2] or '') or (queued + 86400000))
end
redis.call('ZCARD', KEYS[3]) -- a sorted set (or absent): checked before any write
local ready = tonumber(redis.call('HGET', KEYS[2], 'ready') or '0') or 0
local ready_was = ready
local scan = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', 32)
for _, queue in ipairs(scan[2]) do
  local qp = prefix .. 'qp:' .. queue
  for _, level in ipairs(redis.call('ZRANGE', qp, 0, -1)) do
    local list = prefix .. 'q:' .. queue .. ':' .. level
    while budget > 0 do
      local id = redis.pcall('LINDEX', list, 0)
      if type(id) ~= 'string' then break end
      local key = prefix .. 'task:' .. id
      local f = read(key)
      if not f or f[1] ~= 'Queued' then
        redis.call('LPOP', list)
        budget = budget - 1
      elseif is_due(f) then
        redis.call('LPOP', list)
        ready = ready - 1
        timeout(key, id, f)
      else
        break
      end
    end
    if redis.pcall('LLEN', list) == 0 then redis.call('ZREM', qp, level) end
  end
  if budget <= 0 then more = 1 end
  -- Forget a queue name nobody uses: no ready task, no enqueue for `idle`. Names seen for the
  -- first time here (enqueued by an older build) start their idle clock now.
  if redis.call('ZCARD', qp) == 0 then
    local seen = tonumber(redis.call('ZSCORE', KEYS[5], queue) or '')
    if not seen then
      redis.call('ZADD', KEYS[5], now, queue)
    elseif now - seen >= idle then
      redis.call('SREM', KEYS[1], queue)
      redis.call('ZREM', KEYS[5], queue)
    end
  end
end
if budget > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, budget)) do
    local key = prefix .. 'task:' .. id
    local f = read(key)
    budget = budget - 1
    redis.call('ZREM', KEYS[4], id)
    if f and f[1] == 'Queued' then
      if is_due(f) then
        timeout(key, id, f)
      else -- its time came: to its ready list, as a claim would (so the set drains)
        local g = redis.call('HMGET', key, 'queue', 'prio')
        if not g[1] then -- nowhere to run it from: it ends, saying why
          redis.call('HSET', key, 'state', 'Failed', 'completed', now, 'error',
            'its record names no queue to run it from')
          redis.call('ZADD', KEYS[3], now, id)
        else
          local prio = string.format('%d', tonumber(g[2] or '0') or 0)
          if type(redis.pcall('RPUSH', prefix .. 'q:' .. g[1] .. ':' .. prio, id)) == 'number' then
            redis.call('ZADD', prefix .. 'qp:' .. g[1], prio, prio)
            redis.call('SADD', KEYS[1], g[1])
            ready = ready + 1
          end
        end
      end
    end
    if budget <= 0 then
      more = 1
      break
    end
  end
end
if ready ~= ready_was then redis.call('HSET', KEYS[2], 'ready', ready) end
return {expired, scan[1], more}
