-- enqueue.lua: puts tasks in the queue (`shoal enqueue`, the C client, any language by hand).
--
-- KEYS[1] id counter {NS}:seq   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] scheduled set {NS}:scheduled   KEYS[4] queue names {NS}:queues
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 wake channel {NS}:wake, 4 count N, then N groups of
--   9: queue, type, args (msgpack, may be ""), priority (-1000..1000, higher first),
--   queue time (ms; 0 = now), expiry (ms after queue time), timeout (ms, 0 = none),
--   attempts (1 = no retry), node-loss budget (requeues after a node dies)
-- Returns the numeric ids (task id = "ServerTasks-" .. n). Nothing is written when any task
-- is invalid (all are checked first). Publishes the queue name on the wake channel when a
-- queue goes from empty to non-empty (or a task becomes the earliest scheduled one), so idle
-- nodes claim at once instead of polling. Cost: O(N).
local prefix, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
if not n or n < 1 or #ARGV ~= 4 + 9 * n then
  return redis.error_reply('BADARGS expected 4 + 9*N arguments')
end
-- Checks a whole number in [lo, hi]; returns it, or nil and the reason.
local function int(v, lo, hi, what, i)
  local x = tonumber(v)
  if not x or x ~= math.floor(x) or x < lo or x > hi then
    return nil, 'BADTASK task ' .. i .. ': ' .. what .. ' must be a whole number from ' .. lo ..
      ' to ' .. hi
  end
  return x
end
local fields = {{'prio', -1000, 1000, 'priority'}, {'at', 0, 1e15, 'queue time'},
  {'expiry', 1, 1e12, 'expiry'}, {'timeout', 0, 1e12, 'timeout'},
  {'attempts', 1, 1000, 'attempts'}, {'lost', 0, 1000, 'node-loss budget'}}
local tasks = {}
for i = 1, n do
  local b = 4 + 9 * (i - 1)
  local t = {queue = ARGV[b + 1], type = ARGV[b + 2], args = ARGV[b + 3]}
  if not string.match(t.queue, '^[%w._-]+$') or #t.queue > 64 then
    return redis.error_reply('BADTASK task ' .. i .. ': queue names use A-Z a-z 0-9 . _ -')
  end
  if not string.match(t.type, '^[%w._-]+$') or #t.type > 64 then
    return redis.error_reply('BADTASK task ' .. i .. ': type names use A-Z a-z 0-9 . _ -')
  end
  for j, f in ipairs(fields) do
    local v, why = int(ARGV[b + 3 + j], f[2], f[3], f[4], i)
    if not v then return redis.error_reply(why) end
    t[f[1]] = v
  end
  tasks[i] = t
end
local last = redis.call('INCRBY', KEYS[1], n)
local ids, ready, woken, lists = {}, 0, {}, {}
for i, t in ipairs(tasks) do
  local id = last - n + i
  local key = prefix .. 'task:' .. id
  local qt = now
  if t.at > 0 then qt = t.at end
  redis.call('HSET', key, 'state', 'Queued', 'queue', t.queue, 'type', t.type,
    'queued', qt, 'expiry', qt + t.expiry)
  if t.args ~= '' then redis.call('HSET', key, 'args', t.args) end
  if t.prio ~= 0 then redis.call('HSET', key, 'prio', t.prio) end
  if t.timeout ~= 0 then redis.call('HSET', key, 'timeout', t.timeout) end
  if t.attempts ~= 1 then redis.call('HSET', key, 'attempts', t.attempts) end
  if t.lost ~= 1 then redis.call('HSET', key, 'lost_budget', t.lost) end
  if qt > now then
    redis.call('ZADD', KEYS[3], qt, id)
    -- The new earliest scheduled task: wake nodes so they re-arm their timers.
    if redis.call('ZRANGE', KEYS[3], 0, 0)[1] == tostring(id) then woken[t.queue] = true end
  else
    local list = prefix .. 'q:' .. t.queue .. ':' .. t.prio
    if not lists[list] then lists[list] = {queue = t.queue, prio = t.prio, ids = {}} end
    table.insert(lists[list].ids, id)
    ready = ready + 1
  end
  redis.call('SADD', KEYS[4], t.queue)
  ids[i] = id
end
for list, l in pairs(lists) do
  -- Push in chunks: unpack() has a stack limit.
  local len = 0
  for j = 1, #l.ids, 1000 do
    len = redis.call('RPUSH', list, unpack(l.ids, j, math.min(j + 999, #l.ids)))
  end
  redis.call('ZADD', prefix .. 'qp:' .. l.queue, l.prio, l.prio)
  if len == #l.ids then woken[l.queue] = true end
end
if ready > 0 then redis.call('HINCRBY', KEYS[2], 'ready', ready) end
for q in pairs(woken) do redis.call('PUBLISH', ARGV[3], q) end
return ids
