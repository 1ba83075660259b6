/**
 * An in-process GitHub REST API for Apps (node:http, 127.0.0.1, port 0), from GitHub's REST docs:
 * `POST /app/installations/{id}/access_tokens` authenticated by an App JWT, and
 * `DELETE /installation/token` authenticated by the installation token. Also served under
 * `/api/v3` (GitHub Enterprise Server's base path).
 *
 * Refuses what GitHub refuses: an App JWT not RS256, not signed by the App's key, without `iat` /
 * `exp`, with `iat` in the future, `exp` past or more than 10 minutes after `iat`, or `iss` not the
 * App id (401); an unknown installation (404); repositories outside the installation or permissions
 * wider than it grants (422); a revoked or expired token (401 Bad credentials).
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serveEmulator, type RunningEmulatorServer } from '../emulator-http.js';
import { decodeProtectedHeader, jwtVerify } from 'jose';

export interface Installation {
  account: string;
  repositories: string[];
  permissions: Record<string, 'read' | 'write' | 'admin'>;
}

export interface IssuedToken {
  token: string;
  installationId: number;
  repositories: string[];
  permissions: Record<string, string>;
  expiresAt: number;
  revoked: boolean;
}

const RANK: Record<string, number> = { read: 1, write: 2, admin: 3 };
const DOCS = 'https://docs.github.com/rest';

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export class GithubEmulator {
  readonly appId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly installations = new Map<number, Installation>();
  readonly tokens = new Map<string, IssuedToken>();
  /** Every App JWT's claims the emulator accepted, for tests. */
  readonly appJwts: Array<Record<string, unknown>> = [];
  faults: { throttle?: number } = {};
  url = '';
  private server: RunningEmulatorServer | undefined;

  constructor(
    opts: { appId?: string } = {},
    private readonly clock: () => number = Date.now,
  ) {
    this.appId = opts.appId ?? '424242';
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.privateKey = pair.privateKey;
    this.publicKey = pair.publicKey;
  }

  /** The App key as GitHub hands it out (PKCS#1 PEM). */
  privateKeyPem(): string {
    return this.privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();
  }

  addInstallation(id: number, installation: Installation): void {
    this.installations.set(id, installation);
  }

  /** A token GitHub would accept now (issued, not revoked, not expired). */
  tokenLive(token: string): boolean {
    const t = this.tokens.get(token);
    return !!t && !t.revoked && t.expiresAt > this.clock();
  }

  async start(): Promise<void> {
    this.server = await serveEmulator((req, res, body) => this.handle(req, res, body));
    this.url = this.server.url;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> {
    const path = (req.url ?? '/').replace(/^\/api\/v3(?=\/)/, '').split('?')[0] ?? '/';
    const bearer = /^(?:Bearer|token) (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    try {
      if (this.faults.throttle) {
        this.faults.throttle--;
        throw new HttpError(429, 'API rate limit exceeded', {
          'retry-after': '0',
          'x-ratelimit-remaining': '0',
        });
      }
      const m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path);
      if (req.method === 'POST' && m) {
        await this.verifyAppJwt(bearer);
        const body = this.parseBody(raw);
        return this.send(res, 201, this.createToken(Number(m[1]), body));
      }
      if (req.method === 'DELETE' && path === '/installation/token') {
        const t = bearer ? this.tokens.get(bearer) : undefined;
        if (!t || t.revoked || t.expiresAt <= this.clock()) throw new HttpError(401, 'Bad credentials');
        t.revoked = true;
        res.writeHead(204);
        res.end();
        return;
      }
      throw new HttpError(404, 'Not Found');
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'Server Error');
      this.send(
        res,
        e.status,
        { message: e.message, documentation_url: DOCS, status: String(e.status) },
        e.headers,
      );
    }
  }

  private send(
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  }

  private parseBody(body: Buffer): Record<string, unknown> {
    if (body.length === 0) return {};
    try {
      const parsed = JSON.parse(body.toString('utf8')) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
        return parsed as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new HttpError(400, 'Problems parsing JSON');
  }

  private async verifyAppJwt(jwt: string | undefined): Promise<void> {
    if (!jwt) throw new HttpError(401, 'A JSON web token could not be decoded');
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(jwt).alg;
    } catch {
      throw new HttpError(401, 'A JSON web token could not be decoded');
    }
    if (alg !== 'RS256') throw new HttpError(401, 'A JSON web token could not be decoded');
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(jwt, this.publicKey, {
        algorithms: ['RS256'],
        currentDate: new Date(this.clock()),
        clockTolerance: 0,
      }));
    } catch {
      throw new HttpError(
        401,
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
      );
    }
    const now = Math.floor(this.clock() / 1000);
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number') {
      throw new HttpError(401, "'Issued at' claim ('iat') and 'Expiration time' claim ('exp') are required");
    }
    if (claims.iat > now + 60)
      throw new HttpError(
        401,
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
      );
    if (claims.exp - claims.iat > 600)
      throw new HttpError(401, "'Expiration time' claim ('exp') is too far in the future");
    if (String(claims.iss) !== this.appId)
      throw new HttpError(401, "'Issuer' claim ('iss') must be an Integer");
    this.appJwts.push(claims);
  }

  private createToken(id: number, body: Record<string, unknown>): Record<string, unknown> {
    const inst = this.installations.get(id);
    if (!inst) throw new HttpError(404, 'Not Found');
    const repos = Array.isArray(body.repositories)
      ? (body.repositories as unknown[]).map(String)
      : inst.repositories;
    if (repos.length > 500) throw new HttpError(422, 'Too many repositories');
    if (repos.some((r) => !inst.repositories.includes(r))) {
      throw new HttpError(
        422,
        'There is at least one repository that does not exist or is not accessible to the parent installation.',
      );
    }
    const asked = (body.permissions ?? inst.permissions) as Record<string, string>;
    for (const [name, level] of Object.entries(asked)) {
      const granted = inst.permissions[name];
      if (!RANK[level] || !granted || (RANK[level] ?? 0) > (RANK[granted] ?? 0)) {
        throw new HttpError(422, 'The permissions requested are not granted to this installation.');
      }
    }
    const token: IssuedToken = {
      token: `ghs_${randomBytes(27).toString('base64url').replace(/[-_]/g, 'x').slice(0, 36)}`,
      installationId: id,
      repositories: repos,
      permissions: asked,
      expiresAt: Math.floor(this.clock() / 1000) * 1000 + 3_600_000,
      revoked: false,
    };
    this.tokens.set(token.token, token);
    return {
      token: token.token,
      expires_at: new Date(token.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      permissions: asked,
      repository_selection: 'selected',
      repositories: repos.map((name, i) => ({ id: 1000 + i, name, full_name: `${inst.account}/${name}` })),
    };
  }
}

export async function startGithubEmulator(
  opts: { appId?: string; now?: () => number } = {},
): Promise<GithubEmulator> {
  const emulator = new GithubEmulator(opts, opts.now);
  await emulator.start();
  return emulator;
}
