/**
 * Which audit records become OpenID Shared Signals events, and what each says: the CAEP events
 * (CAEP 1.0) a receiver needs to cut off what the broker handed out.
 *
 *   lease.revoked         session-revoked + credential-change (change_type revoke): the credential
 *                         was revoked at its backend, and any session built on it should end
 *   lease.not_revocable   session-revoked: the lease ended but the credential stays valid at its
 *   lease.revoke_queued   source until it expires (or until the queue's retry): receivers cut it off
 *   lease.orphaned        as lease.revoked when its outcome was `revoked`, else session-revoked
 *   quarantine.set        session-revoked for the quarantined agent (or pattern)
 *
 * task.ended and admin.revoke are summaries: each lease they revoked has its own lease.* record,
 * which is what becomes a SET. lease.revoke_failed follows a lease.revoke_queued that already did.
 *
 * Subjects (SSF `sub_id`): a lease is `{"format":"complex","user":{"format":"uri","uri":<agent>},
 * "session":{"format":"opaque","id":<lease id>}}` (for the token backend the lease id is the access
 * token's `jti`); a quarantined agent is `{"format":"uri","uri":<agent>}`, a quarantined pattern
 * (`.../*`, `.../**`) `{"format":"complex","group":{"format":"uri","uri":<pattern>}}`.
 * Only identifiers, names and reasons are taken from the record: never a credential value.
 */
import type { AuditRecord } from '../types.js';

export const CAEP_EVENT_BASE = 'https://schemas.openid.net/secevent/caep/event-type/';
export const SESSION_REVOKED = `${CAEP_EVENT_BASE}session-revoked`;
export const CREDENTIAL_CHANGE = `${CAEP_EVENT_BASE}credential-change`;

/** The record types that can become SETs. */
export const SSF_RECORD_TYPES: ReadonlySet<string> = new Set([
  'lease.revoked',
  'lease.not_revocable',
  'lease.revoke_queued',
  'lease.orphaned',
  'quarantine.set',
]);

export type SubjectId = Record<string, unknown> & { format: string };

/** One event of one SET (SSF: one event per SET). */
export interface SecurityEvent {
  type: string;
  subject: SubjectId;
  /** The event's own claims (event_timestamp, initiating_entity, reason_admin, ...). */
  claims: Record<string, unknown>;
}

/** The events a record becomes, in the order they are sent (none for other records). */
export function securityEventsFor(record: AuditRecord): SecurityEvent[] {
  switch (record.type) {
    case 'lease.revoked':
      return leaseEvents(record, true);
    case 'lease.not_revocable':
    case 'lease.revoke_queued':
      return leaseEvents(record, false);
    case 'lease.orphaned':
      return leaseEvents(record, record.outcome === 'revoked');
    case 'quarantine.set':
      return typeof record.pattern === 'string' ? [quarantineEvent(record, record.pattern)] : [];
    default:
      return [];
  }
}

function leaseEvents(record: AuditRecord, credentialRevoked: boolean): SecurityEvent[] {
  if (typeof record.lease !== 'string' || record.agent === '') return [];
  const subject: SubjectId = {
    format: 'complex',
    user: { format: 'uri', uri: record.agent },
    session: { format: 'opaque', id: record.lease },
  };
  const common = commonClaims(record, initiatingEntity(text(record.reason)));
  const revoked: SecurityEvent = { type: SESSION_REVOKED, subject, claims: common };
  if (!credentialRevoked) return [revoked];
  const change: SecurityEvent = {
    type: CREDENTIAL_CHANGE,
    subject,
    claims: {
      ...common,
      credential_type: `svid-broker:${text(record.backend) || 'unknown'}`,
      change_type: 'revoke',
      ...(typeof record.role === 'string' ? { friendly_name: record.role } : {}),
    },
  };
  return [revoked, change];
}

function quarantineEvent(record: AuditRecord, pattern: string): SecurityEvent {
  const exact = !pattern.endsWith('/*') && !pattern.endsWith('/**');
  return {
    type: SESSION_REVOKED,
    subject: exact
      ? { format: 'uri', uri: pattern }
      : { format: 'complex', group: { format: 'uri', uri: pattern } },
    claims: commonClaims(record, record.trigger === 'manual' ? 'admin' : 'policy'),
  };
}

function commonClaims(record: AuditRecord, entity: string): Record<string, unknown> {
  const reason = text(record.reason);
  return {
    event_timestamp: Math.floor(Date.parse(record.time) / 1000),
    initiating_entity: entity,
    ...(reason !== '' ? { reason_admin: { en: reason } } : {}),
  };
}

/** Who ended a lease, by its revocation reason: an admin (or quarantine), its own agent, the broker. */
function initiatingEntity(reason: string): string {
  if (reason.startsWith('admin')) return 'admin';
  if (reason === 'task_ended') return 'user';
  return 'system';
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
