-- turn.lua: one turn of a node's loop in one call: its reports, then its next claim, so a node
-- whose tasks finished takes the next ones in the same round trip and the same script call
-- (one EVALSHA's fixed cost instead of two). The two halves are complete.lua and claim.lua
-- themselves, included below at build time (cmake/embed_lua.cmake replaces each `--@body`
-- line with that file), so their rules, bounds and answers are theirs: the reports are applied
-- first, and the claim then sees the slots they freed.
--
-- KEYS[1] node hash   KEYS[2] liveness key   KEYS[3] node running set {NS}:running:<name>
-- KEYS[4] fleet counters {NS}:stats   KEYS[5] scheduled set {NS}:scheduled
-- KEYS[6] finished index {NS}:done
-- ARGV: 1 key prefix "{NS}:", 2 node name, 3 instance id, 4 now (ms), 5 max tasks,
--   6 balance (1|0), 7 lease margin (ms), 8 push (1|0, as claim.lua), 9 retention (ms),
--   10 wake channel, 11 queue count Q,
--   then Q queue names in order, then the report count N and N groups of 7 as complete.lua
--   takes them (id, lease, outcome, error text, exit code, log, retry delay)
-- Returns {complete.lua's answer, claim.lua's answer}. A malformed report is complete.lua's
-- BADARGS error and nothing is written (the claim is not tried); an error of the claim half
-- (its BADARGS, or a failure part-way) is the second element, an error reply, after the
-- reports were applied.
-- Bound: complete.lua's (N reports, the node sends at most 256) plus claim.lua's (at most `max`
-- tasks claimed, 256 promoted, 256 units skipped, one ZREVRANGE per queue named).
local function complete(KEYS, ARGV)
--@body complete.lua
end

local function claim(KEYS, ARGV)
--@body claim.lua
end

local nq = tonumber(ARGV[11])
if not nq or nq < 0 or nq % 1 ~= 0 or #ARGV < 12 + nq then
  return redis.error_reply('BADARGS expected 11 + Q queue names + 1 + 7*N arguments')
end
local report_args = {ARGV[1], ARGV[4], ARGV[9], ARGV[10]}
for i = 12 + nq, #ARGV do report_args[#report_args + 1] = ARGV[i] end
local reported = complete({KEYS[3], KEYS[4], KEYS[6], KEYS[5]}, report_args)
if reported.err then return reported end
local claim_args = {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]}
for i = 12, 11 + nq do claim_args[#claim_args + 1] = ARGV[i] end
local ok, claimed = pcall(claim, KEYS, claim_args)
if not ok then
  claimed = {err = type(claimed) == 'table' and tostring(claimed.err) or tostring(claimed)}
end
return {reported, claimed}
