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
--
-- Push: a queue that was empty and gets ready tasks here is offered to the nodes waiting idle on
-- it ({NS}:idle:<queue>, registered by their claims: see claim.lua). For each, oldest first,
-- claim.lua itself runs here for that node, with every rule it checks (alive, this instance,
-- not draining, under cap, balancing, priority then FIFO over all the node's queues, expiry),
-- and its answer, in RESP, is published on the node's own channel {NS}:push:<name>:<instance>.
-- The node starts the tasks when the message arrives: no wake and no claim round trip. A node
-- tried is taken out of the idle sets whatever the outcome (it registers again at its next
-- claim that finds nothing), and only a node subscribed to its channel on this server
-- (PUBSUB NUMSUB) is claimed for, so a message can be lost only with the node's connection,
-- and then the node reconciles (docs/design.md, "Push to an idle node"). The wake is still
-- published when the queue's new tasks were not all taken.
-- Bound: O(N), plus at most PUSH_TRIES (4) nodes tried per call, each one claim.lua call of at
-- most PUSH_MAX (64) tasks (and claim.lua's own bound).
local function claim(KEYS, ARGV)
--@body claim.lua
end
-- Run as lua/enqueue.lua itself (by hand, docs/redis.md), the line above is a comment and
-- claim() an empty function: then nothing is pushed and the nodes are woken as before. The
-- built text (claim.lua included) answers an empty call with an error, never with nothing.
local function can_push()
  local ok, out = pcall(claim, {}, {})
  return not ok or out ~= nil
end

local prefix, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
if KEYS[1] ~= tostring(prefix) .. 'seq' or not now then
  return redis.error_reply('BADARGS the prefix must be the keys\' own; now is ms')
end
if not n or n < 1 or #ARGV ~= 4 + 9 * n then
  return redis.error_reply('BADARGS expected 4 + 9*N arguments')
end
-- Pass 1 checks everything (nothing is written if anything is wrong); names are checked once.
local function bad_int(v, lo, hi)
  local x = tonumber(v)
  return not x or x ~= math.floor(x) or x < lo or x > hi
end
local limits = {{-1000, 1000, 'priority'}, {0, 1e15, 'queue time'}, {1, 1e12, 'expiry'},
  {0, 1e12, 'timeout'}, {1, 1000, 'attempts'}, {0, 1000, 'node-loss budget'}}
local names_ok = {}
for i = 1, n do
  local b = 4 + 9 * (i - 1)
  for j = 1, 2 do
    local name = ARGV[b + j]
    if not names_ok[name] then
      if not string.match(name, '^[%w._-]+$') or #name > 64 then
        return redis.error_reply('BADTASK task ' .. i .. ': ' .. (j == 1 and 'queue' or 'type') ..
          ' names use A-Z a-z 0-9 . _ -')
      end
      names_ok[name] = true
    end
  end
  for j = 1, 6 do
    local l = limits[j]
    if bad_int(ARGV[b + 3 + j], l[1], l[2]) then
      return redis.error_reply('BADTASK task ' .. i .. ': ' .. l[3] ..
        ' must be a whole number from ' .. l[1] .. ' to ' .. l[2])
    end
  end
end

-- Pass 2 writes: one HSET per task. Numbers are made strings here with %d (ids, times): a Lua
-- number concatenated or passed to redis.call is formatted with "%.14g"/"%.17g", several times
-- the cost (measured: docs/benchmarks.md, "Redis work per task").
local fmt = string.format
local now_s = fmt('%d', now)
local last = redis.call('INCRBY', KEYS[1], n)
local ready, woken, lists, queues = 0, {}, {}, {}
local ids = {}
-- The default expiry (a day) is not stored: every reader takes a missing one as the queue time
-- plus a day (claim.lua, expire.lua, the client), and a task is 18 bytes smaller.
local DEFAULT_EXPIRY = '86400000'
local expiries = {} -- expiry argument -> its absolute time as text, for tasks queued now
for i = 1, n do
  local b = 4 + 9 * (i - 1)
  local id = last - n + i
  local id_s = fmt('%d', id)
  local key = prefix .. 'task:' .. id_s
  local queue, args = ARGV[b + 1], ARGV[b + 3]
  local prio = fmt('%d', tonumber(ARGV[b + 4]))  -- canonical: '05' and '-0' too
  local at = tonumber(ARGV[b + 5])
  local qt, qt_s = now, now_s
  if at > 0 then qt, qt_s = at, fmt('%d', at) end
  local fields = {'state', 'Queued', 'queue', queue, 'type', ARGV[b + 2], 'queued', qt_s}
  local expiry = ARGV[b + 6]
  if expiry ~= DEFAULT_EXPIRY then
    local exp_s = at == 0 and expiries[expiry] or fmt('%d', qt + tonumber(expiry))
    if at == 0 then expiries[expiry] = exp_s end
    fields[#fields + 1] = 'expiry'; fields[#fields + 1] = exp_s
  end
  if args ~= '' then fields[#fields + 1] = 'args'; fields[#fields + 1] = args end
  if prio ~= '0' and prio ~= '-0' then
    fields[#fields + 1] = 'prio'; fields[#fields + 1] = prio
  else
    prio = '0'
  end
  if ARGV[b + 7] ~= '0' then fields[#fields + 1] = 'timeout'; fields[#fields + 1] = ARGV[b + 7] end
  if ARGV[b + 8] ~= '1' then fields[#fields + 1] = 'attempts'; fields[#fields + 1] = ARGV[b + 8] end
  if ARGV[b + 9] ~= '1' then
    fields[#fields + 1] = 'lost_budget'; fields[#fields + 1] = ARGV[b + 9]
  end
  redis.call('HSET', key, unpack(fields))
  if qt > now then
    redis.call('ZADD', KEYS[3], qt_s, id_s)
    -- The new earliest scheduled task: wake nodes so they re-arm their timers.
    if redis.call('ZRANGE', KEYS[3], 0, 0)[1] == id_s then woken[queue] = true end
  else
    local list = prefix .. 'q:' .. queue .. ':' .. prio
    local l = lists[list]
    if not l then
      l = {queue = queue, prio = prio, ids = {}}
      lists[list] = l
    end
    l.ids[#l.ids + 1] = id_s
    ready = ready + 1
  end
  queues[queue] = true
  ids[i] = id
end
for q in pairs(queues) do
  redis.call('SADD', KEYS[4], q)
  redis.call('ZADD', prefix .. 'qseen', now_s, q) -- the idle clock of expire.lua
end
local fresh = {} -- lists that were empty before this call
for list, l in pairs(lists) do
  -- Push in chunks: unpack() has a stack limit.
  local len = 0
  for j = 1, #l.ids, 1000 do
    len = redis.call('RPUSH', list, unpack(l.ids, j, math.min(j + 999, #l.ids)))
  end
  redis.call('ZADD', prefix .. 'qp:' .. l.queue, l.prio, l.prio)
  if len == #l.ids then fresh[#fresh + 1] = list end
end
if ready > 0 then redis.call('HINCRBY', KEYS[2], 'ready', ready) end

-- Push to idle nodes (see the header).
local PUSH_TRIES, PUSH_MAX = 4, 64
local tries = 0
local function resp(t) -- a claim answer as RESP: integers and bulk strings
  local parts = {'*' .. #t .. '\r\n'}
  for i = 1, #t do
    local v = t[i]
    if type(v) == 'number' then
      parts[#parts + 1] = fmt(':%d\r\n', v)
    else
      v = tostring(v)
      parts[#parts + 1] = '$' .. #v .. '\r\n' .. v .. '\r\n'
    end
  end
  return table.concat(parts)
end
local function push_to(name, queue, max)
  local node = prefix .. 'node:' .. name
  local p = redis.pcall('HGET', node, 'push')
  local w = {} -- instance, balance, margin, queues...
  if type(p) == 'string' then for x in string.gmatch(p, '%S+') do w[#w + 1] = x end end
  if #w < 4 then
    redis.call('ZREM', prefix .. 'idle:' .. queue, name)
    return
  end
  for j = 4, #w do redis.call('ZREM', prefix .. 'idle:' .. w[j], name) end
  local channel = prefix .. 'push:' .. name .. ':' .. w[1]
  local subs = redis.pcall('PUBSUB', 'NUMSUB', channel) -- an ACL without it: no push
  if type(subs) ~= 'table' or (tonumber(subs[2]) or 0) < 1 then return end
  local args = {prefix, name, w[1], now_s, fmt('%d', math.min(max, PUSH_MAX)), w[2], w[3], '0'}
  for j = 4, #w do args[#args + 1] = w[j] end
  local ok, out = pcall(claim, {node, prefix .. 'alive:' .. name, prefix .. 'running:' .. name,
    KEYS[2], KEYS[3], prefix .. 'done'}, args)
  if ok and type(out) == 'table' and not out.err and #out > 3 then
    redis.call('PUBLISH', channel, resp(out))
  end
end
local pushable = nil -- can_push(), asked once there is an idle node to push to
for _, list in ipairs(fresh) do
  local l = lists[list]
  local left = #l.ids
  while tries < PUSH_TRIES and left > 0 do
    local name = redis.call('ZRANGE', prefix .. 'idle:' .. l.queue, 0, 0)[1]
    if not name then break end
    if pushable == nil then pushable = can_push() end
    if not pushable then break end
    tries = tries + 1
    push_to(name, l.queue, left)
    left = redis.call('LLEN', list)
  end
  if left > 0 then woken[l.queue] = true end
end
for q in pairs(woken) do redis.call('PUBLISH', ARGV[3], q) end
return ids
