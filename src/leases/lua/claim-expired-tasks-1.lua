--[[
  Claims up to `limit` active tasks whose expiresAt <= now and moves them to `expired`. A claimed
  task has left the active set, so each is handed to exactly one of several concurrent reapers.

  Input:
    KEYS[1] active tasks       {prefix}:active-tasks

    ARGV[1] prefix, e.g. `{svb}`
    ARGV[2] now (epoch ms)
    ARGV[3] limit
    ARGV[4] retention (ms)
    ARGV[5] reason recorded on each task

  Task keys ({prefix}:task:<id>) and agent-tasks keys are built from ARGV[1] because they are only
  known once the active set is read. That is safe on Redis Cluster: every key of the store shares
  the `{prefix}` hash tag, so they all live in the slot of KEYS[1].

  Output:
    an array of claimed task hashes, each a flat array (empty when nothing expired)
]]
--- @include "end-task"

local prefix = ARGV[1]
local now = ARGV[2]
local limit = tonumber(ARGV[3])
local retentionMs = tonumber(ARGV[4])
local reason = ARGV[5]

local claimed = {}
while #claimed < limit do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #claimed)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local task = endTask(prefix .. ':task:' .. id, KEYS[1], prefix, id, 'expired', reason, now, retentionMs)
    if type(task) == 'table' then
      claimed[#claimed + 1] = task
    else
      -- An entry without an active record behind it is stale; dropping it keeps the loop moving.
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return claimed
