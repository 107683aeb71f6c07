-- sweep.lua: fleet housekeeping run by live nodes about once a minute (safe to run concurrently):
--  * a node whose liveness key is gone stops counting towards the available capacity, and
--    {NS}:stats avail_cap is recomputed exactly from the nodes (corrects any drift);
--  * nodes offline longer than the forget period are forgotten, unless tasks are still recorded
--    as running on them (recovery must finish those first); set members without a hash go;
--  * finished tasks older than the retention are deleted (up to 10,000 per call; complete.lua
--    does the same as it goes, so this matters only for a fleet that finishes nothing).
--
-- KEYS[1] node set {NS}:nodes   KEYS[2] fleet counters {NS}:stats   KEYS[3] finished index
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 forget period (ms), 4 retention (ms)
-- Returns the names forgotten. Cost: O(nodes + tasks deleted).
if KEYS[1] ~= ARGV[1] .. 'nodes' or not tonumber(ARGV[2]) or not tonumber(ARGV[3]) or
    not tonumber(ARGV[4]) then
  return redis.error_reply('BADARGS the prefix must be the keys\' own; times are ms')
end
local names = redis.call('SMEMBERS', KEYS[1])
local gone = {}
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
local total = 0
for _, name in ipairs(names) do
  local node = ARGV[1] .. 'node:' .. name
  local alive = redis.call('EXISTS', ARGV[1] .. 'alive:' .. name) == 1
  local want = 0
  if alive and redis.call('HGET', node, 'drain') ~= '1' then
    want = tonumber(redis.call('HGET', node, 'cap') or '0')
  end
  if redis.call('EXISTS', node) == 1 then redis.call('HSET', node, 'contrib', want) end
  total = total + want
  if not alive and redis.call('ZCARD', ARGV[1] .. 'running:' .. name) == 0 then
    local seen = tonumber(redis.call('HGET', node, 'last_seen') or '0')
    if redis.call('EXISTS', node) == 0 or seen < cutoff then
      redis.call('DEL', node)
      redis.call('SREM', KEYS[1], name)
      gone[#gone + 1] = name
    end
  end
end
redis.call('HSET', KEYS[2], 'avail_cap', total)
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[4]),
  'LIMIT', 0, 10000)
for j = 1, #old, 500 do
  local keys, last = {}, math.min(j + 499, #old)
  for i = j, last do
    keys[#keys + 1] = ARGV[1] .. 'task:' .. old[i]
    keys[#keys + 1] = ARGV[1] .. 'log:' .. old[i]
  end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[3], unpack(old, j, last))
end
return gone
