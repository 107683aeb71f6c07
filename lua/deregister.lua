-- deregister.lua: a clean shutdown. The node turns Offline at once (its liveness key goes) and
-- records when; an operator's drain is kept, cap and history too.
--
-- KEYS[1] node hash   KEYS[2] liveness key
-- ARGV: 1 instance id, 2 now (ms)
-- Returns 1, or 0 when this instance no longer owns the name (nothing is changed then).
-- Cost: O(1).
if redis.call('HGET', KEYS[1], 'instance') ~= ARGV[1] then
  return 0
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[2], 'offline_at', ARGV[2])
return 1
