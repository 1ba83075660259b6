-- Pushes a key's expiry out to `atMs` (broker time), never pulls it in, so an index lives as long as
-- the newest record it points at. The TTL is relative (atMs - nowMs), so it does not depend on
-- broker and Redis clocks agreeing; PTTL rather than PEXPIRE ... GT keeps the scripts on Redis 6.
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
