-- Included by end-task and claim-expired-tasks, so a task leaves `active` the same way whichever
-- path ends it.
--
-- The agent-tasks key is built from `prefix` because the agent is only known once the hash is
-- read. That is safe on Redis Cluster: every key of the store shares the `{prefix}` hash tag, so it
-- lives in the same slot as the keys passed in KEYS.
--
-- Returns the updated task hash as a flat array, or a named code:
--   -1 task_not_found, -2 task_not_active
local function endTask(taskKey, activeTasksKey, prefix, id, state, reason, at, retentionMs)
  local fields = redis.call('HMGET', taskKey, 'state', 'agent', 'expiresAt')
  if not fields[1] then
    return -1
  end
  if fields[1] ~= 'active' then
    return -2
  end
  redis.call('HSET', taskKey, 'state', state, 'endReason', reason, 'endedAt', at)
  redis.call('ZREM', activeTasksKey, id)
  redis.call('ZREM', prefix .. ':agent-tasks:' .. fields[2], id)
  local record = redis.call('HGETALL', taskKey)
  redis.call('PEXPIREAT', taskKey, tonumber(fields[3]) + retentionMs)
  return record
end
