--[[
  Creates an active delegated task under its parent, only if the parent is active, unexpired and
  lives at least as long as the child; links the child into the parent's children set.

  Input:
    KEYS[1] task key           {prefix}:task:<id>
    KEYS[2] active tasks       {prefix}:active-tasks (zset id -> expiresAt)
    KEYS[3] agent's tasks      {prefix}:agent-tasks:<agent> (zset id -> expiresAt)
    KEYS[4] parent task key    {prefix}:task:<parentId>
    KEYS[5] parent's children  {prefix}:task-children:<parentId> (zset id -> createdAt)

    ARGV[1] task id
    ARGV[2] expiresAt (epoch ms)
    ARGV[3] now (epoch ms)
    ARGV[4] retention (ms): the children set lives until the parent's expiresAt + retention
    ARGV[5] createdAt (epoch ms)
    ARGV[6..] field, value, ... of the task hash (state is `active`)

  Output:
     1 ok
    -6 task_exists
    -13 parent_not_found
    -14 parent_not_active
    -15 parent_expired
    -16 child_outlives_parent
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -6
end
local parent = redis.call('HMGET', KEYS[4], 'state', 'expiresAt')
if not parent[1] then
  return -13
end
if parent[1] ~= 'active' then
  return -14
end
local parentExpires = tonumber(parent[2])
if parentExpires <= tonumber(ARGV[3]) then
  return -15
end
if tonumber(ARGV[2]) > parentExpires then
  return -16
end
local id = ARGV[1]
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], ARGV[2], id)
redis.call('ZADD', KEYS[3], ARGV[2], id)
redis.call('ZADD', KEYS[5], ARGV[5], id)
redis.call('PEXPIREAT', KEYS[5], parentExpires + tonumber(ARGV[4]))
return 1
