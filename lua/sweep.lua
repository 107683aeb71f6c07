-- sweep.lua: forgets nodes that have been offline longer than the forget period, and drops set
-- members whose hash is gone. A node with tasks still recorded as running is kept (recovery
-- must finish them first). Run by live nodes now and then; safe to run concurrently.
--
-- KEYS[1] node set {NS}:nodes
-- ARGV: 1 key prefix "{NS}:", 2 now (ms), 3 forget period (ms)
-- Returns the names forgotten. Cost: O(nodes).
local names = redis.call('SMEMBERS', KEYS[1])
local gone = {}
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
for _, name in ipairs(names) do
  local node = ARGV[1] .. 'node:' .. name
  if redis.call('EXISTS', ARGV[1] .. 'alive:' .. name) == 0 and
     redis.call('ZCARD', ARGV[1] .. 'running:' .. name) == 0 then
    local seen = tonumber(redis.call('HGET', node, 'last_seen') or '0')
    if redis.call('EXISTS', node) == 0 or seen < cutoff then
      redis.call('DEL', node)
      redis.call('SREM', KEYS[1], name)
      gone[#gone + 1] = name
    end
  end
end
return gone
