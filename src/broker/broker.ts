/**
 * The use cases: begin task, issue credential, end task, revoke. No gRPC types in here: callers
 * arrive as verified `Caller`s, failures leave as BrokerErrors.
 *
 * Fail-closed order of IssueCredential: validate -> load task -> policy -> mint at the backend ->
 * write the lease -> write the audit record -> return. If the lease or the audit record cannot be
 * written, the credential is revoked at the backend and nothing leaves the broker.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditEventInput, AuditSink } from '../audit/types.js';
import type { ChangeType, Sensitivity } from '../config/schema.js';
import type { Credential, CredentialBackend, RoleDefinition } from '../credentials/backend.js';
import {
  BrokerError,
  failedPrecondition,
  invalidArgument,
  isBrokerError,
  notFound,
  permissionDenied,
  unavailable,
} from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { Lease, LeaseStore, Task, TaskLeaseSummary } from '../leases/types.js';
import type { PolicyDecision, PolicyEngine } from '../policy/types.js';
import {
  LIMITS,
  boundedText,
  changeTypeOrDefault,
  maxSensitivity,
  optionalSensitivity,
  optionalTtl,
  requireRoleName,
  requireTaskId,
  validLabels,
} from './validate.js';

export interface BeginTaskInput {
  environment: string;
  intent: string;
  ttlSeconds: number;
  labels: Record<string, string>;
}

export interface IssueCredentialInput {
  taskId: string;
  role: string;
  ttlSeconds: number;
  sensitivity: string;
  changeType: string;
  justification: string;
  tool: string;
}

export interface IssuedLease {
  leaseId: string;
  expiresAt: number;
  ttlSeconds: number;
  credential: Credential;
  role: string;
  taskId: string;
  environment: string;
  policyIds: string[];
}

export interface RevokedLeaseSummary {
  leaseId: string;
  role: string;
  state: 'revoked' | 'revoke_failed';
}

export interface BrokerDeps {
  store: LeaseStore;
  /** A getter, so a policy reload can swap the engine between requests. */
  policy: () => PolicyEngine;
  audit: AuditSink;
  backends: ReadonlyMap<string, CredentialBackend>;
  roles: ReadonlyMap<string, RoleDefinition>;
  environments: readonly string[];
  tasks: { defaultTtlSeconds: number; maxTtlSeconds: number };
  logger: Logger;
  now?: () => number;
  newId?: () => string;
}

const MIN_CREDENTIAL_SECONDS = 1;

export class Broker {
  private readonly now: () => number;
  private readonly newId: () => string;

  constructor(private readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
  }

  /** Every attempt leaves an audit record: refusals the steps below did not record are recorded here. */
  async beginTask(caller: Caller, input: BeginTaskInput): Promise<Task> {
    const attempt: Attempt = { audited: false };
    try {
      return await this.begin(caller, input, attempt);
    } catch (err) {
      if (!attempt.audited) {
        await this.auditDenial({
          type: refusalType(err, 'task.denied', 'task.failed'),
          agent: caller.spiffeId,
          environment: clip(input.environment),
          ...refusalFields(err),
        });
      }
      throw err;
    }
  }

  private async begin(caller: Caller, input: BeginTaskInput, attempt: Attempt): Promise<Task> {
    const environment = input.environment;
    if (!environment) throw invalidArgument('environment', 'is required');
    if (!this.deps.environments.includes(environment)) {
      throw invalidArgument(
        'environment',
        `unknown environment (configured: ${this.deps.environments.join(', ')})`,
      );
    }
    const intent = boundedText(input.intent, 'intent', LIMITS.intent);
    const labels = validLabels(input.labels);
    const requested = optionalTtl(input.ttlSeconds);
    const ttlSeconds = Math.min(
      requested || this.deps.tasks.defaultTtlSeconds,
      this.deps.tasks.maxTtlSeconds,
    );

    const decision = this.deps.policy().authorize({
      principal: caller.spiffeId,
      action: 'BeginTask',
      resource: { type: 'Environment', id: environment },
      context: { environment, ttlSeconds, intent, authMethod: caller.authMethod },
    });
    if (decision.decision !== 'allow') {
      await this.auditDenial(
        {
          type: 'task.denied',
          agent: caller.spiffeId,
          environment,
          intent,
          ttl_seconds: ttlSeconds,
          ...decisionFields(decision),
        },
        attempt,
      );
      throw denialError(decision, `BeginTask in "${environment}"`);
    }

    const now = this.now();
    const task: Task = {
      id: this.newId(),
      agent: caller.spiffeId,
      environment,
      intent,
      labels,
      createdAt: now,
      expiresAt: now + ttlSeconds * 1000,
      state: 'active',
    };
    await this.deps.store.createTask(task);
    try {
      await this.deps.audit.write({
        type: 'task.begun',
        agent: caller.spiffeId,
        task: task.id,
        environment,
        intent,
        labels,
        ttl_seconds: ttlSeconds,
        expires_at: new Date(task.expiresAt).toISOString(),
        auth_method: caller.authMethod,
        ...decisionFields(decision),
      });
    } catch (err) {
      // An unrecorded task must not be usable.
      await this.deps.store.endTask(task.id, 'ended', 'audit_unavailable', this.now()).catch(() => undefined);
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }
    return task;
  }

  async getTask(caller: Caller, taskId: string): Promise<Task> {
    return this.ownTask(caller, requireTaskId(taskId));
  }

  async issueCredential(caller: Caller, input: IssueCredentialInput): Promise<IssuedLease> {
    const attempt: Attempt = { audited: false };
    try {
      return await this.issue(caller, input, attempt);
    } catch (err) {
      if (!attempt.audited) {
        await this.auditDenial({
          type: refusalType(err, 'credential.denied', 'credential.failed'),
          agent: caller.spiffeId,
          task: clip(input.taskId),
          role: clip(input.role),
          ...refusalFields(err),
        });
      }
      throw err;
    }
  }

  private async issue(caller: Caller, input: IssueCredentialInput, attempt: Attempt): Promise<IssuedLease> {
    const taskId = requireTaskId(input.taskId);
    const roleName = requireRoleName(input.role);
    const requestedTtl = optionalTtl(input.ttlSeconds);
    const declared = optionalSensitivity(input.sensitivity);
    const changeType: ChangeType = changeTypeOrDefault(input.changeType);
    const justification = boundedText(input.justification, 'justification', LIMITS.justification);
    const tool = boundedText(input.tool, 'tool', LIMITS.tool);
    const role = this.deps.roles.get(roleName);
    if (!role) throw invalidArgument('role', `unknown role "${roleName}"`);
    const backend = this.deps.backends.get(role.backend);
    if (!backend) throw unavailable('backend_not_configured', `backend "${role.backend}" is not configured`);

    const task = await this.ownTask(caller, taskId);
    const now = this.now();
    const remainingSeconds = Math.floor((task.expiresAt - now) / 1000);
    if (remainingSeconds < MIN_CREDENTIAL_SECONDS)
      throw failedPrecondition('task_expired', 'task has expired');
    const ttlSeconds = Math.min(requestedTtl || role.maxTtlSeconds, role.maxTtlSeconds, remainingSeconds);
    const sensitivity: Sensitivity = maxSensitivity(role.sensitivity, declared);

    const { count: taskCredentialCount, roles: taskRoles } = await this.taskLeaseSummary(taskId);
    const decision = this.deps.policy().authorize({
      principal: caller.spiffeId,
      action: 'IssueCredential',
      resource: { type: 'Role', role },
      context: {
        environment: task.environment,
        ttlSeconds,
        sensitivity,
        changeType,
        tool,
        justification,
        authMethod: caller.authMethod,
        taskAgeSeconds: Math.max(0, Math.floor((now - task.createdAt) / 1000)),
        taskRoles,
        taskCredentialCount,
      },
    });
    const requestFields = {
      agent: caller.spiffeId,
      task: task.id,
      role: role.name,
      environment: task.environment,
      ttl_seconds: ttlSeconds,
      sensitivity,
      change_type: changeType,
      tool,
      justification,
      auth_method: caller.authMethod,
    };
    if (decision.decision !== 'allow') {
      await this.auditDenial(
        { type: 'credential.denied', ...requestFields, ...decisionFields(decision) },
        attempt,
      );
      throw denialError(decision, `IssueCredential for "${role.name}"`);
    }

    const leaseId = this.newId();
    let issued;
    try {
      issued = await backend.issue({
        leaseId,
        agent: caller.spiffeId,
        taskId: task.id,
        environment: task.environment,
        role,
        ttlSeconds,
        notAfter: task.expiresAt,
        now,
      });
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), lease: leaseId, role: role.name }, 'backend issue failed');
      await this.auditDenial(
        {
          type: 'credential.failed',
          ...requestFields,
          lease: leaseId,
          stage: 'backend',
          error: isBrokerError(err) ? err.reason : 'backend_error',
        },
        attempt,
      );
      throw isBrokerError(err)
        ? err
        : unavailable('backend_unavailable', `backend "${role.backend}" is unavailable`);
    }

    const lease: Lease = {
      id: leaseId,
      agent: caller.spiffeId,
      taskId: task.id,
      environment: task.environment,
      role: role.name,
      backend: role.backend,
      backendRef: issued.backendRef,
      issuedAt: now,
      expiresAt: Math.min(issued.expiresAt, task.expiresAt),
      state: 'active',
    };
    const undo = async (why: string): Promise<void> => {
      await backend
        .revoke({ leaseId, backendRef: issued.backendRef, expiresAt: lease.expiresAt })
        .catch((err: unknown) =>
          this.deps.logger.error({ err: safeErr(err), lease: leaseId }, `revoke after ${why} failed`),
        );
    };

    let put;
    try {
      put = await this.deps.store.putLease(lease, this.now());
    } catch (err) {
      await undo('lease write failure');
      await this.auditDenial(
        {
          type: 'credential.failed',
          ...requestFields,
          lease: leaseId,
          stage: 'lease_store',
        },
        attempt,
      );
      throw isBrokerError(err) ? err : unavailable('lease_store_unavailable', 'lease store unavailable', err);
    }
    if (put !== 'ok') {
      await undo(`lease rejected (${put})`);
      await this.auditDenial(
        { type: 'credential.failed', ...requestFields, lease: leaseId, stage: put },
        attempt,
      );
      throw failedPrecondition(put, taskProblem(put));
    }

    try {
      await this.deps.audit.write({
        type: 'credential.issued',
        ...requestFields,
        lease: leaseId,
        backend: role.backend,
        expires_at: new Date(lease.expiresAt).toISOString(),
        ...decisionFields(decision),
      });
    } catch (err) {
      // No record, no credential: end the lease, revoke at the backend.
      await this.deps.store
        .markLeaseEnded(leaseId, 'revoked', 'audit_unavailable', this.now())
        .catch((e: unknown) =>
          this.deps.logger.error({ err: safeErr(e), lease: leaseId }, 'lease end failed'),
        );
      await undo('audit failure');
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }

    return {
      leaseId,
      expiresAt: lease.expiresAt,
      // Backends round expiry down to whole seconds (JWT exp), so round up: this equals exp - iat,
      // never 0 for an issued credential, never role max - 1 when the full role max was granted.
      ttlSeconds: Math.max(0, Math.ceil((lease.expiresAt - now) / 1000)),
      credential: issued.credential,
      role: role.name,
      taskId: task.id,
      environment: task.environment,
      policyIds: decision.policyIds,
    };
  }

  async endTask(
    caller: Caller,
    input: { taskId: string; reason: string },
  ): Promise<{ task: Task; revoked: RevokedLeaseSummary[] }> {
    const taskId = requireTaskId(input.taskId);
    const reason = boundedText(input.reason, 'reason', LIMITS.reason) || 'ended by agent';
    const task = await this.ownTask(caller, taskId);
    if (task.state !== 'active') throw failedPrecondition('task_ended', `task is already ${task.state}`);
    const ended = await this.deps.store.endTask(taskId, 'ended', reason, this.now());
    if (!ended) throw failedPrecondition('task_ended', 'task is no longer active');
    const revoked = await this.revokeTaskLeases(ended, 'task_ended');
    await this.auditAfterRevocation({
      type: 'task.ended',
      agent: caller.spiffeId,
      task: taskId,
      environment: ended.environment,
      reason,
      revoked_leases: revoked.map((r) => r.leaseId),
    });
    return { task: ended, revoked };
  }

  /** Reaper callback: the task was already moved to `expired` by the store. */
  async onTaskExpired(task: Task): Promise<void> {
    const revoked = await this.revokeTaskLeases(task, 'task_expired');
    await this.auditAfterRevocation({
      type: 'task.ended',
      agent: task.agent,
      task: task.id,
      environment: task.environment,
      reason: 'expired',
      revoked_leases: revoked.map((r) => r.leaseId),
    });
  }

  /** Reaper callback: the lease was already moved to `expired` by the store; make sure the backend agrees. */
  async onLeaseExpired(lease: Lease): Promise<void> {
    const backend = this.deps.backends.get(lease.backend);
    let ok = true;
    try {
      await backend?.revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt });
    } catch (err) {
      ok = false;
      this.deps.logger.error(
        { err: safeErr(err), lease: lease.id },
        'backend revoke of expired lease failed',
      );
    }
    await this.auditAfterRevocation({
      type: ok ? 'lease.expired' : 'lease.revoke_failed',
      agent: lease.agent,
      lease: lease.id,
      task: lease.taskId,
      role: lease.role,
      environment: lease.environment,
      reason: 'expired',
    });
  }

  /** Revokes every active lease of a task, at the backend first. */
  async revokeTaskLeases(task: Task, reason: string): Promise<RevokedLeaseSummary[]> {
    const leases = await this.deps.store.listLeases({ taskId: task.id, state: 'active' });
    const results = await Promise.all(leases.map((lease) => this.revokeLease(lease, reason)));
    return results.filter((r): r is RevokedLeaseSummary => r !== undefined);
  }

  /**
   * Revokes at the backend, then records the outcome. Backend revokes are idempotent, so two
   * replicas racing here both revoke and only the one whose state transition wins audits it.
   */
  async revokeLease(lease: Lease, reason: string): Promise<RevokedLeaseSummary | undefined> {
    const backend = this.deps.backends.get(lease.backend);
    let state: 'revoked' | 'revoke_failed' = 'revoked';
    try {
      if (!backend) throw new Error(`backend "${lease.backend}" is not configured`);
      await backend.revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt });
    } catch (err) {
      state = 'revoke_failed';
      this.deps.logger.error({ err: safeErr(err), lease: lease.id }, 'backend revoke failed');
    }
    const ended = await this.deps.store.markLeaseEnded(lease.id, state, reason, this.now());
    if (!ended) return undefined;
    await this.auditAfterRevocation({
      type: state === 'revoked' ? 'lease.revoked' : 'lease.revoke_failed',
      agent: lease.agent,
      lease: lease.id,
      task: lease.taskId,
      role: lease.role,
      environment: lease.environment,
      reason,
    });
    return { leaseId: lease.id, role: lease.role, state };
  }

  /** What the task holds so far: the store's tally when it keeps one, else by listing its leases. */
  private async taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary> {
    const tallied = await this.deps.store.taskLeaseSummary(taskId);
    if (tallied !== undefined) return tallied;
    const leases = await this.deps.store.listLeases({ taskId });
    return { count: leases.length, roles: [...new Set(leases.map((l) => l.role))].sort() };
  }

  private async ownTask(caller: Caller, taskId: string): Promise<Task> {
    const task = await this.deps.store.getTask(taskId);
    if (!task) throw notFound('task_not_found', 'task not found');
    if (task.agent !== caller.spiffeId)
      throw failedPrecondition('task_not_yours', 'task belongs to another agent');
    if (task.state !== 'active') throw failedPrecondition('task_ended', `task is ${task.state}`);
    if (task.expiresAt <= this.now()) throw failedPrecondition('task_expired', 'task has expired');
    return task;
  }

  /**
   * Revocations are never undone because the audit trail is down (revoking is the safe direction);
   * the failure is logged loudly, and issuance stays blocked while the sink is failed.
   */
  private async auditAfterRevocation(event: AuditEventInput): Promise<void> {
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), event }, 'audit write failed after a revocation');
    }
  }

  /** Denials are audited too; if the audit trail is down the request is still denied. */
  private async auditDenial(event: AuditEventInput, attempt?: Attempt): Promise<void> {
    if (attempt) attempt.audited = true;
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), type: event.type }, 'audit write failed for a denial');
    }
  }
}

interface Attempt {
  audited: boolean;
}

/** Untrusted request text in an audit record: bounded, whatever the caller sent. */
function clip(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}

/** Outages are failures; everything else the broker refused is a denial. */
function refusalType<D extends string, F extends string>(err: unknown, denied: D, failed: F): D | F {
  return isBrokerError(err) && err.code !== 'UNAVAILABLE' && err.code !== 'INTERNAL' ? denied : failed;
}

function refusalFields(err: unknown): Record<string, unknown> {
  if (!isBrokerError(err)) return { code: 'INTERNAL', reason: 'internal' };
  return { code: err.code, reason: err.reason, ...(err.field ? { field: err.field } : {}) };
}

function decisionFields(decision: PolicyDecision): Record<string, unknown> {
  return {
    decision: decision.decision,
    policy_ids: decision.policyIds,
    policy_digest: decision.policyDigest,
    ...(decision.reasons.length ? { policy_reasons: decision.reasons } : {}),
    ...(decision.errors.length ? { policy_errors: decision.errors } : {}),
  };
}

function denialError(decision: PolicyDecision, what: string): BrokerError {
  if (decision.policyIds.length === 0) {
    // No deciding policy: either nothing permits it (default deny) or the request did not fit the
    // schema, which the engine reports in `errors` (details go to the audit record, not the caller).
    if (decision.errors.length) {
      return permissionDenied(
        `${what} denied: the request does not fit the policy schema`,
        [],
        'policy_invalid_request',
      );
    }
    return permissionDenied(
      `${what} denied: no policy permits this request (default deny)`,
      [],
      'default_deny',
    );
  }
  const reasons = decision.reasons.length ? `: ${decision.reasons.join('; ')}` : '';
  return permissionDenied(
    `${what} denied by policy ${decision.policyIds.map((id) => `"${id}"`).join(', ')}${reasons}`,
    decision.policyIds,
  );
}

function taskProblem(code: string): string {
  switch (code) {
    case 'task_not_found':
      return 'task not found';
    case 'task_not_active':
      return 'task ended while the credential was being issued';
    case 'task_expired':
      return 'task has expired';
    default:
      return 'credential would outlive its task';
  }
}

function auditUnavailable(cause: unknown): BrokerError {
  return unavailable('audit_unavailable', 'audit trail unavailable: request denied', cause);
}

/** Error fields safe to log: message and code, never a credential (backends never put secrets in errors). */
export function safeErr(err: unknown): { message: string; code?: string } {
  if (isBrokerError(err)) return { message: err.message, code: err.reason };
  if (err instanceof Error) return { message: err.message };
  return { message: String(err) };
}
