-- Included by select-leases (bulk revoke) and claim-orphaned-leases: writes a lease's backend
-- revocation job (the revocation queue's hash, enqueue-revocation's format, attempts 0) unless the
-- lease already has one, whose attempt count is then left alone. Returns true when it wrote one:
-- the caller then adds the lease id to the queue zset with its runAt.
local function newRevocationJob(prefix, id, backend, backendRef, expiresAt, reason)
  local jobKey = prefix .. ':revoke:job:' .. id
  if redis.call('EXISTS', jobKey) == 1 then
    return false
  end
  redis.call('HSET', jobKey, 'leaseId', id, 'backend', backend, 'backendRef', backendRef,
    'expiresAt', expiresAt, 'reason', reason, 'attempts', '0')
  return true
end
