--[[
  Finds a grant in force for an agent's request: unexpired at `now`, covering the role, and, when
  the grant names a task, for that task. Of several, the one that lasts longest (then greatest id).
  Prunes index entries whose record Redis has dropped (reviewed, then past retention).

  Input:
    KEYS[1] agent's grants     {prefix}:breakglass:agent:<spiffeId> (zset id -> expiresAt)

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] now (epoch ms)
    ARGV[3] task id of the request
    ARGV[4] role of the request (`<backend>/<name>`)

  Grant keys ({prefix}:breakglass:<id>) are built from ARGV[1]: safe on Redis Cluster because every
  key of the store shares the `{prefix}` hash tag, so they live in the slot of KEYS[1].

  Output:
    the grant hash as a flat array, nil when none is in force, or
    -9 corrupt                 a grant's roles cannot be read
]]
local prefix = ARGV[1]
local now = ARGV[2]
local taskId = ARGV[3]
local role = ARGV[4]

for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now)) do
  local key = prefix .. ':breakglass:' .. id
  local f = redis.call('HMGET', key, 'roles', 'taskId')
  if not f[1] then
    redis.call('ZREM', KEYS[1], id)
  else
    local ok, roles = pcall(cjson.decode, f[1])
    if not ok or type(roles) ~= 'table' then
      return -9
    end
    local covers = false
    for _, r in ipairs(roles) do
      if r == role then
        covers = true
      end
    end
    if covers and (not f[2] or f[2] == taskId) then
      return redis.call('HGETALL', key)
    end
  end
end
return nil
