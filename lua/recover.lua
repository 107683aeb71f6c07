-- recover.lua: nothing stays Executing or Cancelling forever, and no slot leaks.
--   * A node whose liveness key is gone (crashed, partitioned, killed): each task in its running
--     set is requeued at the head of its queue (the run does not count as an attempt), or, once
--     its node-loss budget is spent, Failed "node lost"; Cancelling tasks become Canceled. The
--     node stops counting towards the fleet's capacity.
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
-- timed out}. Cost: O(nodes + tasks recovered).
local prefix, now = ARGV[1], tonumber(ARGV[2])
local only = ARGV[6]
if only == '' and not redis.call('SET', KEYS[4], ARGV[4], 'NX', 'PX', ARGV[5]) then
  return {'locked'}
end
local requeued, failed, canceled, timedout = 0, 0, 0, 0
local woken = {}

local function final(key, id, state, why)
  redis.call('HSET', key, 'state', state, 'completed', now, 'error', why)
  redis.call('ZADD', KEYS[3], now, id)
end

-- Recovers every task of one node's running set (the node is gone, or restarted).
local function recover_node(name, why)
  local running = prefix .. 'running:' .. name
  local ids = redis.call('ZRANGE', running, 0, -1)
  for _, id in ipairs(ids) do
    local key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', key, 'state', 'node', 'lost', 'lost_budget', 'queue', 'prio',
      'attempt')
    if f[1] == 'Cancelling' then
      final(key, id, 'Canceled', 'Canceled by an operator; its node ' .. name .. ' ' .. why ..
        ' before stopping it')
      canceled = canceled + 1
    elseif f[1] == 'Executing' and f[2] == name then
      local lost = tonumber(f[3] or '0') + 1
      local budget = tonumber(f[4] or '1')
      redis.call('HSET', key, 'lost', lost)
      if lost <= budget then
        local prio = f[6] or '0'
        redis.call('HSET', key, 'state', 'Queued', 'attempt', tonumber(f[7] or '1') - 1,
          'error', 'node ' .. name .. ' ' .. why .. ' while executing it; requeued (' .. lost ..
          ' of ' .. budget .. ')')
        redis.call('HDEL', key, 'node', 'lease', 'started')
        redis.call('LPUSH', prefix .. 'q:' .. f[5] .. ':' .. prio, id)
        redis.call('SADD', prefix .. 'queues', f[5])
        redis.call('ZADD', prefix .. 'qp:' .. f[5], prio, prio)
        redis.call('HINCRBY', KEYS[2], 'ready', 1)
        woken[f[5]] = true
        requeued = requeued + 1
      else
        final(key, id, 'Failed', 'node lost: ' .. name .. ' ' .. why .. ' while executing it ' ..
          '(requeued ' .. (lost - 1) .. ' time(s) before; node-loss budget ' .. budget .. ')')
        failed = failed + 1
      end
    end
  end
  if #ids > 0 then
    redis.call('DEL', running)
    redis.call('HINCRBY', KEYS[2], 'running', -#ids)
  end
end

-- Finalises a live node's tasks whose lease deadline passed.
local function stuck(name)
  local running = prefix .. 'running:' .. name
  local ids = redis.call('ZRANGEBYSCORE', running, '-inf', now)
  for _, id in ipairs(ids) do
    local key = prefix .. 'task:' .. id
    local state = redis.call('HGET', key, 'state')
    if state == 'Executing' or state == 'Cancelling' then
      final(key, id, 'TimedOut', 'ran past its execution timeout and grace margin; its node ' ..
        name .. ' did not stop it')
      timedout = timedout + 1
    end
    redis.call('ZREM', running, id)
  end
  if #ids > 0 then redis.call('HINCRBY', KEYS[2], 'running', -#ids) end
end

if only ~= '' then
  recover_node(only, 'restarted')
else
  for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', prefix .. 'alive:' .. name) == 0 then
      recover_node(name, 'stopped responding')
      local node = prefix .. 'node:' .. name
      local had = tonumber(redis.call('HGET', node, 'contrib') or '0')
      if had ~= 0 then
        redis.call('HINCRBY', KEYS[2], 'avail_cap', -had)
        redis.call('HSET', node, 'contrib', 0)
      end
    else
      stuck(name)
    end
  end
end
for q in pairs(woken) do redis.call('PUBLISH', ARGV[3], q) end
return {'ok', requeued, failed, canceled, timedout}
