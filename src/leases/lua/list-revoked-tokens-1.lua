--[[
  One page of the token deny list: jtis of broker-signed tokens that were revoked (or are being
  revoked), by expiry, for GET /v1/revoked. Entries that are no longer listed (expiry at or before
  `since`) are pruned first. Costs O(log N + limit) whatever the list holds: no lease is read.

  Paging is by position after the last entry of the previous page (ZRANK of its jti), so pages
  neither repeat nor skip entries that were already listed; if that entry was pruned meanwhile,
  every entry with its score went too, so the page starts after `since` (or after its expiry, for a
  cursor nobody handed out).

  Input:
    KEYS[1] token deny list    {prefix}:revoked:tokens (zset jti -> expiresAt, epoch ms)

    ARGV[1] since (epoch ms): entries with expiresAt <= since are pruned and not listed
    ARGV[2] jti of the previous page's last entry, or '' for the first page
    ARGV[3] that entry's expiresAt (epoch ms), or ''
    ARGV[4] limit (entries in this page)

  Output:
    a flat array { jti, expiresAt, jti, expiresAt, ... } in (expiresAt, jti) order
]]
local since = tonumber(ARGV[1])
local afterJti = ARGV[2]
local limit = tonumber(ARGV[4])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', since)
if afterJti ~= '' then
  local rank = redis.call('ZRANK', KEYS[1], afterJti)
  if rank then
    return redis.call('ZRANGE', KEYS[1], rank + 1, rank + limit, 'WITHSCORES')
  end
end
local from = since
local afterExp = tonumber(ARGV[3])
if afterJti ~= '' and afterExp and afterExp > since then
  from = afterExp
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
