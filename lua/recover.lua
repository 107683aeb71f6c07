-- recover.lua: nothing stays Executing or Cancelling forever, and no slot leaks.
--   * A node whose liveness key is gone (crashed, partitioned, killed): each task in its running
--     set is requeued at the head of its queue (the run does not count as an attempt), or, once
--     its node-loss budget is spent, Failed "node lost"; Cancelling tasks become Canceled. The
--     node stops counting towards the fleet's capacity, and leaves the idle sets of push (its
--     node hash's `push` field names its queues; see claim.lua).
--   * A live node: tasks whose lease deadline (timeout + margin) passed are finalised TimedOut,
--     so a handler that ignores its timeout cannot hold a task forever (its late report is then
--     refused by complete.lua).
--   * `only` mode (ARGV[6] = a node name): a node that just registered recovers whatever its
--     previous incarnation left in its running set, before it claims anything.
-- Requeued tasks get a new lease when claimed again, so a late report from the lost node is
-- refused. In fleet mode only one node runs the pass per period: a lock key with a TTL.
--
-- KEYS[1] node set {NS}:nodes   KEYS[2] fleet counters {NS}:stats   KEYS[3] finished index
-- {NS}:done   KEYS[4] lock {NS}:lock:recover
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 wake channel, 4 lock token, 5 lock TTL (ms),
--   6 node name for `only` mode, or ''
-- Returns {'locked'} when another node holds the lock, else {'ok', requeued, failed, canceled,
-- timed out}, or the same with 'more' when this call stopped at its bound with running-set
-- entries left to look at: the caller calls again after the answer, with the same token (the
-- lock's holder may call again while it holds the lock).
-- Bound: one EXISTS per registered node, plus at most BUDGET (128) running-set entries looked
-- at (each: one HMGET and at most six writes), in total over every node of the call. A dead
-- node of cap 10,000 took one call of 120-196 ms before this bound (docs/benchmarks.md).
local prefix, now = ARGV[1], tonumber(ARGV[2])
local only = ARGV[6]
if KEYS[1] ~= tostring(prefix) .. 'nodes' or not now or not tonumber(ARGV[5]) or not only or
    #ARGV ~= 6 then
  return redis.error_reply('BADARGS expected prefix, now, channel, token, lock TTL, node or ""')
end
if only == '' and not redis.call('SET', KEYS[4], ARGV[4], 'NX', 'PX', ARGV[5]) and
    redis.call('GET', KEYS[4]) ~= ARGV[4] then
  return {'locked'}
end
local requeued, failed, canceled, timedout = 0, 0, 0, 0
local BUDGET = 128
local left, more = BUDGET, false
local woken = {}

-- A task record is read with pcall (a key that is not a hash is no task) and numbers with
-- defaults, before anything is written for it. The running counter counts the entries of
-- running sets whose task runs there (Executing or Cancelling on that node): only those are
-- subtracted when entries go.
local function read(key, ...)
  local f = redis.pcall('HMGET', key, ...)
  if f.err then return {} end
  return f
end
local function num(v, default) return tonumber(v or '') or default end

local function final(key, id, state, why)
  redis.call('HSET', key, 'state', state, 'completed', now, 'error', why)
  redis.call('ZADD', KEYS[3], now, id)
end

-- Recovers the tasks of one node's running set (the node is gone, or restarted), as many as
-- the budget left allows; each entry looked at leaves the set.
local function recover_node(name, why)
  local running = prefix .. 'running:' .. name
  local ids = redis.call('ZRANGE', running, 0, left - 1)
  local counted, ready, indexed = 0, 0, {} -- indexed: the ready lists named in this call
  for _, id in ipairs(ids) do
    local key = prefix .. 'task:' .. id
    local f = read(key, 'state', 'node', 'lost', 'lost_budget', 'queue', 'prio', 'attempt')
    if (f[1] == 'Executing' or f[1] == 'Cancelling') and f[2] == name then
      counted = counted + 1
    end
    if f[1] == 'Cancelling' and f[2] == name then
      final(key, id, 'Canceled', 'Canceled by an operator; its node ' .. name .. ' ' .. why ..
        ' before stopping it')
      canceled = canceled + 1
    elseif f[1] == 'Executing' and f[2] == name then
      local lost = num(f[3], 0) + 1
      local budget = num(f[4], 1)
      if lost <= budget and f[5] then
        local prio = string.format('%d', num(f[6], 0))
        redis.call('HSET', key, 'lost', lost, 'state', 'Queued', 'attempt', num(f[7], 1) - 1,
          'error', 'node ' .. name .. ' ' .. why .. ' while executing it; requeued (' .. lost ..
          ' of ' .. budget .. ')')
        redis.call('HDEL', key, 'node', 'lease', 'started')
        local list = prefix .. 'q:' .. f[5] .. ':' .. prio
        redis.call('LPUSH', list, id)
        if not indexed[list] then -- its queue and level indexed once a call, right after
          redis.call('SADD', prefix .. 'queues', f[5])
          redis.call('ZADD', prefix .. 'qp:' .. f[5], prio, prio)
          indexed[list] = true
        end
        ready = ready + 1
        woken[f[5]] = true
        requeued = requeued + 1
      else
        redis.call('HSET', key, 'lost', lost)
        final(key, id, 'Failed', 'node lost: ' .. name .. ' ' .. why .. ' while executing it ' ..
          '(requeued ' .. (lost - 1) .. ' time(s) before; node-loss budget ' .. budget .. ')')
        failed = failed + 1
      end
    end
  end
  if #ids > 0 then redis.call('ZREM', running, unpack(ids)) end
  if counted > 0 then redis.call('HINCRBY', KEYS[2], 'running', -counted) end
  if ready > 0 then redis.call('HINCRBY', KEYS[2], 'ready', ready) end
  left = left - #ids
  if left <= 0 and redis.call('ZCARD', running) > 0 then more = true end
end

-- Finalises a live node's tasks whose lease deadline passed.
local function stuck(name)
  local running = prefix .. 'running:' .. name
  local ids = redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, left)
  local counted = 0
  for _, id in ipairs(ids) do
    local key = prefix .. 'task:' .. id
    local f = read(key, 'state', 'node')
    if (f[1] == 'Executing' or f[1] == 'Cancelling') and f[2] == name then
      final(key, id, 'TimedOut', 'ran past its execution timeout and grace margin; its node ' ..
        name .. ' did not stop it')
      timedout = timedout + 1
      counted = counted + 1
    end
    redis.call('ZREM', running, id)
  end
  if counted > 0 then redis.call('HINCRBY', KEYS[2], 'running', -counted) end
  left = left - #ids
  if left <= 0 then more = true end -- maybe more are due
end

if only ~= '' then
  recover_node(only, 'restarted')
else
  for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if left <= 0 then
      more = true
      break
    end
    if redis.call('EXISTS', prefix .. 'alive:' .. name) == 0 then
      recover_node(name, 'stopped responding')
      local node = prefix .. 'node:' .. name
      local had = tonumber(redis.call('HGET', node, 'contrib') or '0')
      if had ~= 0 then
        redis.call('HINCRBY', KEYS[2], 'avail_cap', -had)
        redis.call('HSET', node, 'contrib', 0)
      end
      -- No enqueue should spend a try on it: out of the idle sets, once.
      local push = redis.pcall('HGET', node, 'push')
      if type(push) == 'string' then
        local i = 0 -- instance, balance, margin, then the queues
        for w in string.gmatch(push, '%S+') do
          i = i + 1
          if i > 3 then redis.call('ZREM', prefix .. 'idle:' .. w, name) end
        end
        redis.call('HDEL', node, 'push')
      end
    else
      stuck(name)
    end
  end
end
for q in pairs(woken) do redis.call('PUBLISH', ARGV[3], q) end
return {more and 'more' or 'ok', requeued, failed, canceled, timedout}
