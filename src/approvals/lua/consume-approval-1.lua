--[[
  Spends an approval: moves an approved, unexpired request whose digest matches to `consumed`.
  Single use: of any number of concurrent callers, exactly one gets the request back.

  Input:
    KEYS[1] request            {prefix}:approval:<id> (hash)

    ARGV[1] digest of the request being issued (an approval is bound to its exact parameters)
    ARGV[2] at (epoch ms)

  Output:
    the consumed request hash as a flat array, or
    -1 not_found
    -2 not_pending             not approved (pending, denied, already consumed, or expired)
    -3 expired                 approved but past expiresAt (the state is now `expired`)
    -8 digest_mismatch         the approved request was for different parameters
]]
local digest = ARGV[1]
local at = tonumber(ARGV[2])

local f = redis.call('HMGET', KEYS[1], 'state', 'digest', 'expiresAt')
if not f[1] then
  return -1
end
if f[2] ~= digest then
  return -8
end
if f[1] ~= 'approved' then
  return -2
end
if tonumber(f[3]) <= at then
  redis.call('HSET', KEYS[1], 'state', 'expired')
  return -3
end
redis.call('HSET', KEYS[1], 'state', 'consumed', 'consumedAt', at)
return redis.call('HGETALL', KEYS[1])
