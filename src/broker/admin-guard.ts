/**
 * Accountability for admin calls, in one place: an admin action is authorized by its Cedar admin
 * action; a refusal is audited (`admin.denied`, unless the call has a record of its own) and
 * counted as a strike for the automatic quarantine, so an identity probing the admin surface is
 * seen and stopped like an agent probing policy; a successful read (ListLeases, GetLease,
 * ListApprovals, ListQuarantines, ListBreakGlass) is audited as `admin.read`, and refused when it
 * cannot be recorded, as every admin action is.
 */
import type { Logger } from 'pino';
import type { AuditEventInput, AuditSink } from '../audit/types.js';
import { type BrokerError, unavailable } from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { PolicyEngine } from '../policy/types.js';
import type { IncidentHooks } from './broker.js';
import { decisionFields, denialError } from './decisions.js';
import { policyPrincipal } from './human-checks.js';

/** The Cedar admin actions on `Broker::"svid-broker"`. */
export type AdminAction =
  'ListLeases' | 'RevokeLeases' | 'Quarantine' | 'ReleaseQuarantine' | 'ListQuarantines' | 'WatchAudit';

export interface AdminGuardDeps {
  policy: () => PolicyEngine;
  audit: AuditSink;
  /** The automatic quarantine triggers: each admin refusal is a strike. */
  incidents?: Pick<IncidentHooks, 'onRefused'>;
  logger: Logger;
}

export class AdminGuard {
  constructor(private readonly deps: AdminGuardDeps) {}

  /** Authorizes `method` by its admin action; a refusal is audited, counted and thrown. */
  async authorize(caller: Caller, action: AdminAction, method: string): Promise<void> {
    const decision = this.deps.policy().authorize({
      principal: policyPrincipal(caller),
      action,
      resource: { type: 'Broker' },
      context: {},
    });
    if (decision.decision === 'allow') return;
    await this.refuse(caller, method, denialError(decision, method), { action, ...decisionFields(decision) });
  }

  /**
   * Audits a refused admin call as `admin.denied` with `fields`, counts it as a strike, and throws
   * `err`. With `audited` the call already wrote a record of its own (approval.decision_refused,
   * breakglass.denied): only the strike is added. The refusal stands if either step fails.
   */
  async refuse(
    caller: Caller,
    method: string,
    err: BrokerError,
    fields: Record<string, unknown>,
    audited = false,
  ): Promise<never> {
    if (!audited) {
      await this.deps.audit
        .write({ type: 'admin.denied', agent: caller.spiffeId, method, reason: err.reason, ...fields })
        .catch((e: unknown) =>
          this.deps.logger.error(
            { err: { message: (e as Error).message }, method },
            'admin.denied not audited',
          ),
        );
    }
    await this.deps.incidents
      ?.onRefused(caller.spiffeId, err, { action: method })
      .catch((e: unknown) =>
        this.deps.logger.error(
          { err: { message: (e as Error).message }, method },
          'quarantine trigger failed',
        ),
      );
    throw err;
  }

  /** Records a successful admin read; an unrecorded read is refused (UNAVAILABLE). */
  async recordRead(caller: Caller, method: string, fields: Record<string, unknown>): Promise<void> {
    await this.record({ type: 'admin.read', agent: caller.spiffeId, method, ...fields }, 'admin read');
  }

  /**
   * Admin records must be written: an admin call (`what`) whose record cannot be written is refused
   * (UNAVAILABLE `audit_unavailable`), and the failure logged.
   */
  async record(event: AuditEventInput, what = 'admin action'): Promise<void> {
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      this.deps.logger.error(
        { err: { message: (err as Error).message }, type: event.type },
        `${what} not audited`,
      );
      throw unavailable('audit_unavailable', `audit trail unavailable: ${what} refused`, err);
    }
  }
}
