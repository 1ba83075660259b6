--[[
  Records a lease (`pending` for an issuance, or `active`), only if its task allows it and, when
  an expected version is given, only if the task version is still the one the policy decision
  saw. The checks and the writes are one step, so a task ended concurrently can never gain a lease
  after it ended, and two decisions made on the same task state can never both be recorded.

  Input:
    KEYS[1] task key           {prefix}:task:<taskId>
    KEYS[2] lease key          {prefix}:lease:<id>
    KEYS[3] active leases      {prefix}:active-leases (zset id -> expiresAt)
    KEYS[4] agent index        {prefix}:idx:agent:<agent>
    KEYS[5] task index         {prefix}:idx:task:<taskId>
    KEYS[6] environment index  {prefix}:idx:env:<environment>
    KEYS[7] all-leases index   {prefix}:idx:all
    (every index is a zset id -> expiresAt)
    KEYS[8] quarantines        {prefix}:quarantines (hash pattern -> JSON record)

    ARGV[1] now (epoch ms)
    ARGV[2] retention (ms)
    ARGV[3] lease id
    ARGV[4] lease expiresAt (epoch ms)
    ARGV[5] agent (SPIFFE ID)
    ARGV[6] backend
    ARGV[7] expected task version (`leaseVersion` of the task hash, absent = 0), or '' for no check
    ARGV[8..] field, value, ... of the lease hash (its `state` is `pending` or `active`)

  The quarantine check is here, in the same step as the write, so a quarantine set while the
  request was in flight (its credential already minted) still stops the lease: the broker then
  revokes the credential and refuses the call. `{prefix}:active-leases:by-backend` (a hash
  backend -> count, next to KEYS[3]) counts active leases for the metrics; end-lease decrements it.

  A `pending` lease goes into `{prefix}:active-leases:pending` (a zset id -> the write's `now`,
  next to KEYS[3]), where the reaper finds orphans; activate-lease moves it to KEYS[3]. Every write
  bumps the task's `leaseVersion`, whatever the tally below.

  The task hash also keeps a tally of its leases, `leaseCount` and one `leaseRole:<role>` count
  per role, so the policy context (taskCredentialCount, taskRoles) costs one small read instead of
  listing every lease. A task written before the tally existed has no `leaseCount` and stays
  untallied (readers list its leases instead).

  Output:
     1 ok
    -1 task_not_found
    -2 task_not_active
    -3 task_expired        task.expiresAt <= now
    -4 lease_exceeds_task  lease.expiresAt > task.expiresAt
    -5 lease_exists        ids are never reused: overwriting could resurrect a revoked lease
   -10 agent_quarantined
   -11 task_changed        the task version is not ARGV[7]: the decision is stale, decide again
]]
--- @include "extend-expiry"
--- @include "quarantine-match"
--- @include "open-task"

local now = tonumber(ARGV[1])
local retentionMs = tonumber(ARGV[2])
local id = ARGV[3]
local expiresAt = tonumber(ARGV[4])

local taskCode, taskExpiresAt = openTask(KEYS[1], now)
if taskCode ~= 0 then
  return taskCode
end
if expiresAt > taskExpiresAt then
  return -4
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -5
end
if quarantineMatch(KEYS[8], ARGV[5], now) then
  return -10
end
if ARGV[7] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'leaseVersion') or '0') ~= tonumber(ARGV[7]) then
  return -11
end

local state = 'active'
for i = 8, #ARGV - 1, 2 do
  if ARGV[i] == 'state' then
    state = ARGV[i + 1]
  elseif ARGV[i] == 'role' and redis.call('HEXISTS', KEYS[1], 'leaseCount') == 1 then
    redis.call('HINCRBY', KEYS[1], 'leaseRole:' .. ARGV[i + 1], 1)
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 8))
redis.call('HINCRBY', KEYS[1], 'leaseVersion', 1)
if redis.call('HEXISTS', KEYS[1], 'leaseCount') == 1 then
  redis.call('HINCRBY', KEYS[1], 'leaseCount', 1)
end
-- No TTL while pending or active: such a lease must not vanish before it was revoked or claimed.
if state == 'pending' then
  redis.call('ZADD', KEYS[3] .. ':pending', now, id)
else
  redis.call('HINCRBY', KEYS[3] .. ':by-backend', ARGV[6], 1)
  redis.call('ZADD', KEYS[3], expiresAt, id)
end

-- An index entry outlives its record by nothing: ended records are dropped at
-- expiresAt + retention, so older entries can only point at nothing. Trimming here bounds an
-- index that is never listed; listing prunes the rest.
local horizon = expiresAt + retentionMs
local stale = '(' .. (now - retentionMs)
for i = 4, 7 do
  redis.call('ZADD', KEYS[i], expiresAt, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', stale)
  extendExpiry(KEYS[i], horizon, now)
end
return 1
