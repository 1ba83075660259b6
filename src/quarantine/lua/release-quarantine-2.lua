--[[
  Ends the quarantine of one pattern and announces it on the invalidation feed, in one step.

  Input:
    KEYS[1] quarantines        {prefix}:quarantines (hash pattern -> JSON record)
    KEYS[2] feed               {prefix}:feed (stream)

    ARGV[1] pattern
    ARGV[2] feed max length (approximate trim)
    ARGV[3] at (epoch ms)

  Output:
    the JSON record it removed, or false when there was none
]]
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'kind', 'quarantine', 'op', 'release', 'pattern', ARGV[1], 'at', ARGV[3])
return record
