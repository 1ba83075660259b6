--[[
  Frees a lease's or task's place in its counters. Idempotent: releasing what is not there is fine.
  A script so that every scope is freed in one step, like the reservation that took the places.

  Input:
    KEYS[i]   counter          {prefix}:budget:<scope>:leases | {prefix}:budget:<scope>:tasks

    ARGV[1] member: the lease id or task id

  Output:
    the number of counters the member was removed from
]]
local removed = 0
for i = 1, #KEYS do
  removed = removed + redis.call('ZREM', KEYS[i], ARGV[1])
end
return removed
