import assert from 'node:assert/strict';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import {
  expectVaultError,
  obj,
  rawRequest,
  rejection,
  TestClock,
  vaultClient,
  type VaultClient,
} from './helpers.js';

describe('vault-emulator: leases and dynamic secrets', () => {
  let clock: TestClock;
  let emu: VaultEmulator;
  let root: VaultClient;

  beforeEach(async () => {
    clock = new TestClock();
    emu = await startVaultEmulator({ now: clock.now });
    emu.configureDatabaseRole('readonly', { default_ttl: '1h', max_ttl: '2h' });
    emu.configureAwsRole('deploy', { default_ttl: '30m', max_ttl: '1h' });
    emu.configureAwsRole('assume', { role_arn: 'arn:aws:iam::123456789012:role/deployer' });
    emu.setPolicy('broker', {
      'database/creds/*': ['read'],
      'aws/*': ['read', 'update'],
      'sys/leases/revoke': ['update'],
      'sys/leases/revoke-prefix/*': ['update'],
    });
    root = vaultClient(emu, emu.rootToken);
  });

  afterEach(() => emu.close());

  it('issues database credentials with a lease of the role default TTL', async () => {
    const res = obj(await root.read('database/creds/readonly'));
    assert.match(String(res.lease_id), /^database\/creds\/readonly\/[A-Za-z0-9]{24}$/);
    assert.equal(res.lease_duration, 3600);
    assert.equal(res.renewable, true);
    const data = obj(res.data);
    assert.deepEqual(Object.keys(data).sort(), ['password', 'username']);
    assert.match(String(data.username), /^v-root-readonly-[A-Za-z0-9]{20}-\d+$/);
    assert.match(String(data.password), /^[A-Za-z0-9-]{20}$/);
    assert.deepEqual(
      emu.databaseUsers().map((u) => u.username),
      [data.username],
    );
    const lease = emu.lease(String(res.lease_id));
    assert.equal(lease?.ownerAccessor, emu.rootAccessor);
    assert.equal(lease?.kind, 'database');
    assert.ok(
      !JSON.stringify(emu.leases()).includes(String(data.password)),
      'inspection never shows secrets',
    );
    await expectVaultError(root.read('database/creds/nope'), 400, 'unknown role: nope');
  });

  it('looks up and renews a lease up to the role max TTL', async () => {
    const id = String(obj(await root.read('database/creds/readonly')).lease_id);
    const looked = obj(obj(await root.write('sys/leases/lookup', { lease_id: id })).data);
    assert.deepEqual(looked, {
      id,
      issue_time: new Date(clock.ms).toISOString(),
      expire_time: new Date(clock.ms + 3_600_000).toISOString(),
      last_renewal: null,
      renewable: true,
      ttl: 3600,
    });
    clock.advance(1800);
    const renewed = obj(await root.write('sys/leases/renew', { lease_id: id, increment: '20m' }));
    assert.deepEqual(
      [renewed.lease_id, renewed.renewable, renewed.lease_duration, renewed.data],
      [id, true, 1200, null],
    );
    clock.advance(1100);
    const capped = obj(await root.write('sys/leases/renew', { lease_id: id, increment: 5000 }));
    assert.equal(capped.lease_duration, 4300, 'capped at issue + max_ttl (2h)');
    assert.match(String((capped.warnings as string[])[0]), /exceeded the effective max_ttl/);
    await expectVaultError(root.write('sys/leases/renew', { lease_id: 'nope/1' }), 400, 'lease not found');
    await expectVaultError(root.write('sys/leases/lookup', { lease_id: 'nope/1' }), 400, 'invalid lease');
  });

  it('revokes a lease: 204, the database user is dropped, and revoking again still succeeds', async () => {
    const broker = vaultClient(emu, emu.createToken({ policies: ['broker'] }).token);
    const id = String(obj(await broker.read('database/creds/readonly')).lease_id);
    const res = await rawRequest(emu, 'PUT', 'sys/leases/revoke', {
      token: broker.token,
      body: { lease_id: id },
    });
    assert.equal(res.status, 204);
    assert.equal(emu.lease(id), undefined);
    assert.deepEqual(emu.databaseUsers(), []);
    await expectVaultError(root.write('sys/leases/lookup', { lease_id: id }), 400, 'invalid lease');
    await broker.write('sys/leases/revoke', { lease_id: id });
    assert.deepEqual(
      emu.revocations.map((r) => [r.kind, r.id, r.reason]),
      [['lease', id, 'api']],
    );
  });

  it('answers 202 for sync:false, which node-vault treats as a failure', async () => {
    const id = String(obj(await root.read('database/creds/readonly')).lease_id);
    const err = await rejection(root.write('sys/leases/revoke', { lease_id: id, sync: false }));
    assert.equal(err.message, 'Status 202');
    assert.equal(emu.lease(id), undefined);
  });

  it('accepts the lease id in the path and rejects a missing one', async () => {
    const id = String(obj(await root.read('database/creds/readonly')).lease_id);
    assert.equal(
      (await rawRequest(emu, 'PUT', `sys/leases/revoke/${id}`, { token: emu.rootToken })).status,
      204,
    );
    assert.equal(emu.lease(id), undefined);
    await expectVaultError(root.write('sys/leases/revoke', {}), 400, 'lease_id must be specified');
  });

  it('revoke-prefix needs sudo', async () => {
    const broker = vaultClient(emu, emu.createToken({ policies: ['broker'] }).token);
    await root.read('database/creds/readonly');
    await root.read('database/creds/readonly');
    const awsLease = String(obj(await root.read('aws/creds/deploy')).lease_id);
    await expectVaultError(
      broker.write('sys/leases/revoke-prefix/database/creds/', {}),
      403,
      'permission denied',
    );
    assert.equal(
      (await rawRequest(emu, 'PUT', 'sys/leases/revoke-prefix/database/creds/', { token: emu.rootToken }))
        .status,
      204,
    );
    assert.deepEqual(
      emu.leases().map((l) => l.id),
      [awsLease],
    );
  });

  it('revokes expired leases itself', async () => {
    const id = String(obj(await root.read('database/creds/readonly')).lease_id);
    clock.advance(3599);
    assert.equal(emu.lease(id)?.ttl, 1);
    clock.advance(1);
    assert.equal(emu.lease(id), undefined);
    assert.deepEqual(emu.databaseUsers(), []);
    assert.equal(emu.revocations[0]?.reason, 'expired');
  });

  it('issues renewable AWS IAM user credentials that revocation deletes', async () => {
    const res = obj(await root.read('aws/creds/deploy'));
    assert.match(String(res.lease_id), /^aws\/creds\/deploy\//);
    assert.equal(res.lease_duration, 1800);
    assert.equal(res.renewable, true);
    const data = obj(res.data);
    assert.deepEqual(Object.keys(data).sort(), ['access_key', 'arn', 'secret_key', 'session_token']);
    assert.match(String(data.access_key), /^AKIA[A-Z0-9]{16}$/);
    assert.equal(data.session_token, null);
    assert.deepEqual(
      emu.awsKeys().map((k) => k.accessKey),
      [data.access_key],
    );
    await root.write('sys/leases/revoke', { lease_id: res.lease_id });
    assert.deepEqual(emu.awsKeys(), []);
  });

  it('issues STS credentials with the asked TTL clamped to the max; they cannot be renewed or revoked', async () => {
    const broker = vaultClient(emu, emu.createToken({ policies: ['broker'] }).token);
    const res = obj(await broker.write('aws/sts/deploy', { ttl: '2h' }));
    assert.equal(res.lease_duration, 3600);
    assert.equal(res.renewable, false);
    assert.match(String((res.warnings as string[])[0]), /exceeded the effective max_ttl of "1h0m0s"/);
    const data = obj(res.data);
    assert.match(String(data.access_key), /^ASIA/);
    assert.ok(String(data.session_token).length > 100);
    assert.match(String(data.arn), /^arn:aws:sts::123456789012:federated-user\//);
    await expectVaultError(
      root.write('sys/leases/renew', { lease_id: res.lease_id }),
      400,
      'lease is not renewable',
    );

    await broker.write('sys/leases/revoke', { lease_id: res.lease_id });
    assert.equal(emu.lease(String(res.lease_id)), undefined, 'the lease record goes away');
    assert.equal(emu.awsKeys().length, 1, 'but the STS session keeps working until it ends');
    clock.advance(3600);
    assert.deepEqual(emu.awsKeys(), []);

    const shorter = obj(await broker.write('aws/sts/deploy', { ttl: 1200 }));
    assert.equal(shorter.lease_duration, 1200);
    assert.equal(shorter.warnings, null);
    const assumed = obj(await root.write('aws/sts/assume', { role_session_name: 'agent-1' }));
    assert.equal(assumed.lease_duration, 3600, 'STS default is 1h');
    assert.equal(obj(assumed.data).arn, 'arn:aws:sts::123456789012:assumed-role/deployer/agent-1');
  });

  it('rejects STS TTLs under 15 minutes, as AWS does', async () => {
    await expectVaultError(
      root.write('aws/sts/deploy', { ttl: '5m' }),
      400,
      "Value '300' at 'durationSeconds' failed to satisfy constraint",
    );
    assert.deepEqual(emu.leases(), []);
  });

  it('serves KV v2 secrets without a lease', async () => {
    emu.putKv('app/config', { api_key: 'k-1' });
    const res = obj(await root.read('secret/data/app/config'));
    assert.equal(res.lease_id, '');
    assert.equal(res.lease_duration, 0);
    const data = obj(res.data);
    assert.deepEqual(data.data, { api_key: 'k-1' });
    assert.equal(obj(data.metadata).version, 1);
    assert.equal(obj(data.metadata).destroyed, false);
    const written = obj(await root.write('secret/data/app/config', { data: { api_key: 'k-2' } }));
    assert.equal(obj(written.data).version, 2);
    assert.deepEqual(obj(obj(await root.read('secret/data/app/config')).data).data, { api_key: 'k-2' });
    assert.deepEqual(obj(obj(await root.read('secret/data/app/config?version=1')).data).data, {
      api_key: 'k-1',
    });
    const missing = await rawRequest(emu, 'GET', 'secret/data/app/none', { token: emu.rootToken });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, { errors: [] });
    assert.deepEqual(emu.leases(), []);
  });
});
