--[[
  Records one approver's decision on a pending request. Check and write are one step, so two
  approvers deciding at once, or one approver twice, can never get past the rules below.

  Input:
    KEYS[1] request            {prefix}:approval:<id> (hash)
    KEYS[2] pending            {prefix}:approvals:pending (zset id -> expiresAt)

    ARGV[1] approver (SPIFFE ID)
    ARGV[2] '1' approve | '0' deny
    ARGV[3] the decision record as JSON ({approver, reason, at}), spliced in as written so the
            broker's numbers are never re-encoded by cjson
    ARGV[4] at (epoch ms)

  Rules, in this order:
    - the requester can never decide its own request (approve or deny);
    - only a pending request can be decided; one past its expiresAt becomes `expired`;
    - an approver approves at most once (N-of-M means N distinct approvers). A denial by an
      approver who approved earlier is accepted: it can only close the request.

  Output:
    -1 not_found, or {code, request hash as a flat array} with code
     1 approved            the approval was recorded and distinct approvals reached `required`
     2 recorded            the approval was recorded; more are needed
     3 denied              the denial was recorded; the request is closed
    -2 not_pending
    -3 expired             (the state is now `expired`)
    -4 self_approval
    -5 duplicate_approver
    -9 corrupt             the stored approvals or `required` cannot be read
]]
local approver = ARGV[1]
local approve = ARGV[2] == '1'
local record = ARGV[3]
local at = tonumber(ARGV[4])

local f = redis.call('HMGET', KEYS[1], 'id', 'requester', 'state', 'expiresAt', 'required', 'approvals')
if not f[1] then
  return -1
end
local id = f[1]
local function reply(code)
  return { code, redis.call('HGETALL', KEYS[1]) }
end

if f[2] == approver then
  return reply(-4)
end
if f[3] ~= 'pending' then
  return reply(-2)
end
local expiresAt = tonumber(f[4])
local required = tonumber(f[5])
if not expiresAt or not required or not f[6] then
  return -9
end
if expiresAt <= at then
  redis.call('HSET', KEYS[1], 'state', 'expired')
  redis.call('ZREM', KEYS[2], id)
  return reply(-3)
end

if not approve then
  redis.call('HSET', KEYS[1], 'state', 'denied', 'denial', record)
  redis.call('ZREM', KEYS[2], id)
  return reply(3)
end

local ok, approvals = pcall(cjson.decode, f[6])
if not ok or type(approvals) ~= 'table' then
  return -9
end
for _, a in ipairs(approvals) do
  if type(a) ~= 'table' then
    return -9
  end
  if a.approver == approver then
    return reply(-5)
  end
end
local list
if #approvals == 0 then
  list = '[' .. record .. ']'
else
  list = string.sub(f[6], 1, -2) .. ',' .. record .. ']'
end
redis.call('HSET', KEYS[1], 'approvals', list)
-- Every entry is a distinct approver (checked above), so the count is the number of approvers.
if #approvals + 1 >= required then
  redis.call('HSET', KEYS[1], 'state', 'approved')
  redis.call('ZREM', KEYS[2], id)
  return reply(1)
end
return reply(2)
