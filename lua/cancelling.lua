-- cancelling.lua: which of a node's running tasks were canceled (state Cancelling). Cancel
-- reaches a running node by PUBLISH ("cancel <node> <id>" on the control channel); a message
-- sent while the node's subscriber link was away is lost, so a node with tasks running asks
-- this at every heartbeat, and so after every subscriber reconnect: a lost message costs at
-- most one heartbeat. Read-only.
--
-- KEYS[1] the node's running set {NS}:running:<name>
-- ARGV: 1 key prefix "{NS}:", 2 first rank to look at (0 = the first), 3 how many entries to
--   look at (at most 1,000 are: the node asks again from first + 1,000 after the answer, until
--   it has looked at its cap's worth)
-- Returns the numeric ids, among those entries, whose task hash is Cancelling.
-- Bound: one ZRANGE and at most 1,000 HGETs (about 1.3 ms here; a node of cap 10,000 asking
-- for all of its running set at once took 12-13 ms every heartbeat before this bound).
local first, count = tonumber(ARGV[2]), tonumber(ARGV[3])
if not first or not count or first < 0 or count < 1 then
  return redis.error_reply('BADARGS first rank and count are numbers, count at least 1')
end
count = math.min(count, 1000)
local ids = redis.call('ZRANGE', KEYS[1], first, first + count - 1)
local out = {}
for _, id in ipairs(ids) do
  if redis.call('HGET', ARGV[1] .. 'task:' .. id, 'state') == 'Cancelling' then
    out[#out + 1] = id
  end
end
return out
