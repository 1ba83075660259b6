/**
 * Refuses work up front while the audit sink is down: nothing can be recorded, so nothing may be
 * decided or minted (a credential minted now would only be revoked again when its record fails).
 */
import { BrokerError } from '../errors.js';
import type { AuditSink } from './types.js';

/** A check to run first on every call: throws UNAVAILABLE while `sink` reports itself down. */
export function auditGate(sink: Pick<AuditSink, 'health'>): () => void {
  return () => {
    if (sink.health?.().ok === false) {
      throw new BrokerError('UNAVAILABLE', 'audit trail unavailable: request refused', {
        reason: 'audit_unavailable',
        // The sink logged the cause when it failed; this refusal repeats per request.
        reported: true,
      });
    }
  };
}
