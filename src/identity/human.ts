/**
 * People as callers. A person signed in at the web console calls the same admin use cases as an
 * SVID caller; their Caller carries the IdP's claims, and the key `human:<sub>` stands where a
 * SPIFFE ID would (distinct approvers, grantor, reviewer), so it can never collide with one.
 */
import type { Caller, HumanIdentity } from './types.js';

export const HUMAN_ID_PREFIX = 'human:';

export function humanCaller(human: HumanIdentity): Caller {
  return { spiffeId: `${HUMAN_ID_PREFIX}${human.sub}`, trustDomain: '', path: '', authMethod: 'oidc', human };
}
