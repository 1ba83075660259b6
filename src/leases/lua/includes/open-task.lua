-- Included by put-lease and activate-lease, so a lease is written and activated under the same
-- rule: its task is active and unexpired at `now`.
--
-- Returns 0 and the task's expiresAt, or a named code:
--   -1 task_not_found, -2 task_not_active, -3 task_expired (expiresAt <= now)
local function openTask(taskKey, now)
  local task = redis.call('HMGET', taskKey, 'state', 'expiresAt')
  if not task[1] then
    return -1
  end
  if task[1] ~= 'active' then
    return -2
  end
  local expiresAt = tonumber(task[2])
  if expiresAt <= now then
    return -3
  end
  return 0, expiresAt
end
