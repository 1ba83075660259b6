-- Included by select-leases (bulk revoke) and claim-orphaned-leases: writes a lease's backend
-- revocation job (the revocation queue's hash, enqueue-revocation's format, attempts 0) unless the
-- lease already has one, whose attempt count is then left alone. Returns true when it wrote one:
-- the caller then adds the lease id to the queue zset with its runAt.
--
-- writeRevocationJob writes without the check, for a caller that already knows the job is absent
-- (the bulk revoke checks a whole page of job keys with one EXISTS).
local function writeRevocationJob(jobKey, id, backend, backendRef, expiresAt, reason)
  redis.call('HSET', jobKey, 'leaseId', id, 'backend', backend, 'backendRef', backendRef,
    'expiresAt', expiresAt, 'reason', reason, 'attempts', '0')
end

local function newRevocationJob(prefix, id, backend, backendRef, expiresAt, reason)
  local jobKey = prefix .. ':revoke:job:' .. id
  if redis.call('EXISTS', jobKey) == 1 then
    return false
  end
  writeRevocationJob(jobKey, id, backend, backendRef, expiresAt, reason)
  return true
end
