-- Included by scripts that add to an index: pushes the key's expiry out to `atMs`, never pulls it
-- in, so an index lives exactly as long as the newest record it points at. Uses PTTL rather than
-- PEXPIRE ... GT so the scripts also run on Redis 6.
local function extendExpiry(key, atMs, nowMs)
  local wantMs = atMs - nowMs
  if wantMs < 1 then
    return
  end
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or ttl < wantMs then
    redis.call('PEXPIRE', key, wantMs)
  end
end
