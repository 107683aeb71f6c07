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
--   8 push (1|0): when this call leaves the node room and nothing to take, register it idle,
--   9.. queue names in order
-- Returns {verdict, next_due, expired} where verdict is 'dead', 'drained' or 'full' (nothing
-- claimed), or {'ok', next_due, expired, id, lease, type, args, timeout, attempt, queued, ...}
-- with seven fields per claimed task (queued: its queue time in ms, as a number or as the text
-- the task holds, for enqueue-to-start latency),
-- or the same with verdict 'more' when this call stopped at its bound with work possibly left
-- (the caller claims again, after this answer). next_due: ms of the earliest scheduled task,
-- or -1.
-- Idle registration (push=1): a node whose claim leaves it room with nothing left to take is
-- added to {NS}:idle:<queue> of every queue it named (member its name, score since when), and
-- its node hash's `push` field says how to claim for it: "instance balance margin queue...".
-- enqueue.lua then claims for it, in the enqueue's own call, and publishes the answer on the
-- node's push channel {NS}:push:<name>:<instance> (docs/design.md, "Push to an idle node").
-- Bound: at most `max` tasks claimed (the node sends at most 256, its CLAIM_MAX), PROMOTE_MAX
-- (256) scheduled tasks promoted, and SKIP_MAX (256) units of ids popped without being
-- claimed: 1 per id canceled while queued or not a task, 4 per task expired on the way (64
-- expired tasks), plus one ZREVRANGE per queue named (and, registering idle, one ZADD per queue
-- named and one HGET). So a backlog of expired or canceled tasks costs a bounded slice per
-- call, never one long call.
-- Validate, then write: a task's record is read (and a malformed one set aside) before it is
-- written, numbers are read with defaults, and each claimed task's state and its running-set
-- entry are written together, so an error can never leave a task in no structure.
local prefix, name, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
if KEYS[1] ~= prefix .. 'node:' .. tostring(name) or KEYS[3] ~= prefix .. 'running:' .. name or
    not now or not tonumber(ARGV[5]) or not tonumber(ARGV[7]) or
    (ARGV[8] ~= '1' and ARGV[8] ~= '0') then
  return redis.error_reply('BADARGS node keys and name must agree; now, max and margin are ' ..
    'numbers; push is 1 or 0')
end
local PROMOTE_MAX, SKIP_MAX = 256, 256 -- an expired task counts 4 against SKIP_MAX
-- Numbers go to redis.call as integer strings made here: a Lua number passed as it is would be
-- formatted by Redis with "%.17g", several times the cost of "%d" (measured: docs/benchmarks.md).
local fmt = string.format
local now_s = fmt('%d', now)
local margin = tonumber(ARGV[7])

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
local node = redis.call('HMGET', KEYS[1], 'drain', 'cap')
if node[1] == '1' then return {'drained', next_due(), 0} end
local cap = tonumber(node[2] or '0')
local running = redis.call('ZCARD', KEYS[3])
local want = math.min(cap - running, tonumber(ARGV[5]))
if want <= 0 then return {'full', next_due(), 0} end

-- Promote scheduled tasks that came due (queue time reached, or a retry's backoff over).
-- A task record that is not a hash, or lacks its queue, is set aside: never written to.
local function read(key, ...)
  local f = redis.pcall('HMGET', key, ...)
  if f.err then return nil end
  return f
end
local more, promoted = false, 0
-- The earliest scheduled task first (one cheap read, and the answer's next_due when nothing
-- moves): the promotion range is read only when something has come due.
local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
local first_due = first[2] and tonumber(first[2]) or -1
local due = {}
if first_due >= 0 and first_due <= now then
  due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, PROMOTE_MAX)
  if #due == PROMOTE_MAX then more = true end
end
for _, id in ipairs(due) do
  local key = prefix .. 'task:' .. id
  local f = read(key, 'state', 'queue', 'prio')
  redis.call('ZREM', KEYS[5], id)
  if f and f[1] == 'Queued' and not f[2] then -- nowhere to run it from: it ends, saying why
    redis.call('HSET', key, 'state', 'Failed', 'completed', now, 'error',
      'its record names no queue to run it from')
    redis.call('ZADD', KEYS[6], now, id)
  elseif f and f[1] == 'Queued' then
    local prio = string.format('%d', tonumber(f[3] or '0') or 0)
    local ok = redis.pcall('RPUSH', prefix .. 'q:' .. f[2] .. ':' .. prio, id)
    if type(ok) == 'number' then
      redis.call('ZADD', prefix .. 'qp:' .. f[2], prio, prio)
      redis.call('SADD', prefix .. 'queues', f[2]) -- it may have been forgotten while idle
      promoted = promoted + 1
    end
  end
end

-- The counters are read here and written once at the end, as plain values (HSET, not
-- HINCRBY: a damaged field is overwritten, never an error half-way). KEYS[6] is checked to be
-- a sorted set before anything below writes to it; KEYS[3] was (ZCARD, above), so the claimed
-- tasks' running-set entries can go in one ZADD at the end.
local done_checked = false -- KEYS[6] is checked to be a sorted set before the first write to it
local stats = redis.call('HMGET', KEYS[4], 'ready', 'running', 'avail_cap', 'lease')
local ready = (tonumber(stats[1] or '0') or 0) + promoted
local fleet_running = tonumber(stats[2] or '0') or 0
local avail = tonumber(stats[3] or '0') or 0
local lease = tonumber(stats[4] or '0') or 0
-- Lease numbers only grow, also across a failover that loses writes: a lease is at least the
-- Redis server's clock in microseconds, so a primary that lost the last claims (and the
-- counter with them) still hands out numbers above every lease given before the failover
-- (the failover itself takes longer than any clock difference between the two servers). A
-- report fenced by a lease given before the loss is then refused. (The previous build's
-- counter + 1 carries on from these numbers.)
-- (TIME is asked at the first task claimed, not on every call.)
local lease_floor = nil
local balance = ARGV[6] == '1' and avail > 0

local out = {'ok', 0, 0}
local entries = {} -- running-set entries: deadline, id, ...
local claimed, expired, skipped = 0, 0, 0
for qi = 9, #ARGV do
  if claimed >= want or skipped >= SKIP_MAX then break end
  local queue = ARGV[qi]
  local levels = redis.call('ZREVRANGE', prefix .. 'qp:' .. queue, 0, -1)
  for _, level in ipairs(levels) do
    local list = prefix .. 'q:' .. queue .. ':' .. level
    local empty = false
    while claimed < want and not empty do
      -- Pop what is still wanted in one call; give back what balancing or the bound refuses.
      local asked = want - claimed
      local ids = redis.pcall('LPOP', list, asked)
      if type(ids) ~= 'table' or ids.err then
        empty = true
        break
      end
      if #ids < asked then empty = true end -- the list gave all it had
      for k, id in ipairs(ids) do
        -- Octopus: pick while running/cap <= (fleet running + ready) / available capacity;
        -- (running + ready) of the fleet does not change as tasks move from ready to running.
        local stop = skipped >= SKIP_MAX
        if stop then more = true end
        if not stop and balance and
            (running + claimed) * avail > (fleet_running + claimed + ready) * cap then
          stop = true
          want = claimed -- the ratio is reached
        end
        if stop then
          for j = #ids, k, -1 do redis.call('LPUSH', list, ids[j]) end
          empty = true
          break
        end
        local key = prefix .. 'task:' .. id
        local f = redis.pcall('HMGET', key, 'state', 'type', 'args', 'timeout', 'attempt',
          'expiry', 'queued')
        if f.err or f[1] ~= 'Queued' then
          skipped = skipped + 1 -- canceled while queued (final already), or not a task
        else
          ready = ready - 1
          -- The queue time is made a number only when the expiry is missing or has passed
          -- (its text is in the answer; the node reads a number from it).
          local expiry, queued = tonumber(f[6] or ''), nil
          if not expiry then
            queued = tonumber(f[7] or '') or now
            expiry = queued + 86400000
          end
          if now >= expiry then
            queued = queued or tonumber(f[7] or '') or now
            if not done_checked then
              redis.call('ZCARD', KEYS[6])
              done_checked = true
            end
            redis.call('HSET', key, 'state', 'TimedOut', 'completed', now_s, 'error',
              'not picked up within ' .. human(expiry - queued) ..
              ' of its queue time; no node took it before it expired')
            redis.call('ZADD', KEYS[6], now_s, id)
            expired = expired + 1
            skipped = skipped + 4 -- it writes (state, error text, finished index)
          else
            if not lease_floor then
              local clock = redis.call('TIME')
              lease_floor = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
            end
            lease = math.max(lease + 1, lease_floor)
            local attempt = (f[5] and tonumber(f[5]) or 0) + 1
            local timeout = f[4] and tonumber(f[4]) or 0
            -- No timeout, no deadline: 2^53 - 1 less the task number, beyond any time and
            -- lower for each newer task, so it goes in at the head of the node's running set
            -- (a listpack while small: an entry scored like all the others is placed by
            -- comparing it with each of them, docs/benchmarks.md). An id that is no number
            -- (only ever planted by hand: 'abc', 'inf', 'nan') scores 2^53 - 1.
            local deadline
            if timeout > 0 then
              deadline = fmt('%d', now + timeout + margin)
            else
              local n = tonumber(id) or 0
              if not (n >= 0 and n < 1e15) then n = 0 end
              deadline = fmt('%d', 9007199254740991 - n)
            end
            -- State now, running-set entry in the ZADD at the end of this call (KEYS[3] is
            -- known to be a sorted set, so that ZADD cannot fail half-way).
            redis.call('HSET', key, 'state', 'Executing', 'node', name, 'started', now_s,
              'lease', fmt('%d', lease), 'attempt', attempt == 1 and '1' or fmt('%d', attempt))
            entries[#entries + 1] = deadline
            entries[#entries + 1] = id
            local n = #out
            out[n + 1] = id
            out[n + 2] = lease
            out[n + 3] = f[2] or ''
            out[n + 4] = f[3] or ''
            out[n + 5] = timeout
            out[n + 6] = attempt
            out[n + 7] = queued or f[7] or now
            claimed = claimed + 1
          end
        end
      end
    end
    -- A level whose list ran dry leaves the priority index (a list that gave exactly what was
    -- asked may be empty too: the next claim finds it so and removes it then).
    if empty and redis.call('LLEN', list) == 0 then
      redis.call('ZREM', prefix .. 'qp:' .. queue, level)
    end
    if claimed >= want or skipped >= SKIP_MAX then break end
  end
end
for j = 1, #entries, 1000 do
  redis.call('ZADD', KEYS[3], unpack(entries, j, math.min(j + 999, #entries)))
end
if more then out[1] = 'more' end
if promoted > 0 or claimed > 0 or expired > 0 or ready ~= (tonumber(stats[1] or '0') or 0) then
  redis.call('HSET', KEYS[4], 'ready', ready, 'running', fleet_running + claimed, 'lease', lease)
end
if promoted > 0 or #due > 0 then out[2] = next_due() else out[2] = first_due end
out[3] = expired
if ARGV[8] == '1' and not more and claimed < want then
  -- Room left and nothing to take: wait registered idle (see the header). NX keeps the first
  -- time, so the node idle longest is pushed to first.
  for qi = 9, #ARGV do redis.call('ZADD', prefix .. 'idle:' .. ARGV[qi], 'NX', now_s, name) end
  local push = ARGV[3] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7] .. ' ' ..
    table.concat(ARGV, ' ', 9, #ARGV)
  if redis.call('HGET', KEYS[1], 'push') ~= push then redis.call('HSET', KEYS[1], 'push', push) end
end
return out
