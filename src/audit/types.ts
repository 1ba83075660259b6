/** Audit seam. */
export type AuditEventType =
  | 'auth.denied'
  | 'task.begun'
  | 'task.ended'
  | 'task.denied'
  | 'task.failed'
  | 'task.roles_listed'
  | 'access.evaluated'
  | 'credential.issued'
  | 'credential.denied'
  | 'credential.failed'
  | 'lease.revoked'
  | 'lease.expired'
  | 'lease.revoke_failed'
  | 'lease.revoke_queued'
  | 'lease.not_revocable'
  | 'approval.requested'
  | 'approval.approved'
  | 'approval.denied'
  | 'approval.decision_refused'
  | 'breakglass.granted'
  | 'breakglass.reviewed'
  | 'breakglass.denied'
  | 'budget.exceeded'
  | 'admin.revoke'
  | 'admin.revoke_dry_run'
  | 'quarantine.set'
  | 'quarantine.released'
  | 'policy.reloaded'
  | 'policy.reload_failed'
  | 'policy.synced'
  | 'broker.started'
  | 'broker.stopped';

/** What callers hand to a sink. Values must be JSON (RFC 8785-canonicalisable); never secrets. */
export interface AuditEventInput {
  type: AuditEventType;
  /** SPIFFE ID of the acting agent, or '' when unknown (e.g. a refused handshake). */
  agent: string;
  [field: string]: unknown;
}

/** A record as written to the chain. */
export interface AuditRecord extends AuditEventInput {
  id: string;
  /** RFC 3339 UTC */
  time: string;
  prev_hash: string;
  hash: string;
}

/**
 * Contract: write() resolves only once the record is durable in the sink (written and flushed);
 * it rejects when the record could not be recorded, and the caller must then fail closed.
 */
export interface AuditSink {
  write(event: AuditEventInput): Promise<AuditRecord>;
  close(): Promise<void>;
}
