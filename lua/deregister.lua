-- deregister.lua: a clean shutdown. The node turns Offline at once (its liveness key goes) and
-- records when; an operator's drain is kept, cap and history too.
--
-- KEYS[1] node hash   KEYS[2] liveness key   KEYS[3] fleet counters {NS}:stats
-- ARGV: 1 instance id, 2 now (ms)
-- Returns 1, or 0 when this instance no longer owns the name (nothing is changed then).
-- Cost: O(1).
-- A node contributes its cap to the fleet's available capacity ({NS}:stats avail_cap) while it
-- is alive and not draining; 'contrib' records what is counted, so every change is a delta.
local function recount(node, stats, alive)
  local want = 0
  if alive and redis.call('HGET', node, 'drain') ~= '1' then
    want = tonumber(redis.call('HGET', node, 'cap') or '0')
  end
  local had = tonumber(redis.call('HGET', node, 'contrib') or '0')
  if want ~= had then
    redis.call('HINCRBY', stats, 'avail_cap', want - had)
    redis.call('HSET', node, 'contrib', want)
  end
end
if redis.call('HGET', KEYS[1], 'instance') ~= ARGV[1] then
  return 0
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[2], 'offline_at', ARGV[2])
recount(KEYS[1], KEYS[3], false)
return 1
