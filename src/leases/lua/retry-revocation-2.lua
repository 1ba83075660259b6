--[[
  Reschedules a job after a failed attempt and releases its claim.

  Input:
    KEYS[1] job                {prefix}:revoke:job:<leaseId>
    KEYS[2] queue              {prefix}:revoke:queue

    ARGV[1] lease id
    ARGV[2] runAt (epoch ms)
    ARGV[3] attempts so far
    ARGV[4] last error (never a secret: backends keep secrets out of error messages)
    ARGV[5] claim token, or '' to reschedule whoever holds it

  Output:
     1 ok
    -1 job_not_found
    -2 stale_claim
]]
local claim = redis.call('HGET', KEYS[1], 'claim')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if ARGV[5] ~= '' and claim ~= ARGV[5] then
  return -2
end
redis.call('HSET', KEYS[1], 'attempts', ARGV[3], 'lastError', ARGV[4])
redis.call('HDEL', KEYS[1], 'claim', 'claimedAt')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
