--[[
  Lists the leases on the deny list whose credential is still within its lifetime
  (expiresAt > now), and prunes the entries whose lifetime has passed. The deny list holds leases
  that were `revoked` or `revoking`; a `revoking` lease stays on it whichever outcome it reaches
  (`revoked`, or `revoke_failed` when the backend never confirmed: it may still be live).

  Input:
    KEYS[1] revoked leases     {prefix}:revoked (zset id -> expiresAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] now (epoch ms)
    ARGV[3] backend, or '' for all

  Lease keys ({prefix}:lease:<id>) are built from ARGV[1]; safe on Redis Cluster because every key
  of the store shares the `{prefix}` hash tag.

  Output:
    an array of lease hashes, each a flat array, in expiresAt order
]]
local prefix = ARGV[1]
local now = ARGV[2]
local backend = ARGV[3]

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local found = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local lease = redis.call('HGETALL', prefix .. ':lease:' .. id)
  if #lease == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    local fields = {}
    for i = 1, #lease, 2 do
      fields[lease[i]] = lease[i + 1]
    end
    local denied = fields.state == 'revoked' or fields.state == 'revoking' or fields.state == 'revoke_failed'
    if denied and (backend == '' or fields.backend == backend) then
      found[#found + 1] = lease
    end
  end
end
return found
