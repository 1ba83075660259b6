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
    ARGV[15] reason (revoke only)
    ARGV[16] at, epoch ms (revoke only)
    ARGV[17] runAt of the queued jobs, epoch ms (revoke only)

  Lease and job keys are built from ARGV[1]; safe on Redis Cluster because every key of the store
  shares the `{prefix}` hash tag. A revoked lease changes exactly as end-lease changes it for
  `revoking` (state, reason, time, out of the active set, onto the deny list and, for a token, the
  token deny list KEYS[3]:tokens, the per-backend count), and each queued job is the revocation
  queue's hash (enqueue-revocation's format, written by includes/new-revocation-job).

  Output:
    { next offset (-1 when the source is exhausted), entries looked at, lease, lease, ... }
    list mode: each lease as its hash (flat field/value array);
    revoke mode: each lease moved to `revoking` as { id, agent, taskId, environment, role, backend,
    backendRef, issuedAt, expiresAt } (its state, reason and time are the run's)
]]
--- @include "new-revocation-job"

local prefix = ARGV[1]
local mode = ARGV[2]
local offset = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local want = {
  state = ARGV[5], id = ARGV[6], agent = ARGV[7], taskId = ARGV[10],
  environment = ARGV[11], role = ARGV[12], backend = ARGV[13],
}
local patternBase, patternDepth, tdPrefix = ARGV[8], ARGV[9], ARGV[14]
local reason, at, runAt = ARGV[15], ARGV[16], ARGV[17]

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

-- The fields a revocation reads, in the order of its compact reply (plus state); filters are
-- checked by position, so no table is built per lease.
local FIELDS = { 'id', 'agent', 'taskId', 'environment', 'role', 'backend', 'backendRef', 'issuedAt',
  'expiresAt', 'state' }
local checks = {}
for i, field in ipairs(FIELDS) do
  local expected = want[field]
  if expected and expected ~= '' then
    checks[#checks + 1] = { i, expected }
  end
end

local ended = {}
local moved, deny, queued, tokens = {}, {}, {}, {}
local ids = redis.call('ZRANGE', KEYS[1], offset, offset + count - 1)
local out = { -1, #ids }
if #ids == count then
  out[1] = offset + count
end
for _, id in ipairs(ids) do
  local leaseKey = prefix .. ':lease:' .. id
  local v = redis.call('HMGET', leaseKey, unpack(FIELDS))
  -- v[10] is the state: absent when Redis already dropped the record.
  if v[10] then
    local matches = agentMatches(v[2] or '')
    for _, check in ipairs(checks) do
      if v[check[1]] ~= check[2] then
        matches = false
      end
    end
    if matches and mode == 'revoke' and v[10] == 'active' then
      local backend, expiresAt = v[6], v[9]
      if newRevocationJob(prefix, id, backend, v[7], expiresAt, reason) then
        queued[#queued + 1] = runAt
        queued[#queued + 1] = id
      end
      -- What end-lease does for `revoking`, inlined and batched per page: the lease was read
      -- above, so it is not read again (a bulk revocation touches each lease once). No TTL while
      -- revoking.
      redis.call('HSET', leaseKey, 'state', 'revoking', 'revokeReason', reason, 'revokedAt', at)
      moved[#moved + 1] = id
      deny[#deny + 1] = expiresAt
      deny[#deny + 1] = id
      if backend == 'token' then
        tokens[#tokens + 1] = expiresAt
        tokens[#tokens + 1] = v[7]
      end
      ended[backend] = (ended[backend] or 0) + 1
      -- Compact: the fields in a fixed order (a revoke run returns up to every lease of an
      -- agent, and parsing names with every value costs the driver as much as the script).
      v[10] = nil
      out[#out + 1] = v
    elseif matches and mode ~= 'revoke' then
      out[#out + 1] = redis.call('HGETALL', leaseKey)
    end
  end
end
if #moved > 0 then
  redis.call('ZREM', KEYS[2], unpack(moved))
  redis.call('ZADD', KEYS[3], unpack(deny))
end
if #tokens > 0 then
  redis.call('ZADD', KEYS[3] .. ':tokens', unpack(tokens))
end
if #queued > 0 then
  redis.call('ZADD', KEYS[4], unpack(queued))
end
-- The per-backend active counts put-lease keeps, once per page.
for backend, n in pairs(ended) do
  redis.call('HINCRBY', KEYS[2] .. ':by-backend', backend, -n)
end
return out
