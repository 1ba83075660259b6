--[[
  Claims up to `limit` jobs whose runAt <= now, oldest first, for one worker. A claimed job's score
  moves to now + visibility timeout, so no other worker sees it as due; if its worker dies before
  completing or rescheduling it, it becomes due again then (and another worker picks it up).

  A queue entry without a job hash is a lease-based job (queued by a bulk revocation or an orphan
  claim): its job is built from the `revoking` lease (includes/lease-revocation-job) and written as
  the job hash with the claim, so from its first claim on it is a job like any other and its
  attempts and last error are kept there. An entry whose lease is no longer `revoking` (its outcome
  recorded, e.g. a worker died between recording it and completing the job) is done and dropped.

  Input:
    KEYS[1] queue              {prefix}:revoke:queue (zset leaseId -> runAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] now (epoch ms)
    ARGV[3] limit
    ARGV[4] visible again at (epoch ms): now + visibility timeout
    ARGV[5] claim token, recorded on each job; complete/retry with another token are ignored

  Job keys ({prefix}:revoke:job:<leaseId>) and lease keys ({prefix}:lease:<leaseId>) are built from
  ARGV[1] because the ids are only known once the queue is read. That is safe on Redis Cluster:
  every key shares the `{prefix}` hash tag, so they all live in the slot of KEYS[1].

  Output:
    an array of claimed job hashes, each a flat array (empty when nothing is due)
]]
--- @include "lease-revocation-job"

local prefix = ARGV[1]
local now = ARGV[2]
local limit = tonumber(ARGV[3])
local visibleAt = ARGV[4]
local claim = ARGV[5]

-- Whether the entry has a job: its hash, or a `revoking` lease to build the hash from.
local function jobExists(jobKey, id)
  if redis.call('EXISTS', jobKey) == 1 then
    return true
  end
  local job = leaseRevocationJob(prefix .. ':lease:' .. id, id)
  if not job then
    return false
  end
  redis.call('HSET', jobKey, unpack(job))
  return true
end

local claimed = {}
while #claimed < limit do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #claimed)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local jobKey = prefix .. ':revoke:job:' .. id
    if jobExists(jobKey, id) then
      redis.call('HSET', jobKey, 'claim', claim, 'claimedAt', now)
      redis.call('ZADD', KEYS[1], visibleAt, id)
      claimed[#claimed + 1] = redis.call('HGETALL', jobKey)
    else
      -- An entry without a job behind it is stale (or done); dropping it keeps the loop moving.
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return claimed
