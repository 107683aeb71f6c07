-- auth_fail.lua: a node saw a wrong API key from a client address. Counts it in a window; at the
-- threshold the address is locked out on every node (a PUBLISH each node applies at once; a
-- node that missed it reads {NS}:lockouts at its next access load), and the lockout is audited.
--
-- KEYS[1] the address's failures {NS}:authfail:<addr>   KEYS[2] lockouts {NS}:lockouts
-- KEYS[3] audit stream {NS}:events
-- ARGV: 1 address, 2 now (ms), 3 window (ms), 4 threshold, 5 lockout (ms), 6 access channel,
-- 7 event retention (ms), 8 event JSON (appended when this call locks the address out)
-- Returns {failures in the window, lockout end (ms) or 0}.
-- Cost: O(log N) on the lockouts (trimmed of ended ones, and to 10,000 addresses), one XADD.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
local now = tonumber(ARGV[2])
if n < tonumber(ARGV[4]) then return {n, 0} end
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if cur and tonumber(cur) > now then return {n, tonumber(cur)} end
local till = now + tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], till, ARGV[1])
if redis.call('ZCARD', KEYS[2]) > 10000 then redis.call('ZPOPMIN', KEYS[2]) end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[6], 'lock ' .. ARGV[1] .. ' ' .. till)
redis.call('XADD', KEYS[3], 'MINID', '~', string.format('%d', now - tonumber(ARGV[7])), '*', 'e', ARGV[8])
return {n, till}
