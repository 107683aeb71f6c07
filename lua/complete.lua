-- complete.lua: a node reports finished tasks, in batches. Each report is fenced by the lease
-- its claim handed out: a report whose lease no longer matches (the task was recovered from a
-- node declared dead, or already finalised) is refused and changes nothing.
--
-- Outcomes: Success, Failed, TimedOut, Canceled (final), and Interrupted (the node stopped it
-- at shutdown: back to the head of its queue without using an attempt). A Failed task with
-- attempts left is scheduled again after the retry delay the node computed (exponential
-- backoff with jitter). A task an operator canceled while it ran (Cancelling) ends Canceled
-- unless it succeeded first. Final tasks keep their fields and log for the retention period.
--
-- KEYS[1] node running set {NS}:running:<name>   KEYS[2] fleet counters {NS}:stats
-- KEYS[3] finished index {NS}:done   KEYS[4] scheduled set {NS}:scheduled
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 retention (ms), 4 wake channel, 5 count N, then N
--   groups of 7: id, lease, outcome, error text, exit code (-1 none), log, retry delay (ms)
-- Returns {finalised, retried, requeued, refused id, refused id, ...}. Cost: O(N).
local prefix, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[5])
if not n or #ARGV ~= 5 + 7 * n then return redis.error_reply('BADARGS expected 5 + 7*N') end
local done, retried, requeued, refused, left = 0, 0, 0, {}, 0
local woken = {}
for i = 1, n do
  local b = 5 + 7 * (i - 1)
  local id, lease, outcome, err = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local key = prefix .. 'task:' .. id
  local f = redis.call('HMGET', key, 'lease', 'state', 'attempt', 'attempts', 'queue', 'prio')
  if f[1] ~= lease or (f[2] ~= 'Executing' and f[2] ~= 'Cancelling') then
    refused[#refused + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
    left = left + 1
    if f[2] == 'Cancelling' and outcome ~= 'Success' then
      outcome = 'Canceled'
      err = 'Canceled by an operator while executing'
    end
    local attempt = tonumber(f[3] or '1')
    local attempts = tonumber(f[4] or '1')
    if outcome == 'Interrupted' then
      local prio = f[6] or '0'
      redis.call('HSET', key, 'state', 'Queued', 'attempt', attempt - 1,
        'error', 'interrupted by node shutdown; requeued')
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('LPUSH', prefix .. 'q:' .. f[5] .. ':' .. prio, id)
      redis.call('ZADD', prefix .. 'qp:' .. f[5], prio, prio)
      redis.call('HINCRBY', KEYS[2], 'ready', 1)
      woken[f[5]] = true
      requeued = requeued + 1
    elseif outcome == 'Failed' and attempt < attempts then
      redis.call('HSET', key, 'state', 'Queued', 'error',
        'attempt ' .. attempt .. ' of ' .. attempts .. ' failed: ' .. err)
      redis.call('HDEL', key, 'node', 'lease', 'started')
      redis.call('ZADD', KEYS[4], now + tonumber(ARGV[b + 7]), id)
      woken[f[5]] = true
      retried = retried + 1
    else
      redis.call('HSET', key, 'state', outcome, 'completed', now, 'error', err)
      if ARGV[b + 5] ~= '-1' then redis.call('HSET', key, 'exit', ARGV[b + 5]) end
      if ARGV[b + 6] ~= '' then
        redis.call('SET', prefix .. 'log:' .. id, ARGV[b + 6], 'PX', retention)
      end
      redis.call('PEXPIRE', key, retention)
      redis.call('ZADD', KEYS[3], now, id)
      done = done + 1
    end
  end
end
if left > 0 then redis.call('HINCRBY', KEYS[2], 'running', -left) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - retention)
for q in pairs(woken) do redis.call('PUBLISH', ARGV[4], q) end
local out = {done, retried, requeued}
for _, id in ipairs(refused) do out[#out + 1] = id end
return out
