--[[
  Stores a new pending approval request, unless its requester or its task already has as many
  open requests (pending or approved, unexpired) as the caps allow: the count and the write are one
  step, so concurrent requests can never overshoot a cap.

  Input:
    KEYS[1] request            {prefix}:approval:<id> (hash)
    KEYS[2] digest index       {prefix}:approval-digest:<digest> (zset id -> createdAt)
    KEYS[3] pending            {prefix}:approvals:pending (zset id -> expiresAt)
    KEYS[4] all requests       {prefix}:approvals:all (zset id -> expiresAt)
    KEYS[5] requester's open   {prefix}:approvals:open:agent:<spiffeId> (zset id -> expiresAt)
    KEYS[6] task's open        {prefix}:approvals:open:task:<taskId> (zset id -> expiresAt)

    ARGV[1] id
    ARGV[2] createdAt (epoch ms; the broker's "now" for this write)
    ARGV[3] expiresAt (epoch ms)
    ARGV[4] retention (ms): the record is dropped at expiresAt + retention
    ARGV[5] prefix, e.g. `{svb}` (request keys of the open indexes are built from it)
    ARGV[6] cap of open requests per requester (0: none)
    ARGV[7] cap of open requests per task (0: none)
    ARGV[8..] field, value, ... of the request hash (state `pending`, approvals `[]`)

  Output:
     1 ok
    -6 approval_exists (ids are never reused: overwriting a decided request would reopen it)
   -10 too_many_open_for_agent
   -11 too_many_open_for_task
]]
--- @include "extend-expiry"

if redis.call('EXISTS', KEYS[1]) == 1 then
  return -6
end
local id = ARGV[1]
local createdAt = tonumber(ARGV[2])
local expiresAt = tonumber(ARGV[3])
local retentionMs = tonumber(ARGV[4])
local prefix = ARGV[5]

-- Open requests of an index, pruned first of those expired or no longer open (decided, consumed,
-- dropped): an index entry costs one read per request, and a cap keeps the index that small.
local function openCount(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', createdAt)
  for _, other in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local state = redis.call('HGET', prefix .. ':approval:' .. other, 'state')
    if state ~= 'pending' and state ~= 'approved' then
      redis.call('ZREM', key, other)
    end
  end
  return redis.call('ZCARD', key)
end
local agentCap, taskCap = tonumber(ARGV[6]), tonumber(ARGV[7])
if agentCap > 0 and openCount(KEYS[5]) >= agentCap then
  return -10
end
if taskCap > 0 and openCount(KEYS[6]) >= taskCap then
  return -11
end

redis.call('HSET', KEYS[1], unpack(ARGV, 8))
-- Unlike an active lease, a request needs no reaper: it is dead at expiresAt whether or not anyone
-- writes that down, so it can carry its TTL from the start. Decisions stay readable for retention.
redis.call('PEXPIREAT', KEYS[1], expiresAt + retentionMs)

-- Only open requests matter to the digest index, and none is open past its expiresAt.
redis.call('ZADD', KEYS[2], createdAt, id)
extendExpiry(KEYS[2], expiresAt, createdAt)

-- Entries older than expiresAt + retention point at records Redis has dropped; trimming them here
-- bounds indexes that are rarely listed (listing prunes the rest).
local stale = '(' .. (createdAt - retentionMs)
redis.call('ZADD', KEYS[3], expiresAt, id)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', stale)
-- Past its expiresAt a request is no longer pending, so the pending index need not outlive it.
extendExpiry(KEYS[3], expiresAt, createdAt)
redis.call('ZADD', KEYS[4], expiresAt, id)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', stale)
extendExpiry(KEYS[4], expiresAt + retentionMs, createdAt)
for i = 5, 6 do
  redis.call('ZADD', KEYS[i], expiresAt, id)
  extendExpiry(KEYS[i], expiresAt, createdAt)
end
return 1
