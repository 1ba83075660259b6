--[[
  Reads one job, for inspection: its hash or, for a lease-based job (a queue entry without a job
  hash, see claim-revocations), the job built from its `revoking` lease, as the worker would claim
  it. Read in one step, so a claim or completion running meanwhile is seen whole or not at all.

  Input:
    KEYS[1] job                {prefix}:revoke:job:<leaseId>
    KEYS[2] queue              {prefix}:revoke:queue
    KEYS[3] lease              {prefix}:lease:<leaseId>

    ARGV[1] lease id

  Output:
    {} when there is no job (nor a queue entry with a `revoking` lease behind it), else
    { runAt, job hash as a flat array }; runAt is '' for a job hash without a queue entry (never
    written so; the caller reports it as corrupt)
]]
--- @include "lease-revocation-job"

local runAt = redis.call('ZSCORE', KEYS[2], ARGV[1])
local job = redis.call('HGETALL', KEYS[1])
if #job == 0 then
  job = runAt and leaseRevocationJob(KEYS[3], ARGV[1])
  if not job then
    return {}
  end
end
return { runAt or '', job }
