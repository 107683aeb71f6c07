-- package_list.lua: one page of a space's packages, newest first, optionally filtered.
--
-- KEYS[1] space index {NS}:pkgs:<space> (member <PackageId>.<Version>, score published ms)
-- ARGV[1] package hash prefix "{NS}:pkg:<space>:"  ARGV[2] filter (case-insensitive substring
-- of <PackageId>.<Version>; "" for all)  ARGV[3] skip  ARGV[4] take
-- Returns {total matching, {field, value, ...}, ...} with one flat hash per package of the page
-- (a hash gone missing is skipped).
-- Cost: O(N) in the space's packages when filtering (O(log N + take) without a filter).
local filter = string.lower(ARGV[2])
local skip, take = tonumber(ARGV[3]), tonumber(ARGV[4])
local page, total = {}, 0
local function add(member)
  local h = redis.call('HGETALL', ARGV[1] .. member)
  if #h > 0 then page[#page + 1] = h end
end
if filter == '' then
  total = redis.call('ZCARD', KEYS[1])
  if take > 0 then
    for _, m in ipairs(redis.call('ZREVRANGE', KEYS[1], skip, skip + take - 1)) do add(m) end
  end
else
  for _, m in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
    if string.find(string.lower(m), filter, 1, true) then
      total = total + 1
      if total > skip and total <= skip + take then add(m) end
    end
  end
end
local out = {total}
for _, h in ipairs(page) do out[#out + 1] = h end
return out
