--[[
  Queues a backend revocation for a lease, once: a second enqueue for the same lease leaves the
  first job (and its attempt count) alone.

  Input:
    KEYS[1] job                {prefix}:revoke:job:<leaseId> (hash)
    KEYS[2] queue              {prefix}:revoke:queue (zset leaseId -> runAt)

    ARGV[1] lease id
    ARGV[2] runAt (epoch ms)
    ARGV[3..] field, value, ... of the job hash

  No TTL on either key: a pending revocation must survive until a worker completes it.

  Output:
     1 queued
     0 already_queued
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
