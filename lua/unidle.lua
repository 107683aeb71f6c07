-- unidle.lua: a node stops being pushed to, and learns when the last push has reached it.
-- Removes the node from {NS}:idle:<queue> of its queues (no enqueue.lua claims for it after
-- this call), then publishes "barrier <token>" on its push channel. Redis writes a published
-- message to a subscriber's connection in order, so when the node reads its barrier it has
-- read every push made before this call: a reconcile sent after that cannot mistake a push
-- still on its way for a lost claim (worker/claim.c; docs/design.md, "Push to an idle node").
--
-- KEYS[1] node hash
-- ARGV: 1 key prefix "{NS}:", 2 node name, 3 instance id, 4 token, 5.. the node's queues
-- Returns the number of subscribers that received the barrier (0: the node is not subscribed
-- on this server, so no push can be on its way to it). Cost: O(queues).
local prefix, name = ARGV[1], ARGV[2]
if KEYS[1] ~= prefix .. 'node:' .. tostring(name) or not ARGV[4] then
  return redis.error_reply('BADARGS the node hash and the name must agree')
end
for i = 5, #ARGV do redis.call('ZREM', prefix .. 'idle:' .. ARGV[i], name) end
return redis.call('PUBLISH', prefix .. 'push:' .. name .. ':' .. ARGV[3], 'barrier ' .. ARGV[4])
