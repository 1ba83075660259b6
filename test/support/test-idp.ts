/**
 * A real OpenID provider for tests: oidc-provider (a certified implementation) on 127.0.0.1 over
 * plain http (the relying party accepts http only for a loopback issuer). Its one client is the
 * broker's console (code flow, PKCE required, client_secret_basic, auth_time always in the ID
 * token); its accounts are the `people` given. The login page is this file's: a form that names
 * the account (and, for step-up tests, how long ago the person authenticated), which a test or
 * the headless browser fills in. Consent is pre-granted, as a
 * company IdP does for its own applications.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

export interface TestPerson {
  sub: string;
  email: string;
  groups: string[];
}

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** How many times each account has logged in at the IdP (a step-up is one more). */
  logins: Map<string, number>;
  close(): Promise<void>;
}

export const TEST_CLIENT_ID = 'svid-broker-console';
export const TEST_CLIENT_SECRET = 'test-client-secret-7f9c2a61d4';

interface GrantContext {
  oidc: { client?: { clientId: string }; session?: { accountId?: string }; provider: Provider };
}

export async function startTestIdp(redirectUrl: string, people: readonly TestPerson[]): Promise<TestIdp> {
  const accounts = new Map(people.map((p) => [p.sub, p]));
  const logins = new Map<string, number>();
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const provider = new Provider(issuer, {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'test-idp' }] },
    ttl: { Interaction: 600, Grant: 3600, Session: 3600, AccessToken: 600, IdToken: 600 },
    clients: [
      {
        client_id: TEST_CLIENT_ID,
        client_secret: TEST_CLIENT_SECRET,
        redirect_uris: [redirectUrl],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        require_auth_time: true,
      },
    ],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'email', 'groups'],
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['test-idp-cookie-key-0123456789'] },
    findAccount: (_ctx: unknown, id: string) => {
      const person = accounts.get(id);
      if (!person) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, email: person.email, email_verified: true, groups: person.groups }),
      };
    },
    loadExistingGrant: async (ctx: GrantContext) => {
      const clientId = ctx.oidc.client?.clientId;
      const accountId = ctx.oidc.session?.accountId;
      if (!clientId || !accountId) return undefined;
      const grant = new ctx.oidc.provider.Grant({ clientId, accountId });
      grant.addOIDCScope('openid email groups');
      await grant.save();
      return grant;
    },
  });
  const oidc = provider.callback();
  handler = (req, res) => {
    const m = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url ?? '');
    if (!m) return oidc(req, res);
    interaction(provider, accounts, logins, req, res, Boolean(m[2])).catch((err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  };
  return {
    issuer,
    clientId: TEST_CLIENT_ID,
    clientSecret: TEST_CLIENT_SECRET,
    logins,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function interaction(
  provider: Provider,
  accounts: Map<string, TestPerson>,
  logins: Map<string, number>,
  req: IncomingMessage,
  res: ServerResponse,
  submit: boolean,
): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (!submit) {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>Test IdP sign-in</title><h1>Test IdP</h1>
<form method="post" action="/interaction/${details.uid}/login">
<label>Account <input name="login" id="login" autofocus></label><input type="hidden" name="age" value="0">
<button type="submit" id="sign-in">Sign in</button></form>`);
    return;
  }
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const form = new URLSearchParams(Buffer.concat(chunks).toString());
  const login = form.get('login') ?? '';
  // `age`: the person authenticated at the IdP that many seconds ago (an SSO session reused).
  const age = Number(form.get('age') ?? '0') || 0;
  if (!accounts.has(login)) {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'unknown account',
    });
    return;
  }
  logins.set(login, (logins.get(login) ?? 0) + 1);
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: login, ts: Math.floor(Date.now() / 1000) - age } },
    { mergeWithLastSubmission: false },
  );
}
