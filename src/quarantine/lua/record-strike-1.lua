--[[
  Records one strike against an agent and counts the strikes in the sliding window.

  Input:
    KEYS[1] strikes            {prefix}:strikes:<kind>:<spiffeId> (zset member -> at)

    ARGV[1] now (epoch ms)
    ARGV[2] window (ms)
    ARGV[3] member (unique per strike)

  Output:
    the number of strikes within (now - window, now]
]]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
