--[[
  Queues a backend revocation for a lease, once: a second enqueue for the same lease leaves the
  first job (and its attempt count) alone, whether that job is a hash or a lease-based queue entry
  (queued by a bulk revocation or an orphan claim, see claim-revocations).

  This writes the whole job hash: its callers queue for a lease that is still `active` (the broker
  queues before it marks the lease `revoking`) or already ended for another reason (an expired
  lease whose backend revoke failed), so the lease record cannot stand in for the job.

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
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
