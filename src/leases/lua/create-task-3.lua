--[[
  Creates an active task.

  Input:
    KEYS[1] task key           {prefix}:task:<id>
    KEYS[2] active tasks       {prefix}:active-tasks (zset id -> expiresAt)
    KEYS[3] agent's tasks      {prefix}:agent-tasks:<agent> (zset id -> expiresAt)

    ARGV[1] task id
    ARGV[2] expiresAt (epoch ms)
    ARGV[3..] field, value, ... of the task hash (state is `active`)

  Output:
     1 ok
    -6 task_exists (ids are never reused: overwriting would resurrect an ended task)
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -6
end
local id = ARGV[1]
local expiresAt = ARGV[2]
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
-- No TTL while active: an active task must not vanish before the reaper has ended it.
redis.call('ZADD', KEYS[2], expiresAt, id)
redis.call('ZADD', KEYS[3], expiresAt, id)
return 1
