-- claim.lua: the heart of shoal. Hands a node work, atomically, only while every rule holds:
--   * the node is alive and this is its current instance (liveness key = instance id);
--   * it is not draining;
--   * its running count (ZCARD of its running set) is below its cap;
--   * with balancing on (Octopus's rule), its workload ratio running/cap does not exceed the
--     fleet's prospective ratio (running + ready) / available capacity, re-checked per task.
-- Within that it takes, from the node's queues in order, the highest priority then oldest task
-- whose queue time has come, up to `max` tasks. Scheduled tasks that came due are moved to
-- their ready lists first (at most 1,000 per call). Tasks past their queue-time expiry become
-- TimedOut on the way; tasks canceled while queued are skipped (they were finalised already).
--
-- KEYS[1] node hash   KEYS[2] liveness key   KEYS[3] node running set {NS}:running:<name>
-- KEYS[4] fleet counters {NS}:stats   KEYS[5] scheduled set {NS}:scheduled
-- KEYS[6] finished index {NS}:done
-- ARGV: 1 key prefix "{NS}:", 2 node name, 3 instance id, 4 now (ms), 5 max tasks,
--   6 balance (1|0), 7 lease margin (ms, added to the timeout for the lease deadline),
--   8.. queue names in order
-- Returns {verdict, next_due, expired} where verdict is 'dead', 'drained' or 'full' (nothing
-- claimed), or {'ok', next_due, expired, id, lease, type, args, timeout, attempt, queued, ...}
-- with seven fields per claimed task (queued: its queue time, for enqueue-to-start latency). next_due: ms of the earliest scheduled task, or -1.
-- Cost: O(claimed + expired + promoted + queues * priority levels), independent of how many
-- tasks wait and of how many nodes there are.
local prefix, name, now = ARGV[1], ARGV[2], tonumber(ARGV[4])

local function next_due()
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return -1
end

local function human(ms)
  if ms % 86400000 == 0 then return (ms / 86400000) .. 'd' end
  if ms % 3600000 == 0 then return (ms / 3600000) .. 'h' end
  if ms % 60000 == 0 then return (ms / 60000) .. 'm' end
  if ms % 1000 == 0 then return (ms / 1000) .. 's' end
  return ms .. 'ms'
end

if redis.call('GET', KEYS[2]) ~= ARGV[3] then return {'dead', next_due(), 0} end
if redis.call('HGET', KEYS[1], 'drain') == '1' then return {'drained', next_due(), 0} end
local cap = tonumber(redis.call('HGET', KEYS[1], 'cap') or '0')
local running = redis.call('ZCARD', KEYS[3])
local want = math.min(cap - running, tonumber(ARGV[5]))
if want <= 0 then return {'full', next_due(), 0} end

-- Promote scheduled tasks that came due (queue time reached, or a retry's backoff over).
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1000)
local promoted = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[5], id)
  local f = redis.call('HMGET', prefix .. 'task:' .. id, 'state', 'queue', 'prio')
  if f[1] == 'Queued' then
    local prio = f[3] or '0'
    redis.call('RPUSH', prefix .. 'q:' .. f[2] .. ':' .. prio, id)
    redis.call('ZADD', prefix .. 'qp:' .. f[2], prio, prio)
    promoted = promoted + 1
  end
end
if promoted > 0 then redis.call('HINCRBY', KEYS[4], 'ready', promoted) end

local stats = redis.call('HMGET', KEYS[4], 'ready', 'running', 'avail_cap', 'lease')
local ready = tonumber(stats[1] or '0')
local fleet_running = tonumber(stats[2] or '0')
local avail = tonumber(stats[3] or '0')
local lease = tonumber(stats[4] or '0')
local balance = ARGV[6] == '1' and avail > 0

local out = {'ok', 0, 0}
local claimed, expired, taken = 0, 0, 0
local leases = {}   -- ZADD arguments for the running set: deadline, id, ...
local done = {}     -- ZADD arguments for the finished index (expired tasks)
for qi = 8, #ARGV do
  if claimed >= want then break end
  local queue = ARGV[qi]
  local levels = redis.call('ZREVRANGE', prefix .. 'qp:' .. queue, 0, -1)
  for _, level in ipairs(levels) do
    local list = prefix .. 'q:' .. queue .. ':' .. level
    local empty = false
    while claimed < want and not empty do
      -- Pop what is still wanted in one call; give back what balancing then refuses.
      local ids = redis.call('LPOP', list, want - claimed)
      if not ids then
        empty = true
        break
      end
      for k, id in ipairs(ids) do
        -- Octopus: pick while running/cap <= (fleet running + ready) / available capacity;
        -- (running + ready) of the fleet does not change as tasks move from ready to running.
        if balance and (running + claimed) * avail > (fleet_running + claimed + ready) * cap then
          for j = #ids, k, -1 do redis.call('LPUSH', list, ids[j]) end
          empty = true -- stop this queue: the ratio is reached
          want = claimed
          break
        end
        local key = prefix .. 'task:' .. id
        local f = redis.call('HMGET', key, 'state', 'type', 'args', 'timeout', 'attempt', 'expiry',
          'queued')
        if f[1] == 'Queued' then
          taken = taken + 1
          ready = ready - 1
          if now >= tonumber(f[6]) then
            redis.call('HSET', key, 'state', 'TimedOut', 'completed', now, 'error',
              'not picked up within ' .. human(tonumber(f[6]) - tonumber(f[7])) ..
              ' of its queue time; no node took it before it expired')
            done[#done + 1] = now
            done[#done + 1] = id
            expired = expired + 1
          else
            lease = lease + 1
            local attempt = tonumber(f[5] or '0') + 1
            local timeout = tonumber(f[4] or '0')
            redis.call('HSET', key, 'state', 'Executing', 'node', name, 'started', now,
              'lease', lease, 'attempt', attempt)
            local deadline = 9007199254740991
            if timeout > 0 then deadline = now + timeout + tonumber(ARGV[7]) end
            leases[#leases + 1] = deadline
            leases[#leases + 1] = id
            local n = #out
            out[n + 1] = id
            out[n + 2] = lease
            out[n + 3] = f[2]
            out[n + 4] = f[3] or ''
            out[n + 5] = timeout
            out[n + 6] = attempt
            out[n + 7] = tonumber(f[7])
            claimed = claimed + 1
          end
        end
      end
    end
    if redis.call('LLEN', list) == 0 then redis.call('ZREM', prefix .. 'qp:' .. queue, level) end
    if claimed >= want then break end
  end
end
-- Batched writes: unpack() has a stack limit, so in chunks.
local function zadd(key, args)
  for j = 1, #args, 1000 do
    redis.call('ZADD', key, unpack(args, j, math.min(j + 999, #args)))
  end
end
zadd(KEYS[3], leases)
zadd(KEYS[6], done)
if taken > 0 then redis.call('HINCRBY', KEYS[4], 'ready', -taken) end
if claimed > 0 then
  redis.call('HINCRBY', KEYS[4], 'running', claimed)
  redis.call('HSET', KEYS[4], 'lease', lease)
end
out[2] = next_due()
out[3] = expired
return out
