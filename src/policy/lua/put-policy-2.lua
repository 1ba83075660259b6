--[[
  Stores a sealed policy record as the current one and announces it on the invalidation feed, in
  one step, but only if the current record is still the one the publisher read (compare and set):
  two replicas publishing at once cannot both build on the same generation.

  Input:
    KEYS[1] current            {prefix}:policy:current (string: sealed record)
    KEYS[2] feed               {prefix}:feed (stream)

    ARGV[1] SHA-1 (hex) of the record the publisher read, '' when there was none
    ARGV[2] the new sealed record
    ARGV[3] feed max length (approximate trim)
    ARGV[4] generation
    ARGV[5] digest
    ARGV[6] from (the publishing replica)

  Output:
    1 stored and announced
    0 the current record changed since it was read (nothing written)
]]
local current = redis.call('GET', KEYS[1])
local seen = ''
if current then seen = redis.sha1hex(current) end
if seen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'policy', 'generation', ARGV[4], 'digest', ARGV[5], 'from', ARGV[6])
return 1
