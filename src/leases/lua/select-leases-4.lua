--[[
  One page of a scan over a lease index: lists the leases matching a selector or, in revoke mode,
  moves the matching active ones to `revoking` and queues their backend revocation, all in one
  step per page (the ledger change and the durable queue entry are atomic together). Pages are
  by rank; a revocation pages over a snapshot of the index (ZRANGESTORE or ZINTERSTORE by the
  caller), which nothing else changes, so no lease is skipped while others leave the active set.

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

  Lease keys are built from ARGV[1]; safe on Redis Cluster because every key of the store shares
  the `{prefix}` hash tag. A revoked lease changes exactly as end-lease changes it for `revoking`
  (state, reason, time, out of the active set, onto the deny list and, for a token, the token deny
  list KEYS[3]:tokens, the per-backend count), and its revocation is queued as a lease-based job:
  the queue entry alone, no job hash (the worker builds the job from the `revoking` lease when it
  claims it: claim-revocations). ZADD NX keeps the entry, and so the runAt, of a job queued before
  this run (whose hash, if any, keeps its attempt count). Per page, not per lease: one ZREM/ZADD
  with many members for each set (chunked under Lua's stack limit), so a lease costs its read, its
  one hash write and its members in the sets.

  Output:
    list mode: { next offset (-1 when the source is exhausted), entries looked at, lease, ... },
    each lease as its hash (flat field/value array);
    revoke mode: { next offset, entries looked at } and, when the page moved any, a JSON array of
    the leases it moved to `revoking`, each [id, agent, taskId, environment, role, backend,
    backendRef, issuedAt, expiresAt] (strings; their state, reason and time are the run's)
]]
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

-- Redis's Lua stack takes about 8,000 values: batched calls go in chunks of CHUNK values (even,
-- so score/member pairs stay whole).
local CHUNK = 1000
local function callChunked(command, key, option, values)
  for i = 1, #values, CHUNK do
    if option then
      redis.call(command, key, option, unpack(values, i, math.min(i + CHUNK - 1, #values)))
    else
      redis.call(command, key, unpack(values, i, math.min(i + CHUNK - 1, #values)))
    end
  end
end

local function matchesSelector(v)
  if not agentMatches(v[2] or '') then
    return false
  end
  for _, check in ipairs(checks) do
    if v[check[1]] ~= check[2] then
      return false
    end
  end
  return true
end

-- What end-lease does for `revoking`, inlined and batched per page: each lease was read once
-- (a bulk revocation touches each lease once), its state written, and the set and counter
-- updates made once for the page with many members each. No TTL while revoking. The queue entry
-- is the job (no job hash per lease: the `revoking` lease carries what the job would).
local function revokePicked(moved, leaseKeys, rows, out)
  local deny, queued, tokens, ended = {}, {}, {}, {}
  for i, id in ipairs(moved) do
    local v = rows[i]
    local backend, backendRef, expiresAt = v[6], v[7], v[9]
    queued[#queued + 1] = runAt
    queued[#queued + 1] = id
    redis.call('HSET', leaseKeys[i], 'state', 'revoking', 'revokeReason', reason, 'revokedAt', at)
    deny[#deny + 1] = expiresAt
    deny[#deny + 1] = id
    if backend == 'token' then
      tokens[#tokens + 1] = expiresAt
      tokens[#tokens + 1] = backendRef
    end
    ended[backend] = (ended[backend] or 0) + 1
    -- Compact: the fields in a fixed order, without the state (the run's).
    v[10] = nil
  end
  -- One JSON string for the page: a revoke run returns up to every lease of an agent, and
  -- Redis turning nine strings per lease into RESP, and the driver parsing them one by one,
  -- cost more than cjson and JSON.parse over the page.
  out[3] = cjson.encode(rows)
  callChunked('ZREM', KEYS[2], nil, moved)
  callChunked('ZADD', KEYS[3], nil, deny)
  callChunked('ZADD', KEYS[3] .. ':tokens', nil, tokens)
  -- NX: a lease queued before this run keeps its place (and its job hash, its attempts).
  callChunked('ZADD', KEYS[4], 'NX', queued)
  -- The per-backend active counts put-lease keeps, once per page.
  for backend, n in pairs(ended) do
    redis.call('HINCRBY', KEYS[2] .. ':by-backend', backend, -n)
  end
end

local ids = redis.call('ZRANGE', KEYS[1], offset, offset + count - 1)
local out = { -1, #ids }
if #ids == count then
  out[1] = offset + count
end
local moved, leaseKeys, rows = {}, {}, {}
for _, id in ipairs(ids) do
  local leaseKey = prefix .. ':lease:' .. id
  local v = redis.call('HMGET', leaseKey, unpack(FIELDS))
  -- v[10] is the state: absent when Redis already dropped the record.
  if v[10] and matchesSelector(v) then
    if mode ~= 'revoke' then
      out[#out + 1] = redis.call('HGETALL', leaseKey)
    elseif v[10] == 'active' then
      moved[#moved + 1] = id
      leaseKeys[#leaseKeys + 1] = leaseKey
      rows[#rows + 1] = v
    end
  end
end
if #moved > 0 then
  revokePicked(moved, leaseKeys, rows, out)
end
return out
