-- package_list.lua: one page of a space's packages, newest first, optionally filtered.
--
-- KEYS[1] space index {NS}:pkgs:<space> (member <PackageId>.<Version>, score published ms)
-- ARGV[1] package hash prefix "{NS}:pkg:<space>:"  ARGV[2] filter (case-insensitive substring
-- of <PackageId>.<Version>; "" for all)  ARGV[3] skip  ARGV[4] take  ARGV[5] nuGetPackageId
-- (a PackageId, case-insensitive; "" for any)  ARGV[6] latest ('1': only the newest published
-- version of each PackageId)  ARGV[7] scan limit (the most index entries looked at when
-- filtering)
-- Returns {total matching, truncated (0|1), {field, value, ...}, ...} with one flat hash per
-- package of the page (a hash gone missing is skipped); total counts the matches among the
-- entries looked at (all of them unless truncated is 1).
-- Bound: without a filter, O(log N + take) (take is at most 1,000: the API's, and the CLI
-- pages by 500); filtering looks at ARGV[7] index entries at most (the API sends 2,000), one
-- HGET each for nuGetPackageId or latest, plus one HGETALL per package of the page.
local filter = string.lower(ARGV[2])
local skip, take = tonumber(ARGV[3]) or 0, tonumber(ARGV[4]) or 0
local nuget, latest = string.lower(ARGV[5] or ''), ARGV[6] == '1'
local limit = tonumber(ARGV[7] or '') or 2000
local page, total, truncated = {}, 0, 0
local function add(member)
  local h = redis.call('HGETALL', ARGV[1] .. member)
  if #h > 0 then page[#page + 1] = h end
end
if filter == '' and nuget == '' and not latest then
  total = redis.call('ZCARD', KEYS[1])
  if take > 0 then
    for _, m in ipairs(redis.call('ZREVRANGE', KEYS[1], skip, skip + take - 1)) do add(m) end
  end
else
  local seen, looked = {}, 0
  while looked < limit do
    local chunk = redis.call('ZREVRANGE', KEYS[1], looked, math.min(looked + 499, limit - 1))
    if #chunk == 0 then break end
    looked = looked + #chunk
    for _, m in ipairs(chunk) do
      local ok = filter == '' or string.find(string.lower(m), filter, 1, true) ~= nil
      if ok and (nuget ~= '' or latest) then
        local id = string.lower(redis.call('HGET', ARGV[1] .. m, 'package_id') or '')
        if id == '' or (nuget ~= '' and id ~= nuget) or (latest and seen[id]) then
          ok = false
        end
        seen[id] = true
      end
      if ok then
        total = total + 1
        if total > skip and total <= skip + take then add(m) end
      end
    end
    if #chunk < 500 then break end
  end
  if looked >= limit and redis.call('ZCARD', KEYS[1]) > limit then truncated = 1 end
end
local out = {total, truncated}
for _, h in ipairs(page) do out[#out + 1] = h end
return out
