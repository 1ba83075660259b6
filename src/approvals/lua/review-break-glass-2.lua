--[[
  Marks a grant reviewed and takes it off the review list. Reviewing does not end an unexpired
  grant. A second review keeps the first one's record (who looked, when, what they noted).

  Input:
    KEYS[1] grant              {prefix}:breakglass:<id> (hash)
    KEYS[2] unreviewed         {prefix}:breakglass:unreviewed (zset id -> createdAt)

    ARGV[1] id
    ARGV[2] reviewer (SPIFFE ID)
    ARGV[3] note
    ARGV[4] at (epoch ms)
    ARGV[5] retention (ms): once reviewed, the grant is dropped at expiresAt + retention

  Output:
    the grant hash as a flat array, or
    -2 break_glass_not_found
]]
local f = redis.call('HMGET', KEYS[1], 'reviewed', 'expiresAt')
if not f[1] then
  return -2
end
if f[1] == '1' then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'reviewed', '1', 'reviewedBy', ARGV[2], 'reviewedAt', ARGV[4], 'reviewNote', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
-- Read before the TTL is set: a grant whose expiresAt + retention already passed is dropped at
-- once, and the reviewer still gets it back.
local record = redis.call('HGETALL', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], tonumber(f[2]) + tonumber(ARGV[5]))
return record
