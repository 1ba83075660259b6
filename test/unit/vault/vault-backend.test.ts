/**
 * The vault backend against the Vault emulator: issue and revoke for every role kind, with the
 * emulator's own state proving that what was issued exists and that revocation really removed it.
 */
import { strict as assert } from 'node:assert';
import { isBrokerError } from '../../../src/errors.js';
import type { IssuedCredential } from '../../../src/credentials/backend.js';
import {
  AGENT_ID,
  BROKER_POLICY,
  issueRequest,
  startVaultHarness,
  vaultRole,
  type VaultHarness,
} from './vault-harness.js';

const revokeTarget = (
  issued: IssuedCredential,
): { leaseId: string; backendRef: string; expiresAt: number } => ({
  leaseId: 'l',
  backendRef: issued.backendRef,
  expiresAt: issued.expiresAt,
});

function refId(ref: string, kind: string): string {
  assert.ok(ref.startsWith(`${kind}:`), `expected a ${kind}: reference, got ${ref}`);
  return ref.slice(kind.length + 1).replace(/@\d+$/, ''); // a wrap ref may carry its bound
}

describe('vault backend: issue and revoke against the emulator', () => {
  let h: VaultHarness;

  beforeEach(async () => {
    h = await startVaultHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  describe('dynamic secrets', () => {
    it('issues database credentials and revokes the Vault lease (the database user is dropped)', async () => {
      const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' });
      const req = issueRequest(role);
      const issued = await h.backend.issue(req);

      assert.equal(issued.credential.kind, 'vault_secret');
      assert.equal(issued.credential.token, '');
      const { username, password } = issued.credential.data;
      assert.ok(username && password);
      assert.deepEqual(issued.credential.metadata, {
        path: 'database/creds/readonly',
        lease_duration: '3600',
      });
      assert.equal(issued.renewable, false);
      const leaseId = refId(issued.backendRef, 'lease');
      assert.match(leaseId, /^database\/creds\/readonly\//);
      assert.ok(h.vault.lease(leaseId), 'the Vault lease exists');
      assert.ok(h.vault.databaseUsers().some((u) => u.username === username));

      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.lease(leaseId), undefined, 'the Vault lease is gone');
      assert.ok(!h.vault.databaseUsers().some((u) => u.username === username), 'the user is dropped');
      // Idempotent: revoking an unknown lease succeeds at Vault.
      await h.backend.revoke(revokeTarget(issued));
    });

    it('issues AWS IAM credentials (GET aws/creds) and revokes them', async () => {
      const issued = await h.backend.issue(
        issueRequest(vaultRole('aws', { kind: 'dynamic', path: 'aws/creds/deploy' })),
      );
      const { access_key, secret_key } = issued.credential.data;
      assert.ok(access_key && secret_key);
      assert.ok(h.vault.awsKeys().some((k) => k.accessKey === access_key));
      const leaseId = refId(issued.backendRef, 'lease');
      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.lease(leaseId), undefined);
      assert.ok(!h.vault.awsKeys().some((k) => k.accessKey === access_key), 'the IAM user is gone');
    });

    it('issues AWS STS credentials with POST and the granted ttl, recording Vault lease_duration', async () => {
      const role = vaultRole('sts', { kind: 'dynamic', path: 'aws/sts/deploy', ttlParam: true });
      const req = issueRequest(role, { ttlSeconds: 1200 });
      const issued = await h.backend.issue(req);
      assert.ok(issued.credential.data.session_token);
      assert.equal(issued.credential.metadata.lease_duration, '1200');
      assert.equal(issued.expiresAt, req.now + 1200_000);
      const sts = h.vault.requests.find((r) => r.path === 'aws/sts/deploy');
      assert.equal(sts?.method, 'POST');
      const leaseId = refId(issued.backendRef, 'lease');
      assert.equal(h.vault.lease(leaseId)?.ttl, 1200);
      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.lease(leaseId), undefined);
    });

    it('refuses a path that returns no lease (a static secret cannot be revoked)', async () => {
      h.vault.putKv('ci/app', { password: 'static-secret-value' });
      h.vault.setPolicy('svid-broker', { 'secret/data/*': ['read'] });
      await assert.rejects(
        h.backend.issue(issueRequest(vaultRole('kv', { kind: 'dynamic', path: 'secret/data/ci/app' }))),
        (err: unknown) => {
          assert.ok(isBrokerError(err));
          assert.equal(err.reason, 'vault_no_lease');
          assert.doesNotMatch(err.message, /static-secret-value/);
          return true;
        },
      );
    });
  });

  describe('tokens', () => {
    it('mints an orphan token with the role policies and meta tying it to agent, task, environment and lease', async () => {
      const role = vaultRole('ci', { kind: 'token', policies: ['ci-read'], meta: { team: 'ci' } });
      const req = issueRequest(role, { ttlSeconds: 600 });
      const issued = await h.backend.issue(req);

      assert.equal(issued.credential.kind, 'vault_token');
      const token = h.vault.lookupToken(issued.credential.token);
      assert.ok(token, 'the token is live at Vault');
      assert.equal(refId(issued.backendRef, 'accessor'), token.accessor);
      assert.ok(!issued.backendRef.includes(issued.credential.token), 'never the token itself');
      assert.deepEqual(token.policies, ['ci-read', 'default']);
      assert.deepEqual(token.meta, {
        team: 'ci',
        spiffe_id: AGENT_ID,
        task_id: req.taskId,
        environment: 'staging',
        lease_id: req.leaseId,
        role: 'vault/ci',
      });
      assert.equal(token.orphan, true);
      assert.equal(token.path, 'auth/token/create-orphan');
      assert.equal(token.type, 'service');
      assert.equal(token.renewable, false);
      assert.equal(token.ttl, 600);
      assert.equal(issued.expiresAt, req.now + 600_000);
      assert.deepEqual(issued.credential.metadata, {
        accessor: token.accessor,
        policies: 'ci-read,default',
        ttl_seconds: '600',
        renewable: 'false',
        orphan: 'true',
      });

      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.lookupToken(issued.credential.token), undefined, 'the token is revoked');
      // Already revoked: Vault answers 400 invalid accessor, which counts as done.
      await h.backend.revoke(revokeTarget(issued));
    });

    it('passes numUses, renewable and explicit max TTL (never past the task) to Vault', async () => {
      const role = vaultRole('ci', {
        kind: 'token',
        policies: ['ci-read'],
        numUses: 3,
        renewable: true,
        explicitMaxTtlSeconds: 1800,
      });
      const short = issueRequest(role, { ttlSeconds: 600 });
      const token = h.vault.lookupToken((await h.backend.issue(short)).credential.token);
      assert.equal(token?.numUses, 3);
      assert.equal(token?.renewable, true);
      assert.equal(token?.explicitMaxTtl, 1800);
      const now = Date.now();
      const ending = issueRequest(role, { ttlSeconds: 600, now, notAfter: now + 1000_000 });
      const capped = h.vault.lookupToken((await h.backend.issue(ending)).credential.token);
      assert.equal(capped?.explicitMaxTtl, 1000, 'renewals stop at the task end');
    });

    it('mints through a token role (auth/token/create/<role>) without sudo, and revokes it', async () => {
      h.vault.configureTokenRole('svid-broker-agents', { allowed_policies: ['ci-read'], orphan: true });
      // The broker's policy as the README gives it for token roles: no sudo, no create-orphan.
      h.vault.setPolicy('svid-broker', {
        ...BROKER_POLICY,
        'auth/token/create-orphan': ['deny'],
        'auth/token/create': ['deny'],
        'auth/token/create/svid-broker-agents': ['update'],
      });
      const role = vaultRole('ci', { kind: 'token', policies: ['ci-read'], tokenRole: 'svid-broker-agents' });
      const issued = await h.backend.issue(issueRequest(role));
      const token = h.vault.lookupToken(issued.credential.token);
      assert.equal(token?.path, 'auth/token/create/svid-broker-agents');
      assert.equal(token?.orphan, true);
      assert.deepEqual(token?.policies, ['ci-read', 'default']);
      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.lookupToken(issued.credential.token), undefined);
      h.vault.setPolicy('svid-broker', BROKER_POLICY);
      assert.deepEqual(
        h.backend.validateRole(vaultRole('bad', { kind: 'token', policies: ['x'], tokenRole: 'no/slash' })),
        ['settings.tokenRole: must be a Vault token role name, got "no/slash"'],
      );
    });

    it('orphan tokens survive the revocation of the broker token; child tokens and leases do not', async () => {
      const orphan = await h.backend.issue(
        issueRequest(vaultRole('o', { kind: 'token', policies: ['ci-read'] })),
      );
      const child = await h.backend.issue(
        issueRequest(vaultRole('c', { kind: 'token', policies: ['ci-read'], orphan: false })),
      );
      const secret = await h.backend.issue(
        issueRequest(vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' })),
      );
      const brokerToken = await h.auth.token();
      assert.equal(
        h.vault.lookupToken(child.credential.token)?.parentAccessor,
        h.vault.lookupToken(brokerToken)?.accessor,
      );

      assert.ok(h.vault.revokeToken(brokerToken));
      assert.ok(h.vault.lookupToken(orphan.credential.token), 'the orphan lives on');
      assert.equal(h.vault.lookupToken(child.credential.token), undefined, 'a child dies with its parent');
      // Vault ties a lease to the token that requested it: a dynamic secret lives no longer than
      // the broker token (which is why the backend bounds expiresAt by that token's end).
      assert.equal(h.vault.lease(refId(secret.backendRef, 'lease')), undefined);
    });
  });

  describe('wrapped delivery', () => {
    async function unwrap(token: string): Promise<Record<string, unknown> | null | undefined> {
      const response = await h.client.request({ method: 'POST', path: 'sys/wrapping/unwrap', token });
      return response?.auth ? { auth: response.auth } : response?.data;
    }

    it('hands out a single-use wrapping token for a dynamic secret; the secret never reaches the broker', async () => {
      const role = vaultRole('db', {
        kind: 'dynamic',
        path: 'database/creds/readonly',
        wrap: true,
        wrapTtlSeconds: 30,
      });
      const req = issueRequest(role);
      const issued = await h.backend.issue(req);
      assert.equal(issued.credential.kind, 'vault_wrapped');
      assert.deepEqual(issued.credential.data, {}, 'no secret data in the broker');
      assert.equal(issued.credential.metadata.wrap_ttl_seconds, '30');
      assert.equal(issued.credential.metadata.creation_path, 'database/creds/readonly');
      assert.equal(issued.credential.metadata.wrapped_kind, 'dynamic');
      const wrappingAccessor = refId(issued.backendRef, 'wrap');
      assert.equal(h.vault.tokenByAccessor(wrappingAccessor)?.wrapping, true);
      assert.equal(issued.expiresAt, req.now + 900_000);
      assert.ok(h.vault.requests.some((r) => r.path === 'database/creds/readonly' && r.wrapped));

      const data = await unwrap(issued.credential.token);
      assert.ok(data && typeof data.username === 'string' && typeof data.password === 'string');
      await assert.rejects(unwrap(issued.credential.token), (err: unknown) => {
        assert.ok(isBrokerError(err));
        assert.match(err.message, /wrapping token is not valid or does not exist/);
        return true;
      });
      assert.equal(h.vault.unwrapCount(issued.credential.token), 1);
      // Revoking after the unwrap: the wrapping token is gone, which counts as done.
      await h.backend.revoke(revokeTarget(issued));
    });

    it('a wrapped dynamic secret is expires_only: once unwrapped it outlives the task, and is reported so', async () => {
      const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly', wrap: true });
      assert.equal(h.backend.revocability?.(role), 'expires_only');
      // A task with 10 minutes left; Vault's database role has default_ttl 1h.
      const req = issueRequest(role, { ttlSeconds: 600, notAfter: Date.now() + 600_000 });
      const issued = await h.backend.issue(req);
      const brokerTokenEnd = h.auth.state.expiresAt;
      assert.ok(brokerTokenEnd !== undefined);
      assert.equal(issued.backendRef, `wrap:${refId(issued.backendRef, 'wrap')}@${brokerTokenEnd}`);
      assert.equal(issued.credential.metadata.secret_valid_until, new Date(brokerTokenEnd).toISOString());
      assert.ok(await unwrap(issued.credential.token));
      const [lease] = h.vault.leases();
      assert.ok(lease && lease.expireTime > req.notAfter, 'Vault gave the role TTL, past the task');

      await h.backend.revoke(revokeTarget(issued));
      assert.ok(h.vault.lease(lease.id), 'still alive at Vault: nothing the broker can call ends it');
      assert.equal(h.backend.validUntil?.(revokeTarget(issued)), brokerTokenEnd);
      // The bound holds: Vault revokes a lease with the token that read it, at that token's end.
      assert.equal(lease.ownerAccessor, h.vault.lookupToken(await h.auth.token())?.accessor);
    });

    it('revoking an unused wrap makes it impossible to unwrap', async () => {
      const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly', wrap: true });
      const issued = await h.backend.issue(issueRequest(role));
      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.tokenByAccessor(refId(issued.backendRef, 'wrap')), undefined);
      await assert.rejects(unwrap(issued.credential.token));
    });

    it('wraps a token, referencing the wrapped accessor so the broker can revoke a token it never saw', async () => {
      const role = vaultRole('ci', { kind: 'token', policies: ['ci-read'], wrap: true });
      const issued = await h.backend.issue(issueRequest(role));
      assert.equal(issued.credential.kind, 'vault_wrapped');
      assert.equal(issued.credential.metadata.wrapped_kind, 'token');
      const wrappedAccessor = refId(issued.backendRef, 'wrapped-accessor');

      const unwrapped = await unwrap(issued.credential.token);
      const auth = unwrapped?.auth as { client_token: string; accessor: string } | undefined;
      assert.equal(auth?.accessor, wrappedAccessor);
      assert.ok(auth && h.vault.lookupToken(auth.client_token), 'the agent holds a live token');
      await assert.rejects(unwrap(issued.credential.token), /wrapping token is not valid/);

      await h.backend.revoke(revokeTarget(issued));
      assert.equal(h.vault.lookupToken(auth.client_token), undefined, 'revoked through the wrapped accessor');
    });
  });

  describe('TTL bounding', () => {
    it('ends the broker lease at the granted TTL when Vault grants more; the Vault lease is revoked then', async () => {
      // database roles ignore `ttl`: Vault gives default_ttl (1h) for a 900 s grant.
      const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' });
      const req = issueRequest(role, { ttlSeconds: 900 });
      const issued = await h.backend.issue(req);
      assert.equal(issued.credential.metadata.lease_duration, '3600');
      assert.equal(issued.expiresAt, req.now + 900_000);
      assert.ok(h.vault.lease(refId(issued.backendRef, 'lease')), 'kept by id, for revocation at expiry');
    });

    it("records Vault's shorter lease_duration as the truth", async () => {
      h.vault.configureDatabaseRole('brief', { default_ttl: '10m', max_ttl: '10m' });
      const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/brief' });
      const req = issueRequest(role, { ttlSeconds: 900 });
      const issued = await h.backend.issue(req);
      assert.equal(issued.expiresAt, req.now + 600_000);
    });

    it('sends the granted TTL where the engine takes it, and Vault caps it at the role max', async () => {
      h.vault.configureAwsRole('brief', { default_ttl: '15m', max_ttl: '20m' });
      const role = vaultRole('sts', { kind: 'dynamic', path: 'aws/sts/brief', ttlParam: true });
      const req = issueRequest(role, { ttlSeconds: 1800 });
      const issued = await h.backend.issue(req);
      assert.equal(issued.credential.metadata.lease_duration, '1200', 'the AWS role max_ttl is 20m');
      assert.equal(issued.expiresAt, req.now + 1200_000);
    });

    it('never lets a credential outlive the task', async () => {
      const now = Date.now();
      const role = vaultRole('ci', { kind: 'token', policies: ['ci-read'] });
      const issued = await h.backend.issue(
        issueRequest(role, { now, ttlSeconds: 900, notAfter: now + 120_000 }),
      );
      assert.equal(issued.expiresAt, now + 120_000);
      assert.equal(h.vault.lookupToken(issued.credential.token)?.ttl, 120);
    });

    it('refuses when no whole second is left before the task ends, without calling Vault', async () => {
      const now = Date.now();
      const role = vaultRole('ci', { kind: 'token', policies: ['ci-read'] });
      h.vault.requests.length = 0;
      await assert.rejects(
        h.backend.issue(issueRequest(role, { now, notAfter: now + 500 })),
        (err: unknown) => {
          assert.ok(isBrokerError(err));
          assert.equal(err.code, 'FAILED_PRECONDITION');
          assert.equal(err.reason, 'ttl_exhausted');
          return true;
        },
      );
      assert.deepEqual(h.vault.requests, []);
    });
  });

  it('refuses to revoke a reference it does not know, so the failure is retried and surfaced', async () => {
    await assert.rejects(
      h.backend.revoke({ leaseId: 'l', backendRef: 'jti-123', expiresAt: 0 }),
      (err: unknown) => {
        assert.ok(isBrokerError(err));
        assert.equal(err.reason, 'vault_bad_reference');
        return true;
      },
    );
  });
});

describe('vault backend: a broker token that ends before the credential would', () => {
  let h: VaultHarness;
  beforeEach(async () => {
    h = await startVaultHarness({ tokenTtl: 600 });
  });
  afterEach(async () => {
    await h.close();
  });

  it('bounds a dynamic secret by the broker token it was issued under, and warns', async () => {
    const role = vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' });
    const req = issueRequest(role, { ttlSeconds: 900 });
    const issued = await h.backend.issue(req);
    assert.ok(
      // The broker token is minted at login, a moment after req.now: allow that moment (the bound
      // is the token's end, 600 s after login, well short of the 900 s asked for).
      issued.expiresAt <= req.now + 605_000 && issued.expiresAt > req.now + 590_000,
      String(issued.expiresAt - req.now),
    );
    assert.ok(h.logs.some((l) => l.level === 'warn' && /token_ttl/.test(l.msg)));
    // An orphan token does not depend on the broker token: no bound, no warning needed.
    h.logs.length = 0;
    const token = await h.backend.issue(
      issueRequest(vaultRole('ci', { kind: 'token', policies: ['ci-read'] }), { ttlSeconds: 900 }),
    );
    assert.equal(h.vault.lookupToken(token.credential.token)?.ttl, 900);
    assert.ok(!h.logs.some((l) => l.level === 'warn'));
  });
});

describe('vault backend: namespaces', () => {
  let h: VaultHarness;
  beforeEach(async () => {
    h = await startVaultHarness({ namespaces: ['ns1'], namespace: 'ns1/' });
  });
  afterEach(async () => {
    await h.close();
  });

  it('logs in, issues and revokes inside the configured namespace', async () => {
    const issued = await h.backend.issue(
      issueRequest(vaultRole('db', { kind: 'dynamic', path: 'database/creds/readonly' })),
    );
    const leaseId = refId(issued.backendRef, 'lease');
    assert.equal(h.vault.lease(leaseId)?.namespace, 'ns1/');
    assert.ok(
      h.vault.requests.every((r) => r.namespace === 'ns1/'),
      'every call carries X-Vault-Namespace',
    );
    await h.backend.revoke(revokeTarget(issued));
    assert.equal(h.vault.lease(leaseId), undefined);
  });
});
