/**
 * The gRPC server: TLS with the broker's rotating SVID, handlers that only translate proto <->
 * domain, one auth step, one error mapping, the standard health service.
 */
import {
  Server,
  type Metadata,
  experimental,
  type handleUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { Counter, Histogram } from 'prom-client';
import type { CallTrace } from '../audit/trace-context.js';
import type { AuditSink } from '../audit/types.js';
import type { ApprovalDecisionRecord, ApprovalRequest, BreakGlassGrant } from '../approvals/types.js';
import type { BrokerAdmin } from '../broker/admin.js';
import type { LeaseAdmin, LeaseSelectorInput, RevokeReport } from '../broker/lease-admin.js';
import type { QuarantineAdmin } from '../broker/quarantine-admin.js';
import type { Quarantine } from '../quarantine/types.js';
import type { Lease } from '../leases/types.js';
import type { Broker, IssueOutcome } from '../broker/broker.js';
import { invalidArgument, isBrokerError, unavailable } from '../errors.js';
import type { TaskDelegator } from '../broker/delegate-task.js';
import type { TaskTreeAdmin } from '../broker/task-tree-admin.js';
import type { TransactionTokens } from '../broker/transaction-token.js';
import { delegateInputFromMsg, delegationToMsg, endedTasksToMsg } from './delegation-proto.js';
import type { Caller } from '../identity/types.js';
import type { Task } from '../leases/types.js';
import type { Authenticator } from './authenticate.js';
import type { CallGate } from './call-gate.js';
import {
  loadBrokerProto,
  toTimestamp,
  type BeginTaskRequestMsg,
  type DelegateTaskRequestMsg,
  type RevokeTaskTreeRequestMsg,
  type RevokeTaskTreeResponseMsg,
  type EndTaskRequestMsg,
  type EndTaskResponseMsg,
  type GetTaskRequestMsg,
  type ListRolesRequestMsg,
  type ListRolesResponseMsg,
  type IssueCredentialRequestMsg,
  type IssueCredentialResponseMsg,
  type TaskMsg,
  type ApprovalDecisionMsg,
  type ApprovalMsg,
  type AwaitApprovalRequestMsg,
  type AwaitApprovalResponseMsg,
  type BreakGlassGrantMsg,
  type BreakGlassRequestMsg,
  type DecideApprovalRequestMsg,
  type DecideApprovalResponseMsg,
  type ListApprovalsRequestMsg,
  type ListApprovalsResponseMsg,
  type ListBreakGlassResponseMsg,
  type ReviewBreakGlassRequestMsg,
  type LeaseInfoMsg,
  type LeaseSelectorMsg,
  type GetLeaseRequestMsg,
  type ListLeasesRequestMsg,
  type ListLeasesResponseMsg,
  type ListQuarantinesResponseMsg,
  type QuarantineInfoMsg,
  type QuarantineRequestMsg,
  type QuarantineResponseMsg,
  type ReleaseQuarantineRequestMsg,
  type RevokeLeasesReportMsg,
  type RevokeLeasesRequestMsg,
} from './broker-proto.js';
import { timed, type StageTimer } from '../observability/stage-timer.js';
import { toServiceError } from './status.js';
import { watchAuditHandler } from './watch-audit-handler.js';
import type { AuditWatch } from '../broker/audit-watch.js';
import type { SvidCertificateProvider } from './svid-certificate-provider.js';

export const BROKER_SERVICE = 'svidbroker.v1.CredentialBroker';
export const ADMIN_SERVICE = 'svidbroker.v1.BrokerAdmin';

export interface GrpcServerDeps {
  broker: Broker;
  admin: BrokerAdmin;
  leaseAdmin: LeaseAdmin;
  quarantineAdmin: QuarantineAdmin;
  /** This replica's quarantine check: a quarantined identity is refused on every admin call. */
  quarantine?: { check(agent: string): void };
  /** How often AwaitApproval re-reads the approval store. */
  approvalPollMs: number;
  authenticator: Authenticator;
  /** Per-peer limits, the aggregated auth.denied audit and the AwaitApproval cap. */
  gate: CallGate;
  /** grpc-js server options (connection limits: grpcServerOptions in config/grpc-server-config.ts). */
  serverOptions?: Record<string, number>;
  certificates: SvidCertificateProvider;
  audit: AuditSink;
  /** Where a call's valid `traceparent` header is kept while it is served (its audit records carry it). */
  trace?: CallTrace;
  /** BrokerAdmin.WatchAudit (undefined: the call is refused FAILED_PRECONDITION). */
  auditWatch?: AuditWatch;
  logger: Logger;
  metrics?: { requests: Counter<'method' | 'code'>; latency: Histogram<'method'> };
  /** The bench only: times `authenticate` and `respond` of each unary call (the stage breakdown). */
  stageTimer?: StageTimer;
  /** DelegateTask; unset: the call is refused as unimplemented. */
  delegator?: TaskDelegator;
  /** Transaction Tokens for BeginTask/DelegateTask, and IssueCredential's transaction_token. */
  txnTokens?: TransactionTokens;
  /** RevokeTaskTree. */
  taskTree?: TaskTreeAdmin;
}

export interface RunningGrpcServer {
  port: number;
  health: HealthImplementation;
  shutdown(graceMs?: number): Promise<void>;
}

export function taskToMsg(task: Task, transactionToken = ''): TaskMsg {
  return {
    task_id: task.id,
    agent: task.agent,
    environment: task.environment,
    expires_at: toTimestamp(task.expiresAt),
    intent: task.intent,
    labels: task.labels,
    created_at: toTimestamp(task.createdAt),
    state: task.state,
    transaction_token: transactionToken,
    ...delegationToMsg(task),
  };
}

export async function startGrpcServer(deps: GrpcServerDeps, listen: string): Promise<RunningGrpcServer> {
  const { broker, logger } = deps;
  const { service, adminService } = loadBrokerProto();
  // Room above the largest valid request (a few KiB) so an oversized text field reaches validation
  // and is refused naming the field, and audited, not cut off by grpc-js: 1 MiB holds any field a
  // shell can pass (one argument is at most 128 KiB on Linux); beyond it grpc-js still refuses.
  // Channelz (grpc-js's per-call tracing registry) is off: nothing here serves it, and it cost about
  // 1% of the broker's CPU under load (bench/run.ts --profile).
  const server = new Server({
    'grpc.max_receive_message_length': 1024 * 1024,
    'grpc.enable_channelz': 0,
    ...deps.serverOptions,
  });

  /** Starts a call's latency timer; the returned function counts it with its status code. */
  const observe = (method: string): ((code: string) => void) => {
    const stop = deps.metrics?.latency.startTimer({ method });
    return (code) => {
      stop?.();
      deps.metrics?.requests.inc({ method, code });
    };
  };
  /**
   * The verified caller, or the refusal to send (audited as auth.denied, aggregated per peer). A
   * peer over its limits is refused before its credentials are verified.
   */
  const authenticateCall = async (
    call: { metadata: Metadata; getPeer(): string },
    method: string,
  ): Promise<{ caller: Caller } | { refusal: Partial<ServiceError>; code: string }> => {
    const peer = call.getPeer();
    let refusal: unknown = deps.gate.admit(peer);
    if (refusal === undefined) {
      try {
        return { caller: await deps.authenticator.authenticate(call, call.metadata) };
      } catch (err) {
        refusal = err;
      }
    }
    await deps.gate.denied(peer, method, refusal);
    return {
      refusal: toServiceError(refusal, logger, method),
      code: isBrokerError(refusal) ? refusal.code : 'UNAUTHENTICATED',
    };
  };

  /** Runs a call's work as that call: its valid traceparent goes on every audit record it writes. */
  const asCall = <T>(call: { metadata: Metadata }, work: () => T): T =>
    deps.trace ? deps.trace.run(call.metadata.get('traceparent')[0], work) : work();

  const unary =
    <Req, Res>(method: string, fn: (caller: Caller, req: Req) => Promise<Res>): handleUnaryCall<Req, Res> =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const done = observe(method);
      void asCall(call, async () => {
        const auth = await timed(deps.stageTimer, 'authenticate', () => authenticateCall(call, method));
        if ('refusal' in auth) {
          done(auth.code);
          callback(auth.refusal as ServiceError);
          return;
        }
        const caller = auth.caller;
        try {
          const res = await fn(caller, call.request);
          done('OK');
          await timed(deps.stageTimer, 'respond', async () => callback(null, res));
        } catch (err) {
          done(isBrokerError(err) ? err.code : 'INTERNAL');
          callback(toServiceError(err, logger, method) as ServiceError);
        }
      });
    };

  /** A begun or delegated task with its Transaction Token. */
  const withTxnToken = async (task: Task): Promise<TaskMsg> =>
    taskToMsg(task, deps.txnTokens ? await deps.txnTokens.mint(task) : '');
  /** IssueCredential's task: task_id, or the one its Transaction Token names (both: the same one). */
  const taskIdOf = async (caller: Caller, req: IssueCredentialRequestMsg): Promise<string> => {
    if (!req.transaction_token) return req.task_id;
    if (!deps.txnTokens) throw invalidArgument('transaction_token', 'Transaction Tokens are not configured');
    const named = await deps.txnTokens.taskIdFor(caller, req.transaction_token);
    if (req.task_id && req.task_id !== named) {
      throw invalidArgument('transaction_token', 'names another task than task_id');
    }
    return named;
  };

  const waits = new Set<() => void>();
  const impl: UntypedServiceImplementation = {
    BeginTask: unary<BeginTaskRequestMsg, TaskMsg>('BeginTask', async (caller, req) =>
      withTxnToken(
        await broker.beginTask(caller, {
          environment: req.environment,
          intent: req.intent,
          ttlSeconds: req.ttl_seconds,
          labels: req.labels ?? {},
          context: req.context,
        }),
      ),
    ),
    DelegateTask: unary<DelegateTaskRequestMsg, TaskMsg>('DelegateTask', async (caller, req) => {
      if (!deps.delegator)
        throw unavailable('delegation_not_configured', 'delegation is not configured on this broker');
      return withTxnToken(await deps.delegator.delegateTask(caller, delegateInputFromMsg(req)));
    }),
    IssueCredential: unary<IssueCredentialRequestMsg, IssueCredentialResponseMsg>(
      'IssueCredential',
      async (caller, req) =>
        outcomeToMsg(
          await broker.issueCredential(caller, {
            taskId: await taskIdOf(caller, req),
            role: req.role,
            ttlSeconds: req.ttl_seconds,
            sensitivity: req.sensitivity,
            changeType: req.change_type,
            justification: req.justification,
            tool: req.tool,
            context: req.context,
          }),
        ),
    ),
    AwaitApproval: (call: ServerWritableStream<AwaitApprovalRequestMsg, AwaitApprovalResponseMsg>) => {
      const method = 'AwaitApproval';
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      // Shutdown ends open waits with UNAVAILABLE (the approval is in Redis: the agent waits again
      // on another replica) instead of holding the drain for its whole grace period.
      const onShutdown = (): void => {
        if (abort.signal.aborted) return;
        abort.abort();
        call.emit(
          'error',
          toServiceError(
            unavailable('shutting_down', 'broker shutting down: call AwaitApproval again'),
            logger,
            method,
          ),
        );
      };
      waits.add(onShutdown);
      call.on('finish', () => waits.delete(onShutdown));
      call.on('close', () => waits.delete(onShutdown));
      void asCall(call, async () => {
        const auth = await authenticateCall(call, method);
        if ('refusal' in auth) {
          // grpc-js sends a stream's status from its 'error' event; destroy() would drop it and
          // leave the client waiting forever.
          call.emit('error', auth.refusal);
          return;
        }
        const caller = auth.caller;
        let release: (() => void) | undefined;
        try {
          release = deps.gate.openStream(caller.spiffeId);
          call.on('close', release);
          const issued = await broker.awaitApproval(
            caller,
            { approvalId: call.request.approval_id },
            {
              pollMs: deps.approvalPollMs,
              signal: abort.signal,
              onProgress: (a) =>
                call.write({
                  state: a.state,
                  approvals_received: a.approvals.length,
                  approvals_required: a.required,
                  issued: null,
                }),
            },
          );
          const msg = outcomeToMsg(issued);
          call.write({ state: 'issued', approvals_received: 0, approvals_required: 0, issued: msg });
          call.end();
        } catch (err) {
          if (!abort.signal.aborted) call.emit('error', toServiceError(err, logger, method));
        } finally {
          release?.();
        }
      });
    },
    EndTask: unary<EndTaskRequestMsg, EndTaskResponseMsg>('EndTask', async (caller, req) => {
      const { task, revoked } = await broker.endTask(caller, { taskId: req.task_id, reason: req.reason });
      return {
        task: taskToMsg(task),
        revoked: revoked.map((r) => ({ lease_id: r.leaseId, role: r.role, state: r.state })),
      };
    }),
    GetTask: unary<GetTaskRequestMsg, TaskMsg>('GetTask', async (caller, req) =>
      taskToMsg(await broker.getTask(caller, req.task_id)),
    ),
    ListRoles: unary<ListRolesRequestMsg, ListRolesResponseMsg>('ListRoles', async (caller, req) => ({
      roles: (await broker.listRoles(caller, { taskId: req.task_id })).map((o) => ({
        name: o.name,
        backend: o.backend,
        description: o.description,
        sensitivity: o.sensitivity,
        max_ttl_seconds: o.maxTtlSeconds,
        decision: o.decision,
        approvals_required: o.approvalsRequired,
        policy_ids: o.policyIds,
      })),
    })),
  };
  server.addService(service, impl);

  const admin = deps.admin;
  // A quarantined identity is refused on every admin call, checked here once for the service
  // and audited as admin.denied (the agent calls are checked, and audited, by the broker itself).
  const checkQuarantine = async (caller: Caller, method: string): Promise<void> => {
    try {
      deps.quarantine?.check(caller.spiffeId);
    } catch (err) {
      await auditAdminRefused(deps, caller, method, err);
      throw err;
    }
  };
  const adminUnary = <Req, Res>(
    method: string,
    fn: (caller: Caller, req: Req) => Promise<Res>,
  ): handleUnaryCall<Req, Res> =>
    unary<Req, Res>(method, async (caller, req) => {
      await checkQuarantine(caller, method);
      return fn(caller, req);
    });
  const adminImpl: UntypedServiceImplementation = {
    ListApprovals: adminUnary<ListApprovalsRequestMsg, ListApprovalsResponseMsg>(
      'ListApprovals',
      async (caller, req) => {
        const page = await admin.listApprovalPage(caller, {
          state: req.state,
          pageSize: req.page_size,
          pageToken: req.page_token,
        });
        return { approvals: page.approvals.map(approvalToMsg), next_page_token: page.nextPageToken };
      },
    ),
    DecideApproval: adminUnary<DecideApprovalRequestMsg, DecideApprovalResponseMsg>(
      'DecideApproval',
      async (caller, req) => {
        const { approval, outcome } = await admin.decideApproval(caller, {
          approvalId: req.approval_id,
          approve: req.approve,
          reason: req.reason,
        });
        return { approval: approvalToMsg(approval), outcome };
      },
    ),
    BreakGlass: adminUnary<BreakGlassRequestMsg, BreakGlassGrantMsg>('BreakGlass', async (caller, req) =>
      grantToMsg(
        await admin.grantBreakGlass(caller, {
          agent: req.agent,
          taskId: req.task_id,
          roles: req.roles ?? [],
          reason: req.reason,
          ttlSeconds: req.ttl_seconds,
        }),
      ),
    ),
    ListBreakGlass: adminUnary<Record<string, never>, ListBreakGlassResponseMsg>(
      'ListBreakGlass',
      async (caller) => ({
        grants: (await admin.listBreakGlass(caller)).map(grantToMsg),
      }),
    ),
    ReviewBreakGlass: adminUnary<ReviewBreakGlassRequestMsg, BreakGlassGrantMsg>(
      'ReviewBreakGlass',
      async (caller, req) =>
        grantToMsg(await admin.reviewBreakGlass(caller, { grantId: req.grant_id, note: req.note })),
    ),
  };
  adminImpl.ListLeases = adminUnary<ListLeasesRequestMsg, ListLeasesResponseMsg>(
    'ListLeases',
    async (caller, req) => {
      const page = await deps.leaseAdmin.listLeases(caller, selectorFromMsg(req.selector), {
        pageSize: req.page_size,
        pageToken: req.page_token,
      });
      return { leases: page.leases.map(leaseToMsg), next_page_token: page.nextPageToken };
    },
  );
  adminImpl.GetLease = adminUnary<GetLeaseRequestMsg, LeaseInfoMsg>('GetLease', async (caller, req) =>
    leaseToMsg(await deps.leaseAdmin.getLease(caller, req.lease_id)),
  );
  adminImpl.RevokeLeases = (call: ServerWritableStream<RevokeLeasesRequestMsg, RevokeLeasesReportMsg>) => {
    const method = 'RevokeLeases';
    const done = observe(method);
    void asCall(call, async () => {
      const auth = await authenticateCall(call, method);
      if ('refusal' in auth) {
        done(auth.code);
        // grpc-js sends a stream's status from its 'error' event.
        call.emit('error', auth.refusal);
        return;
      }
      const caller = auth.caller;
      try {
        await checkQuarantine(caller, method);
        const req = call.request;
        // Revocation goes on if the caller hangs up: half a revocation helps nobody.
        const report = await deps.leaseAdmin.revokeLeases(
          caller,
          {
            selector: selectorFromMsg(req.selector),
            reason: req.reason,
            dryRun: req.dry_run,
            confirmAll: req.confirm_all,
            denyOlderSessions: req.deny_older_sessions === true,
          },
          // Backpressure: a slow admin client holds the next page back instead of the server
          // buffering every page's leases.
          (p) => {
            if (call.cancelled || call.write(reportToMsg(p.report, p.leases))) return;
            return new Promise<void>((resume) => {
              const done = (): void => {
                call.off('drain', done);
                call.off('close', done);
                resume();
              };
              call.on('drain', done);
              call.on('close', done);
            });
          },
        );
        done('OK');
        if (!call.cancelled) {
          call.write(reportToMsg(report, []));
          call.end();
        }
      } catch (err) {
        done(isBrokerError(err) ? err.code : 'INTERNAL');
        call.emit('error', toServiceError(err, logger, method));
      }
    });
  };
  adminImpl.Quarantine = adminUnary<QuarantineRequestMsg, QuarantineResponseMsg>(
    'Quarantine',
    async (caller, req) => {
      const result = await deps.quarantineAdmin.quarantine(caller, {
        agent: req.agent,
        reason: req.reason,
        ttlSeconds: req.ttl_seconds,
        revokeActive: req.revoke_active,
      });
      return {
        quarantine: quarantineToMsg(result.quarantine),
        replaced: result.replaced,
        revocation: result.revocation ? reportToMsg(result.revocation, []) : null,
      };
    },
  );
  adminImpl.ReleaseQuarantine = adminUnary<ReleaseQuarantineRequestMsg, QuarantineInfoMsg>(
    'ReleaseQuarantine',
    async (caller, req) =>
      quarantineToMsg(await deps.quarantineAdmin.release(caller, { agent: req.agent, reason: req.reason })),
  );
  adminImpl.ListQuarantines = adminUnary<Record<string, never>, ListQuarantinesResponseMsg>(
    'ListQuarantines',
    async (caller) => ({ quarantines: (await deps.quarantineAdmin.list(caller)).map(quarantineToMsg) }),
  );
  adminImpl.RevokeTaskTree = adminUnary<RevokeTaskTreeRequestMsg, RevokeTaskTreeResponseMsg>(
    'RevokeTaskTree',
    async (caller, req) => {
      if (!deps.taskTree)
        throw unavailable('delegation_not_configured', 'delegation is not configured on this broker');
      const ended = await deps.taskTree.revokeTaskTree(caller, { taskId: req.task_id, reason: req.reason });
      return endedTasksToMsg(ended, (t) => taskToMsg(t));
    },
  );
  adminImpl.WatchAudit = watchAuditHandler({
    watch: deps.auditWatch,
    authenticate: authenticateCall,
    checkQuarantine,
    observe,
    onShutdown: waits,
    logger,
  });
  server.addService(adminService, adminImpl);

  const health = new HealthImplementation({
    '': 'SERVING',
    [BROKER_SERVICE]: 'SERVING',
    [ADMIN_SERVICE]: 'SERVING',
  });
  health.addToServer(server);

  // The one provider object serves both roles; grpc-js swaps its secure context on each update.
  const credentials = experimental.createCertificateProviderServerCredentials(
    deps.certificates,
    deps.certificates,
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, credentials, (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );

  return {
    port,
    health,
    async shutdown(graceMs = 10_000) {
      health.setStatus('', 'NOT_SERVING');
      for (const end of [...waits]) end();
      health.setStatus(BROKER_SERVICE, 'NOT_SERVING');
      health.setStatus(ADMIN_SERVICE, 'NOT_SERVING');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

function outcomeToMsg(outcome: IssueOutcome): IssueCredentialResponseMsg {
  if (outcome.status === 'pending_approval') {
    const a = outcome.approval;
    return {
      lease_id: '',
      expires_at: null,
      credential: null,
      role: outcome.role,
      task_id: outcome.taskId,
      environment: outcome.environment,
      policy_ids: a.policyIds,
      ttl_seconds: a.ttlSeconds,
      status: 'PENDING_APPROVAL',
      approval_id: a.id,
      approvals_required: a.required,
      approvals_received: a.approvals.length,
      approval_expires_at: toTimestamp(a.expiresAt),
      break_glass: false,
    };
  }
  return {
    lease_id: outcome.leaseId,
    expires_at: toTimestamp(outcome.expiresAt),
    credential: outcome.credential,
    role: outcome.role,
    task_id: outcome.taskId,
    environment: outcome.environment,
    policy_ids: outcome.policyIds,
    ttl_seconds: outcome.ttlSeconds,
    status: 'ISSUED',
    approval_id: '',
    approvals_required: 0,
    approvals_received: 0,
    approval_expires_at: null,
    break_glass: outcome.breakGlass,
  };
}

function decisionToMsg(d: ApprovalDecisionRecord): ApprovalDecisionMsg {
  return { approver: d.approver, reason: d.reason, at: toTimestamp(d.at) };
}

export function approvalToMsg(a: ApprovalRequest): ApprovalMsg {
  return {
    approval_id: a.id,
    requester: a.requester,
    task_id: a.taskId,
    role: a.role,
    environment: a.environment,
    ttl_seconds: a.ttlSeconds,
    sensitivity: a.sensitivity,
    change_type: a.changeType,
    justification: a.justification,
    tool: a.tool,
    approvals_required: a.required,
    approvals: a.approvals.map(decisionToMsg),
    denial: a.denial ? decisionToMsg(a.denial) : null,
    state: a.state,
    created_at: toTimestamp(a.createdAt),
    expires_at: toTimestamp(a.expiresAt),
    policy_ids: a.policyIds,
    delegation_chain: a.delegationChain ?? [],
  };
}

function selectorFromMsg(m: LeaseSelectorMsg | null): LeaseSelectorInput {
  return {
    leaseId: m?.lease_id ?? '',
    agent: m?.agent ?? '',
    taskId: m?.task_id ?? '',
    environment: m?.environment ?? '',
    role: m?.role ?? '',
    backend: m?.backend ?? '',
    trustDomain: m?.trust_domain ?? '',
    all: m?.all ?? false,
    state: m?.state ?? '',
  };
}

export function reportToMsg(r: RevokeReport, leases: readonly Lease[]): RevokeLeasesReportMsg {
  return {
    matched: r.matched,
    revoked: r.revoked,
    pending_retry: r.pendingRetry,
    not_revocable: r.notRevocable,
    by_backend: Object.fromEntries(
      Object.entries(r.byBackend).map(([b, c]) => [
        b,
        { revoked: c.revoked, pending_retry: c.pendingRetry, not_revocable: c.notRevocable },
      ]),
    ),
    dry_run: r.dryRun,
    leases: leases.map(leaseToMsg),
    scanned: r.scanned,
    to_scan: r.toScan,
    done: r.done,
    older_sessions_denied_before: r.olderSessionsDeniedBefore ?? '',
  };
}

export function quarantineToMsg(q: Quarantine): QuarantineInfoMsg {
  return {
    pattern: q.pattern,
    reason: q.reason,
    by: q.by,
    trigger: q.trigger,
    created_at: toTimestamp(q.createdAt),
    expires_at: q.expiresAt ? toTimestamp(q.expiresAt) : null,
    evidence_json: q.evidence ? JSON.stringify(q.evidence) : '',
  };
}

export function leaseToMsg(l: Lease): LeaseInfoMsg {
  return {
    lease_id: l.id,
    agent: l.agent,
    task_id: l.taskId,
    environment: l.environment,
    role: l.role,
    backend: l.backend,
    state: l.state,
    issued_at: toTimestamp(l.issuedAt),
    expires_at: toTimestamp(l.expiresAt),
    revoke_reason: l.revokeReason ?? '',
  };
}

export function grantToMsg(g: BreakGlassGrant): BreakGlassGrantMsg {
  return {
    grant_id: g.id,
    granted_by: g.grantedBy,
    agent: g.agent,
    task_id: g.taskId ?? '',
    roles: g.roles,
    reason: g.reason,
    created_at: toTimestamp(g.createdAt),
    expires_at: toTimestamp(g.expiresAt),
    uses: g.uses,
    reviewed: g.reviewed,
    reviewed_by: g.reviewedBy ?? '',
    reviewed_at: g.reviewedAt ? toTimestamp(g.reviewedAt) : null,
    review_note: g.reviewNote ?? '',
  };
}

/** A quarantined identity's admin call: refused before any admin code runs, recorded here. */
async function auditAdminRefused(
  deps: GrpcServerDeps,
  caller: Caller,
  method: string,
  err: unknown,
): Promise<void> {
  await deps.audit
    .write({
      type: 'admin.denied',
      agent: caller.spiffeId,
      method,
      reason: isBrokerError(err) ? err.reason : 'internal',
    })
    .catch((auditErr: unknown) =>
      deps.logger.error(
        { err: { message: (auditErr as Error).message } },
        'audit write failed for admin.denied',
      ),
    );
}
