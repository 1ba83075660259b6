--[[
  Claims up to `limit` orphaned leases: `pending` leases written at or before a cutoff, which no
  broker activated (it died between the lease write and the audit record, or the write landed
  after its caller had given up). Each moves to `revoking` as end-lease moves it (deny-listed at
  once) and gets its backend revocation queued in the same step, so a reaper that dies after the
  claim still leaves a durable job behind. A claimed lease has left the pending set, so each is
  handed to exactly one of several concurrent reapers.

  Input:
    KEYS[1] active leases      {prefix}:active-leases (the pending set is KEYS[1]:pending)
    KEYS[2] revoked leases     {prefix}:revoked
    KEYS[3] revocation queue   {prefix}:revoke:queue (zset leaseId -> runAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] cutoff (epoch ms): pending leases written at or before it are orphans
    ARGV[3] limit
    ARGV[4] reason recorded on each lease and job
    ARGV[5] at (epoch ms)
    ARGV[6] runAt of the queued jobs (epoch ms)

  Lease keys are built from ARGV[1] (ids are only known once the pending set is read); safe on
  Redis Cluster because every key of the store shares the `{prefix}` hash tag. Each job is
  lease-based: the queue entry alone, no job hash (the worker builds the job from the `revoking`
  lease when it claims it: claim-revocations); ZADD NX keeps the runAt of a job queued before.

  Output:
    an array of claimed lease hashes, each a flat array (empty when there is no orphan)
]]
--- @include "end-lease"

local prefix = ARGV[1]
local cutoff = ARGV[2]
local limit = tonumber(ARGV[3])
local reason, at, runAt = ARGV[4], ARGV[5], ARGV[6]
local pendingKey = KEYS[1] .. ':pending'

local claimed = {}
local ids = redis.call('ZRANGEBYSCORE', pendingKey, '-inf', cutoff, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local lease = endLease(prefix .. ':lease:' .. id, KEYS[1], KEYS[2], id, 'revoking', reason, at, 0)
  if type(lease) == 'table' then
    redis.call('ZADD', KEYS[3], 'NX', runAt, id)
    claimed[#claimed + 1] = lease
  else
    -- An entry without a pending record behind it is stale; dropping it keeps the set true.
    redis.call('ZREM', pendingKey, id)
  end
end
return claimed
