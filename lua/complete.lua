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
-- Returns {finalised, retried, requeued, refused id, refused id, ...}, or BADARGS (nothing
-- written) when an argument is malformed.
-- Validate, then write: every report's arguments are checked before anything is written; each
-- task's record is read (and one that is not a hash refused) before it is written, numbers are
-- read with defaults, and a task's state and its new structure (ready list, scheduled set)
-- change together; the running-set entries and finished-index entries follow in one call each.
-- Bound: N reports (the node sends at most 256, and 8 MiB of logs) plus 2N + 16 deletions.
local prefix, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[5])
local now_s = now and string.format('%d', now) -- "%d", not Redis's "%.17g" (see claim.lua)
if not n or #ARGV ~= 5 + 7 * n then return redis.error_reply('BADARGS expected 5 + 7*N') end
if not now or not retention or KEYS[2] ~= tostring(prefix) .. 'stats' then
  return redis.error_reply('BADARGS the prefix must be the keys\' own; now and retention are ms')
end
-- Pass 1 checks every report's arguments: nothing is written when one is malformed.
local outcomes = {Success = true, Failed = true, TimedOut = true, Canceled = true,
  Interrupted = true}
for i = 1, n do
  local b = 5 + 7 * (i - 1)
  if not outcomes[ARGV[b + 3]] or not tonumber(ARGV[b + 5]) or not tonumber(ARGV[b + 7]) then
    return redis.error_reply('BADARGS report ' .. i .. ': outcome, exit code or retry delay')
  end
end
-- The reporting node: the one whose running set KEYS[1] is; a task recorded on another node is
-- not this report's to finish.
local reporter = string.sub(KEYS[1], #prefix + #'running:' + 1)
if string.sub(KEYS[1], 1, #prefix + #'running:') ~= prefix .. 'running:' then
  return redis.error_reply('BADARGS KEYS[1] must be a running set of this prefix')
end
redis.call('ZCARD', KEYS[3]) -- a sorted set (or absent): checked before any write
local scheduled_checked = false -- KEYS[4] likewise, before the first retry writes anything
-- Pass 2, task by task: its record is read (pcall: a key that is not a hash is no task) and
-- numbers with defaults, then its state and its running-set entry change together.
local done, retried, requeued, refused = 0, 0, 0, {}
local woken = {}
local finished = {} -- ZREM from the running set, at the end
local index = {}    -- ZADD to the finished index: time, id, ...
for i = 1, n do
  local b = 5 + 7 * (i - 1)
  local id, lease, outcome, err = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local key = prefix .. 'task:' .. id
  local f = redis.pcall('HMGET', key, 'lease', 'state', 'node')
  if f.err or f[1] ~= lease or (f[2] ~= 'Executing' and f[2] ~= 'Cancelling') or
      f[3] ~= reporter then
    refused[#refused + 1] = id
  else
    finished[#finished + 1] = id
    if f[2] == 'Cancelling' and outcome ~= 'Success' then
      outcome = 'Canceled'
      err = 'Canceled by an operator while executing'
    end
    local attempt, attempts, queue, prio = 1, 1, nil, '0'
    if outcome == 'Interrupted' or outcome == 'Failed' then
      local g = redis.call('HMGET', key, 'attempt', 'attempts', 'queue', 'prio')
      attempt = tonumber(g[1] or '') or 1
      attempts = tonumber(g[2] or '') or 1
      queue = g[3]
      prio = string.format('%d', tonumber(g[4] or '') or 0)
    end
    if (outcome == 'Interrupted' or outcome == 'Failed') and not queue then
      -- No queue to put it back in: it ends here, saying why.
      outcome = 'Failed'
      err = err .. (err ~= '' and '; ' or '') .. 'its record names no queue to run it again from'
      attempts = 0
    end
    if outcome == 'Interrupted' then
      redis.call('HSET', key, 'state', 'Queued', 'attempt', attempt - 1,
        'error', 'interrupted by node shutdown; requeued')
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('LPUSH', prefix .. 'q:' .. queue .. ':' .. prio, id)
      redis.call('ZADD', prefix .. 'qp:' .. queue, prio, prio)
      redis.call('SADD', prefix .. 'queues', queue)
      redis.call('HINCRBY', KEYS[2], 'ready', 1)
      woken[queue] = true
      requeued = requeued + 1
    elseif outcome == 'Failed' and attempt < attempts then
      if not scheduled_checked then
        redis.call('ZCARD', KEYS[4])
        scheduled_checked = true
      end
      redis.call('HSET', key, 'state', 'Queued', 'error',
        'attempt ' .. attempt .. ' of ' .. attempts .. ' failed: ' .. err)
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('ZADD', KEYS[4], now + tonumber(ARGV[b + 7]), id)
      woken[queue] = true
      retried = retried + 1
    else
      -- One HSET, its fields by case (no table made per task).
      local code = ARGV[b + 5]
      if err == '' and code == '-1' then
        redis.call('HSET', key, 'state', outcome, 'completed', now_s)
      elseif err == '' then
        redis.call('HSET', key, 'state', outcome, 'completed', now_s, 'exit', code)
      elseif code == '-1' then
        redis.call('HSET', key, 'state', outcome, 'completed', now_s, 'error', err)
      else
        redis.call('HSET', key, 'state', outcome, 'completed', now_s, 'error', err, 'exit', code)
      end
      index[#index + 1] = now_s
      index[#index + 1] = id
      if ARGV[b + 6] ~= '' then
        redis.call('SET', prefix .. 'log:' .. id, ARGV[b + 6], 'PX', retention)
      end
      done = done + 1
    end
  end
end
-- The running-set entries and the finished index, in chunks (unpack() has a stack limit). A
-- task is in its new structure already (a ready list, the scheduled set, or final); its old
-- running-set entry going last can at worst leave a stale entry, which reconcile and recovery
-- remove, never a task in no structure.
for j = 1, #finished, 1000 do
  redis.call('ZREM', KEYS[1], unpack(finished, j, math.min(j + 999, #finished)))
end
for j = 1, #index, 1000 do
  redis.call('ZADD', KEYS[3], unpack(index, j, math.min(j + 999, #index)))
end
if #finished > 0 then redis.call('HINCRBY', KEYS[2], 'running', -#finished) end
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
