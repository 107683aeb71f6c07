-- cancelling.lua: which of a node's running tasks were canceled (state Cancelling). Cancel
-- reaches a running node by PUBLISH ("cancel <node> <id>" on the control channel); a message
-- sent while the node's subscriber link was away is lost, so a node with tasks running asks
-- this at every heartbeat, and so after every subscriber reconnect: a lost message costs at
-- most one heartbeat. Read-only.
--
-- KEYS[1] the node's running set {NS}:running:<name>
-- ARGV: 1 key prefix "{NS}:", 2 most entries of the running set to look at (the node's cap)
-- Returns the numeric ids, among the first ARGV[2] of the running set, whose task hash is
-- Cancelling.
-- Cost: O(log N + M) for M = min(running, ARGV[2]): one HGET per task looked at.
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  if redis.call('HGET', ARGV[1] .. 'task:' .. id, 'state') == 'Cancelling' then
    out[#out + 1] = id
  end
end
return out
