--[[
  Lists the leases of one index that match the filter, and prunes index entries whose record
  Redis has already dropped (ended records expire at expiresAt + retention).

  Input:
    KEYS[1] index              {prefix}:idx:agent:<agent> | idx:task:<taskId> | idx:env:<env>
                               | idx:all | active-leases

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] agent, or '' for any
    ARGV[3] task id, or '' for any
    ARGV[4] environment, or '' for any
    ARGV[5] state, or '' for any

  Lease keys ({prefix}:lease:<id>) are built from ARGV[1]; safe on Redis Cluster because every key
  of the store shares the `{prefix}` hash tag.

  Output:
    an array of lease hashes, each a flat array, in expiresAt order
]]
local prefix = ARGV[1]
local want = { agent = ARGV[2], taskId = ARGV[3], environment = ARGV[4], state = ARGV[5] }

local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local lease = redis.call('HGETALL', prefix .. ':lease:' .. id)
  if #lease == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    local matches = true
    for i = 1, #lease, 2 do
      local expected = want[lease[i]]
      if expected and expected ~= '' and expected ~= lease[i + 1] then
        matches = false
      end
    end
    if matches then
      found[#found + 1] = lease
    end
  end
end
return found
