-- owned.lua: which of a node's runs Redis no longer records as the node's own: the second half
-- of a reconcile (reconcile.lua is the first), in slices. A task whose claim was lost in a
-- failover (so it was queued again), that was recovered elsewhere, or that timed out, must not
-- go on running here, or two runs of one task could overlap; the node stops the runs named in
-- the answer (worker/claim.c). Read-only, so its slices need no quiet: a run the node finished
-- meanwhile is simply no longer there to stop.
--
-- KEYS[1] the node's running set {NS}:running:<name> (it names the node and its slot; not read)
-- ARGV: 1 key prefix "{NS}:", 2 node name, 3.. task numbers the node runs (at most 1,000)
-- Returns the task numbers among them whose task is not Executing or Cancelling on this node.
-- Bound: at most 1,000 HMGETs. The node sends its runs 1,000 a call, the next call after the
-- answer (when reconcile.lua did this for every run in its own call, a node of cap 10,000 made
-- it one call of 28-44 ms).
local prefix, name = ARGV[1], ARGV[2]
if KEYS[1] ~= tostring(prefix) .. 'running:' .. tostring(name) or #ARGV > 1002 then
  return redis.error_reply('BADARGS the running set and the name must agree; at most 1,000 ' ..
    'task numbers')
end
local out = {}
for i = 3, #ARGV do
  local f = redis.pcall('HMGET', prefix .. 'task:' .. ARGV[i], 'state', 'node')
  if f.err or not ((f[1] == 'Executing' or f[1] == 'Cancelling') and f[2] == name) then
    out[#out + 1] = ARGV[i]
  end
end
return out
