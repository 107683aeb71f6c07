-- reconcile.lua: a live node's running set against what the node really runs. Redis can lose
-- acknowledged writes (a failover to a replica that had not received them yet, a restart from
-- an AOF that missed the last second), so a task can be recorded as Executing on a node that
-- finished it or never got it. Such a task would wait forever (no timeout) or until its lease
-- deadline. The node sends every task it runs or still has to report; the rest of its running
-- set is requeued at the head of its queue (no attempt and no node-loss budget used: the node
-- did not fail), or finalised Canceled when it was being canceled.
--
-- KEYS[1] node running set {NS}:running:<name>   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] finished index {NS}:done
-- The other way round (a run the node knows that Redis no longer records as the node's) is
-- lua/owned.lua, which the node calls after this answer, 1,000 runs a call.
--
-- ARGV: 1 key prefix "{NS}:", 2 node name, 3 now (ms), 4 wake channel, 5.. task numbers the
--   node knows
-- Returns {number of tasks requeued or finalised}. Cost: O(running + known), one HMGET for
-- each entry the node does not know; running and known are both bounded by the node's cap plus
-- the reports it holds (5-8 ms at cap 10,000 with every slot taken).
local prefix, name, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if KEYS[1] ~= prefix .. 'running:' .. tostring(name) or not now then
  return redis.error_reply('BADARGS the running set and the name must agree; now is ms')
end
local known = {}
for i = 5, #ARGV do known[ARGV[i]] = true end
local fixed, woken = 0, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not known[id] then
    local key = prefix .. 'task:' .. id
    -- Read with pcall and numbers with defaults before writing; only an entry whose task runs
    -- here (Executing/Cancelling on this node) is one the running counter counts.
    local f = redis.pcall('HMGET', key, 'state', 'node', 'queue', 'prio', 'attempt')
    if f.err then f = {} end
    local counted = (f[1] == 'Executing' or f[1] == 'Cancelling') and f[2] == name
    if f[1] == 'Cancelling' and f[2] == name then
      redis.call('HSET', key, 'state', 'Canceled', 'completed', now, 'error',
        'Canceled by an operator (its run was lost in a Redis failover or restart)')
      redis.call('ZADD', KEYS[3], now, id)
    elseif f[1] == 'Executing' and f[2] == name and not f[3] then
      redis.call('HSET', key, 'state', 'Failed', 'completed', now, 'error',
        'its run on ' .. name .. ' was lost and its record names no queue to requeue it to')
      redis.call('ZADD', KEYS[3], now, id)
    elseif f[1] == 'Executing' and f[2] == name then
      local prio = string.format('%d', tonumber(f[4] or '') or 0)
      redis.call('HSET', key, 'state', 'Queued', 'attempt', (tonumber(f[5] or '') or 1) - 1, 'error',
        'its run on ' .. name .. ' was lost in a Redis failover or restart; requeued')
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('LPUSH', prefix .. 'q:' .. f[3] .. ':' .. prio, id)
      redis.call('SADD', prefix .. 'queues', f[3])
      redis.call('ZADD', prefix .. 'qp:' .. f[3], prio, prio)
      redis.call('HINCRBY', KEYS[2], 'ready', 1)
      woken[f[3]] = true
    end
    redis.call('ZREM', KEYS[1], id)
    if counted then redis.call('HINCRBY', KEYS[2], 'running', -1) end
    fixed = fixed + 1
  end
end
for q in pairs(woken) do redis.call('PUBLISH', ARGV[4], q) end
return {fixed}
