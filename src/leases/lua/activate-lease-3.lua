--[[
  Flips a `pending` lease to `active`: the second phase of an issuance, run once the audit record
  of the credential was written and before the credential leaves the broker. Refused when the
  lease is no longer pending (the reaper claimed it as an orphan, or it was ended) or when its task
  ended or expired meanwhile, so a task's end can never be outrun by a lease still in flight.

  Input:
    KEYS[1] lease key          {prefix}:lease:<id>
    KEYS[2] task key           {prefix}:task:<taskId>
    KEYS[3] active leases      {prefix}:active-leases (zset id -> expiresAt); the pending set is
                               KEYS[3]:pending and the per-backend count KEYS[3]:by-backend

    ARGV[1] lease id
    ARGV[2] now (epoch ms)

  Output:
     1 ok
    -1 task_not_found
    -2 task_not_active
    -3 task_expired        task.expiresAt <= now
    -7 lease_not_found
   -12 lease_not_pending
]]
--- @include "open-task"

local id = ARGV[1]
local now = tonumber(ARGV[2])

local lease = redis.call('HMGET', KEYS[1], 'state', 'expiresAt', 'backend')
if not lease[1] then
  return -7
end
if lease[1] ~= 'pending' then
  return -12
end
local taskCode = openTask(KEYS[2], now)
if taskCode ~= 0 then
  return taskCode
end

redis.call('HSET', KEYS[1], 'state', 'active')
redis.call('ZREM', KEYS[3] .. ':pending', id)
redis.call('ZADD', KEYS[3], lease[2], id)
redis.call('HINCRBY', KEYS[3] .. ':by-backend', lease[3], 1)
return 1
