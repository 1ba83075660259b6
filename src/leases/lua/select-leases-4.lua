--[[
  One page of a scan over a lease index: lists the leases matching a selector or, in revoke mode,
  moves the matching active ones to `revoking` and queues their backend revocation, all in one
  step per page (the ledger change and the durable job are atomic together). Pages are by rank;
  a revocation pages over a snapshot of the index (ZRANGESTORE by the caller), which nothing else
  changes, so no lease is skipped while others leave the active set.

  Input:
    KEYS[1] source             an index ({prefix}:idx:*, {prefix}:active-leases) or a snapshot of one
    KEYS[2] active leases      {prefix}:active-leases
    KEYS[3] revoked leases     {prefix}:revoked
    KEYS[4] revocation queue   {prefix}:revoke:queue (zset leaseId -> runAt)

    ARGV[1]  prefix, e.g. `{svb}`
    ARGV[2]  mode: list | revoke
    ARGV[3]  offset (rank in KEYS[1])
    ARGV[4]  how many index entries to look at in this page
    ARGV[5]  state, or '' for any (revoke mode only takes `active`)
    ARGV[6]  lease id, or ''
    ARGV[7]  agent (exact), or ''
    ARGV[8]  agent pattern base (ends in '/'), or ''
    ARGV[9]  agent pattern depth: one | many | ''
    ARGV[10] task id, or ''
    ARGV[11] environment, or ''
    ARGV[12] role, or ''
    ARGV[13] backend, or ''
    ARGV[14] trust domain prefix `spiffe://<td>/`, or ''
    ARGV[15] reason (revoke)
    ARGV[16] at, epoch ms (revoke)
    ARGV[17] runAt of the queued jobs, epoch ms (revoke)
    ARGV[18] retention (ms)

  Lease and job keys are built from ARGV[1]; safe on Redis Cluster because every key of the store
  shares the `{prefix}` hash tag. Revoked leases go through end-lease, as mark-lease-ended does,
  and each queued job is the revocation queue's hash (enqueue-revocation's format).

  Output:
    { next offset (-1 when the source is exhausted), entries looked at, lease hash, lease hash, ... }
    (in revoke mode the hashes are the leases after the move to `revoking`)
]]
--- @include "end-lease"

local prefix = ARGV[1]
local mode = ARGV[2]
local offset = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local want = {
  state = ARGV[5], id = ARGV[6], agent = ARGV[7], taskId = ARGV[10],
  environment = ARGV[11], role = ARGV[12], backend = ARGV[13],
}
local patternBase, patternDepth, tdPrefix = ARGV[8], ARGV[9], ARGV[14]
local reason, at, runAt, retentionMs = ARGV[15], ARGV[16], ARGV[17], tonumber(ARGV[18])

local function agentMatches(agent)
  if patternBase ~= '' then
    if #agent <= #patternBase or string.sub(agent, 1, #patternBase) ~= patternBase then
      return false
    end
    if patternDepth == 'one' and string.find(agent, '/', #patternBase + 1, true) then
      return false
    end
  end
  if tdPrefix ~= '' and string.sub(agent, 1, #tdPrefix) ~= tdPrefix then
    return false
  end
  return true
end

local ids = redis.call('ZRANGE', KEYS[1], offset, offset + count - 1)
local out = { -1, #ids }
if #ids == count then
  out[1] = offset + count
end
for _, id in ipairs(ids) do
  local leaseKey = prefix .. ':lease:' .. id
  local flat = redis.call('HGETALL', leaseKey)
  if #flat > 0 then
    local lease = {}
    for i = 1, #flat, 2 do
      lease[flat[i]] = flat[i + 1]
    end
    local matches = agentMatches(lease.agent or '')
    for field, expected in pairs(want) do
      if expected ~= '' and lease[field] ~= expected then
        matches = false
      end
    end
    if matches then
      if mode == 'revoke' then
        local jobKey = prefix .. ':revoke:job:' .. id
        if redis.call('EXISTS', jobKey) == 0 then
          redis.call('HSET', jobKey, 'leaseId', id, 'backend', lease.backend, 'backendRef', lease.backendRef,
            'expiresAt', lease.expiresAt, 'reason', reason, 'attempts', '0')
          redis.call('ZADD', KEYS[4], runAt, id)
        end
        local ended = endLease(leaseKey, KEYS[2], KEYS[3], id, 'revoking', reason, at, retentionMs)
        if type(ended) == 'table' then
          out[#out + 1] = ended
        end
      else
        out[#out + 1] = flat
      end
    end
  end
end
return out
