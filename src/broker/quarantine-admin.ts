/**
 * The quarantine admin calls: Quarantine, ReleaseQuarantine, ListQuarantines, each authorized by
 * its Cedar admin action and validated here; the work is QuarantineService's.
 */
import { invalidArgument } from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { QuarantineResult, QuarantineService } from '../quarantine/quarantine-service.js';
import { patternMatches } from '../identity/pattern-match.js';
import type { Quarantine } from '../quarantine/types.js';
import { parseAgentSelector, type LeaseAdmin } from './lease-admin.js';
import { LIMITS, boundedText } from './validate.js';

/** Longest quarantine with an expiry; 0 (until released) is always allowed. */
export const MAX_QUARANTINE_TTL_SECONDS = 30 * 86_400;

export class QuarantineAdmin {
  constructor(
    private readonly service: QuarantineService,
    private readonly leases: Pick<LeaseAdmin, 'authorize' | 'recordRead'>,
  ) {}

  async quarantine(
    caller: Caller,
    input: { agent: string; reason: string; ttlSeconds: number; revokeActive: boolean },
  ): Promise<QuarantineResult> {
    await this.leases.authorize(caller, 'Quarantine');
    const selector = parseAgentSelector(input.agent);
    const pattern = selector.agent ?? selector.agentPattern ?? '';
    const reason = requireReason(input.reason);
    const ttl = input.ttlSeconds;
    if (!Number.isSafeInteger(ttl) || ttl < 0 || ttl > MAX_QUARANTINE_TTL_SECONDS) {
      throw invalidArgument('ttl_seconds', `must be 0 (until released) to ${MAX_QUARANTINE_TTL_SECONDS}`);
    }
    // Admin calls of a quarantined identity are refused too: quarantining yourself would leave
    // you unable to release it.
    if (patternMatches(pattern, caller.spiffeId)) {
      throw invalidArgument('agent', 'the pattern covers your own identity: use another admin identity');
    }
    return this.service.quarantine({
      pattern,
      selector,
      reason,
      ttlSeconds: ttl,
      revokeActive: input.revokeActive,
      by: caller.spiffeId,
      trigger: 'manual',
    });
  }

  async release(caller: Caller, input: { agent: string; reason: string }): Promise<Quarantine> {
    await this.leases.authorize(caller, 'ReleaseQuarantine');
    const selector = parseAgentSelector(input.agent);
    return this.service.release(
      selector.agent ?? selector.agentPattern ?? '',
      caller.spiffeId,
      requireReason(input.reason),
    );
  }

  async list(caller: Caller): Promise<Quarantine[]> {
    await this.leases.authorize(caller, 'ListQuarantines');
    const quarantines = await this.service.list();
    await this.leases.recordRead(caller, 'ListQuarantines', { count: quarantines.length });
    return quarantines;
  }
}

function requireReason(raw: string): string {
  const reason = boundedText(raw.trim(), 'reason', LIMITS.reason);
  if (!reason) throw invalidArgument('reason', 'is required: it is recorded in the audit trail');
  return reason;
}
