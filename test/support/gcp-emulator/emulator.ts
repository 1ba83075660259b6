/**
 * An in-process Google STS (`POST /v1/token`, RFC 8693 token exchange as Google documents it for
 * workload identity federation) and IAM Credentials API (`POST /v1/projects/-/serviceAccounts/
 * {email}:generateAccessToken`), from Google's REST references. node:http on 127.0.0.1, port 0.
 *
 * Refuses what Google refuses: a wrong grant or subject token type, an audience that is not the
 * configured provider, a JWT that does not verify against the provider's JWKS, has expired, or
 * carries an `aud` the provider does not allow (STS: 400 `invalid_grant` / `invalid_request`);
 * a missing, unknown or expired federated token (401 UNAUTHENTICATED); a caller that is not a token
 * creator on the service account or a delegate (403 PERMISSION_DENIED); a lifetime not `<n>s` or
 * over 3600 s, or no scope (400 INVALID_ARGUMENT).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serveEmulator, type RunningEmulatorServer } from '../emulator-http.js';
import { createLocalJWKSet, jwtVerify } from 'jose';

export interface WorkloadIdentityProvider {
  /** `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/Q` */
  audience: string;
  /** The provider's allowed audiences for the incoming JWT. */
  allowedAudiences: string[];
  jwks: () => { keys: object[] };
}

export interface FederatedToken {
  token: string;
  /** `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/<sub>` */
  principal: string;
  expiresAt: number;
}

export interface ServiceAccountToken {
  token: string;
  serviceAccount: string;
  scopes: string[];
  delegates: string[];
  lifetimeSeconds: number;
  expiresAt: number;
  principal: string;
}

class GoogleError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly body: unknown,
  ) {
    super(JSON.stringify(body));
  }
}

const oauthError = (error: string, description: string): GoogleError =>
  new GoogleError(400, { error, error_description: description });
const apiError = (code: number, status: string, message: string): GoogleError =>
  new GoogleError(code, { error: { code, message, status } });

export class GcpEmulator {
  provider: WorkloadIdentityProvider | undefined;
  /** Service account email -> principals (and service accounts) allowed to mint its tokens. */
  readonly tokenCreators = new Map<string, string[]>();
  readonly federated = new Map<string, FederatedToken>();
  readonly accessTokens = new Map<string, ServiceAccountToken>();
  /** `throttle`: that many 429 answers; `hang`: that many requests never answered. */
  faults: { throttle?: number; hang?: number } = {};
  url = '';
  private server: RunningEmulatorServer | undefined;

  constructor(private readonly clock: () => number = Date.now) {}

  /** The pool's principal for a subject, as IAM bindings name it. */
  principalFor(sub: string): string {
    const pool = (this.provider?.audience ?? '')
      .replace(/^\/\/iam\.googleapis\.com\//, '')
      .replace(/\/providers\/[^/]+$/, '');
    return `principal://iam.googleapis.com/${pool}/subject/${sub}`;
  }

  expireFederatedTokens(): void {
    for (const t of this.federated.values()) t.expiresAt = this.clock() - 1;
  }

  async start(): Promise<void> {
    this.server = await serveEmulator((req, res, body) => this.handle(req, res, body));
    this.url = this.server.url;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> {
    const body = raw.toString('utf8');
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (this.faults.hang) {
      this.faults.hang--;
      return; // closed by close()
    }
    try {
      if (this.faults.throttle) {
        this.faults.throttle--;
        throw apiError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.');
      }
      if (req.method === 'POST' && path === '/v1/token')
        return this.json(res, 200, await this.exchange(new URLSearchParams(body)));
      const m = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/.exec(path);
      if (req.method === 'POST' && m) {
        return this.json(
          res,
          200,
          this.generateAccessToken(decodeURIComponent(m[1] as string), req.headers.authorization, body),
        );
      }
      throw apiError(404, 'NOT_FOUND', 'Not Found');
    } catch (err) {
      const e = err instanceof GoogleError ? err : apiError(500, 'INTERNAL', 'Internal error encountered.');
      this.json(res, e.httpStatus, e.body);
    }
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  }

  private async exchange(p: URLSearchParams): Promise<Record<string, unknown>> {
    if (p.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') {
      throw oauthError('unsupported_grant_type', 'Unsupported grant type.');
    }
    const type = p.get('subject_token_type');
    if (
      type !== 'urn:ietf:params:oauth:token-type:jwt' &&
      type !== 'urn:ietf:params:oauth:token-type:id_token'
    ) {
      throw oauthError('invalid_request', 'Invalid subject token type.');
    }
    const provider = this.provider;
    if (!provider || p.get('audience') !== provider.audience)
      throw oauthError(
        'invalid_target',
        'The target service indicated by the "audience" parameters is invalid.',
      );
    const subject = p.get('subject_token') ?? '';
    let claims;
    try {
      const keys = { keys: provider.jwks().keys.map((k) => ({ ...k, use: 'sig' })) };
      ({ payload: claims } = await jwtVerify(subject, createLocalJWKSet(keys as never), {
        currentDate: new Date(this.clock()),
      }));
    } catch (err) {
      throw oauthError('invalid_grant', `Invalid JWT: ${(err as { code?: string }).code ?? 'signature'}.`);
    }
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.some((a) => a !== undefined && provider.allowedAudiences.includes(a))) {
      throw oauthError('invalid_grant', 'The audience in ID Token does not match the expected audience.');
    }
    if (typeof claims.sub !== 'string') throw oauthError('invalid_grant', 'The JWT has no sub claim.');
    const token: FederatedToken = {
      token: `ya29.fed-${randomBytes(24).toString('base64url')}`,
      principal: this.principalFor(claims.sub),
      expiresAt: this.clock() + 3_600_000,
    };
    this.federated.set(token.token, token);
    return {
      access_token: token.token,
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: 3600,
    };
  }

  private generateAccessToken(
    email: string,
    authorization: string | undefined,
    body: string,
  ): Record<string, unknown> {
    const bearer = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
    const caller = bearer ? this.federated.get(bearer) : undefined;
    if (!caller || caller.expiresAt <= this.clock()) {
      throw apiError(
        401,
        'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      );
    }
    let req: { scope?: unknown; lifetime?: unknown; delegates?: unknown };
    try {
      req = JSON.parse(body || '{}') as typeof req;
    } catch {
      throw apiError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.');
    }
    const scopes = Array.isArray(req.scope) ? req.scope.map(String) : [];
    if (scopes.length === 0) throw apiError(400, 'INVALID_ARGUMENT', 'Scope required.');
    const m = /^(\d+)(?:\.\d+)?s$/.exec(String(req.lifetime ?? '3600s'));
    const lifetime = m ? Number(m[1]) : NaN;
    if (!m || lifetime < 1 || lifetime > 3600) {
      throw apiError(400, 'INVALID_ARGUMENT', 'The lifetime must be a duration in seconds, at most 3600s.');
    }
    const delegates = (Array.isArray(req.delegates) ? req.delegates.map(String) : []).map((d) =>
      d.replace(/^projects\/-\/serviceAccounts\//, ''),
    );
    // The chain: caller -> delegates[0] -> ... -> email; each hop needs token creator on the next.
    const chain = [caller.principal, ...delegates, email];
    for (let i = 1; i < chain.length; i++) {
      if (!(this.tokenCreators.get(chain[i] as string) ?? []).includes(chain[i - 1] as string)) {
        throw apiError(
          403,
          'PERMISSION_DENIED',
          `Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).`,
        );
      }
    }
    const token: ServiceAccountToken = {
      token: `ya29.sa-${randomBytes(32).toString('base64url')}`,
      serviceAccount: email,
      scopes,
      delegates,
      lifetimeSeconds: lifetime,
      expiresAt: Math.floor(this.clock() / 1000) * 1000 + lifetime * 1000,
      principal: caller.principal,
    };
    this.accessTokens.set(token.token, token);
    return {
      accessToken: token.token,
      expireTime: new Date(token.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
  }
}

export async function startGcpEmulator(opts: { now?: () => number } = {}): Promise<GcpEmulator> {
  const e = new GcpEmulator(opts.now);
  await e.start();
  return e;
}
