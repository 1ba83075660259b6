--[[
  Stores a new break-glass grant.

  Input:
    KEYS[1] grant              {prefix}:breakglass:<id> (hash)
    KEYS[2] agent's grants     {prefix}:breakglass:agent:<spiffeId> (zset id -> expiresAt)
    KEYS[3] unreviewed         {prefix}:breakglass:unreviewed (zset id -> createdAt)

    ARGV[1] id
    ARGV[2] createdAt (epoch ms; the broker's "now" for this write)
    ARGV[3] expiresAt (epoch ms)
    ARGV[4..] field, value, ... of the grant hash (uses 0, reviewed 0)

  Output:
     1 ok
    -1 break_glass_exists (ids are never reused: overwriting would erase a use from review)
]]
--- @include "extend-expiry"

if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local id = ARGV[1]
local createdAt = tonumber(ARGV[2])
local expiresAt = tonumber(ARGV[3])

-- No TTL until reviewed: a grant must never vanish before someone has looked at how it was used.
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
-- The agent index only serves findActive, which never needs a grant past its expiresAt.
redis.call('ZADD', KEYS[2], expiresAt, id)
extendExpiry(KEYS[2], expiresAt, createdAt)
redis.call('ZADD', KEYS[3], createdAt, id)
return 1
