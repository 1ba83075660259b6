--[[
  Records the outcome of many backend revocations at once (the bulk path of RevokeLeases): each
  `revoking` lease moves to its outcome as mark-revoke-outcome does, and its queued job is removed.

  Input:
    KEYS[1] revocation queue   {prefix}:revoke:queue

  Lease and job keys are built from ARGV[1] (one hash tag, so one slot on Redis Cluster).

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] at (epoch ms)
    ARGV[3] retention (ms)
    ARGV[4..] triples: lease id, outcome (revoked | revoke_failed), reason

  Output:
    an array of the updated lease hashes (leases that were no longer `revoking` are left out)
]]
local prefix = ARGV[1]
local at = ARGV[2]
local retentionMs = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV - 2, 3 do
  local id, outcome, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local leaseKey = prefix .. ':lease:' .. id
  local fields = redis.call('HMGET', leaseKey, 'state', 'expiresAt')
  if fields[1] == 'revoking' then
    redis.call('HSET', leaseKey, 'state', outcome, 'revokeReason', reason, 'revokedAt', at)
    out[#out + 1] = redis.call('HGETALL', leaseKey)
    redis.call('PEXPIREAT', leaseKey, tonumber(fields[2]) + retentionMs)
  end
  redis.call('DEL', prefix .. ':revoke:job:' .. id)
  redis.call('ZREM', KEYS[1], id)
end
return out
