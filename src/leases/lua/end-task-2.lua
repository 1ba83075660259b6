--[[
  Moves an active task to `ended` or `expired`, exactly once.

  Input:
    KEYS[1] task key           {prefix}:task:<id>
    KEYS[2] active tasks       {prefix}:active-tasks

    ARGV[1] prefix, e.g. `{svb}` (to reach {prefix}:agent-tasks:<agent>; see includes/end-task)
    ARGV[2] task id
    ARGV[3] new state: ended | expired
    ARGV[4] reason
    ARGV[5] at (epoch ms)
    ARGV[6] retention (ms): the ended hash is dropped at expiresAt + retention

  Output:
    the updated task hash as a flat array, or
    -1 task_not_found
    -2 task_not_active
]]
--- @include "end-task"

return endTask(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]))
