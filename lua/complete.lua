-- complete.lua: a node reports finished tasks, in batches. Each report is fenced by the lease
-- its claim handed out: a report whose lease no longer matches, or whose task is no longer
-- Executing/Cancelling (recovered from a node declared dead, timed out by recovery, or already
-- finalised), is refused and changes nothing.
--
-- Outcomes: Success, Failed, TimedOut, Canceled (final), and Interrupted (the node stopped it
-- at shutdown: back to the head of its queue without using an attempt). A Failed task with
-- attempts left is scheduled again after the retry delay the node computed (exponential
-- backoff with jitter). A task an operator canceled while it ran (Cancelling) ends Canceled
-- unless it succeeded first.
--
-- Retention: final tasks are indexed by completion time in {NS}:done; each call also deletes a
-- few more tasks older than the retention than it finalises (so cleanup keeps pace with any
-- completion rate, at O(1) per task), and the sweep covers idle fleets.
--
-- KEYS[1] node running set {NS}:running:<name>   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] finished index {NS}:done   KEYS[4] scheduled set {NS}:scheduled
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 retention (ms), 4 wake channel, 5 count N, then N
--   groups of 7: id, lease, outcome, error text, exit code (-1 none), log, retry delay (ms)
-- Returns {finalised, retried, requeued, refused id, refused id, ...}. Cost: O(N).
local prefix, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[5])
if not n or #ARGV ~= 5 + 7 * n then return redis.error_reply('BADARGS expected 5 + 7*N') end
local done, retried, requeued, refused = 0, 0, 0, {}
local woken = {}
local finished_ids = {}  -- ZREM from the running set
local index = {}         -- ZADD to the finished index: time, id, ...
for i = 1, n do
  local b = 5 + 7 * (i - 1)
  local id, lease, outcome, err = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local key = prefix .. 'task:' .. id
  local f = redis.call('HMGET', key, 'lease', 'state')
  if f[1] ~= lease or (f[2] ~= 'Executing' and f[2] ~= 'Cancelling') then
    refused[#refused + 1] = id
  else
    finished_ids[#finished_ids + 1] = id
    if f[2] == 'Cancelling' and outcome ~= 'Success' then
      outcome = 'Canceled'
      err = 'Canceled by an operator while executing'
    end
    local g = nil
    if outcome == 'Interrupted' or outcome == 'Failed' then
      g = redis.call('HMGET', key, 'attempt', 'attempts', 'queue', 'prio')
    end
    if outcome == 'Interrupted' then
      local prio = g[4] or '0'
      redis.call('HSET', key, 'state', 'Queued', 'attempt', tonumber(g[1] or '1') - 1,
        'error', 'interrupted by node shutdown; requeued')
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('LPUSH', prefix .. 'q:' .. g[3] .. ':' .. prio, id)
      redis.call('SADD', prefix .. 'queues', g[3])
      redis.call('ZADD', prefix .. 'qp:' .. g[3], prio, prio)
      redis.call('HINCRBY', KEYS[2], 'ready', 1)
      woken[g[3]] = true
      requeued = requeued + 1
    elseif outcome == 'Failed' and tonumber(g[1] or '1') < tonumber(g[2] or '1') then
      redis.call('HSET', key, 'state', 'Queued', 'error',
        'attempt ' .. g[1] .. ' of ' .. g[2] .. ' failed: ' .. err)
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('ZADD', KEYS[4], now + tonumber(ARGV[b + 7]), id)
      woken[g[3]] = true
      retried = retried + 1
    else
      if err ~= '' then
        redis.call('HSET', key, 'state', outcome, 'completed', now, 'error', err)
      else
        redis.call('HSET', key, 'state', outcome, 'completed', now)
      end
      if ARGV[b + 5] ~= '-1' then redis.call('HSET', key, 'exit', ARGV[b + 5]) end
      if ARGV[b + 6] ~= '' then
        redis.call('SET', prefix .. 'log:' .. id, ARGV[b + 6], 'PX', retention)
      end
      index[#index + 1] = now
      index[#index + 1] = id
      done = done + 1
    end
  end
end
-- Batched writes, in chunks (unpack() has a stack limit).
for j = 1, #finished_ids, 1000 do
  redis.call('ZREM', KEYS[1], unpack(finished_ids, j, math.min(j + 999, #finished_ids)))
end
for j = 1, #index, 1000 do
  redis.call('ZADD', KEYS[3], unpack(index, j, math.min(j + 999, #index)))
end
if #finished_ids > 0 then redis.call('HINCRBY', KEYS[2], 'running', -#finished_ids) end
-- Retention: drop up to 2N + 16 tasks older than the retention.
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - retention, 'LIMIT', 0, 2 * n + 16)
if #old > 0 then
  local keys = {}
  for j, id in ipairs(old) do
    keys[2 * j - 1] = prefix .. 'task:' .. id
    keys[2 * j] = prefix .. 'log:' .. id
  end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[3], unpack(old))
end
for q in pairs(woken) do redis.call('PUBLISH', ARGV[4], q) end
local out = {done, retried, requeued}
for _, id in ipairs(refused) do out[#out + 1] = id end
return out
