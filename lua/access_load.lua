-- access_load.lua: everything a node's access cache holds, in one read: the access version, the
-- users, the API keys (their SHA-256, never a key), their last use, and the active lockouts.
-- Also what `shoal user list` / `shoal apikey list` and GET /api/users... show.
--
-- KEYS[1] user names {NS}:users   KEYS[2] key ids {NS}:apikeys   KEYS[3] version {NS}:access_ver
-- KEYS[4] lockouts {NS}:lockouts   KEYS[5] last use {NS}:apikey_used
-- ARGV: 1 prefix "{NS}:", 2 now (ms)
-- Returns {version, {name, role, display, service, created}..., {id, user, sha256, purpose,
-- created, expires, access, hint, last_used}..., {addr, until}...} as four elements: version,
-- users (flat, 5 a user), keys (flat, 9 a key), lockouts (flat, 2 an address).
-- Cost: O(users + keys + lockouts): at most 500 + 2,000 (access_write.lua refuses more) HMGETs
-- (about 2 ms at the bounds); lockouts are those of the last lockout period, trimmed on add.
local p, now = ARGV[1], tonumber(ARGV[2])
local users, keys, locks = {}, {}, {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local u = redis.call('HMGET', p .. 'user:' .. name, 'role', 'display', 'service', 'created')
  if u[1] then
    users[#users + 1] = name
    for i = 1, 4 do users[#users + 1] = u[i] or '' end
  end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local k = redis.call('HMGET', p .. 'apikey:' .. id, 'user', 'sha256', 'purpose', 'created',
                       'expires', 'access', 'hint')
  if k[1] and k[2] then
    keys[#keys + 1] = id
    for i = 1, 7 do keys[#keys + 1] = k[i] or '' end
    keys[#keys + 1] = redis.call('HGET', KEYS[5], id) or '0'
  end
end
local l = redis.call('ZRANGEBYSCORE', KEYS[4], now, '+inf', 'WITHSCORES', 'LIMIT', 0, 10000)
for i = 1, #l do locks[i] = l[i] end
return {tonumber(redis.call('GET', KEYS[3]) or '0'), users, keys, locks}
