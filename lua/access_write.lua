-- access_write.lua: every change to users and API keys (shoal user/apikey, POST/DELETE
-- /api/users...). Validates first, writes only when every check passed, then raises the access
-- version, publishes it (every node reloads its access cache) and appends the audit event.
--
-- KEYS[1] user names {NS}:users   KEYS[2] key ids {NS}:apikeys   KEYS[3] version {NS}:access_ver
-- KEYS[4] audit stream {NS}:events
-- ARGV: 1 prefix "{NS}:", 2 now (ms), 3 access channel, 4 event retention (ms), 5 event JSON
-- ('' for none), 6 op, then per op:
--   user_add     7 name, 8 role, 9 display name, 10 service (0|1)
--   user_remove  7 name                (removes the user's keys too)
--   key_create   7 id, 8 user, 9 sha256 hex, 10 purpose, 11 expires (ms, 0 never),
--                12 access (FullAccess|ReadOnly), 13 hint
--   key_revoke   7 id, 8 owner ('' or absent: any; else NOKEY unless the key is the owner's)
-- Returns {version, detail}: detail is the user name (user ops, key_revoke: the key's user) or
-- the key id (key_create). Errors: BADROLE, BADACCESS, EXISTS, NOUSER, NOKEY, TOOMANY, BADOP.
-- Cost: O(1), except user_remove: O(keys), at most 2,000 (ACCESS_MAX_KEYS) SISMEMBER/HGET plus
-- the user's own keys (at most 100) deleted; plus one XADD (trimmed by MINID ~ and MAXLEN ~).
local p, now, op = ARGV[1], tonumber(ARGV[2]), ARGV[6]
local roles = {viewer = true, buildserver = true, operator = true, administrator = true}
local detail
if op == 'user_add' then
  local name = ARGV[7]
  if not roles[ARGV[8]] then return redis.error_reply('BADROLE unknown role ' .. ARGV[8]) end
  if redis.call('SISMEMBER', KEYS[1], name) == 1 then
    return redis.error_reply('EXISTS a user named ' .. name .. ' exists')
  end
  if redis.call('SCARD', KEYS[1]) >= 500 then
    return redis.error_reply('TOOMANY at most 500 users')
  end
  redis.call('SADD', KEYS[1], name)
  redis.call('HSET', p .. 'user:' .. name, 'name', name, 'role', ARGV[8], 'display', ARGV[9],
             'service', ARGV[10], 'created', now)
  detail = name
elseif op == 'user_remove' then
  local name = ARGV[7]
  if redis.call('SISMEMBER', KEYS[1], name) == 0 then
    return redis.error_reply('NOUSER no user named ' .. name)
  end
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('HGET', p .. 'apikey:' .. id, 'user') == name then
      redis.call('DEL', p .. 'apikey:' .. id)
      redis.call('SREM', KEYS[2], id)
      redis.call('HDEL', p .. 'apikey_used', id)
    end
  end
  redis.call('SREM', KEYS[1], name)
  redis.call('DEL', p .. 'user:' .. name)
  detail = name
elseif op == 'key_create' then
  local id, user = ARGV[7], ARGV[8]
  if ARGV[12] ~= 'FullAccess' and ARGV[12] ~= 'ReadOnly' then
    return redis.error_reply('BADACCESS access must be FullAccess or ReadOnly')
  end
  if redis.call('SISMEMBER', KEYS[1], user) == 0 then
    return redis.error_reply('NOUSER no user named ' .. user)
  end
  if redis.call('SISMEMBER', KEYS[2], id) == 1 then
    return redis.error_reply('EXISTS a key with id ' .. id .. ' exists')
  end
  if redis.call('SCARD', KEYS[2]) >= 2000 then
    return redis.error_reply('TOOMANY at most 2000 API keys')
  end
  redis.call('SADD', KEYS[2], id)
  redis.call('HSET', p .. 'apikey:' .. id, 'id', id, 'user', user, 'sha256', ARGV[9],
             'purpose', ARGV[10], 'created', now, 'expires', ARGV[11], 'access', ARGV[12],
             'hint', ARGV[13])
  detail = id
elseif op == 'key_revoke' then
  local id = ARGV[7]
  if redis.call('SISMEMBER', KEYS[2], id) == 0 then
    return redis.error_reply('NOKEY no API key with id ' .. id)
  end
  detail = redis.call('HGET', p .. 'apikey:' .. id, 'user') or ''
  if ARGV[8] and ARGV[8] ~= '' and ARGV[8] ~= detail then
    return redis.error_reply('NOKEY user ' .. ARGV[8] .. ' has no API key with id ' .. id)
  end
  redis.call('DEL', p .. 'apikey:' .. id)
  redis.call('SREM', KEYS[2], id)
  redis.call('HDEL', p .. 'apikey_used', id)
else
  return redis.error_reply('BADOP unknown op ' .. op)
end
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[3], 'v ' .. v)
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[4], 'MINID', '~', string.format('%d', now - tonumber(ARGV[4])), '*', 'e', ARGV[5])
  redis.call('XTRIM', KEYS[4], 'MAXLEN', '~', 1000000)
end
return {v, detail}
