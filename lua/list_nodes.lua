-- list_nodes.lua: every known node, read in one atomic step (`shoal nodes`, the API).
--
-- KEYS[1] node set {NS}:nodes
-- ARGV: 1 key prefix "{NS}:" (per-node keys are derived from it; they share KEYS[1]'s hash tag,
--       so the script stays on one slot)
-- Returns an array, one entry per node, sorted by name:
--   {name, alive pttl (ms, -2 when offline), running count, field, value, field, value, ...}
-- Cost: O(nodes).
local names = redis.call('SMEMBERS', KEYS[1])
table.sort(names)
local out = {}
for _, name in ipairs(names) do
  local entry = {name, redis.call('PTTL', ARGV[1] .. 'alive:' .. name),
    redis.call('ZCARD', ARGV[1] .. 'running:' .. name)}
  local h = redis.call('HGETALL', ARGV[1] .. 'node:' .. name)
  for i = 1, #h do entry[#entry + 1] = h[i] end
  out[#out + 1] = entry
end
return out
