--[[
  Moves a `revoking` lease to its outcome, exactly once: `revoked` once the backend confirmed the
  revocation, `revoke_failed` once the revocation queue gave up. Of concurrent callers, one gets the
  lease back and the others get lease_not_revoking. The lease stays on the deny list
  ({prefix}:revoked), where mark-lease-ended put it: the broker set out to revoke it, so it is
  refused downstream whether or not the backend confirmed.

  Input:
    KEYS[1] lease key          {prefix}:lease:<id>

    ARGV[1] outcome: revoked | revoke_failed
    ARGV[2] reason (replaces revokeReason)
    ARGV[3] at (epoch ms; replaces revokedAt)
    ARGV[4] retention (ms): the hash is dropped at expiresAt + retention

  Output:
    the updated lease hash as a flat array, or
    -7 lease_not_found
    -9 lease_not_revoking
]]
local fields = redis.call('HMGET', KEYS[1], 'state', 'expiresAt')
if not fields[1] then
  return -7
end
if fields[1] ~= 'revoking' then
  return -9
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'revokeReason', ARGV[2], 'revokedAt', ARGV[3])
-- Read before the TTL is set: a lease whose expiresAt + retention already passed is dropped by
-- Redis at once, and the caller still needs to see it.
local record = redis.call('HGETALL', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], tonumber(fields[2]) + tonumber(ARGV[4]))
return record
