/**
 * An in-process Microsoft identity platform token endpoint (HTTPS on 127.0.0.1, port 0), from the
 * Microsoft identity platform docs: OpenID configuration, and the client-credentials grant with a
 * federated client assertion (`POST /{tenant}/oauth2/v2.0/token`).
 *
 * Refuses what Entra ID refuses, with its `error` / `AADSTS` codes: an unknown application
 * (AADSTS700016), an assertion that does not verify against the federated issuer's keys
 * (AADSTS700027), is outside its validity (AADSTS700024), whose audience is not the federated
 * credential's (AADSTS700212) or whose issuer and subject match no federated credential
 * (AADSTS70021); a scope without `/.default` (AADSTS1002012).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serveEmulator, type RunningEmulatorServer } from '../emulator-http.js';
import { createLocalJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import { selfSignedLocalhost } from './tls.js';

export interface FederatedCredential {
  /** Required `iss`; undefined accepts a JWT without one (the dev CA mints none). */
  issuer?: string;
  subject: string;
  audiences: string[];
  jwks: () => { keys: object[] };
}

export interface AppRegistration {
  tenantId: string;
  clientId: string;
  federatedCredentials: FederatedCredential[];
}

export interface IssuedAzureToken {
  token: string;
  tenantId: string;
  clientId: string;
  scope: string;
  subject: string;
  expiresAt: number;
}

class EntraError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly code: number,
    description: string,
  ) {
    super(`AADSTS${code}: ${description}`);
  }
}

export class AzureEmulator {
  readonly apps: AppRegistration[] = [];
  readonly tokens = new Map<string, IssuedAzureToken>();
  faults: { throttle?: number } = {};
  /** Token lifetime Entra would pick (default 3599 s). */
  tokenLifetimeSeconds = 3599;
  url = '';
  ca = '';
  private server: RunningEmulatorServer | undefined;

  constructor(private readonly clock: () => number = Date.now) {}

  async start(): Promise<void> {
    const { cert, key } = await selfSignedLocalhost();
    this.ca = cert;
    this.server = await serveEmulator((req, res, body) => this.handle(req, res, body), { cert, key });
    this.url = this.server.url;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      res.end(JSON.stringify(body));
    };
    const config = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(path);
    if (req.method === 'GET' && config) {
      const t = config[1] as string;
      return json(200, {
        token_endpoint: `${this.url}/${t}/oauth2/v2.0/token`,
        authorization_endpoint: `${this.url}/${t}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${this.url}/${t}/oauth2/v2.0/logout`,
        jwks_uri: `${this.url}/${t}/discovery/v2.0/keys`,
        issuer: `${this.url}/${t}/v2.0`,
        token_endpoint_auth_methods_supported: [
          'client_secret_post',
          'private_key_jwt',
          'client_secret_basic',
        ],
        response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      });
    }
    const token = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path);
    if (req.method === 'POST' && token) {
      try {
        if (this.faults.throttle) {
          this.faults.throttle--;
          return json(
            429,
            {
              error: 'temporarily_unavailable',
              error_description:
                'AADSTS50196: The server terminated an operation because it encountered a client request loop.',
              error_codes: [50196],
            },
            { 'retry-after': '0' },
          );
        }
        return json(
          200,
          await this.clientCredentials(token[1] as string, new URLSearchParams(raw.toString('utf8'))),
        );
      } catch (err) {
        const e =
          err instanceof EntraError ? err : new EntraError(500, 'server_error', 90000, 'Internal error.');
        return json(e.status, {
          error: e.error,
          error_description: e.message,
          error_codes: [e.code],
          timestamp: new Date(this.clock()).toISOString(),
        });
      }
    }
    json(404, { error: 'not_found' });
  }

  private async clientCredentials(tenantId: string, p: URLSearchParams): Promise<Record<string, unknown>> {
    if (p.get('grant_type') !== 'client_credentials')
      throw new EntraError(
        400,
        'unsupported_grant_type',
        70003,
        'The app requested an unsupported grant type.',
      );
    const scope = p.get('scope') ?? '';
    if (!scope)
      throw new EntraError(
        400,
        'invalid_request',
        90014,
        "The required field 'scope' is missing from the credential.",
      );
    const resource = scope.split(' ').find((s) => s.endsWith('/.default'));
    if (!resource)
      throw new EntraError(
        400,
        'invalid_scope',
        1002012,
        `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.`,
      );
    const clientId = p.get('client_id') ?? '';
    const app = this.apps.find((a) => a.tenantId === tenantId && a.clientId === clientId);
    if (!app)
      throw new EntraError(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${tenantId}'.`,
      );
    if (p.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      throw new EntraError(
        401,
        'invalid_client',
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }
    const subject = await this.matchAssertion(app, p.get('client_assertion') ?? '');
    const issued: IssuedAzureToken = {
      token: `eyJ0eXAiOiJKV1Qi.${randomBytes(48).toString('base64url')}`,
      tenantId,
      clientId,
      scope: resource,
      subject,
      expiresAt: Math.floor(this.clock() / 1000) * 1000 + this.tokenLifetimeSeconds * 1000,
    };
    this.tokens.set(issued.token, issued);
    return {
      token_type: 'Bearer',
      expires_in: this.tokenLifetimeSeconds,
      ext_expires_in: this.tokenLifetimeSeconds,
      access_token: issued.token,
    };
  }

  /** The assertion must verify against a federated credential whose issuer, subject and audience match. */
  private async matchAssertion(app: AppRegistration, assertion: string): Promise<string> {
    let lastError: EntraError = new EntraError(
      400,
      'invalid_client',
      70021,
      'No matching federated identity record found for presented assertion.',
    );
    for (const fc of app.federatedCredentials) {
      let claims;
      try {
        const keys = { keys: fc.jwks().keys.map((k) => ({ ...k, use: 'sig' })) };
        ({ payload: claims } = await jwtVerify(assertion, createLocalJWKSet(keys as never), {
          currentDate: new Date(this.clock()),
        }));
      } catch (err) {
        lastError =
          err instanceof joseErrors.JWTExpired || err instanceof joseErrors.JWTClaimValidationFailed
            ? new EntraError(
                400,
                'invalid_client',
                700024,
                'Client assertion is not within its valid time range.',
              )
            : new EntraError(
                400,
                'invalid_client',
                700027,
                'Client assertion contains an invalid signature.',
              );
        continue;
      }
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!aud.some((a) => a !== undefined && fc.audiences.includes(a))) {
        lastError = new EntraError(
          400,
          'invalid_client',
          700212,
          'No matching federated identity record found for presented assertion audience.',
        );
        continue;
      }
      if ((fc.issuer !== undefined && claims.iss !== fc.issuer) || claims.sub !== fc.subject) continue;
      return claims.sub;
    }
    throw lastError;
  }
}

export async function startAzureEmulator(opts: { now?: () => number } = {}): Promise<AzureEmulator> {
  const e = new AzureEmulator(opts.now);
  await e.start();
  return e;
}
