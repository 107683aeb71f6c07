-- set_cap.lua: an operator sets a node's task cap. The node hears it at once on the control
-- channel; the cap persists across the node's restarts (cap_by=operator).
--
-- KEYS[1] node hash   KEYS[2] liveness key   KEYS[3] fleet counters {NS}:stats
-- ARGV: 1 node name, 2 cap (0..10000), 3 control channel name
-- Returns {cap, drain}, or an error reply "NONODE ..." when the node is unknown.
-- Cost: O(1) plus one PUBLISH.
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
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NONODE no node named ' .. ARGV[1])
end
local cap = tonumber(ARGV[2])
if not cap or cap < 0 or cap > 10000 or cap ~= math.floor(cap) then
  return redis.error_reply('BADCAP cap must be a whole number from 0 to 10000')
end
redis.call('HSET', KEYS[1], 'cap', cap, 'cap_by', 'operator')
local drain = tonumber(redis.call('HGET', KEYS[1], 'drain') or '0')
recount(KEYS[1], KEYS[3], redis.call('EXISTS', KEYS[2]) == 1)
redis.call('PUBLISH', ARGV[3], 'node ' .. ARGV[1] .. ' ' .. cap .. ' ' .. drain)
return {cap, drain}
