--[[
  Reschedules a job after a failed attempt and releases its claim. A lease-based job (a queue entry
  without a job hash, see claim-revocations) gets its hash here, built from its `revoking` lease,
  so the attempts and the last error are kept from the first failure on (the broker's inline
  attempt after a bulk revocation retries without a claim).

  Input:
    KEYS[1] job                {prefix}:revoke:job:<leaseId>
    KEYS[2] queue              {prefix}:revoke:queue
    KEYS[3] lease              {prefix}:lease:<leaseId>

    ARGV[1] lease id
    ARGV[2] runAt (epoch ms)
    ARGV[3] attempts so far
    ARGV[4] last error (never a secret: backends keep secrets out of error messages)
    ARGV[5] claim token, or '' to reschedule whoever holds it

  Output:
     1 ok
    -1 job_not_found   no job hash, and no queue entry with a `revoking` lease behind it (a claim
                       token with no job hash is that of a job completed since)
    -2 stale_claim
]]
--- @include "lease-revocation-job"

local claim = redis.call('HGET', KEYS[1], 'claim')
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[5] ~= '' or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    return -1
  end
  local job = leaseRevocationJob(KEYS[3], ARGV[1])
  if not job then
    return -1
  end
  redis.call('HSET', KEYS[1], unpack(job))
elseif ARGV[5] ~= '' and claim ~= ARGV[5] then
  return -2
end
redis.call('HSET', KEYS[1], 'attempts', ARGV[3], 'lastError', ARGV[4])
redis.call('HDEL', KEYS[1], 'claim', 'claimedAt')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
