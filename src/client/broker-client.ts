/**
 * A small client for agents (the CLI, tests and benchmarks use it): authenticates with the
 * agent's X.509-SVID over mTLS, or a JWT-SVID over server-authenticated TLS, and checks that the
 * server presents an SVID of the expected broker.
 */
import 'reflect-metadata';
import {
  Metadata,
  credentials as grpcCredentials,
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { X509Bundle, X509Svid } from '../identity/types.js';
import { derToPem } from '../identity/x509-verify.js';
import {
  loadBrokerProto,
  type AuditEventMsg,
  type WatchAuditRequestMsg,
  type BeginTaskRequestMsg,
  type DelegateTaskRequestMsg,
  type RevokeTaskTreeRequestMsg,
  type RevokeTaskTreeResponseMsg,
  type EndTaskRequestMsg,
  type EndTaskResponseMsg,
  type GetTaskRequestMsg,
  type ListRolesResponseMsg,
  type IssueCredentialRequestMsg,
  type IssueCredentialResponseMsg,
  type TaskMsg,
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
  type GetLeaseRequestMsg,
  type LeaseInfoMsg,
  type LeaseSelectorMsg,
  type ListLeasesRequestMsg,
  type ListLeasesResponseMsg,
  type ListQuarantinesResponseMsg,
  type QuarantineInfoMsg,
  type QuarantineRequestMsg,
  type QuarantineResponseMsg,
  type ReleaseQuarantineRequestMsg,
  type RevokeLeasesReportMsg,
  type RevokeLeasesRequestMsg,
} from '../server/broker-proto.js';

export interface BrokerClientOptions {
  /** host:port of the broker. */
  address: string;
  /** The agent's current SVID (leaf first) and the bundle used to check the broker's certificate. */
  svid: X509Svid;
  serverBundle: X509Bundle;
  /** Expected SPIFFE ID of the broker; undefined = any workload in serverBundle's trust domain. */
  brokerId?: string;
  /** 'x509' (mTLS, default) or a JWT-SVID string sent as a bearer token without a client certificate. */
  auth?: { kind: 'x509' } | { kind: 'jwt'; token: () => Promise<string> | string };
  /** Per-call deadline in ms (default 10 s). */
  timeoutMs?: number;
  /**
   * The W3C `traceparent` to send with each call (read per call), so the broker records it on the
   * call's audit records; undefined sends none.
   */
  traceparent?: () => string | undefined;
}

type Unary<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: CallOptions,
  callback: (err: ServiceError | null, res?: Res) => void,
) => void;

interface RawBrokerClient extends Client {
  BeginTask: Unary<Partial<BeginTaskRequestMsg>, TaskMsg>;
  DelegateTask: Unary<Partial<DelegateTaskRequestMsg>, TaskMsg>;
  IssueCredential: Unary<Partial<IssueCredentialRequestMsg>, IssueCredentialResponseMsg>;
  EndTask: Unary<Partial<EndTaskRequestMsg>, EndTaskResponseMsg>;
  GetTask: Unary<Partial<GetTaskRequestMsg>, TaskMsg>;
  ListRoles: Unary<{ task_id: string }, ListRolesResponseMsg>;
  AwaitApproval(
    req: Partial<AwaitApprovalRequestMsg>,
    metadata: Metadata,
    options: CallOptions,
  ): ClientReadableStream<AwaitApprovalResponseMsg>;
}

interface RawAdminClient extends Client {
  ListApprovals: Unary<Partial<ListApprovalsRequestMsg>, ListApprovalsResponseMsg>;
  RevokeTaskTree: Unary<Partial<RevokeTaskTreeRequestMsg>, RevokeTaskTreeResponseMsg>;
  DecideApproval: Unary<Partial<DecideApprovalRequestMsg>, DecideApprovalResponseMsg>;
  BreakGlass: Unary<Partial<BreakGlassRequestMsg>, BreakGlassGrantMsg>;
  ListBreakGlass: Unary<Record<string, never>, ListBreakGlassResponseMsg>;
  ReviewBreakGlass: Unary<Partial<ReviewBreakGlassRequestMsg>, BreakGlassGrantMsg>;
  ListLeases: Unary<ListLeasesRequest, ListLeasesResponseMsg>;
  GetLease: Unary<Partial<GetLeaseRequestMsg>, LeaseInfoMsg>;
  RevokeLeases(
    req: RevokeLeasesRequest,
    metadata: Metadata,
    options: CallOptions,
  ): ClientReadableStream<RevokeLeasesReportMsg>;
  WatchAudit(
    req: Partial<WatchAuditRequestMsg>,
    metadata: Metadata,
    options: CallOptions,
  ): ClientReadableStream<AuditEventMsg>;
  Quarantine: Unary<Partial<QuarantineRequestMsg>, QuarantineResponseMsg>;
  ReleaseQuarantine: Unary<Partial<ReleaseQuarantineRequestMsg>, QuarantineInfoMsg>;
  ListQuarantines: Unary<Record<string, never>, ListQuarantinesResponseMsg>;
}

export type ListLeasesRequest = Omit<Partial<ListLeasesRequestMsg>, 'selector'> & {
  selector?: Partial<LeaseSelectorMsg>;
};
export type RevokeLeasesRequest = Omit<Partial<RevokeLeasesRequestMsg>, 'selector'> & {
  selector?: Partial<LeaseSelectorMsg>;
};

/** Returns an Error when the server's certificate is not the SVID we expect. */
export function checkBrokerIdentity(
  cert: PeerCertificate,
  trustDomain: string,
  brokerId: string | undefined,
): Error | undefined {
  const uris = (cert.subjectaltname ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  if (uris.length !== 1) return new Error('broker certificate must carry exactly one URI SAN');
  const uri = uris[0] as string;
  let id;
  try {
    id = parseSpiffeId(uri);
  } catch {
    return new Error(`broker certificate URI SAN is not a SPIFFE ID: ${uri}`);
  }
  if (id.trustDomain !== trustDomain)
    return new Error(`broker is in trust domain ${id.trustDomain}, expected ${trustDomain}`);
  if (brokerId && id.toString() !== brokerId)
    return new Error(`broker is ${id.toString()}, expected ${brokerId}`);
  return undefined;
}

/** The channel credentials both clients use: mTLS with the SVID, or server-auth TLS for JWT callers. */
function channelCredentials(opts: BrokerClientOptions): ChannelCredentials {
  const roots = Buffer.from(opts.serverBundle.authorities.map((d) => derToPem(d)).join(''));
  const checkServerIdentity = (_host: string, cert: PeerCertificate): Error | undefined =>
    checkBrokerIdentity(cert, opts.serverBundle.trustDomain, opts.brokerId);
  const mtls = (opts.auth?.kind ?? 'x509') === 'x509';
  return mtls
    ? grpcCredentials.createSsl(
        roots,
        Buffer.from(derToPem(opts.svid.privateKey, 'PRIVATE KEY')),
        Buffer.from(opts.svid.certChain.map((d) => derToPem(d)).join('')),
        { checkServerIdentity },
      )
    : grpcCredentials.createSsl(roots, null, null, { checkServerIdentity });
}

// The broker is identified by its SPIFFE ID (checkServerIdentity), not a DNS name; a fixed SNI
// keeps Node from warning when the address is an IP.
const CHANNEL_OPTIONS = { 'grpc.ssl_target_name_override': 'svid-broker' };

/** Shared by both clients: per-call auth metadata and deadline. */
abstract class AuthenticatedClient<Raw extends Client> {
  protected readonly raw: Raw;
  protected readonly timeoutMs: number;

  protected constructor(
    protected readonly opts: BrokerClientOptions,
    Ctor: ServiceClientConstructor,
  ) {
    this.raw = new Ctor(opts.address, channelCredentials(opts), CHANNEL_OPTIONS) as unknown as Raw;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  close(): void {
    this.raw.close();
  }

  protected async metadata(): Promise<Metadata> {
    const metadata = new Metadata();
    const auth = this.opts.auth;
    if (auth?.kind === 'jwt') metadata.set('authorization', `Bearer ${await auth.token()}`);
    const traceparent = this.opts.traceparent?.();
    if (traceparent !== undefined) metadata.set('traceparent', traceparent);
    return metadata;
  }

  protected async call<Req, Res>(method: Unary<Req, Res>, req: Req): Promise<Res> {
    const metadata = await this.metadata();
    return new Promise<Res>((resolve, reject) => {
      method.call(this.raw, req, metadata, { deadline: Date.now() + this.timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res as Res),
      );
    });
  }
}

export class BrokerClient extends AuthenticatedClient<RawBrokerClient> {
  constructor(opts: BrokerClientOptions) {
    super(opts, loadBrokerProto().Client);
  }

  beginTask(req: Partial<BeginTaskRequestMsg>): Promise<TaskMsg> {
    return this.call(this.raw.BeginTask, req);
  }
  delegateTask(req: Partial<DelegateTaskRequestMsg>): Promise<TaskMsg> {
    return this.call(this.raw.DelegateTask, req);
  }
  issueCredential(req: Partial<IssueCredentialRequestMsg>): Promise<IssueCredentialResponseMsg> {
    return this.call(this.raw.IssueCredential, req);
  }
  endTask(req: Partial<EndTaskRequestMsg>): Promise<EndTaskResponseMsg> {
    return this.call(this.raw.EndTask, req);
  }
  getTask(req: Partial<GetTaskRequestMsg>): Promise<TaskMsg> {
    return this.call(this.raw.GetTask, req);
  }
  listRoles(taskId: string): Promise<ListRolesResponseMsg> {
    return this.call(this.raw.ListRoles, { task_id: taskId });
  }

  /**
   * Waits for an approval (no deadline unless `timeoutMs` is given) and resolves with the issued
   * credential; `onProgress` sees each change in the number of approvals.
   */
  async awaitApproval(
    approvalId: string,
    onProgress: (msg: AwaitApprovalResponseMsg) => void = () => undefined,
    timeoutMs?: number,
  ): Promise<IssueCredentialResponseMsg> {
    const metadata = await this.metadata();
    return new Promise((resolve, reject) => {
      const stream = this.raw.AwaitApproval(
        { approval_id: approvalId },
        metadata,
        timeoutMs ? { deadline: Date.now() + timeoutMs } : {},
      );
      let issued: IssueCredentialResponseMsg | undefined;
      stream.on('data', (msg: AwaitApprovalResponseMsg) => {
        if (msg.issued) issued = msg.issued;
        else onProgress(msg);
      });
      stream.on('error', reject);
      stream.on('end', () =>
        issued ? resolve(issued) : reject(new Error('the broker ended the wait without a credential')),
      );
    });
  }
}

export class BrokerAdminClient extends AuthenticatedClient<RawAdminClient> {
  constructor(opts: BrokerClientOptions) {
    super(opts, loadBrokerProto().AdminClient);
  }

  listApprovals(req: Partial<ListApprovalsRequestMsg> = {}): Promise<ListApprovalsResponseMsg> {
    return this.call(this.raw.ListApprovals, req);
  }
  decideApproval(req: Partial<DecideApprovalRequestMsg>): Promise<DecideApprovalResponseMsg> {
    return this.call(this.raw.DecideApproval, req);
  }
  breakGlass(req: Partial<BreakGlassRequestMsg>): Promise<BreakGlassGrantMsg> {
    return this.call(this.raw.BreakGlass, req);
  }
  listBreakGlass(): Promise<ListBreakGlassResponseMsg> {
    return this.call(this.raw.ListBreakGlass, {});
  }
  reviewBreakGlass(req: Partial<ReviewBreakGlassRequestMsg>): Promise<BreakGlassGrantMsg> {
    return this.call(this.raw.ReviewBreakGlass, req);
  }
  listLeases(req: ListLeasesRequest): Promise<ListLeasesResponseMsg> {
    return this.call(this.raw.ListLeases, req);
  }
  getLease(leaseId: string): Promise<LeaseInfoMsg> {
    return this.call(this.raw.GetLease, { lease_id: leaseId });
  }

  /**
   * Revokes by selector; `onProgress` sees the running report after each page (with that page's
   * leases). Resolves with the final report (`done`), whose `leases` holds every lease the
   * progress messages named. No deadline: a large revocation takes what it takes.
   */
  async revokeLeases(
    req: RevokeLeasesRequest,
    onProgress: (msg: RevokeLeasesReportMsg) => void = () => undefined,
  ): Promise<RevokeLeasesReportMsg> {
    const metadata = await this.metadata();
    return new Promise((resolve, reject) => {
      const stream = this.raw.RevokeLeases(req, metadata, {});
      const leases: LeaseInfoMsg[] = [];
      let final: RevokeLeasesReportMsg | undefined;
      stream.on('data', (msg: RevokeLeasesReportMsg) => {
        leases.push(...msg.leases);
        if (msg.done) final = msg;
        else onProgress(msg);
      });
      stream.on('error', reject);
      stream.on('end', () =>
        final
          ? resolve({ ...final, leases })
          : reject(new Error('the broker ended the revocation without a report')),
      );
    });
  }

  revokeTaskTree(req: Partial<RevokeTaskTreeRequestMsg>): Promise<RevokeTaskTreeResponseMsg> {
    return this.call(this.raw.RevokeTaskTree, req);
  }
  quarantine(req: Partial<QuarantineRequestMsg>): Promise<QuarantineResponseMsg> {
    return this.call(this.raw.Quarantine, req);
  }
  releaseQuarantine(req: Partial<ReleaseQuarantineRequestMsg>): Promise<QuarantineInfoMsg> {
    return this.call(this.raw.ReleaseQuarantine, req);
  }
  listQuarantines(): Promise<ListQuarantinesResponseMsg> {
    return this.call(this.raw.ListQuarantines, {});
  }

  /**
   * Streams the broker's audit trail (history after `from_id`, then live records) to `onEvent`.
   * Resolves when the broker ends the stream; rejects with its status. Cancel with `signal`.
   */
  async watchAudit(
    req: Partial<WatchAuditRequestMsg>,
    onEvent: (event: AuditEventMsg) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const metadata = await this.metadata();
    return new Promise((resolve, reject) => {
      const stream = this.raw.WatchAudit(req, metadata, {});
      signal?.addEventListener('abort', () => stream.cancel(), { once: true });
      stream.on('data', onEvent);
      stream.on('error', (err: Error & { code?: number }) =>
        signal?.aborted && err.code === 1 ? resolve() : reject(err),
      );
      stream.on('end', () => resolve());
    });
  }
}
