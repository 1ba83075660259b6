--[[
  Stores a new pending approval request.

  Input:
    KEYS[1] request            {prefix}:approval:<id> (hash)
    KEYS[2] digest index       {prefix}:approval-digest:<digest> (zset id -> createdAt)
    KEYS[3] pending            {prefix}:approvals:pending (zset id -> expiresAt)
    KEYS[4] all requests       {prefix}:approvals:all (zset id -> expiresAt)

    ARGV[1] id
    ARGV[2] createdAt (epoch ms; the broker's "now" for this write)
    ARGV[3] expiresAt (epoch ms)
    ARGV[4] retention (ms): the record is dropped at expiresAt + retention
    ARGV[5..] field, value, ... of the request hash (state `pending`, approvals `[]`)

  Output:
     1 ok
    -6 approval_exists (ids are never reused: overwriting a decided request would reopen it)
]]
--- @include "extend-expiry"

if redis.call('EXISTS', KEYS[1]) == 1 then
  return -6
end
local id = ARGV[1]
local createdAt = tonumber(ARGV[2])
local expiresAt = tonumber(ARGV[3])
local retentionMs = tonumber(ARGV[4])

redis.call('HSET', KEYS[1], unpack(ARGV, 5))
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
return 1
