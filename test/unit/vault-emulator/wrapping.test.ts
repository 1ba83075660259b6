import assert from 'node:assert/strict';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import {
  ENVELOPE_KEYS,
  expectVaultError,
  obj,
  rawRequest,
  TestClock,
  vaultClient,
  type VaultClient,
} from './helpers.js';

// A fresh object per call: node-vault writes X-Vault-Token into the headers object it is given,
// so a shared one would carry the first client's token into every later call.
const wrap60 = (): { headers: Record<string, string> } => ({ headers: { 'X-Vault-Wrap-TTL': '60s' } });

describe('vault-emulator: response wrapping', () => {
  let clock: TestClock;
  let emu: VaultEmulator;
  let root: VaultClient;

  beforeEach(async () => {
    clock = new TestClock();
    emu = await startVaultEmulator({ now: clock.now });
    emu.configureDatabaseRole('readonly', { default_ttl: '1h' });
    root = vaultClient(emu, emu.rootToken);
  });

  afterEach(() => emu.close());

  async function wrappedToken(): Promise<{
    wrap: Record<string, unknown>;
    response: Record<string, unknown>;
  }> {
    const response = obj(
      await root.write('auth/token/create', { policies: ['default'], ttl: '10m' }, wrap60()),
    );
    return { wrap: obj(response.wrap_info), response };
  }

  it('answers only wrap_info, with the accessor of the token it wrapped', async () => {
    const { wrap, response } = await wrappedToken();
    assert.deepEqual(Object.keys(response).sort(), ENVELOPE_KEYS);
    assert.deepEqual([response.data, response.auth, response.lease_id], [null, null, '']);
    assert.deepEqual(Object.keys(wrap).sort(), [
      'accessor',
      'creation_path',
      'creation_time',
      'token',
      'ttl',
      'wrapped_accessor',
    ]);
    assert.match(String(wrap.token), /^hvs\./);
    assert.equal(wrap.ttl, 60);
    assert.equal(wrap.creation_path, 'auth/token/create');
    assert.equal(wrap.creation_time, new Date(clock.ms).toISOString());
    const wrapped = emu.tokenByAccessor(String(wrap.wrapped_accessor));
    assert.ok(wrapped, 'the wrapped token exists before anyone unwraps it');
    assert.equal(wrapped.parentAccessor, emu.rootAccessor);
    assert.equal(emu.tokenByAccessor(String(wrap.accessor))?.wrapping, true);
  });

  it('unwraps once with the wrapping token; the second attempt fails', async () => {
    const { wrap } = await wrappedToken();
    const agent = vaultClient(emu, String(wrap.token));
    const unwrapped = obj(await agent.write('sys/wrapping/unwrap', {}));
    const inner = obj(unwrapped.auth);
    assert.equal(inner.accessor, wrap.wrapped_accessor);
    assert.equal(inner.lease_duration, 600);
    assert.ok(obj(await vaultClient(emu, String(inner.client_token)).read('auth/token/lookup-self')).data);
    assert.equal(emu.unwrapCount(String(wrap.token)), 1);

    await expectVaultError(
      agent.write('sys/wrapping/unwrap', {}),
      400,
      'wrapping token is not valid or does not exist',
    );
    assert.equal(emu.unwrapCount(String(wrap.token)), 1);
  });

  it('unwraps with the wrapping token in the body, authenticated by another token', async () => {
    const { wrap } = await wrappedToken();
    const other = vaultClient(emu, emu.createToken({ policies: ['default'] }).token);
    const unwrapped = obj(await other.write('sys/wrapping/unwrap', { token: wrap.token }));
    assert.equal(obj(unwrapped.auth).accessor, wrap.wrapped_accessor);
    await expectVaultError(
      other.write('sys/wrapping/unwrap', { token: wrap.token }),
      400,
      'wrapping token is not valid or does not exist',
    );
  });

  it('wraps a dynamic secret; the lease stays with the requester', async () => {
    const res = obj(await root.read('database/creds/readonly', wrap60()));
    const wrap = obj(res.wrap_info);
    assert.equal(wrap.wrapped_accessor, undefined);
    assert.equal(wrap.creation_path, 'database/creds/readonly');
    const [lease] = emu.leases();
    assert.equal(lease?.ownerAccessor, emu.rootAccessor);
    const unwrapped = obj(await vaultClient(emu, String(wrap.token)).write('sys/wrapping/unwrap', {}));
    assert.equal(unwrapped.lease_id, lease?.id);
    assert.equal(obj(unwrapped.data).username, emu.databaseUsers()[0]?.username);
  });

  it('lets a wrapping token expire unused', async () => {
    const { wrap } = await wrappedToken();
    clock.advance(60);
    assert.equal(emu.lookupToken(String(wrap.token)), undefined);
    await expectVaultError(
      vaultClient(emu, String(wrap.token)).write('sys/wrapping/unwrap', {}),
      400,
      'wrapping token is not valid or does not exist',
    );
    assert.equal(emu.unwrapCount(String(wrap.token)), 0);
  });

  it('revoking the wrapping accessor prevents the unwrap; revoking the wrapped accessor kills the token inside', async () => {
    const first = (await wrappedToken()).wrap;
    await root.write('auth/token/revoke-accessor', { accessor: first.accessor });
    await expectVaultError(
      vaultClient(emu, String(first.token)).write('sys/wrapping/unwrap', {}),
      400,
      'wrapping token is not valid or does not exist',
    );

    const second = (await wrappedToken()).wrap;
    await root.write('auth/token/revoke-accessor', { accessor: second.wrapped_accessor });
    const inner = obj(
      obj(await vaultClient(emu, String(second.token)).write('sys/wrapping/unwrap', {})).auth,
    );
    await expectVaultError(
      vaultClient(emu, String(inner.client_token)).read('auth/token/lookup-self'),
      403,
      'invalid token',
    );
  });

  it('gives a wrapping token no other use', async () => {
    const { wrap } = await wrappedToken();
    await expectVaultError(
      vaultClient(emu, String(wrap.token)).read('auth/token/lookup-self'),
      403,
      'permission denied',
    );
    const looked = obj(obj(await root.write('sys/wrapping/lookup', { token: wrap.token })).data);
    assert.deepEqual(looked, {
      creation_path: 'auth/token/create',
      creation_time: new Date(clock.ms).toISOString(),
      creation_ttl: 60,
    });
    assert.equal(emu.unwrapCount(String(wrap.token)), 0, 'lookups do not use the token up');
  });

  it('rejects a malformed wrap TTL and does not wrap answers without a body', async () => {
    const bad = await rawRequest(emu, 'POST', 'auth/token/create', {
      token: emu.rootToken,
      body: {},
      headers: { 'X-Vault-Wrap-TTL': 'soon' },
    });
    assert.equal(bad.status, 400);
    const empty = await rawRequest(emu, 'PUT', 'sys/leases/revoke', {
      token: emu.rootToken,
      body: { lease_id: 'x/y' },
      headers: { 'X-Vault-Wrap-TTL': '60' },
    });
    assert.equal(empty.status, 204);
  });
});
