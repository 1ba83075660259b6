-- Included by put-lease (and the bulk revoke): does a quarantine in force cover this agent?
-- Patterns match as src/quarantine/types.ts patternMatches: exact, `<base>/*` (one more segment),
-- `<base>/**` (any depth). A record that does not decode counts as in force: fail closed.
local function quarantinePatternMatches(pattern, id)
  if string.sub(pattern, -3) == '/**' then
    local base = string.sub(pattern, 1, -3)
    return #id > #base and string.sub(id, 1, #base) == base
  end
  if string.sub(pattern, -2) == '/*' then
    local base = string.sub(pattern, 1, -2)
    return #id > #base and string.sub(id, 1, #base) == base and not string.find(id, '/', #base + 1, true)
  end
  return id == pattern
end

-- Returns the pattern of a quarantine in force at `now` that covers `agent`, or nil.
local function quarantineMatch(quarantinesKey, agent, now)
  local entries = redis.call('HGETALL', quarantinesKey)
  for i = 1, #entries, 2 do
    local pattern = entries[i]
    if quarantinePatternMatches(pattern, agent) then
      local ok, record = pcall(cjson.decode, entries[i + 1])
      local expiresAt = 0
      if ok and type(record) == 'table' and tonumber(record.expiresAt) then
        expiresAt = tonumber(record.expiresAt)
      end
      if expiresAt == 0 or expiresAt > now then
        return pattern
      end
    end
  end
  return nil
end
