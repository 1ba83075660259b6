/**
 * An in-process AWS STS + IAM Query API (node:http on 127.0.0.1, port 0) for tests and the bench.
 * Configure roles, point the SDK's `endpoint` at `url`, then inspect the sessions STS issued.
 *
 * ```ts
 * const aws = await startAwsEmulator();
 * aws.addRole('arn:aws:iam::111122223333:role/svid-broker', { webIdentity: { jwks, audience: 'sts.amazonaws.com', subject: BROKER_ID } });
 * aws.addRole('arn:aws:iam::111122223333:role/deploy', { trustedRoles: ['arn:aws:iam::111122223333:role/svid-broker'] });
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serveEmulator, type RunningEmulatorServer } from '../emulator-http.js';
import { deniedByIssueTime, getRolePolicy, putRolePolicy } from './iam.js';
import { AwsError, QueryParams, errorXml, resultXml } from './query.js';
import { parseSigV4 } from './sigv4.js';
import { parseRoleArn, type Role, type RoleConfig, type Session } from './state.js';
import { assumeRole, assumeRoleWithWebIdentity } from './sts.js';

const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const IAM_NS = 'https://iam.amazonaws.com/doc/2010-05-08/';

export interface AwsFaults {
  /** The next N calls answer `Throttling` (400, "Rate exceeded"). */
  throttle?: number;
}

export class AwsEmulator {
  readonly roles = new Map<string, Role>();
  readonly sessions = new Map<string, Session>();
  faults: AwsFaults = {};
  /** Every call by action, in order. */
  readonly calls: string[] = [];
  private server: RunningEmulatorServer | undefined;
  url = '';

  constructor(private readonly clock: () => number = Date.now) {}

  addRole(arn: string, config: RoleConfig): Role {
    const parsed = parseRoleArn(arn);
    if (!parsed) throw new Error(`not a role ARN: ${arn}`);
    const role: Role = {
      arn,
      ...parsed,
      config,
      maxSessionDuration: config.maxSessionDuration ?? 3600,
      allowTagSession: config.allowTagSession ?? true,
      allowSetSourceIdentity: config.allowSetSourceIdentity ?? true,
      inlinePolicies: new Map(),
    };
    this.roles.set(arn, role);
    return role;
  }

  /** Sessions issued for a role, oldest first. */
  sessionsFor(roleArn: string): Session[] {
    return [...this.sessions.values()].filter((s) => s.roleArn === roleArn);
  }

  /** Makes every session of a role expire now (AWS then answers ExpiredToken). */
  expireSessions(roleArn: string): void {
    for (const s of this.sessionsFor(roleArn)) s.expiresAt = this.clock() - 1;
  }

  /** Would AWS authorize a call with this session now (not expired, not cut off by a deny policy)? */
  sessionUsable(accessKeyId: string): boolean {
    const s = this.sessions.get(accessKeyId);
    const role = s && this.roles.get(s.roleArn);
    return !!s && !!role && s.expiresAt > this.clock() && !deniedByIssueTime(role, s.issuedAt);
  }

  async start(): Promise<void> {
    this.server = await serveEmulator((req, res, body) => this.handle(req, res, body));
    this.url = this.server.url;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> {
    const body = raw;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const params = new URLSearchParams(req.method === 'POST' ? body.toString('utf8') : url.search);
    const action = params.get('Action') ?? '';
    const ns = params.get('Version') === '2010-05-08' ? IAM_NS : STS_NS;
    this.calls.push(action);
    let status = 200;
    let xml: string;
    try {
      xml = resultXml(action, ns, await this.dispatch(action, new QueryParams(params), req, url, body));
    } catch (err) {
      const e =
        err instanceof AwsError
          ? err
          : new AwsError(
              500,
              'InternalFailure',
              'The request processing has failed because of an unknown error.',
            );
      status = e.status;
      xml = errorXml(e, ns);
    }
    res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': 'emulator' });
    res.end(xml);
  }

  private async dispatch(
    action: string,
    p: QueryParams,
    req: IncomingMessage,
    url: URL,
    body: Buffer,
  ): Promise<Record<string, unknown> | undefined> {
    if (this.faults.throttle) {
      this.faults.throttle--;
      throw new AwsError(400, 'Throttling', 'Rate exceeded');
    }
    const ctx = { roles: this.roles, sessions: this.sessions, now: this.clock };
    if (action === 'AssumeRoleWithWebIdentity') return assumeRoleWithWebIdentity(ctx, p);
    const caller = this.authenticate(req, url, body);
    switch (action) {
      case 'AssumeRole':
        return assumeRole(ctx, p, caller);
      case 'PutRolePolicy':
        return putRolePolicy(this.roles, p);
      case 'GetRolePolicy':
        return getRolePolicy(this.roles, p);
      case 'GetCallerIdentity':
        return {
          Arn: caller.assumedRoleArn,
          UserId: caller.accessKeyId,
          Account: parseRoleArn(caller.roleArn)?.account,
        };
      default:
        throw new AwsError(
          400,
          'InvalidAction',
          `Could not find operation ${action} for version ${p.get('Version') ?? ''}`,
        );
    }
  }

  /** SigV4 with a session this emulator issued, not expired, with its session token. */
  private authenticate(req: IncomingMessage, url: URL, body: Buffer): Session {
    const signed = parseSigV4(req.method ?? 'POST', url, req.headers, body);
    if (!signed)
      throw new AwsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    const session = this.sessions.get(signed.accessKeyId);
    if (!session || req.headers['x-amz-security-token'] !== session.sessionToken) {
      throw new AwsError(
        403,
        'InvalidClientTokenId',
        'The security token included in the request is invalid.',
      );
    }
    signed.verify(session.secretAccessKey);
    if (session.expiresAt <= this.clock()) {
      throw new AwsError(403, 'ExpiredToken', 'The security token included in the request is expired');
    }
    return session;
  }
}

export async function startAwsEmulator(opts: { now?: () => number } = {}): Promise<AwsEmulator> {
  const emulator = new AwsEmulator(opts.now);
  await emulator.start();
  return emulator;
}
