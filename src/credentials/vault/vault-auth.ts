/**
 * The broker's own Vault login, with its SVID rather than a static token (spec §7):
 * - `jwt`: `auth/<mount>/login {role, jwt}` with a JWT-SVID fetched for the configured audience;
 * - `cert`: `auth/<mount>/login` over mTLS with the X.509-SVID as the client certificate;
 * - `token_file`: a token read from a file, only when configured explicitly (a fallback for
 *   Vaults that cannot verify SVIDs); the file is read again after a 403, so a rotated file works.
 *
 * The token lives in this object's memory only: never logged, never written, never in an error.
 * It is replaced by a fresh login once 2/3 of its lease has passed (callers keep the old, still
 * valid token while the new login runs) and after a 403, after which the failed call is retried
 * once. Logins are single-flight: concurrent callers share one.
 */
import { readFile } from 'node:fs/promises';
import { BrokerError, isBrokerError } from '../../errors.js';
import { isPermissionDenied, isVaultError, type VaultClient } from './vault-client.js';

export type VaultAuthMethod =
  | { method: 'jwt'; role: string; audience: string; mount?: string }
  | { method: 'cert'; name?: string; mount?: string }
  | { method: 'token_file'; path: string };

/** The X.509-SVID as the Workload API source holds it (DER chain, PKCS#8 DER key). */
export interface X509SvidMaterial {
  certChain: readonly Uint8Array[];
  privateKey: Uint8Array;
}

/** The subset of a pino logger the Vault modules use. */
export interface VaultLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface VaultAuthOptions {
  client: VaultClient;
  method: VaultAuthMethod;
  /** Fetches a JWT-SVID for `audience` (the Workload API's FetchJWTSVID); required for `jwt`. */
  fetchJwt?: (audience: string) => Promise<string>;
  /** The current X.509-SVID; required for `cert`. A getter, since the SVID rotates. */
  svid?: () => X509SvidMaterial | undefined;
  logger?: VaultLogger;
  now?: () => number;
  /** Fraction of the token's lease after which a new login starts. Default 2/3. */
  refreshFraction?: number;
}

interface Session {
  token: string;
  /** epoch ms; Infinity for a token without a lease (token file, root-like tokens). */
  refreshAt: number;
  expiresAt: number;
  /** The token's lease as granted (ms); Infinity without one. */
  leaseMs: number;
}

export interface TokenCallOptions {
  /**
   * How long the token must stay valid. Vault revokes the leases (and child tokens) a token
   * created when the token expires, so a dynamic secret lives no longer than the broker token that
   * requested it: a session too close to its end is replaced by a fresh login first.
   */
  minValidityMs?: number;
}

/** Pause between background logins that failed (the token in hand is still valid meanwhile). */
const BACKGROUND_RETRY_MS = 5000;

const SILENT: VaultLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

function loginFailed(reason: string, message: string, cause?: unknown): BrokerError {
  return new BrokerError('UNAVAILABLE', message, { reason, ...(cause !== undefined ? { cause } : {}) });
}

function pem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A description of the login for logs and errors: method, mount and role, never a credential. */
export function describeVaultAuth(method: VaultAuthMethod): string {
  switch (method.method) {
    case 'jwt':
      return `jwt login (auth/${method.mount ?? 'jwt'}/login, role ${method.role})`;
    case 'cert':
      return `cert login (auth/${method.mount ?? 'cert'}/login${method.name ? `, role ${method.name}` : ''})`;
    case 'token_file':
      return 'token file';
  }
}

export class VaultAuth {
  private readonly opts: VaultAuthOptions;
  private readonly logger: VaultLogger;
  private readonly now: () => number;
  private readonly refreshFraction: number;
  private session: Session | undefined;
  private loggingIn: Promise<Session> | undefined;
  /** After a failed background login, the next one waits, so a broken login is not retried per call. */
  private backgroundAfter = 0;

  constructor(opts: VaultAuthOptions) {
    const problems = VaultAuth.problems(opts);
    if (problems.length > 0) throw new Error(`vault auth: ${problems.join('; ')}`);
    this.opts = opts;
    this.logger = opts.logger ?? SILENT;
    this.now = opts.now ?? Date.now;
    this.refreshFraction = opts.refreshFraction ?? 2 / 3;
  }

  /** Every problem with the login settings (empty = valid). */
  static problems(
    opts: Pick<VaultAuthOptions, 'method' | 'fetchJwt' | 'svid' | 'refreshFraction'>,
  ): string[] {
    const problems: string[] = [];
    const m = opts.method;
    if (m.method === 'jwt') {
      if (!m.role) problems.push('jwt: role is required');
      if (!m.audience) problems.push('jwt: audience is required');
      if (!opts.fetchJwt) problems.push('jwt: needs a JWT-SVID source (fetchJwt)');
    } else if (m.method === 'cert') {
      if (!opts.svid) problems.push('cert: needs an X.509-SVID source (svid)');
    } else if (m.method === 'token_file') {
      if (!m.path) problems.push('token_file: path is required');
    } else {
      problems.push(`unknown method ${JSON.stringify((m as { method: unknown }).method)}`);
    }
    const f = opts.refreshFraction;
    if (f !== undefined && !(f > 0 && f < 1)) problems.push('refreshFraction must be between 0 and 1');
    return problems;
  }

  /** For ops: whether a token is held and until when; never the token. */
  get state(): { method: string; loggedIn: boolean; expiresAt?: number } {
    const s = this.session;
    return {
      method: this.opts.method.method,
      loggedIn: s !== undefined && s.expiresAt > this.now(),
      ...(s && Number.isFinite(s.expiresAt) ? { expiresAt: s.expiresAt } : {}),
    };
  }

  /**
   * Runs `call` with the broker's token and the time it expires (epoch ms, Infinity if never).
   * A 403 means the token was revoked or expired under us: log in again and retry once; a second
   * 403 (a policy that really denies) is the caller's error.
   */
  async withToken<T>(
    call: (token: string, expiresAt: number) => Promise<T>,
    opts: TokenCallOptions = {},
  ): Promise<T> {
    const session = await this.current(opts.minValidityMs ?? 0);
    try {
      return await call(session.token, session.expiresAt);
    } catch (err) {
      if (!isPermissionDenied(err)) throw err;
      this.logger.warn(
        { auth: describeVaultAuth(this.opts.method) },
        'Vault answered 403 to the broker: logging in again and retrying once',
      );
      const fresh = await this.relogin(session.token);
      return call(fresh.token, fresh.expiresAt);
    }
  }

  /** The current token, logging in first when there is none or it has expired. */
  async token(): Promise<string> {
    return (await this.current(0)).token;
  }

  private async current(minValidityMs: number): Promise<Session> {
    const now = this.now();
    const s = this.session;
    if (s && now < s.expiresAt) {
      // Never ask for more than a fresh login gives (a session younger than 1 - refreshFraction of
      // its lease always qualifies), so a long TTL cannot make every call log in again.
      const need = Math.min(minValidityMs, s.leaseMs * this.refreshFraction);
      if (s.expiresAt - now >= need) {
        // Past the refresh point: hand out the still valid token, log in again in the background.
        if (now >= s.refreshAt && now >= this.backgroundAfter) {
          void this.login().catch(() => {
            this.backgroundAfter = this.now() + BACKGROUND_RETRY_MS;
          });
        }
        return s;
      }
    }
    return this.login();
  }

  /** Forgets the token (shutdown, tests). */
  clear(): void {
    this.session = undefined;
  }

  /** A new login unless someone already replaced `stale`. */
  private async relogin(stale: string): Promise<Session> {
    if (this.session && this.session.token !== stale && this.now() < this.session.expiresAt) {
      return this.session;
    }
    if (this.session?.token === stale) this.session = undefined;
    return this.login();
  }

  private login(): Promise<Session> {
    this.loggingIn ??= this.doLogin().finally(() => {
      this.loggingIn = undefined;
    });
    return this.loggingIn;
  }

  private async doLogin(): Promise<Session> {
    const m = this.opts.method;
    const described = describeVaultAuth(m);
    try {
      const session =
        m.method === 'token_file' ? await this.readTokenFile(m.path) : await this.loginWithSvid(m);
      this.session = session;
      const ttl = Number.isFinite(session.expiresAt)
        ? Math.round((session.expiresAt - this.now()) / 1000)
        : 0;
      this.logger.info({ auth: described, ttlSeconds: ttl }, 'logged in to Vault');
      return session;
    } catch (err) {
      this.logger.error(
        { auth: described, err: isBrokerError(err) ? err.message : 'login failed' },
        'Vault login failed',
      );
      throw err;
    }
  }

  private async loginWithSvid(m: Exclude<VaultAuthMethod, { method: 'token_file' }>): Promise<Session> {
    const described = describeVaultAuth(m);
    const started = this.now();
    let response;
    try {
      if (m.method === 'jwt') {
        const jwt = await this.fetchJwt(m.audience);
        response = await this.opts.client.request({
          method: 'POST',
          path: `auth/${m.mount ?? 'jwt'}/login`,
          body: { role: m.role, jwt },
        });
      } else {
        const svid = this.opts.svid?.();
        if (!svid || svid.certChain.length === 0) {
          throw loginFailed('vault_login_failed', `Vault ${described}: no X.509-SVID available`);
        }
        response = await this.opts.client.request({
          method: 'POST',
          path: `auth/${m.mount ?? 'cert'}/login`,
          body: m.name ? { name: m.name } : {},
          clientCert: {
            cert: svid.certChain.map((der) => pem('CERTIFICATE', der)).join(''),
            key: pem('PRIVATE KEY', svid.privateKey),
          },
        });
      }
    } catch (err) {
      // Vault refusing the credential (wrong audience, unknown role, untrusted certificate) is
      // a 4xx; say so plainly. Outages (sealed, timeout, 429) keep their own reasons.
      if (
        isVaultError(err) &&
        err.status !== undefined &&
        err.status >= 400 &&
        err.status < 500 &&
        err.status !== 429
      ) {
        const said = err.vaultErrors.length > 0 ? `: ${err.vaultErrors.join('; ')}` : '';
        throw loginFailed(
          'vault_login_rejected',
          `Vault refused the broker's ${described} (${err.status}${said})`,
          err,
        );
      }
      throw err;
    }
    const auth = response?.auth;
    if (!auth || auth.client_token === '') {
      throw loginFailed('vault_login_failed', `Vault ${described} answered without a token`);
    }
    const leaseMs = auth.lease_duration * 1000;
    if (leaseMs <= 0) {
      return { token: auth.client_token, refreshAt: Infinity, expiresAt: Infinity, leaseMs: Infinity };
    }
    // Measured from before the call, so a slow login never makes the token look fresher than it is.
    return {
      token: auth.client_token,
      refreshAt: started + Math.floor(leaseMs * this.refreshFraction),
      expiresAt: started + leaseMs,
      leaseMs,
    };
  }

  private async fetchJwt(audience: string): Promise<string> {
    const fetchJwt = this.opts.fetchJwt;
    if (!fetchJwt) throw loginFailed('vault_login_failed', 'Vault jwt login: no JWT-SVID source');
    try {
      return await fetchJwt(audience);
    } catch (err) {
      // Workload API errors are BrokerErrors with safe messages; anything else stays generic.
      const why = isBrokerError(err) ? err.message : 'the Workload API call failed';
      throw loginFailed(
        'vault_login_failed',
        `cannot fetch a JWT-SVID for Vault (audience ${audience}): ${why}`,
      );
    }
  }

  private async readTokenFile(path: string): Promise<Session> {
    let token: string;
    try {
      token = (await readFile(path, 'utf8')).trim();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'read failed';
      throw loginFailed('vault_login_failed', `cannot read the Vault token file ${path} (${code})`);
    }
    if (token === '') throw loginFailed('vault_login_failed', `the Vault token file ${path} is empty`);
    // Its lifetime is unknown here; a 403 makes the broker read the file again.
    return { token, refreshAt: Infinity, expiresAt: Infinity, leaseMs: Infinity };
  }
}
