-- package.lua: the package metadata of one space, changed only under the package's lock.
-- An upload or delete first takes {NS}:pkglock:<space>:<key> with SET NX PX (a token of its
-- own), does its file work, then runs this script, which checks the token so that a holder
-- whose lock expired can never overwrite a newer holder's work.
--
-- KEYS[1] package hash {NS}:pkg:<space>:<key>   KEYS[2] space index {NS}:pkgs:<space>
-- KEYS[3] spaces set {NS}:pkgspaces              KEYS[4] lock {NS}:pkglock:<space>:<key>
-- ARGV[1] op: "commit" | "delete" | "unlock"; ARGV[2] lock token; ARGV[3] key
--   (<PackageId>.<Version>, the index member); ARGV[4] space
--   commit: ARGV[5] published (epoch ms), ARGV[6..] field, value, ... (the package hash)
-- Returns 1 (commit, unlock; delete: 1 when there was a package, 0 when none), or an error
-- reply "LOCKLOST ..." when the lock is not (or no longer) the caller's: nothing is changed.
-- Cost: O(log N) in the space's packages, plus the hash's fields.
if redis.call('GET', KEYS[4]) ~= ARGV[2] then
  return redis.error_reply('LOCKLOST the package lock expired or was taken over')
end
local op = ARGV[1]
if op == 'commit' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[4])
  redis.call('DEL', KEYS[4])
  return 1
elseif op == 'delete' then
  local had = redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
  if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[4]) end
  redis.call('DEL', KEYS[4])
  return had
elseif op == 'unlock' then
  redis.call('DEL', KEYS[4])
  return 1
end
return redis.error_reply('BADOP unknown op ' .. tostring(op))
