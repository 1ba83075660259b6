--[[
  Counts one use of a grant. A script rather than a bare HINCRBY so that a use of an unknown grant
  never creates a hash holding only `uses`.

  Input:
    KEYS[1] grant              {prefix}:breakglass:<id> (hash)

  Output:
    the new use count, or
    -2 break_glass_not_found
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -2
end
return redis.call('HINCRBY', KEYS[1], 'uses', 1)
