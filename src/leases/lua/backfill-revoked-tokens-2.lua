--[[
  Copies one page of the deny list's `token` leases onto the token deny list, for a store written
  before the token deny list existed (or by a replica that predates it): /v1/revoked reads only the
  token deny list. Idempotent (ZADD of the same jti and score).

  Input:
    KEYS[1] revoked leases     {prefix}:revoked (zset id -> expiresAt)
    KEYS[2] token deny list    {prefix}:revoked:tokens (zset jti -> expiresAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] now (epoch ms): only leases with expiresAt > now
    ARGV[3] offset (rank among them)
    ARGV[4] page size

  Lease keys are built from ARGV[1]; safe on Redis Cluster because every key of the store shares the
  `{prefix}` hash tag.

  Output:
    { entries looked at, token jtis added or refreshed }
]]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
local tokens = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', ARGV[1] .. ':lease:' .. id, 'backend', 'backendRef', 'expiresAt')
  if v[1] == 'token' and v[2] and v[3] then
    tokens[#tokens + 1] = v[3]
    tokens[#tokens + 1] = v[2]
  end
end
if #tokens > 0 then
  redis.call('ZADD', KEYS[2], unpack(tokens))
end
return { #ids, #tokens / 2 }
