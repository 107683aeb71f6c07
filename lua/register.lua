-- register.lua: a node process claims its name and marks itself alive.
--
-- KEYS[1] node hash {NS}:node:<name>    KEYS[2] liveness key {NS}:alive:<name>
-- KEYS[3] node set  {NS}:nodes              KEYS[4] fleet counters {NS}:stats
-- KEYS[5] layout version {NS}:layout
-- ARGV: 1 name, 2 instance id, 3 now (ms), 4 ttl (ms), 5 configured cap, 6 version, 7 host,
--       8 pid, 9 listen address, 10 queues, 11 heartbeat (ms), 12 the build's layout version
-- Returns {'layout', namespace's layout, build's layout} when the namespace is at a newer layout
--         than this build writes (nothing is written: the node must stop), else
--         {'busy', holder instance, pttl ms} when another live instance holds the name, else
--         {'ok', previous instance or '', cap, drain (0|1), cap_by}.
-- The layout version is raised to the build's when it is lower (or absent): an older build that
-- checks it is then refused at its next registration (common/keys.h, SHOAL_LAYOUT).
-- The cap an operator set (cap_by=operator) and the operator's drain survive a restart; a cap set
-- only by configuration follows --cap. Cost: O(1).
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
local layout = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
local mine = tonumber(ARGV[12]) or 0
if layout > mine then
  return {'layout', layout, mine}
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then
  return {'busy', holder, redis.call('PTTL', KEYS[2])}
end
if layout < mine then
  redis.call('SET', KEYS[5], mine)
end
local prev = redis.call('HGET', KEYS[1], 'instance') or ''
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
local cap_by = redis.call('HGET', KEYS[1], 'cap_by')
if cap_by ~= 'operator' then
  cap_by = 'config'
  redis.call('HSET', KEYS[1], 'cap', ARGV[5], 'cap_by', 'config')
end
if not redis.call('HGET', KEYS[1], 'drain') then
  redis.call('HSET', KEYS[1], 'drain', '0')
end
if not redis.call('HGET', KEYS[1], 'registered') then
  redis.call('HSET', KEYS[1], 'registered', ARGV[3])
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'instance', ARGV[2], 'started', ARGV[3],
  'last_seen', ARGV[3], 'version', ARGV[6], 'host', ARGV[7], 'pid', ARGV[8],
  'listen', ARGV[9], 'queues', ARGV[10], 'heartbeat_ms', ARGV[11], 'ttl_ms', ARGV[4])
redis.call('HDEL', KEYS[1], 'offline_at')
redis.call('SADD', KEYS[3], ARGV[1])
recount(KEYS[1], KEYS[4], true)
return {'ok', prev, tonumber(redis.call('HGET', KEYS[1], 'cap')),
  tonumber(redis.call('HGET', KEYS[1], 'drain')), cap_by}
