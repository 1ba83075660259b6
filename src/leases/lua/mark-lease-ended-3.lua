--[[
  Moves an active lease to `revoking`, `revoked`, `expired` or `revoke_failed`, exactly once: of
  concurrent callers, one gets the lease back and the others get lease_not_active. `revoking` and
  `revoked` leases go on the deny list (and a token's jti on the token deny list,
  {prefix}:revoked:tokens, next to KEYS[3]); a `revoking` lease keeps no TTL until its outcome is set
  (mark-revoke-outcome).

  Input:
    KEYS[1] lease key          {prefix}:lease:<id>
    KEYS[2] active leases      {prefix}:active-leases
    KEYS[3] revoked leases     {prefix}:revoked (zset id -> expiresAt)

    ARGV[1] lease id
    ARGV[2] new state: revoking | revoked | expired | revoke_failed
    ARGV[3] reason
    ARGV[4] at (epoch ms)
    ARGV[5] retention (ms): the ended hash is dropped at expiresAt + retention (not while revoking)

  Output:
    the updated lease hash as a flat array, or
    -7 lease_not_found
    -8 lease_not_active
]]
--- @include "end-lease"

return endLease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))
