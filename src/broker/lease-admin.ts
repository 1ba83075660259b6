/**
 * Incident tools: list, get and revoke leases by selector (lease, agent or agent pattern, task,
 * environment, role, backend, trust domain, or all). Authorized by the ListLeases and RevokeLeases
 * admin actions; each admin call leaves one summary audit record.
 *
 * A revocation streams: the store moves one page of matching leases to `revoking` and queues their
 * backend jobs in one atomic step (LeaseStore.revokeSelected), the broker then revokes them at
 * their backends (Broker.finishRevocations), and the caller sees progress after every page. The
 * ledger runs a few pages ahead of the backends, so containment (the deny list) does not wait for
 * slow backends, and memory stays bounded by the page size whatever the number of leases.
 */
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import type { CloudIncidents } from '../credentials/cloud/cloud-backends.js';
import { invalidArgument, isBrokerError, notFound, unavailable } from '../errors.js';
import { SpiffeIdPattern, parseTrustDomain } from '../identity/spiffe-id.js';
import type { Caller } from '../identity/types.js';
import type { Lease, LeaseSelector, LeaseState, LeaseStore, RevokeReport } from '../leases/types.js';
import { LEASE_STATES } from '../leases/lease-records.js';
import type { PolicyEngine } from '../policy/types.js';
import { readAhead } from '../util/read-ahead.js';
import { AdminGuard, type AdminAction } from './admin-guard.js';
import type { Broker, BulkRevocationResult, IncidentHooks } from './broker.js';
import { LIMITS, boundedText, requireRoleName, requireTaskId } from './validate.js';

// The report types live with the lease ledger (quarantine passes reports on without importing the broker).
export type { BackendCounts, RevokeReport } from '../leases/types.js';

const STATES = LEASE_STATES;

/**
 * Leases per ledger page of a revocation (one Lua call each). A page holds Redis for about 23 us
 * per lease on our 2-core machine (bench/revoke-ledger.ts: Redis's time over the run), so 500 is
 * about 12 ms, well under the 50 ms other clients may wait, even when the machine is busy; half
 * the round trips of the 250 before, which counts when Redis is across a network (on one host
 * the bench finds no steady difference between 250 and 2,000).
 */
export const REVOKE_PAGE_SIZE = 500;
/** Ledger pages a revocation may run ahead of the backend revokes (2,000 leases, as 8 pages of 250 were). */
export const LEDGER_LOOKAHEAD = 4;
/** Lease ids named in the summary audit record; the per-lease records name every one. */
const AUDIT_LEASE_IDS = 1000;
const DEFAULT_LIST_PAGE = 100;
const MAX_LIST_PAGE = 1000;

export interface LeaseSelectorInput {
  leaseId: string;
  agent: string;
  taskId: string;
  environment: string;
  role: string;
  backend: string;
  trustDomain: string;
  all: boolean;
  /** ListLeases only; '' = active, 'any' = every state. */
  state: string;
}

/** Progress after one page: the running report and the leases this page covered. */
export interface RevokeProgress {
  report: RevokeReport;
  leases: Lease[];
}

/** Sees each page's progress; a returned promise holds the next page back (stream backpressure). */
export type ProgressSink = (p: RevokeProgress) => void | Promise<void>;

export interface LeaseAdminDeps {
  store: LeaseStore;
  broker: Broker;
  policy: () => PolicyEngine;
  audit: AuditSink;
  /** The automatic quarantine triggers: an admin refusal is a strike. */
  incidents?: Pick<IncidentHooks, 'onRefused'>;
  logger: Logger;
  /**
   * When the revocation worker may take over a bulk revocation's jobs (the call revokes them
   * inline first; after a crash the worker finishes them from then on). Default 60 s.
   */
  jobDelayMs?: number;
  /** The cloud incident lever (AWS deny-older-sessions), when a cloud backend is configured. */
  cloudIncidents?: CloudIncidents;
  now?: () => number;
}

export interface RevokeInput {
  selector: LeaseSelectorInput;
  reason: string;
  dryRun: boolean;
  confirmAll: boolean;
  /** Also deny, at AWS, every session of `selector.role` issued before now (PutRolePolicy). */
  denyOlderSessions?: boolean;
}

export class LeaseAdmin {
  private readonly now: () => number;
  private readonly guard: AdminGuard;

  constructor(private readonly deps: LeaseAdminDeps) {
    this.now = deps.now ?? Date.now;
    this.guard = new AdminGuard({
      policy: deps.policy,
      audit: deps.audit,
      logger: deps.logger,
      ...(deps.incidents ? { incidents: deps.incidents } : {}),
    });
  }

  async listLeases(
    caller: Caller,
    input: LeaseSelectorInput,
    page: { pageSize?: number; pageToken?: string } = {},
  ): Promise<{ leases: Lease[]; nextPageToken: string }> {
    await this.authorize(caller, 'ListLeases');
    const state = input.state || 'active';
    if (state !== 'any' && !(STATES as readonly string[]).includes(state)) {
      throw invalidArgument('state', `must be one of ${STATES.join(', ')} or any`);
    }
    const pageSize = page.pageSize || DEFAULT_LIST_PAGE;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > MAX_LIST_PAGE) {
      throw invalidArgument('page_size', `must be between 1 and ${MAX_LIST_PAGE}`);
    }
    const { selector, describe } = parseSelector(input, state === 'any' ? undefined : (state as LeaseState));
    // Keep reading index pages until this page is full or the index ends: a selective filter may
    // match nothing in many entries, and the caller should not have to page through emptiness.
    const leases: Lease[] = [];
    let cursor = page.pageToken || undefined;
    do {
      const got = await this.deps.store.scanLeases(selector, cursor, pageSize);
      leases.push(...got.leases);
      cursor = got.cursor;
    } while (cursor !== undefined && leases.length < pageSize);
    await this.guard.recordRead(caller, 'ListLeases', {
      selector: describe,
      state,
      ...(page.pageToken ? { page_token: page.pageToken } : {}),
      count: leases.length,
    });
    return { leases, nextPageToken: cursor ?? '' };
  }

  async getLease(caller: Caller, leaseId: string): Promise<Lease> {
    await this.authorize(caller, 'ListLeases', 'GetLease');
    const id = requireTaskId(leaseId, 'lease_id');
    const lease = await this.deps.store.getLease(id);
    await this.guard.recordRead(caller, 'GetLease', { lease: id, found: lease !== undefined });
    if (!lease) throw notFound('lease_not_found', 'lease not found (or past its retention)');
    return lease;
  }

  /** RevokeLeases as an admin call: authorized, validated, audited. */
  async revokeLeases(
    caller: Caller,
    input: RevokeInput,
    onProgress: ProgressSink = () => undefined,
  ): Promise<RevokeReport> {
    await this.authorize(caller, 'RevokeLeases');
    const reason = boundedText(input.reason.trim(), 'reason', LIMITS.reason);
    if (!reason) throw invalidArgument('reason', 'is required: it is recorded on every lease');
    if (input.selector.all && !input.confirmAll) {
      throw invalidArgument('confirm_all', 'revoking every lease needs confirm_all');
    }
    const { selector, describe } = parseSelector(input.selector, 'active');
    const denied = input.denyOlderSessions ? await this.denyOlderSessions(caller, input, reason) : undefined;
    const report = await this.revokeSelected(
      caller.spiffeId,
      selector,
      describe,
      reason,
      input.dryRun,
      onProgress,
    );
    return denied ? { ...report, olderSessionsDeniedBefore: denied } : report;
  }

  /**
   * The AWS incident lever: sessions cannot be ended one by one, so the role itself gets an inline
   * deny for tokens issued before now. Done before the ledger moves, and audited either way.
   */
  private async denyOlderSessions(caller: Caller, input: RevokeInput, reason: string): Promise<string> {
    const role = input.selector.role;
    if (!role) throw invalidArgument('deny_older_sessions', 'needs selector.role (an aws role)');
    if (input.dryRun) throw invalidArgument('deny_older_sessions', 'cannot be combined with dry_run');
    if (!this.deps.cloudIncidents)
      throw invalidArgument('deny_older_sessions', 'no aws backend is configured');
    const cut = new Date(this.now());
    try {
      const d = await this.deps.cloudIncidents.denyOlderSessions(requireRoleName(role), cut);
      await this.deps.audit.write({
        type: 'admin.deny_older_sessions',
        agent: caller.spiffeId,
        role: d.role,
        role_arn: d.roleArn,
        policy_name: d.policyName,
        issued_before: d.issuedBefore,
        reason,
      });
      return d.issuedBefore;
    } catch (err) {
      await this.deps.audit
        .write({
          type: 'admin.deny_older_sessions_failed',
          agent: caller.spiffeId,
          role,
          reason,
          error: isBrokerError(err) ? err.reason : 'error',
        })
        .catch(() => undefined);
      throw err;
    }
  }

  /**
   * Revokes every active lease matching an already validated selector (also used by quarantine
   * with revoke_active), and writes the summary audit record.
   */
  async revokeSelected(
    by: string,
    selector: LeaseSelector,
    describe: Record<string, unknown>,
    reason: string,
    dryRun: boolean,
    onProgress: ProgressSink = () => undefined,
  ): Promise<RevokeReport> {
    const report: RevokeReport = {
      matched: 0,
      revoked: 0,
      pendingRetry: 0,
      notRevocable: 0,
      byBackend: {},
      dryRun,
      scanned: 0,
      toScan: 0,
      done: false,
    };
    const sample: string[] = [];
    const started = this.now();
    if (dryRun) {
      await this.scanDry(selector, report, sample, onProgress);
    } else {
      await this.revokePages(selector, `admin: ${reason}`, report, sample, onProgress);
    }
    report.done = true;
    try {
      await this.deps.audit.write({
        type: dryRun ? 'admin.revoke_dry_run' : 'admin.revoke',
        agent: by,
        selector: describe,
        reason,
        matched: report.matched,
        revoked: report.revoked,
        pending_retry: report.pendingRetry,
        not_revocable: report.notRevocable,
        by_backend: report.byBackend,
        duration_ms: this.now() - started,
        leases: sample,
        ...(report.matched > sample.length ? { leases_truncated: true } : {}),
      });
    } catch (err) {
      // The revocations stand (revoking is the safe direction; each lease has its own record);
      // the summary's absence is loud.
      this.deps.logger.error(
        { err: { message: (err as Error).message } },
        'admin revoke summary not audited',
      );
      if (dryRun) throw unavailable('audit_unavailable', 'audit trail unavailable', err);
    }
    return report;
  }

  private async scanDry(
    selector: LeaseSelector,
    report: RevokeReport,
    sample: string[],
    onProgress: ProgressSink,
  ): Promise<void> {
    let cursor: string | undefined;
    do {
      const page = await this.deps.store.scanLeases(
        { ...selector, state: 'active' },
        cursor,
        REVOKE_PAGE_SIZE,
      );
      cursor = page.cursor;
      report.scanned += page.scanned;
      report.toScan = cursor === undefined ? report.scanned : report.scanned + 1;
      report.matched += page.leases.length;
      for (const l of page.leases) if (sample.length < AUDIT_LEASE_IDS) sample.push(l.id);
      if (page.leases.length > 0 || cursor === undefined) {
        await onProgress({ report: { ...report, done: cursor === undefined }, leases: page.leases });
      }
    } while (cursor !== undefined);
  }

  private async revokePages(
    selector: LeaseSelector,
    reason: string,
    report: RevokeReport,
    sample: string[],
    onProgress: ProgressSink,
  ): Promise<void> {
    const at = this.now();
    const pages = this.deps.store.revokeSelected(selector, {
      reason,
      at,
      // The worker leaves the jobs alone while this call revokes them inline; after a crash it
      // picks them up from here.
      runAt: at + (this.deps.jobDelayMs ?? 60_000),
      pageSize: REVOKE_PAGE_SIZE,
    });
    // The ledger runs up to LEDGER_LOOKAHEAD pages ahead of the backends. On a failure here it
    // stops at its next page; leases it already moved are `revoking` with queued jobs, so the
    // worker finishes them.
    for await (const page of readAhead(pages, LEDGER_LOOKAHEAD)) {
      const results = page.leases.length ? await this.deps.broker.finishRevocations(page.leases, reason) : [];
      tally(report, results);
      report.scanned += page.scanned;
      report.toScan = page.total;
      for (const l of page.leases) if (sample.length < AUDIT_LEASE_IDS) sample.push(l.id);
      if (results.length > 0) {
        // Each lease as the backend step left it, so a table agrees with the counts.
        await onProgress({ report: { ...report }, leases: results.map(leaseAfterRevocation) });
      }
    }
  }

  /** Authorizes an admin call by its action (`method` names the rpc); a refusal is audited and a strike. */
  authorize(caller: Caller, action: AdminAction, method: string = action): Promise<void> {
    return this.guard.authorize(caller, action, method);
  }

  /** Audits a successful admin read (refused when it cannot be recorded). */
  recordRead(caller: Caller, method: string, fields: Record<string, unknown>): Promise<void> {
    return this.guard.recordRead(caller, method, fields);
  }
}

/** The ledger state a bulk revocation left: revoked, revoke_failed (not revocable), or revoking (queued). */
function leaseAfterRevocation(r: BulkRevocationResult): Lease {
  const state =
    r.outcome === 'revoked' ? 'revoked' : r.outcome === 'not_revocable' ? 'revoke_failed' : 'revoking';
  return { ...r.lease, state };
}

function tally(report: RevokeReport, results: readonly BulkRevocationResult[]): void {
  for (const r of results) {
    report.matched++;
    const counts = (report.byBackend[r.lease.backend] ??= { revoked: 0, pendingRetry: 0, notRevocable: 0 });
    if (r.outcome === 'revoked') {
      report.revoked++;
      counts.revoked++;
    } else if (r.outcome === 'not_revocable') {
      report.notRevocable++;
      counts.notRevocable++;
    } else {
      report.pendingRetry++;
      counts.pendingRetry++;
    }
  }
}

/** An agent field: an exact SPIFFE ID or a pattern ending in `/*` or `/**`. */
export function parseAgentSelector(
  agent: string,
  field = 'agent',
): Pick<LeaseSelector, 'agent' | 'agentPattern'> {
  let pattern: SpiffeIdPattern;
  try {
    pattern = SpiffeIdPattern.parse(agent, field);
  } catch {
    throw invalidArgument(field, 'must be a SPIFFE ID or a pattern ending in /* or /**');
  }
  return agent.includes('*') ? { agentPattern: pattern.toString() } : { agent: pattern.toString() };
}

/** Validates a selector; the store starts from the narrowest index it names. */
export function parseSelector(
  input: LeaseSelectorInput,
  state: LeaseState | undefined,
): { selector: LeaseSelector; describe: Record<string, unknown> } {
  const selector: LeaseSelector = state ? { state } : {};
  const describe: Record<string, unknown> = {};
  if (input.leaseId) {
    selector.leaseId = requireTaskId(input.leaseId, 'lease_id');
    describe.lease_id = selector.leaseId;
  }
  if (input.agent) {
    Object.assign(selector, parseAgentSelector(input.agent));
    describe.agent = input.agent;
  }
  if (input.taskId) {
    selector.taskId = requireTaskId(input.taskId);
    describe.task_id = input.taskId;
  }
  if (input.environment) {
    selector.environment = boundedText(input.environment, 'environment', 64);
    describe.environment = input.environment;
  }
  if (input.role) {
    selector.role = requireRoleName(input.role);
    describe.role = selector.role;
  }
  if (input.backend) {
    selector.backend = boundedText(input.backend, 'backend', 64);
    describe.backend = selector.backend;
  }
  if (input.trustDomain) {
    selector.trustDomain = parseTrustDomain(input.trustDomain, 'trust_domain');
    describe.trust_domain = selector.trustDomain;
  }
  if (input.all) describe.all = true;
  if (Object.keys(describe).length === 0) {
    throw invalidArgument(
      'selector',
      'name at least one of lease_id, agent, task_id, environment, role, backend, trust_domain, or all',
    );
  }
  return { selector, describe };
}
