--[[
  Removes a finished job (revoked, or given up on after the last attempt).

  A lease-based job (a queue entry without a job hash, see claim-revocations) has never been
  claimed, so only a caller without a claim token can complete it; its lease is not touched.

  Input:
    KEYS[1] job                {prefix}:revoke:job:<leaseId>
    KEYS[2] queue              {prefix}:revoke:queue

    ARGV[1] lease id
    ARGV[2] claim token, or '' to complete whoever holds it

  Output:
     1 ok
    -1 job_not_found
    -2 stale_claim   the job was claimed again since (this worker outlived the visibility
                     timeout); the newer claim owns it
]]
local claim = redis.call('HGET', KEYS[1], 'claim')
if redis.call('EXISTS', KEYS[1]) == 0 then
  if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    return -1
  end
  if ARGV[2] ~= '' then
    return -2
  end
elseif ARGV[2] ~= '' and claim ~= ARGV[2] then
  return -2
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
