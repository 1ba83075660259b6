-- Included by mark-lease-ended and claim-expired-leases, so a lease leaves `active` the same way
-- whichever path ends it.
--
-- A `pending` lease (written, never activated) ends the same way; it only leaves the pending set
-- instead of the active set and the per-backend count.
--
-- Returns the updated lease hash as a flat array, or a named code:
--   -7 lease_not_found, -8 lease_not_active (neither active nor pending)
-- The hash is read before the TTL is set: a lease whose expiresAt + retention already passed is
-- dropped by Redis at once, and the caller still needs to see it.
local function endLease(leaseKey, activeLeasesKey, revokedKey, id, state, reason, at, retentionMs)
  local fields = redis.call('HMGET', leaseKey, 'state', 'expiresAt', 'backend', 'backendRef')
  if not fields[1] then
    return -7
  end
  if fields[1] ~= 'active' and fields[1] ~= 'pending' then
    return -8
  end
  local expiresAt = tonumber(fields[2])
  redis.call('HSET', leaseKey, 'state', state, 'revokeReason', reason, 'revokedAt', at)
  if fields[1] == 'pending' then
    redis.call('ZREM', activeLeasesKey .. ':pending', id)
  else
    redis.call('ZREM', activeLeasesKey, id)
    -- The per-backend count put-lease keeps (same hash tag as activeLeasesKey).
    if fields[3] then
      redis.call('HINCRBY', activeLeasesKey .. ':by-backend', fields[3], -1)
    end
  end
  if state == 'revoked' or state == 'revoking' then
    -- Only credentials the broker revokes belong on a deny list (one being revoked already is);
    -- an expired one is dead anyway.
    redis.call('ZADD', revokedKey, expiresAt, id)
    if fields[3] == 'token' then
      -- The token deny list /v1/revoked pages through: jti -> exp, nothing to read per entry.
      redis.call('ZADD', revokedKey .. ':tokens', expiresAt, fields[4])
    end
  end
  local record = redis.call('HGETALL', leaseKey)
  if state ~= 'revoking' then
    -- A lease still being revoked keeps its record until mark-revoke-outcome sets the TTL, so a
    -- pending revocation can never lose its lease.
    redis.call('PEXPIREAT', leaseKey, expiresAt + retentionMs)
  end
  return record
end
