import assert from 'node:assert/strict';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import { expectVaultError, obj, rawRequest, TestClock, vaultClient, type VaultClient } from './helpers.js';

describe('vault-emulator: tokens', () => {
  let clock: TestClock;
  let emu: VaultEmulator;
  let root: VaultClient;

  beforeEach(async () => {
    clock = new TestClock();
    emu = await startVaultEmulator({ now: clock.now });
    emu.configureDatabaseRole('readonly', { default_ttl: '1h', max_ttl: '4h' });
    emu.setPolicy('reader', { 'database/creds/readonly': ['read'] });
    emu.setPolicy('broker', {
      'database/creds/*': ['read'],
      'auth/token/create': ['update'],
      'auth/token/create-orphan': ['update'],
      'auth/token/create/*': ['update'],
      'auth/token/lookup-accessor': ['update'],
      'auth/token/revoke-accessor': ['update'],
      'auth/token/revoke-orphan': ['update'],
      'sys/leases/revoke': ['update'],
    });
    root = vaultClient(emu, emu.rootToken);
  });

  afterEach(() => emu.close());

  const auth = (res: unknown): Record<string, unknown> => obj(obj(res).auth);

  it('creates a token with the fields asked for and looks it up by accessor', async () => {
    const res = obj(
      await root.write('auth/token/create', {
        policies: ['reader'],
        meta: { agent: 'spiffe://example.org/agent', task: 't-1' },
        ttl: '15m',
        explicit_max_ttl: '1h',
        display_name: 'agent x',
        num_uses: 5,
        renewable: false,
      }),
    );
    assert.equal(res.lease_id, '');
    assert.equal(res.data, null);
    const a = auth(res);
    assert.match(String(a.client_token), /^hvs\.[A-Za-z0-9]{24}$/);
    assert.match(String(a.accessor), /^[A-Za-z0-9]{24}$/);
    assert.deepEqual(
      { ...a, client_token: '', accessor: '' },
      {
        client_token: '',
        accessor: '',
        policies: ['default', 'reader'],
        token_policies: ['default', 'reader'],
        metadata: { agent: 'spiffe://example.org/agent', task: 't-1' },
        lease_duration: 900,
        renewable: false,
        entity_id: '',
        token_type: 'service',
        orphan: false,
        num_uses: 5,
      },
    );

    const looked = obj(obj(await root.write('auth/token/lookup-accessor', { accessor: a.accessor })).data);
    assert.equal(looked.id, '', 'accessor lookups never reveal the token');
    assert.equal(looked.accessor, a.accessor);
    assert.equal(looked.display_name, 'token-agent-x');
    assert.equal(looked.path, 'auth/token/create');
    assert.equal(looked.ttl, 900);
    assert.equal(looked.creation_ttl, 900);
    assert.equal(looked.explicit_max_ttl, 3600);
    assert.equal(looked.expire_time, new Date(clock.ms + 900_000).toISOString());
    assert.equal(looked.orphan, false);
    assert.deepEqual(looked.meta, { agent: 'spiffe://example.org/agent', task: 't-1' });
    assert.equal(emu.tokenByAccessor(String(a.accessor))?.parentAccessor, emu.rootAccessor);
  });

  it('parses TTLs as seconds or durations and caps them at the system max with a warning', async () => {
    for (const [ttl, seconds] of [
      [3600, 3600],
      ['3600', 3600],
      ['90s', 90],
      ['1h30m', 5400],
    ] as const) {
      assert.equal(auth(await root.write('auth/token/create', { ttl })).lease_duration, seconds);
    }
    const capped = obj(await root.write('auth/token/create', { policies: ['reader'], ttl: '800h' }));
    assert.equal(auth(capped).lease_duration, 768 * 3600);
    assert.deepEqual(capped.warnings, [
      'TTL of "800h0m0s" exceeded the effective max_ttl of "768h0m0s"; TTL value is capped accordingly',
    ]);
  });

  it('revoking a token by accessor revokes its children and every lease they created', async () => {
    // Without sudo a parent can only hand out policies it holds itself.
    const broker = emu.createToken({ policies: ['broker', 'reader'] });
    const brokerClient = vaultClient(emu, broker.token);
    const child = auth(await brokerClient.write('auth/token/create', { policies: ['broker', 'reader'] }));
    const childClient = vaultClient(emu, String(child.client_token));
    const grandchild = auth(await childClient.write('auth/token/create', { policies: ['reader'] }));
    const childCreds = obj(await childClient.read('database/creds/readonly'));
    const grandCreds = obj(
      await vaultClient(emu, String(grandchild.client_token)).read('database/creds/readonly'),
    );
    const brokerCreds = obj(await brokerClient.read('database/creds/readonly'));
    assert.equal(emu.leases().length, 3);
    assert.equal(emu.databaseUsers().length, 3);

    const res = await rawRequest(emu, 'POST', 'auth/token/revoke-accessor', {
      token: broker.token,
      body: { accessor: child.accessor },
    });
    assert.equal(res.status, 204);
    assert.equal(emu.tokenByAccessor(String(child.accessor)), undefined);
    assert.equal(emu.tokenByAccessor(String(grandchild.accessor)), undefined);
    assert.equal(emu.lease(String(childCreds.lease_id)), undefined);
    assert.equal(emu.lease(String(grandCreds.lease_id)), undefined);
    assert.ok(emu.lease(String(brokerCreds.lease_id)), "the parent's own lease stays");
    assert.deepEqual(
      emu.databaseUsers().map((u) => u.username),
      [obj(brokerCreds.data).username],
    );
    assert.ok(emu.lookupToken(broker.token));
    await expectVaultError(childClient.read('auth/token/lookup-self'), 403, 'invalid token');
    const reasons = emu.revocations.map((r) => `${r.kind}:${r.reason}`).sort();
    assert.deepEqual(reasons, [
      'lease:token-revoked',
      'lease:token-revoked',
      'token:api',
      'token:parent-revoked',
    ]);
  });

  it('keeps orphans alive when their creator is revoked', async () => {
    const broker = emu.createToken({ policies: ['broker', 'reader'] });
    const brokerClient = vaultClient(emu, broker.token);
    const orphan = auth(await brokerClient.write('auth/token/create-orphan', { policies: ['reader'] }));
    assert.equal(orphan.orphan, true);
    const child = auth(await brokerClient.write('auth/token/create', { policies: ['reader'] }));
    assert.ok(emu.revokeToken(broker.token));
    assert.ok(emu.tokenByAccessor(String(orphan.accessor)));
    assert.equal(emu.tokenByAccessor(String(child.accessor)), undefined);
  });

  it('answers 400 invalid accessor for an unknown or revoked accessor', async () => {
    await expectVaultError(
      root.write('auth/token/revoke-accessor', { accessor: 'nope' }),
      400,
      'invalid accessor',
    );
    const t = emu.createToken({ policies: ['reader'] });
    await root.write('auth/token/revoke-accessor', { accessor: t.accessor });
    await expectVaultError(
      root.write('auth/token/revoke-accessor', { accessor: t.accessor }),
      400,
      'invalid accessor',
    );
    await expectVaultError(
      root.write('auth/token/lookup-accessor', { accessor: t.accessor }),
      400,
      'invalid accessor',
    );
  });

  it('expires tokens at their TTL, taking their leases with them', async () => {
    const t = auth(await root.write('auth/token/create', { policies: ['reader'], ttl: 60 }));
    const client = vaultClient(emu, String(t.client_token));
    const creds = obj(await client.read('database/creds/readonly'));
    clock.advance(59);
    assert.equal(obj(obj(await client.read('auth/token/lookup-self')).data).ttl, 1);
    clock.advance(1);
    await expectVaultError(client.read('auth/token/lookup-self'), 403, 'permission denied');
    assert.equal(emu.lease(String(creds.lease_id)), undefined);
    assert.deepEqual(emu.databaseUsers(), []);
    assert.ok(
      emu.revocations.some((r) => r.kind === 'token' && r.id === t.accessor && r.reason === 'expired'),
    );
  });

  it('renews up to the explicit max TTL and no further', async () => {
    const t = auth(await root.write('auth/token/create', { ttl: '10m', explicit_max_ttl: '15m' }));
    const client = vaultClient(emu, String(t.client_token));
    clock.advance(300);
    const renewed = obj(await client.write('auth/token/renew-self', { increment: '1h' }));
    assert.equal(auth(renewed).lease_duration, 600);
    assert.match(String((renewed.warnings as string[])[0]), /capped/);
    assert.ok(emu.lookupToken(String(t.client_token)));
    clock.advance(600);
    assert.equal(emu.lookupToken(String(t.client_token)), undefined);
    const fixed = auth(await root.write('auth/token/create', { renewable: false }));
    await expectVaultError(
      vaultClient(emu, String(fixed.client_token)).write('auth/token/renew-self', {}),
      400,
      'lease is not renewable',
    );
  });

  it('counts uses and revokes the token (and what it just got) after the last one', async () => {
    const t = auth(await root.write('auth/token/create', { policies: ['reader'], num_uses: 2 }));
    const client = vaultClient(emu, String(t.client_token));
    assert.equal(obj(obj(await client.read('auth/token/lookup-self')).data).num_uses, 1);
    // The last use is served, then the token goes, and with it the lease that use created.
    const creds = obj(await client.read('database/creds/readonly'));
    assert.ok(obj(creds.data).password);
    assert.equal(emu.lease(String(creds.lease_id)), undefined);
    assert.deepEqual(emu.databaseUsers(), []);
    await expectVaultError(client.read('auth/token/lookup-self'), 403, 'invalid token');
    assert.ok(emu.revocations.some((r) => r.id === t.accessor && r.reason === 'uses-exhausted'));
    await expectVaultError(
      root.write('auth/token/create', { num_uses: -1 }),
      400,
      'number of uses cannot be negative',
    );
  });

  it('enforces policies: path patterns, globs, sudo and deny', async () => {
    emu.configureDatabaseRole('admin', {});
    emu.setPolicy('mixed', {
      'database/creds/+': ['read'],
      'database/creds/admin': ['deny'],
      'auth/token/*': ['update'],
    });
    const reader = vaultClient(emu, emu.createToken({ policies: ['reader'] }).token);
    assert.ok(obj(await reader.read('database/creds/readonly')).lease_id);
    await expectVaultError(reader.read('database/creds/admin'), 403, 'permission denied');
    await expectVaultError(reader.write('sys/leases/revoke', { lease_id: 'x' }), 403, 'permission denied');
    // The default policy lets every token look up leases and itself.
    assert.equal(
      (await rawRequest(emu, 'PUT', 'sys/leases/lookup', { token: reader.token, body: { lease_id: 'x' } }))
        .status,
      400,
    );
    const noDefault = vaultClient(
      emu,
      emu.createToken({ policies: ['reader'], noDefaultPolicy: true }).token,
    );
    await expectVaultError(noDefault.read('auth/token/lookup-self'), 403, 'permission denied');

    const mixed = vaultClient(emu, emu.createToken({ policies: ['mixed'] }).token);
    assert.ok(obj(await mixed.read('database/creds/readonly')).lease_id);
    await expectVaultError(mixed.read('database/creds/admin'), 403, 'permission denied');
    // revoke-orphan is root-protected: `update` alone is not enough.
    await expectVaultError(mixed.write('auth/token/revoke-orphan', { token: 'x' }), 403, 'permission denied');
  });

  it("limits children to the parent's policies and orphans/periodic tokens to sudo", async () => {
    const broker = vaultClient(emu, emu.createToken({ policies: ['broker'] }).token);
    await expectVaultError(
      broker.write('auth/token/create', { policies: ['admin'] }),
      400,
      'child policies must be subset of parent',
    );
    await expectVaultError(
      broker.write('auth/token/create', { policies: ['root'] }),
      400,
      'child policies must be subset of parent',
    );
    await expectVaultError(
      broker.write('auth/token/create', { no_parent: true }),
      400,
      'root or sudo privileges required to create orphan token',
    );
    await expectVaultError(
      broker.write('auth/token/create', { period: '1h' }),
      400,
      'root or sudo privileges required to create periodic token',
    );
    const inherited = auth(await broker.write('auth/token/create', {}));
    assert.deepEqual(inherited.policies, ['broker', 'default']);
    const orphan = auth(await root.write('auth/token/create', { no_parent: true, policies: ['admin'] }));
    assert.equal(orphan.orphan, true);
    // create-orphan needs no sudo, but the subset rule still holds unless the caller has sudo there.
    await expectVaultError(
      broker.write('auth/token/create-orphan', { policies: ['admin'] }),
      400,
      'child policies must be subset of parent',
    );
    emu.setPolicy('minter', { 'auth/token/create-orphan': ['update', 'sudo'] });
    const minter = vaultClient(emu, emu.createToken({ policies: ['minter'] }).token);
    assert.deepEqual(auth(await minter.write('auth/token/create-orphan', { policies: ['admin'] })).policies, [
      'admin',
      'default',
    ]);
  });

  it('creates tokens from roles', async () => {
    emu.configureTokenRole('agent', {
      allowed_policies: ['reader'],
      orphan: true,
      token_explicit_max_ttl: '30m',
    });
    const broker = vaultClient(emu, emu.createToken({ policies: ['broker'] }).token);
    const t = auth(await broker.write('auth/token/create/agent', { policies: ['reader'], ttl: '1h' }));
    assert.equal(t.orphan, true);
    assert.equal(t.lease_duration, 1800);
    assert.deepEqual(t.policies, ['default', 'reader']);
    assert.equal(emu.tokenByAccessor(String(t.accessor))?.path, 'auth/token/create/agent');
    await expectVaultError(
      broker.write('auth/token/create/agent', { policies: ['admin'] }),
      400,
      "must be subset of the role's allowed policies",
    );
    await expectVaultError(broker.write('auth/token/create/nope', {}), 400, 'unknown role nope');
  });

  it('mints batch tokens without accessors that die with their parent', async () => {
    const parent = auth(await root.write('auth/token/create', { policies: ['reader', 'broker'] }));
    const parentClient = vaultClient(emu, String(parent.client_token));
    const batch = auth(
      await parentClient.write('auth/token/create', {
        type: 'batch',
        policies: ['broker', 'reader'],
        ttl: '10m',
      }),
    );
    assert.match(String(batch.client_token), /^hvb\./);
    assert.equal(batch.accessor, '');
    assert.equal(batch.renewable, false);
    assert.equal(batch.token_type, 'batch');
    const batchClient = vaultClient(emu, String(batch.client_token));
    const creds = obj(await batchClient.read('database/creds/readonly'));
    assert.equal(creds.lease_duration, 600, "a batch token's lease cannot outlive it");
    await expectVaultError(
      batchClient.write('auth/token/create', {}),
      400,
      'batch tokens cannot create more tokens',
    );
    await root.write('auth/token/revoke-accessor', { accessor: parent.accessor });
    await expectVaultError(batchClient.read('auth/token/lookup-self'), 403, 'invalid token');
    assert.equal(emu.lease(String(creds.lease_id)), undefined, 'batch leases belong to the parent');
  });

  it('revoke-orphan keeps the children and makes them orphans', async () => {
    const parent = auth(await root.write('auth/token/create', { policies: ['broker'] }));
    const child = auth(await vaultClient(emu, String(parent.client_token)).write('auth/token/create', {}));
    const res = await rawRequest(emu, 'POST', 'auth/token/revoke-orphan', {
      token: emu.rootToken,
      body: { token: parent.client_token },
    });
    assert.equal(res.status, 204);
    assert.equal(emu.tokenByAccessor(String(parent.accessor)), undefined);
    assert.equal(emu.tokenByAccessor(String(child.accessor))?.orphan, true);
  });

  it('revokes by token with auth/token/revoke and revoke-self, idempotently', async () => {
    const a = auth(await root.write('auth/token/create', {}));
    assert.equal(
      (
        await rawRequest(emu, 'POST', 'auth/token/revoke', {
          token: emu.rootToken,
          body: { token: a.client_token },
        })
      ).status,
      204,
    );
    assert.equal(emu.lookupToken(String(a.client_token)), undefined);
    assert.equal(
      (
        await rawRequest(emu, 'POST', 'auth/token/revoke', {
          token: emu.rootToken,
          body: { token: a.client_token },
        })
      ).status,
      204,
    );
    const b = auth(await root.write('auth/token/create', {}));
    assert.equal(
      (await rawRequest(emu, 'POST', 'auth/token/revoke-self', { token: String(b.client_token) })).status,
      204,
    );
    assert.equal(emu.lookupToken(String(b.client_token)), undefined);
    const lookup = await rawRequest(emu, 'POST', 'auth/token/lookup', {
      token: emu.rootToken,
      body: { token: b.client_token },
    });
    assert.equal(lookup.status, 403);
    assert.deepEqual(lookup.body, { errors: ['bad token'] });
  });
});
