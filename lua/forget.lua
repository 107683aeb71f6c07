-- forget.lua: removes an offline node from the registry (`shoal forget`, DELETE on the API).
--
-- KEYS[1] node hash   KEYS[2] liveness key   KEYS[3] node set   KEYS[4] running set
-- ARGV: 1 node name
-- Returns 1, or an error reply: "NONODE ..." unknown, "ALIVE ..." the node is alive,
-- "BUSY ..." tasks are still recorded as running there (recovery must finish them first).
-- Cost: O(1).
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  return redis.error_reply('NONODE no node named ' .. ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ALIVE node ' .. ARGV[1] .. ' is alive; drain and stop it first')
end
local running = redis.call('ZCARD', KEYS[4])
if running > 0 then
  return redis.error_reply('BUSY node ' .. ARGV[1] .. ' still has ' .. running ..
    ' running task(s) awaiting recovery')
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
