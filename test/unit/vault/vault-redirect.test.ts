/**
 * Vault calls never follow a redirect: a 3xx to another origin would carry `X-Vault-Token` (and a
 * login's JWT-SVID) there, and its answer would be taken for Vault's. And a plain `http://` Vault
 * is refused unless the config says `insecure: true`, with a warning at startup.
 */
import { strict as assert } from 'node:assert';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../../src/config/load-config.js';
import { buildVaultBackend } from '../../../src/credentials/vault/vault-config.js';
import { VaultClient } from '../../../src/credentials/vault/vault-client.js';
import { isBrokerError } from '../../../src/errors.js';
import {
  captureLogger,
  issueRequest,
  startVaultHarness,
  vaultRole,
  type VaultHarness,
} from './vault-harness.js';

/** Another origin that answers everything with what looks like a Vault credential. */
async function startOtherOrigin(): Promise<{
  url: string;
  seen: Array<{ url: string; headers: IncomingHttpHeaders; body: string }>;
  close(): Promise<void>;
}> {
  const seen: Array<{ url: string; headers: IncomingHttpHeaders; body: string }> = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(
        JSON.stringify({
          request_id: 'forged',
          lease_id: 'database/creds/readonly/forged',
          renewable: true,
          lease_duration: 3600,
          data: { username: 'forged-user', password: 'forged-password' },
          wrap_info: null,
          warnings: null,
          auth: {
            client_token: 'hvs.forged',
            accessor: 'forged',
            policies: ['default'],
            token_policies: ['default'],
            metadata: null,
            lease_duration: 3600,
            renewable: false,
            orphan: true,
          },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

describe('vault: redirects are never followed', () => {
  let h: VaultHarness;
  let other: Awaited<ReturnType<typeof startOtherOrigin>>;

  beforeEach(async () => {
    h = await startVaultHarness();
    other = await startOtherOrigin();
  });
  afterEach(async () => {
    await h.close();
    await other.close();
  });

  for (const status of [307, 308, 302] as const) {
    it(`a ${status} to another origin on issue: refused, the token never reaches it, nothing issued`, async () => {
      await h.auth.token(); // logged in before the redirect starts
      h.vault.faults = { redirectTo: { origin: other.url, status } };
      const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' });
      const err = await rejection(h.backend.issue(issueRequest(role)));
      assert.ok(isBrokerError(err), String(err));
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.reason, 'vault_redirect_refused');
      assert.deepEqual(other.seen, [], 'the other origin received no request (no X-Vault-Token)');
    });
  }

  it('a redirected login sends no JWT-SVID to the other origin and yields no token', async () => {
    h.vault.faults = { redirectTo: { origin: other.url } };
    const err = await rejection(h.auth.token());
    assert.ok(isBrokerError(err));
    assert.equal(err.reason, 'vault_redirect_refused');
    assert.deepEqual(other.seen, []);
    assert.equal(h.auth.state.loggedIn, false);
  });

  it('a redirected revoke is not counted as done', async () => {
    const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' });
    const issued = await h.backend.issue(issueRequest(role));
    h.vault.faults = { redirectTo: { origin: other.url } };
    const err = await rejection(
      h.backend.revoke({ leaseId: 'l', backendRef: issued.backendRef, expiresAt: Date.now() + 60_000 }),
    );
    assert.ok(isBrokerError(err));
    assert.equal(err.reason, 'vault_redirect_refused');
    assert.deepEqual(other.seen, []);
    h.vault.faults = {};
    assert.equal(h.vault.leases().length, 1, 'the lease is still live at Vault: the caller retries');
  });
});

describe('vault: plain http:// needs insecure: true', () => {
  const vaultSection = (extra: Record<string, unknown>): Record<string, unknown> => ({
    backends: {
      vault: {
        address: 'http://vault.internal:8200',
        auth: { method: 'token_file', path: '/run/secrets/vault-token' },
        ...extra,
      },
    },
  });

  it('the config refuses an http:// address without insecure, naming the key', () => {
    assert.throws(
      () => parseConfig(vaultSection({})),
      (err: Error & { problems?: string[] }) =>
        (err.problems ?? []).some(
          (p) => p.startsWith('backends.vault.address') && p.includes('backends.vault.insecure: true'),
        ),
    );
  });

  it('accepts it with insecure: true and warns at startup', () => {
    const config = parseConfig(vaultSection({ insecure: true }));
    const vault = config.backends.vault;
    assert.ok(vault);
    assert.equal(vault.insecure, true);
    const { logger, logs } = captureLogger();
    buildVaultBackend(vault, { logger });
    assert.ok(
      logs.some((l) => l.level === 'warn' && l.msg.includes('insecure') && l.msg.includes('http://')),
      JSON.stringify(logs),
    );
  });

  it('https:// needs no flag and gives no warning', () => {
    const config = parseConfig({
      backends: {
        vault: {
          address: 'https://vault.internal:8200',
          auth: { method: 'token_file', path: '/run/secrets/vault-token' },
        },
      },
    });
    const vault = config.backends.vault;
    assert.ok(vault);
    assert.equal(vault.insecure, false);
    const { logger, logs } = captureLogger();
    buildVaultBackend(vault, { logger });
    assert.deepEqual(logs, []);
  });

  it('the client itself refuses http:// unless told insecure', () => {
    assert.throws(() => new VaultClient({ endpoint: 'http://127.0.0.1:8200' }), /insecure/);
    assert.doesNotThrow(() => new VaultClient({ endpoint: 'http://127.0.0.1:8200', insecure: true }));
  });
});
