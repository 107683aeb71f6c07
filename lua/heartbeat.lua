-- heartbeat.lua: refreshes a live node's TTL and last seen, and reads back its cap and drain
-- (a safety net behind pub/sub: a missed control message is corrected within one heartbeat).
--
-- KEYS[1] node hash   KEYS[2] liveness key   KEYS[3] running set {NS}:running:<name>
-- KEYS[4] fleet counters {NS}:stats
-- ARGV: 1 instance id, 2 now (ms), 3 ttl (ms)
-- Returns {'gone'} when the node hash is missing (Redis flushed, or the node was forgotten):
--         the caller registers again;
--         {'taken', holder} when another instance holds the name: the caller must stop;
--         {'ok', cap, drain, running count, late (1 when the TTL had already expired),
--          ready tasks in the fleet (so an idle node claims only when there is work)}.
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
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'gone'}
end
local holder = redis.call('GET', KEYS[2])
local owner = redis.call('HGET', KEYS[1], 'instance')
if (holder and holder ~= ARGV[1]) or owner ~= ARGV[1] then
  return {'taken', holder or owner or ''}
end
local late = 0
if not holder then late = 1 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
redis.call('HSET', KEYS[1], 'last_seen', ARGV[2])
recount(KEYS[1], KEYS[4], true)
return {'ok', tonumber(redis.call('HGET', KEYS[1], 'cap')),
  tonumber(redis.call('HGET', KEYS[1], 'drain')), redis.call('ZCARD', KEYS[3]), late,
  tonumber(redis.call('HGET', KEYS[4], 'ready') or '0')}
