--[[
  Checks every counter of a reservation and, only if none is at its limit, records the
  reservation in all of them. Check and record are one step over all the scopes' keys, so a refused
  reservation consumes nothing anywhere, and concurrent callers (any replica) can never overshoot.

  Input (one key per counter; the caller lists them scope by scope, in the order it wants checked):
    KEYS[i]   counter          {prefix}:budget:<scope>:rate   (zset reservation id -> reserved at)
                               {prefix}:budget:<scope>:leases (zset lease id -> expiresAt)
                               {prefix}:budget:<scope>:tasks  (zset task id -> expiresAt)

    ARGV[1] now (epoch ms)
    ARGV[2] member: the lease id (rate, leases) or task id (tasks)
    ARGV[3] the lease's or task's expiresAt (epoch ms)
    ARGV[4] rate window (ms): a `rate` counter counts members reserved after now - window
    ARGV[5] idle slack (ms): a counter key expires this long after the newest thing it counts
    ARGV[4 + 2i] kind of KEYS[i]: `rate` (scored by reservation time) or `count` (by expiresAt;
                 members unexpired at now count)
    ARGV[5 + 2i] the limit of KEYS[i]: a reservation is refused when the count is already there

  Each counter is pruned of members that no longer count before it is read, so keys stay as small
  as their limits. A rate counter is a rolling window log (exact, no bucket edges); a limit is at
  most a few hundred per minute, so its size is bounded by the limit.

  Output:
     1 ok (recorded everywhere)
    {-1, i, current} over_limit: KEYS[i] is the first counter at its limit, holding `current`
]]
--- @include "extend-expiry"

local now = tonumber(ARGV[1])
local member = ARGV[2]
local expiresAt = tonumber(ARGV[3])
local windowMs = tonumber(ARGV[4])
local slackMs = tonumber(ARGV[5])

local function kindOf(i)
  return ARGV[4 + 2 * i]
end

for i = 1, #KEYS do
  local staleAtOrBelow = now
  if kindOf(i) == 'rate' then
    staleAtOrBelow = now - windowMs
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', staleAtOrBelow)
  local current = redis.call('ZCARD', KEYS[i])
  if current >= tonumber(ARGV[5 + 2 * i]) then
    return { -1, i, current }
  end
end

for i = 1, #KEYS do
  if kindOf(i) == 'rate' then
    redis.call('ZADD', KEYS[i], now, member)
    extendExpiry(KEYS[i], now + windowMs + slackMs, now)
  else
    redis.call('ZADD', KEYS[i], expiresAt, member)
    extendExpiry(KEYS[i], expiresAt + slackMs, now)
  end
end
return 1
