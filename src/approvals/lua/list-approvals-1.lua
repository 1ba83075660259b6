--[[
  Reads the requests of one index, pruning entries whose record Redis has dropped (or, for the
  pending index, that are no longer pending). The caller filters by state and requester.

  Input:
    KEYS[1] index              {prefix}:approvals:pending | {prefix}:approvals:all
                               (zset id -> expiresAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] trim: drop entries with expiresAt below this (now - retention: their records are gone)
    ARGV[3] lowest expiresAt to read: '-inf', or '(<now>' for only the unexpired
    ARGV[4] state every listed record must have, or '' for any; others are pruned from the index

  Request keys ({prefix}:approval:<id>) are built from ARGV[1]; safe on Redis Cluster because every
  key of the store shares the `{prefix}` hash tag.

  Output:
    an array of request hashes, each a flat array
]]
local prefix = ARGV[1]
local wantState = ARGV[4]

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
local found = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], '+inf')) do
  local key = prefix .. ':approval:' .. id
  local state = redis.call('HGET', key, 'state')
  if not state or (wantState ~= '' and state ~= wantState) then
    redis.call('ZREM', KEYS[1], id)
  else
    found[#found + 1] = redis.call('HGETALL', key)
  end
end
return found
