/**
 * Why a request that nothing permits was not permitted, where one condition explains it: the
 * requested TTL, and whether a permit would allow the same request with a shorter one (Cedar
 * reports no "closest" policy, so the engine is asked again at shorter TTLs, only on a default
 * deny).
 */
import type { PolicyEngine, PolicyRequest } from './types.js';

/** `requested ttl 899 s` and, when a shorter TTL is permitted, `permit "p" allows at most 600 s`. */
export function defaultDenyTtlHint(engine: PolicyEngine, req: PolicyRequest): string {
  const ttl = req.context['ttlSeconds'];
  if (typeof ttl !== 'number' || ttl <= 1) return '';
  const at = (t: number) => engine.authorize({ ...req, context: { ...req.context, ttlSeconds: t } });
  const requested = `requested ttl ${ttl} s`;
  if (at(1).decision !== 'allow') return requested;
  // The longest TTL still permitted: permits bound TTLs from above, so allowed TTLs are 1..max.
  let lo = 1;
  let hi = ttl - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (at(mid).decision === 'allow') lo = mid;
    else hi = mid - 1;
  }
  const ids = at(lo)
    .policyIds.map((id) => `"${id}"`)
    .join(', ');
  return `${requested}; permit ${ids} allows at most ${lo} s`;
}
