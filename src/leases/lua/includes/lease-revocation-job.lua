-- Included by claim-revocations, retry-revocation and get-revocation. A bulk revocation
-- (select-leases) and an orphan claim (claim-orphaned-leases) queue a lease's revocation without a
-- job hash: the queue entry alone, in the same step that moves the lease to `revoking`. Such a
-- lease-based job is the lease record itself, which carries what the job would (backend,
-- backendRef, expiresAt, and the reason as revokeReason) and keeps no TTL while `revoking`.
--
-- Returns the job as the fields of a job hash (enqueue-revocation's format, attempts 0), or nil
-- when the lease is no longer `revoking` (its outcome is recorded, or the record is gone): then
-- there is nothing left to revoke, and the queue entry is stale.
local function leaseRevocationJob(leaseKey, id)
  local v = redis.call('HMGET', leaseKey, 'state', 'backend', 'backendRef', 'expiresAt', 'revokeReason')
  if v[1] ~= 'revoking' then
    return nil
  end
  -- A revoking lease always has these fields (put-lease and end-lease write them); were one
  -- missing, the HSET of the caller fails the script, so the job stays queued and the worker
  -- reports it (fail closed), rather than a job being made up.
  return { 'leaseId', id, 'backend', v[2], 'backendRef', v[3], 'expiresAt', v[4], 'reason', v[5],
    'attempts', '0' }
end
