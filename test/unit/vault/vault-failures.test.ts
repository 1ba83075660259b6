/**
 * The vault backend when things go wrong: Vault sealed, slow, hung, rate-limiting or gone; the
 * broker's token revoked under it; its login refused; its token expiring. Every failure must be
 * UNAVAILABLE within the timeout with a clear message, and no token or secret value may appear in
 * an error message or a log line.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isBrokerError } from '../../../src/errors.js';
import { VaultAuth } from '../../../src/credentials/vault/vault-auth.js';
import { createVaultBackend } from '../../../src/credentials/vault/vault-backend.js';
import { VaultClient } from '../../../src/credentials/vault/vault-client.js';
import {
  BROKER_VAULT_ROLE,
  captureLogger,
  issueRequest,
  startVaultHarness,
  vaultRole,
  type VaultHarness,
} from './vault-harness.js';

const DB = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' });
const TOKEN = vaultRole('ci', { kind: 'token', policies: ['ci-read'] });

/** Rejects with UNAVAILABLE and `reason`; returns the error and how long the call took. */
async function unavailable(call: Promise<unknown>, reason: string): Promise<{ err: Error; ms: number }> {
  const started = Date.now();
  let caught: Error | undefined;
  await assert.rejects(call, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'UNAVAILABLE', err.message);
    assert.equal(err.reason, reason, err.message);
    caught = err;
    return true;
  });
  assert.ok(caught);
  return { err: caught, ms: Date.now() - started };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Every string in an error, its causes included. */
function errorText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    parts.push(e.message, String((e as { reason?: unknown }).reason ?? ''));
  }
  return parts.join('\n');
}

describe('vault backend: failures', () => {
  let h: VaultHarness;
  const errors: unknown[] = [];

  beforeEach(async () => {
    h = await startVaultHarness({ timeoutMs: 300 });
    errors.length = 0;
  });
  afterEach(async () => {
    await h.close();
  });

  async function fails(call: Promise<unknown>, reason: string): Promise<{ err: Error; ms: number }> {
    const result = await unavailable(call, reason);
    errors.push(result.err);
    return result;
  }

  describe('Vault sealed, slow, hung, rate-limited or down', () => {
    it('sealed: UNAVAILABLE vault_sealed, nothing issued; revoke fails too, for the queue to retry', async () => {
      const issued = await h.backend.issue(issueRequest(DB));
      h.vault.faults = { sealed: true };
      const { err } = await fails(h.backend.issue(issueRequest(DB)), 'vault_sealed');
      assert.match(err.message, /Vault is sealed/);
      await fails(
        h.backend.revoke({ leaseId: 'l', backendRef: issued.backendRef, expiresAt: 0 }),
        'vault_sealed',
      );
      h.vault.faults = {};
      assert.equal(h.vault.leases().length, 1, 'only the lease issued before the seal');
    });

    it('slow: UNAVAILABLE vault_timeout within the timeout; what Vault issued late is revoked', async () => {
      await h.auth.token(); // logged in while Vault was fast
      h.vault.faults = { latencyMs: 700 };
      const { err, ms } = await fails(h.backend.issue(issueRequest(DB)), 'vault_timeout');
      assert.ok(ms < 450, `took ${ms} ms for a 300 ms timeout`);
      assert.match(err.message, /did not answer GET database\/creds\/readonly within 300 ms/);
      h.vault.faults = {};
      // Vault answers at 700 ms with a lease nobody recorded; the backend revokes it on arrival.
      await eventually(
        () => h.vault.requests.some((r) => r.path === 'sys/leases/revoke' && r.status === 204),
        'the late revoke',
      );
      assert.deepEqual(h.vault.leases(), []);
      assert.ok(h.logs.some((l) => l.level === 'warn' && /after the timeout/.test(l.msg)));
    });

    it('a late token is revoked the same way', async () => {
      await h.auth.token();
      h.vault.faults = { latencyMs: 600 };
      await fails(h.backend.issue(issueRequest(TOKEN)), 'vault_timeout');
      h.vault.faults = {};
      await eventually(
        () => h.vault.requests.some((r) => r.path === 'auth/token/revoke-accessor' && r.status === 204),
        'the late revoke',
      );
      assert.ok(!h.vault.tokens().some((t) => t.path === 'auth/token/create-orphan'));
    });

    it('hung (a blocked audit device): UNAVAILABLE vault_timeout within the timeout', async () => {
      await h.auth.token();
      h.vault.faults = { hang: true };
      const { ms } = await fails(h.backend.issue(issueRequest(TOKEN)), 'vault_timeout');
      assert.ok(ms < 450, `took ${ms} ms`);
      const { ms: revokeMs } = await fails(
        h.backend.revoke({ leaseId: 'l', backendRef: 'lease:database/creds/readonly/x', expiresAt: 0 }),
        'vault_timeout',
      );
      assert.ok(revokeMs < 450);
      h.vault.faults = {};
    });

    it('a login that hangs times out as well', async () => {
      h.vault.faults = { hang: true };
      const { ms } = await fails(h.backend.issue(issueRequest(DB)), 'vault_timeout');
      assert.ok(ms < 450);
      h.vault.faults = {};
    });

    it('rate-limited: UNAVAILABLE vault_rate_limited', async () => {
      await h.auth.token();
      h.vault.faults = { rateLimited: true };
      const { err } = await fails(h.backend.issue(issueRequest(TOKEN)), 'vault_rate_limited');
      assert.match(err.message, /rate limit quota exceeded/);
      h.vault.faults = {};
    });

    it('health reports sealed and standby states (sys/health answers with a body for every status)', async () => {
      assert.deepEqual(await h.client.health(), { initialized: true, sealed: false, standby: false });
      h.vault.faults = { sealed: true };
      assert.deepEqual(await h.client.health(), { initialized: true, sealed: true, standby: false });
      h.vault.faults = {};
      h.vault.health = 'standby';
      assert.equal((await h.client.health()).standby, true);
    });

    it('down: UNAVAILABLE vault_unavailable', async () => {
      await h.vault.close();
      const { err } = await fails(h.backend.issue(issueRequest(DB)), 'vault_unavailable');
      assert.match(err.message, /unreachable.*ECONNREFUSED/);
    });

    it('a revoke Vault fails (500) throws UNAVAILABLE for the queue, and succeeds once Vault recovers', async () => {
      const issued = await h.backend.issue(issueRequest(DB));
      h.vault.faults = { failRevokes: 1 };
      await fails(
        h.backend.revoke({ leaseId: 'l', backendRef: issued.backendRef, expiresAt: 0 }),
        'vault_unavailable',
      );
      assert.equal(h.vault.leases().length, 1);
      await h.backend.revoke({ leaseId: 'l', backendRef: issued.backendRef, expiresAt: 0 });
      assert.equal(h.vault.leases().length, 0);
    });
  });

  describe("the broker's own login", () => {
    it('a revoked broker token (403): logs in again and retries the call once, which succeeds', async () => {
      const first = await h.auth.token();
      assert.ok(h.vault.revokeToken(first));
      h.vault.requests.length = 0;
      const issued = await h.backend.issue(issueRequest(TOKEN));
      assert.ok(h.vault.lookupToken(issued.credential.token));
      assert.deepEqual(
        h.vault.requests.map((r) => `${r.path} ${r.status}`),
        ['auth/token/create-orphan 403', 'auth/jwt/login 200', 'auth/token/create-orphan 200'],
      );
      assert.notEqual(await h.auth.token(), first);
      assert.ok(h.logs.some((l) => l.level === 'warn' && /403/.test(l.msg)));
    });

    it('a 403 that outlasts a fresh login (the policy really denies) fails after one retry', async () => {
      h.vault.setPolicy('svid-broker', { 'sys/leases/revoke': ['update'] });
      h.vault.requests.length = 0;
      const { err } = await fails(h.backend.issue(issueRequest(DB)), 'vault_permission_denied');
      assert.match(err.message, /Vault denied the broker GET database\/creds\/readonly: permission denied/);
      assert.deepEqual(
        h.vault.requests.map((r) => `${r.path} ${r.status}`),
        [
          'auth/jwt/login 200',
          'database/creds/readonly 403',
          'auth/jwt/login 200',
          'database/creds/readonly 403',
        ],
      );
    });

    it('a JWT login Vault rejects (wrong audience): UNAVAILABLE with a clear, non-secret message', async () => {
      await h.close();
      h = await startVaultHarness({ timeoutMs: 300, audience: 'not-vault' });
      const { err } = await fails(h.backend.issue(issueRequest(DB)), 'vault_login_rejected');
      assert.equal(
        err.message,
        "Vault refused the broker's jwt login (auth/jwt/login, role svid-broker) (400: error validating token: " +
          'invalid audience (aud) claim: audience claim does not match any expected audience)',
      );
      assert.equal(h.jwts.length, 1);
      assert.ok(!errorText(err).includes(h.jwts[0] ?? '?'), 'the JWT-SVID is not in the error');
      assert.ok(h.logs.some((l) => l.level === 'error' && l.msg === 'Vault login failed'));
    });

    it('a JWT-SVID the Workload API cannot provide: UNAVAILABLE vault_login_failed', async () => {
      const client = new VaultClient({ endpoint: h.vault.url, timeoutMs: 300, insecure: true });
      const auth = new VaultAuth({
        client,
        method: { method: 'jwt', role: BROKER_VAULT_ROLE, audience: 'vault' },
        fetchJwt: () => Promise.reject(new Error('connect ENOENT /tmp/spire-agent/public/api.sock')),
      });
      const backend = createVaultBackend({ client, auth });
      const { err } = await fails(backend.issue(issueRequest(DB)), 'vault_login_failed');
      assert.match(err.message, /cannot fetch a JWT-SVID for Vault \(audience vault\)/);
    });

    it('logs in again at 2/3 of the token lease, in the background, and before any call once it expired', async () => {
      let clock = Date.now();
      await h.close();
      h = await startVaultHarness({ timeoutMs: 300, tokenTtl: 90, now: () => clock });
      const first = await h.auth.token();
      assert.equal(h.jwts.length, 1);
      clock += 59_000;
      assert.equal(await h.auth.token(), first, 'before 2/3: the same token, no login');
      assert.equal(h.jwts.length, 1);
      clock += 2_000; // 61 s of 90: past 2/3
      assert.equal(await h.auth.token(), first, 'still valid: handed out while the new login runs');
      await eventually(() => h.jwts.length === 2, 'the background login');
      await eventually(() => h.auth.state.expiresAt === clock + 90_000, 'the new session');
      const second = await h.auth.token();
      assert.notEqual(second, first);
      clock += 91_000; // the second token has expired at Vault too
      const third = await h.auth.token();
      assert.notEqual(third, second);
      assert.equal(h.jwts.length, 3);
      assert.ok(h.vault.lookupToken(third));
    });

    it('a failed background login keeps the valid token and waits before trying again', async () => {
      let clock = Date.now();
      await h.close();
      h = await startVaultHarness({ timeoutMs: 300, tokenTtl: 90, now: () => clock });
      const first = await h.auth.token();
      clock += 61_000;
      h.vault.faults = { rateLimited: true };
      assert.equal(await h.auth.token(), first);
      await eventually(
        () => h.logs.some((l) => l.msg === 'Vault login failed'),
        'the failed background login',
      );
      const attempts = h.jwts.length;
      for (let i = 0; i < 5; i++) assert.equal(await h.auth.token(), first);
      assert.equal(h.jwts.length, attempts, 'no login per call while the last one just failed');
      h.vault.faults = {};
      clock += 5_000;
      await h.auth.token();
      await eventually(() => h.jwts.length === attempts + 1, 'the next background login');
    });

    it('logs in afresh when the token would end before the secret it is about to request', async () => {
      let clock = Date.now();
      await h.close();
      h = await startVaultHarness({ timeoutMs: 300, tokenTtl: 1200, now: () => clock });
      await h.auth.token();
      clock += 500_000; // 700 s left, under the 2/3-lease cap of 800 s a 900 s secret asks for
      await h.backend.issue(issueRequest(DB, { now: clock, ttlSeconds: 900, notAfter: clock + 3600_000 }));
      assert.equal(h.jwts.length, 2, 'a fresh login before the request');
    });

    it('token_file: an explicit fallback, read again after a 403, never logged', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'svb-vault-token-'));
      try {
        const path = join(dir, 'token');
        const first = h.vault.createToken({ policies: ['svid-broker'] });
        writeFileSync(path, `${first.token}\n`);
        const { logger, logs } = captureLogger();
        const client = new VaultClient({ endpoint: h.vault.url, timeoutMs: 300, insecure: true });
        const auth = new VaultAuth({ client, method: { method: 'token_file', path }, logger });
        const backend = createVaultBackend({ client, auth, logger });
        const a = await backend.issue(issueRequest(TOKEN));
        assert.ok(h.vault.lookupToken(a.credential.token));

        h.vault.revokeToken(first.token);
        const second = h.vault.createToken({ policies: ['svid-broker'] });
        writeFileSync(path, second.token);
        const b = await backend.issue(issueRequest(TOKEN));
        assert.ok(h.vault.lookupToken(b.credential.token), 'the rotated file was read after the 403');
        const logged = JSON.stringify(logs);
        assert.ok(!logged.includes(first.token) && !logged.includes(second.token));
        assert.match(logged, /token file/);

        writeFileSync(path, '');
        const emptyAuth = new VaultAuth({ client, method: { method: 'token_file', path } });
        await fails(emptyAuth.token(), 'vault_login_failed');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('refuses incomplete login settings at construction', () => {
      const client = new VaultClient({ endpoint: h.vault.url, insecure: true });
      assert.throws(
        () => new VaultAuth({ client, method: { method: 'jwt', role: '', audience: '' } }),
        /jwt: role is required; jwt: audience is required; jwt: needs a JWT-SVID source/,
      );
      assert.throws(
        () => new VaultAuth({ client, method: { method: 'cert' } }),
        /cert: needs an X\.509-SVID source/,
      );
    });
  });

  it('no Vault token, JWT-SVID or secret value appears in errors or log lines', async () => {
    // Things worth leaking: an issued secret, an issued token, a wrapping token, the broker's tokens.
    const secret = await h.backend.issue(issueRequest(DB));
    const token = await h.backend.issue(issueRequest(TOKEN));
    const wrapped = await h.backend.issue(
      issueRequest(vaultRole('w', { kind: 'token', policies: ['ci-read'], wrap: true })),
    );
    const brokerTokens = [await h.auth.token()];

    // ...then every failure path.
    h.vault.revokeToken(brokerTokens[0] ?? '');
    await h.backend.issue(issueRequest(TOKEN)); // 403, re-login
    brokerTokens.push(await h.auth.token());
    for (const faults of [{ sealed: true }, { rateLimited: true }, { latencyMs: 500 }, { failRevokes: 5 }]) {
      h.vault.faults = faults;
      await h.backend.issue(issueRequest(DB)).catch((err: unknown) => errors.push(err));
      await h.backend
        .revoke({ leaseId: 'l', backendRef: token.backendRef, expiresAt: 0 })
        .catch((err: unknown) => errors.push(err));
      h.vault.faults = {};
    }
    h.vault.setPolicy('svid-broker', {});
    await h.backend.issue(issueRequest(TOKEN)).catch((err: unknown) => errors.push(err));
    await h.client
      .request({ method: 'POST', path: 'sys/wrapping/unwrap', token: wrapped.credential.token })
      .then(() =>
        h.client.request({ method: 'POST', path: 'sys/wrapping/unwrap', token: wrapped.credential.token }),
      )
      .catch((err: unknown) => errors.push(err));
    await sleep(600); // let the late answers arrive and be revoked (logged)

    const secrets = [
      ...Object.values(secret.credential.data),
      token.credential.token,
      wrapped.credential.token,
      ...brokerTokens,
      ...h.jwts,
    ];
    assert.ok(errors.length >= 9, `collected ${errors.length} errors`);
    const haystack = [...errors.map(errorText), JSON.stringify(h.logs)].join('\n');
    for (const value of secrets) {
      assert.ok(value.length >= 8);
      assert.ok(!haystack.includes(value), `a secret value leaked: ${value.slice(0, 4)}…`);
    }
    assert.doesNotMatch(haystack, /hvs\.|eyJ/, 'nothing token-like at all');
  });
});
