-- list_tasks.lua: one page of tasks for the HTTP API (GET /api/tasks, a node's details), in
-- the order `shoal tasks` shows them: executing (per node, by name), queued (per queue by name,
-- highest priority first, in run order, then scheduled ones by due time), finished (newest
-- first).
--
-- KEYS[1] node set {NS}:nodes   KEYS[2] queue names {NS}:queues
-- KEYS[3] scheduled set {NS}:scheduled   KEYS[4] finished index {NS}:done
-- ARGV: 1 key prefix "{NS}:", 2 node name ('' = any node), 3 states as a comma list ('' = all),
--       4 skip, 5 take, 6 scan limit (the most candidate ids looked at)
-- Returns {total, truncated (0|1), {id, field, value, ...}, ...}: total counts the matching
-- tasks among the candidates looked at (all of them unless truncated is 1); the entries are
-- matches skip+1 .. skip+take with every field of their task hash.
-- Each group admits only its own states, so a canceled task still sitting in a ready list (the
-- next claim drops it) is listed once, as finished.
-- Cost: O(scan limit): one HMGET per candidate, one HGETALL per task returned. The API sends
-- 2,000 (API_SCAN_LIMIT): about 2.6 ms of Redis when no candidate matches.
local prefix, node = ARGV[1], ARGV[2]
local skip, take, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local any = ARGV[3] == ''
local want = {}
for s in string.gmatch(ARGV[3], '[^,]+') do want[s] = true end
local total, seen, truncated = 0, 0, 0
local out = {0, 0}

local function wanted(group)
  if any then return true end
  for s in pairs(group) do if want[s] then return true end end
  return false
end

-- Ids still affordable within the scan limit (0 marks the listing truncated).
local function budget()
  local left = limit - seen
  if left <= 0 then truncated = 1 end
  return left
end

local function consider(ids, group)
  for _, id in ipairs(ids) do
    if seen >= limit then truncated = 1; return end
    seen = seen + 1
    local key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', key, 'state', 'node')
    local st = f[1]
    if st and group[st] and (any or want[st]) and (node == '' or f[2] == node) then
      total = total + 1
      if total > skip and total <= skip + take then
        local e = {id}
        local h = redis.call('HGETALL', key)
        for i = 1, #h do e[#e + 1] = h[i] end
        out[#out + 1] = e
      end
    end
  end
end

local running = {Executing = true, Cancelling = true}
local queued = {Queued = true}
local final = {Success = true, Failed = true, Canceled = true, TimedOut = true}

if wanted(running) then
  local names = {node}
  if node == '' then
    names = redis.call('SMEMBERS', KEYS[1])
    table.sort(names)
  end
  for _, n in ipairs(names) do
    local left = budget()
    if left <= 0 then break end
    consider(redis.call('ZRANGE', prefix .. 'running:' .. n, 0, left - 1), running)
  end
end
if wanted(queued) and node == '' then
  local queues = redis.call('SMEMBERS', KEYS[2])
  table.sort(queues)
  for _, q in ipairs(queues) do
    for _, p in ipairs(redis.call('ZREVRANGE', prefix .. 'qp:' .. q, 0, -1)) do
      local left = budget()
      if left <= 0 then break end
      consider(redis.call('LRANGE', prefix .. 'q:' .. q .. ':' .. p, 0, left - 1), queued)
    end
  end
  local left = budget()
  if left > 0 then consider(redis.call('ZRANGE', KEYS[3], 0, left - 1), queued) end
end
if wanted(final) then
  local left = budget()
  if left > 0 then consider(redis.call('ZREVRANGE', KEYS[4], 0, left - 1), final) end
end
out[1], out[2] = total, truncated
return out
