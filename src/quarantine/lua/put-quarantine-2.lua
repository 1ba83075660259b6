--[[
  Sets (or replaces) the quarantine of one pattern and announces it on the invalidation feed, in
  one step: a replica that reads the feed entry finds the quarantine already in the hash.

  Input:
    KEYS[1] quarantines        {prefix}:quarantines (hash pattern -> JSON record)
    KEYS[2] feed               {prefix}:feed (stream)

    ARGV[1] pattern
    ARGV[2] record (JSON)
    ARGV[3] feed max length (approximate trim)
    ARGV[4] at (epoch ms)

  Output:
    1 created
    0 replaced
]]
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'quarantine', 'op', 'set', 'pattern', ARGV[1], 'at', ARGV[4])
return created
