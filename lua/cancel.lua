-- cancel.lua: cancels a task from anywhere (`shoal cancel`, the API).
--   Queued (ready or scheduled): finalised Canceled at once. A ready task stays in its list
--     and is skipped by the next claim that meets it (no O(queue) removal).
--   Executing on a live node: becomes Cancelling and the node is told on the control channel
--     ("cancel <node> <id>"); the node stops it and reports Canceled.
--   Executing or Cancelling on a node that is gone (liveness key expired): finalised Canceled
--     here, and the node's running set and the fleet count are corrected.
--   Already final: nothing changes.
--
-- KEYS[1] task hash {NS}:task:<n>   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] scheduled set {NS}:scheduled   KEYS[4] finished index {NS}:done
-- ARGV: 1 key prefix "{NS}:", 2 numeric id, 3 now (ms), 4 control channel
-- Returns {'canceled'} | {'cancelling', node} | {'final', state}, or an error reply NOTASK.
-- Cost: O(log N).
local prefix, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if KEYS[1] ~= prefix .. 'task:' .. tostring(id) or not now then
  return redis.error_reply('BADARGS the task key and the id must name one task; now is ms')
end
local f = redis.call('HMGET', KEYS[1], 'state', 'node')
local state, node = f[1], f[2]
if not state then return redis.error_reply('NOTASK no task ServerTasks-' .. id) end
local function finish(why)
  redis.call('HSET', KEYS[1], 'state', 'Canceled', 'completed', now, 'error', why)
  redis.call('ZADD', KEYS[4], now, id)
end
if state == 'Queued' then
  if redis.call('ZREM', KEYS[3], id) == 0 then
    redis.call('HINCRBY', KEYS[2], 'ready', -1)
  end
  finish('Canceled by an operator before it started')
  return {'canceled'}
end
if state == 'Executing' or state == 'Cancelling' then
  if redis.call('EXISTS', prefix .. 'alive:' .. node) == 0 then
    if redis.call('ZREM', prefix .. 'running:' .. node, id) == 1 then
      redis.call('HINCRBY', KEYS[2], 'running', -1)
    end
    finish('Canceled by an operator; its node ' .. node .. ' was offline')
    return {'canceled'}
  end
  redis.call('HSET', KEYS[1], 'state', 'Cancelling')
  redis.call('PUBLISH', ARGV[4], 'cancel ' .. node .. ' ' .. id)
  return {'cancelling', node}
end
return {'final', state}
