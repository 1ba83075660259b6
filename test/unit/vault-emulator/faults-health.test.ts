import assert from 'node:assert/strict';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import { expectVaultError, obj, rawRequest, rejection, vaultClient, type VaultClient } from './helpers.js';

describe('vault-emulator: health and faults', () => {
  let emu: VaultEmulator;
  let root: VaultClient;

  beforeEach(async () => {
    emu = await startVaultEmulator();
    emu.configureDatabaseRole('readonly', { default_ttl: '1h' });
    root = vaultClient(emu, emu.rootToken);
  });

  afterEach(() => emu.close());

  it('reports health with Vault status codes', async () => {
    const active = await rawRequest(emu, 'GET', 'sys/health');
    assert.equal(active.status, 200);
    const body = obj(active.body);
    assert.deepEqual(
      [body.initialized, body.sealed, body.standby, body.performance_standby, typeof body.server_time_utc],
      [true, false, false, false, 'number'],
    );
    assert.ok(body.version && body.cluster_name && body.cluster_id);

    const cases: Array<[VaultEmulator['health'], string, number]> = [
      ['standby', '', 429],
      ['standby', '?standbyok=true', 200],
      ['performance_standby', '', 473],
      ['performance_standby', '?perfstandbyok=true', 200],
      ['dr_secondary', '', 472],
      ['uninitialized', '', 501],
      ['active', '?activecode=204', 204],
    ];
    for (const [mode, query, status] of cases) {
      emu.health = mode;
      assert.equal((await rawRequest(emu, 'GET', `sys/health${query}`)).status, status, `${mode}${query}`);
    }
    emu.health = 'active';
    emu.faults.sealed = true;
    const sealed = await rawRequest(emu, 'GET', 'sys/health');
    assert.equal(sealed.status, 503);
    assert.equal(obj(sealed.body).sealed, true);
    assert.equal(obj(sealed.body).cluster_name, undefined);
    // node-vault resolves sys/health whatever the status, so the body must be checked.
    assert.equal(obj(await root.read('sys/health')).sealed, true);
    const head = await fetch(`${emu.url}/v1/sys/health`, { method: 'HEAD' });
    assert.equal(head.status, 503);
  });

  it('answers 503 Vault is sealed on every other path while sealed', async () => {
    emu.faults = { sealed: true };
    const err = await expectVaultError(root.read('database/creds/readonly'), 503, 'Vault is sealed');
    assert.equal(err.message, 'Vault is sealed');
    await expectVaultError(vaultClient(emu, undefined).write('auth/jwt/login', {}), 503, 'Vault is sealed');
    assert.deepEqual(emu.leases(), []);
    emu.faults = {};
    assert.ok(obj(await root.read('database/creds/readonly')).lease_id);
  });

  it('answers 429 rate limit quota exceeded when the quota is hit', async () => {
    emu.faults.rateLimited = true;
    const res = await rawRequest(emu, 'GET', 'database/creds/readonly', { token: emu.rootToken });
    assert.equal(res.status, 429);
    assert.deepEqual(res.body, {
      errors: ['request path "database/creds/readonly": rate limit quota exceeded'],
    });
    assert.equal(res.headers.get('retry-after'), '1');
    await expectVaultError(root.read('auth/token/lookup-self'), 429, 'rate limit quota exceeded');
    assert.equal((await rawRequest(emu, 'GET', 'sys/health')).status, 200);
  });

  it('adds latency, which a client timeout turns into a network error', async () => {
    emu.faults.latencyMs = 150;
    const started = Date.now();
    assert.ok(obj(await root.read('auth/token/lookup-self')).data);
    assert.ok(Date.now() - started >= 140);
    const err = await rejection(
      vaultClient(emu, emu.rootToken, { timeout: 40 }).read('database/creds/readonly'),
    );
    assert.equal(err.response, undefined, 'a timeout is a raw axios error without response');
    assert.equal(err.code, 'ECONNABORTED');
  });

  it('hangs without answering until the client gives up', async () => {
    emu.faults.hang = true;
    const err = await rejection(
      vaultClient(emu, emu.rootToken, { timeout: 60 }).read('database/creds/readonly'),
    );
    assert.equal(err.response, undefined);
    assert.equal(emu.requests.at(-1)?.status, 0, 'the request arrived and was never answered');
    assert.deepEqual(emu.leases(), []);
    emu.faults.hang = false;
    assert.ok(obj(await root.read('auth/token/lookup-self')).data);
  });

  it('fails the next N revocations with 500 and changes nothing', async () => {
    const id = String(obj(await root.read('database/creds/readonly')).lease_id);
    const token = emu.createToken({ policies: ['default'] });
    emu.faults.failRevokes = 2;
    await expectVaultError(root.write('sys/leases/revoke', { lease_id: id }), 500, 'internal error');
    await expectVaultError(
      root.write('auth/token/revoke-accessor', { accessor: token.accessor }),
      500,
      'internal error',
    );
    assert.ok(emu.lease(id));
    assert.ok(emu.tokenByAccessor(token.accessor));
    assert.equal(emu.faults.failRevokes, 0);
    await root.write('sys/leases/revoke', { lease_id: id });
    await root.write('auth/token/revoke-accessor', { accessor: token.accessor });
    assert.equal(emu.lease(id), undefined);
    assert.equal(emu.tokenByAccessor(token.accessor), undefined);
  });

  it('revokes a token from the outside so its next call is denied', async () => {
    const broker = emu.createToken({ policies: ['root'] });
    const client = vaultClient(emu, broker.token);
    const id = String(obj(await client.read('database/creds/readonly')).lease_id);
    assert.ok(emu.revokeToken(broker.token));
    assert.equal(emu.revokeToken(broker.token), false);
    await expectVaultError(client.read('database/creds/readonly'), 403, 'permission denied');
    assert.equal(emu.lease(id), undefined);
    assert.equal(emu.revocations.find((r) => r.kind === 'token')?.reason, 'emulator');
  });
});
