--[[
  Lists grants not yet reviewed, oldest first, expired ones included (they stay until reviewed).
  Prunes entries whose record is gone or already reviewed.

  Input:
    KEYS[1] unreviewed         {prefix}:breakglass:unreviewed (zset id -> createdAt)

    ARGV[1] prefix, e.g. `{svb}`

  Grant keys ({prefix}:breakglass:<id>) are built from ARGV[1]; safe on Redis Cluster because every
  key of the store shares the `{prefix}` hash tag.

  Output:
    an array of grant hashes, each a flat array
]]
local prefix = ARGV[1]

local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = prefix .. ':breakglass:' .. id
  local reviewed = redis.call('HGET', key, 'reviewed')
  if not reviewed or reviewed == '1' then
    redis.call('ZREM', KEYS[1], id)
  else
    found[#found + 1] = redis.call('HGETALL', key)
  end
end
return found
