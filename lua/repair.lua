-- repair.lua: `shoal check --repair` fixes one finding of its walk, after checking here,
-- atomically, that the finding still holds (the walk is not atomic: the fleet moves on). Each
-- fix puts things back where the normal machinery handles them; it never runs or finalises a
-- task itself.
--
-- KEYS[1] fleet counters {NS}:stats   KEYS[2] node set {NS}:nodes
-- ARGV: 1 key prefix "{NS}:", 2 operation, 3 task number or node name, 4 node name or ''
-- Operations:
--   'running' n node: task n is Executing/Cancelling on `node` but in no running set: it is put
--     back in that node's running set (no deadline): the node reports it, or, if it does not run
--     it, its reconcile requeues it, or, if the node is gone, recovery does.
--   'queued' n: task n is Queued but in no ready list and not scheduled: it goes back to the
--     tail of its ready list.
--   'stale' n node: `node`'s running set lists task n, which is not Executing/Cancelling there:
--     the entry is removed.
--   'node' name: a running set of a node the node set does not know: the name is added back, so
--     recovery requeues its tasks (the node shows Offline, and is forgotten later as usual).
-- No operation touches the counters ({NS}:stats): the walk compares them with what they count
-- after its repairs, and corrects them if they did not move meanwhile.
-- Returns 1 when fixed, 0 when the finding no longer holds (nothing written).
-- Cost: O(1), but 'queued' is O(list length) (LPOS), run only for what the walk found.
local prefix, op, a, b = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if KEYS[1] ~= tostring(prefix) .. 'stats' or not a then
  return redis.error_reply('BADARGS the prefix must be the keys\' own')
end
if op == 'node' then
  if redis.call('EXISTS', prefix .. 'running:' .. a) == 0 or
      redis.call('SISMEMBER', KEYS[2], a) == 1 then return 0 end
  redis.call('SADD', KEYS[2], a)
  return 1
end
local key = prefix .. 'task:' .. a
local f = redis.pcall('HMGET', key, 'state', 'node', 'queue', 'prio')
if f.err then return 0 end
if op == 'running' then
  if (f[1] ~= 'Executing' and f[1] ~= 'Cancelling') or f[2] ~= b then return 0 end
  local running = prefix .. 'running:' .. b
  if redis.call('ZSCORE', running, a) then return 0 end
  -- No deadline, as claim.lua writes it for a task without a timeout.
  local n = tonumber(a) or 0
  if not (n >= 0 and n < 1e15) then n = 0 end
  redis.call('ZADD', running, string.format('%d', 9007199254740991 - n), a)
  return 1
elseif op == 'queued' then
  if f[1] ~= 'Queued' or not f[3] then return 0 end
  if redis.call('ZSCORE', prefix .. 'scheduled', a) then return 0 end
  local prio = string.format('%d', tonumber(f[4] or '0') or 0)
  local list = prefix .. 'q:' .. f[3] .. ':' .. prio
  if redis.call('LPOS', list, a) then return 0 end
  redis.call('RPUSH', list, a)
  redis.call('ZADD', prefix .. 'qp:' .. f[3], prio, prio)
  redis.call('SADD', prefix .. 'queues', f[3])
  return 1
elseif op == 'stale' then
  if (f[1] == 'Executing' or f[1] == 'Cancelling') and f[2] == b then return 0 end
  return redis.call('ZREM', prefix .. 'running:' .. b, a)
end
return redis.error_reply('BADARGS unknown operation ' .. tostring(op))
