--[[
  Finds the newest open request (pending or approved, unexpired at `now`) for a digest, and prunes
  index entries that can never be open again (record dropped by Redis, or denied/consumed/expired).
  Entries merely past their expiresAt are left alone: the index key expires with its newest one.

  Input:
    KEYS[1] digest index       {prefix}:approval-digest:<digest> (zset id -> createdAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] now (epoch ms)
    ARGV[3] digest

  Request keys ({prefix}:approval:<id>) are built from ARGV[1]: safe on Redis Cluster because every
  key of the store shares the `{prefix}` hash tag, so they live in the slot of KEYS[1].

  Output:
    the request hash as a flat array, or nil when none is open
]]
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local digest = ARGV[3]

-- Newest first: by createdAt, then by id, both descending.
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
  local key = prefix .. ':approval:' .. id
  local f = redis.call('HMGET', key, 'state', 'expiresAt', 'digest')
  local state = f[1]
  if not state or (state ~= 'pending' and state ~= 'approved') or f[3] ~= digest then
    redis.call('ZREM', KEYS[1], id)
  elseif tonumber(f[2]) > now then
    return redis.call('HGETALL', key)
  end
end
return nil
