/**
 * The GitHub backend against the GitHub emulator: installation tokens narrowed to the role, revoked
 * for real, the App JWT within GitHub's limits, throttling, and refs that never hold a usable token.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import type { CredentialBackend, IssueRequest, RoleDefinition } from '../../../../src/credentials/backend.js';
import {
  buildGithubBackend,
  githubBackendConfigSchema,
} from '../../../../src/credentials/github/github-config.js';
import { rejectsWith } from '../../../support/eventually.js';
import { startGithubEmulator, type GithubEmulator } from '../../../support/github-emulator/index.js';
import { startVaultEmulator } from '../../../support/vault-emulator/index.js';

const INSTALLATION = 4242;

function role(settings: Record<string, unknown>): RoleDefinition {
  return {
    name: 'github/repo-writer',
    backend: 'github',
    maxTtlSeconds: 3600,
    sensitivity: 'confidential',
    environments: [],
    description: '',
    settings,
  };
}
const writer = role({
  repositories: ['svid-broker'],
  permissions: { contents: 'write', pull_requests: 'write' },
});

function request(overrides: Partial<IssueRequest> = {}): IssueRequest {
  const now = Date.now();
  return {
    leaseId: 'lease-1',
    agent: 'spiffe://example.org/agents/coder',
    taskId: 't-1',
    environment: 'dev',
    role: writer,
    ttlSeconds: 600,
    notAfter: now + 1_800_000,
    now,
    ...overrides,
  };
}

describe('credentials/github: the GitHub backend against the GitHub emulator', () => {
  let gh: GithubEmulator;
  let keyFile: string;
  const logs: string[] = [];
  const logger = {
    warn: (o: object, m: string) => logs.push(JSON.stringify({ ...o, m })),
    error: (o: object, m: string) => logs.push(JSON.stringify({ ...o, m })),
  };
  const build = (extra: Record<string, unknown> = {}, apiPath = ''): Promise<CredentialBackend> =>
    buildGithubBackend(
      githubBackendConfigSchema.parse({
        apiUrl: `${gh.url}${apiPath}`,
        appId: gh.appId,
        privateKeyFile: keyFile,
        installationId: INSTALLATION,
        retryBaseDelayMs: 1,
        ...extra,
      }),
      { logger },
    );

  before(async () => {
    gh = await startGithubEmulator();
    gh.addInstallation(INSTALLATION, {
      account: 'acme',
      repositories: ['svid-broker', 'infra'],
      permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
    });
    keyFile = join(mkdtempSync(join(tmpdir(), 'gh-')), 'app.pem');
    writeFileSync(keyFile, gh.privateKeyPem());
  });
  after(async () => gh.close());
  beforeEach(() => {
    gh.faults = {};
    logs.length = 0;
  });

  it('mints a token narrowed to the role, and revoke deletes it at GitHub', async () => {
    const backend = await build();
    const issued = await backend.issue(request());
    const minted = gh.tokens.get(issued.credential.token);
    assert.ok(minted);
    assert.deepEqual(minted.repositories, ['svid-broker']);
    assert.deepEqual(minted.permissions, { contents: 'write', pull_requests: 'write' });
    assert.equal(issued.credential.kind, 'github_token');
    assert.equal(issued.credential.metadata.repositories, 'svid-broker');
    assert.ok(
      issued.expiresAt <= Date.now() + 600_000,
      'the lease ends with the granted TTL, before GitHub’s hour',
    );
    assert.equal(
      issued.backendRef.includes(issued.credential.token),
      false,
      'the ref holds no readable token',
    );
    assert.ok(gh.tokenLive(issued.credential.token));
    await backend.revoke({ leaseId: 'lease-1', backendRef: issued.backendRef, expiresAt: issued.expiresAt });
    assert.equal(gh.tokenLive(issued.credential.token), false);
    // Idempotent: a second revoke (GitHub answers 401) succeeds.
    await backend.revoke({ leaseId: 'lease-1', backendRef: issued.backendRef, expiresAt: issued.expiresAt });
    assert.equal(backend.revocability?.(writer) ?? 'revocable', 'revocable');
  });

  it('signs the App JWT as GitHub requires: RS256, iss the App id, at most 10 minutes', async () => {
    await (await build()).issue(request());
    const claims = gh.appJwts.at(-1);
    assert.equal(claims?.iss, gh.appId);
    assert.ok((claims?.exp as number) - (claims?.iat as number) <= 600);
  });

  it('works against a GitHub Enterprise Server base URL (/api/v3)', async () => {
    const issued = await (await build({}, '/api/v3')).issue(request());
    assert.ok(gh.tokenLive(issued.credential.token));
  });

  it('a role wider than the installation is refused by GitHub: FAILED_PRECONDITION', async () => {
    const wide = role({ repositories: ['svid-broker'], permissions: { administration: 'write' } });
    await rejectsWith(
      (await build()).issue(request({ role: wide })),
      'FAILED_PRECONDITION',
      'github_rejected_request',
    );
    const otherRepo = role({ repositories: ['secret-repo'], permissions: { contents: 'read' } });
    await rejectsWith(
      (await build()).issue(request({ role: otherRepo })),
      'FAILED_PRECONDITION',
      'github_rejected_request',
    );
  });

  it('lists every problem of a malformed role at startup', async () => {
    const problems = (await build()).validateRole(
      role({ repositories: [], permissions: { contents: 'owner' }, extra: true }),
    );
    for (const p of [
      /unknown setting "extra"/,
      /repositories/,
      /permissions.contents: read, write or admin/,
    ]) {
      assert.ok(
        problems.some((x) => p.test(x)),
        `${p} in ${problems.join(' | ')}`,
      );
    }
    const noDefault = await buildGithubBackend(
      githubBackendConfigSchema.parse({ apiUrl: gh.url, appId: gh.appId, privateKeyFile: keyFile }),
      { logger },
    );
    assert.match(noDefault.validateRole(writer).join(), /installationId: required/);
  });

  it('retries HTTP 429 with backoff, then UNAVAILABLE past the deadline', async () => {
    gh.faults = { throttle: 2 };
    assert.ok((await (await build()).issue(request())).credential.token);
    gh.faults = { throttle: 1_000_000 };
    await rejectsWith(
      (await build({ timeoutMs: 200, retryBaseDelayMs: 20 })).issue(request()),
      'UNAVAILABLE',
      'github_throttled',
    );
    gh.faults = {};
  });

  it('the emulator refuses App JWTs GitHub refuses', async () => {
    const post = (jwt: string): Promise<Response> =>
      fetch(`${gh.url}/app/installations/${INSTALLATION}/access_tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${jwt}` },
        body: '{}',
      });
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>, alg = 'RS256'): Promise<string> =>
      new SignJWT(claims)
        .setProtectedHeader({ alg })
        .sign(alg === 'HS256' ? new TextEncoder().encode('x'.repeat(32)) : gh.privateKey);
    assert.equal(
      (await post(await sign({ iss: gh.appId, iat: now, exp: now + 660 }))).status,
      401,
      'exp beyond 10 minutes',
    );
    assert.equal((await post(await sign({ iss: '1', iat: now, exp: now + 300 }))).status, 401, 'wrong iss');
    assert.equal(
      (await post(await sign({ iss: gh.appId, iat: now - 700, exp: now - 100 }))).status,
      401,
      'expired',
    );
    assert.equal(
      (await post(await sign({ iss: gh.appId, iat: now, exp: now + 300 }, 'HS256'))).status,
      401,
      'not RS256',
    );
    assert.equal((await post(await sign({ iss: gh.appId, iat: now, exp: now + 300 }))).status, 201);
  });

  it('a key file that is missing is a startup error naming the file, not a key', async () => {
    await assert.rejects(
      buildGithubBackend(
        githubBackendConfigSchema.parse({ appId: '1', privateKeyFile: '/nonexistent/app.pem' }),
        {
          logger,
        },
      ),
      /privateKeyFile: cannot read an RSA private key from \/nonexistent\/app.pem/,
    );
    assert.throws(
      () => githubBackendConfigSchema.parse({ appId: '1' }),
      /set exactly one of privateKeyFile and privateKeyVault/,
    );
  });

  it("reads the App key from Vault (KV v2) with the broker's Vault login", async () => {
    const vault = await startVaultEmulator();
    try {
      vault.putKv('github-app', { private_key: gh.privateKeyPem() });
      const readVaultSecret = async (path: string): Promise<Record<string, unknown> | null> => {
        const res = await fetch(`${vault.url}/v1/${path}`, { headers: { 'x-vault-token': vault.rootToken } });
        return ((await res.json()) as { data?: Record<string, unknown> }).data ?? null;
      };
      const config = githubBackendConfigSchema.parse({
        apiUrl: gh.url,
        appId: gh.appId,
        privateKeyVault: { path: 'secret/data/github-app' },
        installationId: INSTALLATION,
      });
      const backend = await buildGithubBackend(config, { logger, readVaultSecret });
      assert.ok(gh.tokenLive((await backend.issue(request())).credential.token));
      const wrongField = githubBackendConfigSchema.parse({
        ...config,
        privateKeyVault: { path: 'secret/data/github-app', field: 'pem' },
      });
      await assert.rejects(buildGithubBackend(wrongField, { logger, readVaultSecret }), /no field "pem"/);
      await assert.rejects(buildGithubBackend(config, { logger }), /needs backends.vault/);
    } finally {
      await vault.close();
    }
  });

  it('no token reaches the logs, even on failures', async () => {
    const backend = await build();
    const issued = await backend.issue(request());
    await rejectsWith(
      backend.issue(request({ role: role({ repositories: ['nope'], permissions: { contents: 'read' } }) })),
      'FAILED_PRECONDITION',
      'github_rejected_request',
    );
    for (const t of gh.tokens.keys()) assert.equal(logs.join('\n').includes(t), false);
    assert.equal(logs.join('\n').includes(issued.credential.token), false);
  });
});
