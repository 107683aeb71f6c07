-- set_cap.lua: an operator sets a node's task cap. The node hears it at once on the control
-- channel; the cap persists across the node's restarts (cap_by=operator).
--
-- KEYS[1] node hash
-- ARGV: 1 node name, 2 cap (0..10000), 3 control channel name
-- Returns {cap, drain}, or an error reply "NONODE ..." when the node is unknown.
-- Cost: O(1) plus one PUBLISH.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NONODE no node named ' .. ARGV[1])
end
local cap = tonumber(ARGV[2])
if not cap or cap < 0 or cap > 10000 or cap ~= math.floor(cap) then
  return redis.error_reply('BADCAP cap must be a whole number from 0 to 10000')
end
redis.call('HSET', KEYS[1], 'cap', cap, 'cap_by', 'operator')
local drain = tonumber(redis.call('HGET', KEYS[1], 'drain') or '0')
redis.call('PUBLISH', ARGV[3], 'node ' .. ARGV[1] .. ' ' .. cap .. ' ' .. drain)
return {cap, drain}
