-- set_drain.lua: an operator turns a node's drain on or off. The node hears it at once on the
-- control channel; the drain persists across the node's restarts.
--
-- KEYS[1] node hash
-- ARGV: 1 node name, 2 drain (0|1), 3 control channel name
-- Returns {cap, drain}, or an error reply "NONODE ..." when the node is unknown.
-- Cost: O(1) plus one PUBLISH.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NONODE no node named ' .. ARGV[1])
end
if ARGV[2] ~= '0' and ARGV[2] ~= '1' then
  return redis.error_reply('BADDRAIN drain must be 0 or 1')
end
redis.call('HSET', KEYS[1], 'drain', ARGV[2])
local cap = tonumber(redis.call('HGET', KEYS[1], 'cap') or '0')
redis.call('PUBLISH', ARGV[3], 'node ' .. ARGV[1] .. ' ' .. cap .. ' ' .. ARGV[2])
return {cap, tonumber(ARGV[2])}
