/**
 * The Vault backend through the whole broker: the broker logs in to the Vault emulator with its own
 * JWT-SVID from the Workload API, issues dynamic secrets and tokens inside a task, and ending the
 * task revokes them at Vault; a failed revoke goes through the durable queue.
 */
import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { eventually, grpcError, readAudit, type Harness } from '../support/broker-harness.js';
import type { VaultEmulator } from '../support/vault-emulator/index.js';
import { BROKER_VAULT_POLICY, startVaultBroker, type VaultBroker } from '../support/vault-broker.js';

describe('integration: Vault backend through the broker', () => {
  let vault: VaultEmulator;
  let h: Harness;
  let stack: VaultBroker | undefined;

  before(async () => {
    stack = await startVaultBroker({
      timeoutMs: 1000,
      config: {
        revocation: {
          baseDelayMs: 100,
          maxDelayMs: 400,
          intervalMs: 50,
          visibilityTimeoutMs: 5000,
          maxAttempts: 6,
        },
      },
    });
    ({ vault, h } = stack);
  });
  after(async () => stack?.close());

  afterEach(() => {
    vault.faults = {};
  });

  it('issues a dynamic secret and a Vault token, and ending the task revokes both at Vault', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'vault e2e' });

    const db = await demo.issueCredential({
      task_id: task.task_id,
      role: 'vault/db-readonly',
      ttl_seconds: 300,
    });
    assert.equal(db.status, 'ISSUED');
    assert.equal(db.credential?.kind, 'vault_secret');
    const password = db.credential?.data.password ?? '';
    assert.ok(db.credential?.data.username && password.length > 0);
    const dbLease = await h.broker.store.getLease(db.lease_id);
    assert.match(dbLease?.backendRef ?? '', /^lease:database\/creds\/readonly\//);
    const vaultLeaseId = (dbLease?.backendRef ?? '').slice('lease:'.length);
    assert.ok(vault.lease(vaultLeaseId), 'Vault holds the dynamic secret lease');
    // Never later than the granted TTL, whatever Vault's role default (1 h) says.
    assert.ok((dbLease?.expiresAt ?? 0) - Date.now() <= 300_000 + 1000);

    const tok = await demo.issueCredential({
      task_id: task.task_id,
      role: 'vault/ci-token',
      ttl_seconds: 300,
    });
    assert.equal(tok.credential?.kind, 'vault_token');
    const minted = vault.lookupToken(tok.credential?.token ?? '');
    assert.ok(minted, 'the agent token is live at Vault');
    assert.equal(minted.meta?.spiffe_id, 'spiffe://example.org/agents/demo');
    assert.equal(minted.meta?.task_id, task.task_id);
    assert.equal(minted.meta?.lease_id, tok.lease_id);
    assert.equal(minted.orphan, true);

    const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
    assert.deepEqual(ended.revoked.map((r) => r.state).sort(), ['revoked', 'revoked']);
    assert.equal(vault.lease(vaultLeaseId), undefined, 'Vault lease revoked');
    assert.equal(vault.lookupToken(tok.credential?.token ?? ''), undefined, 'Vault token revoked');
    assert.equal((await h.broker.store.getLease(db.lease_id))?.state, 'revoked');

    // Neither the secret nor the token reached the audit trail or the logs.
    const auditText = await readFile(h.auditFile, 'utf8');
    for (const secret of [password, tok.credential?.token ?? '']) {
      assert.ok(secret.length > 0);
      assert.ok(!auditText.includes(secret), 'secret in audit');
      assert.ok(!h.logs.text().includes(secret), 'secret in logs');
    }
  });

  it('a revoke Vault refuses is queued, retried by the worker, and ends revoked', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'vault retry' });
    const db = await demo.issueCredential({ task_id: task.task_id, role: 'vault/db-readonly' });
    const vaultLeaseId = ((await h.broker.store.getLease(db.lease_id))?.backendRef ?? '').slice(
      'lease:'.length,
    );

    vault.faults = { failRevokes: 2 };
    const ended = await demo.endTask({ task_id: task.task_id });
    assert.deepEqual(ended.revoked, [
      { lease_id: db.lease_id, role: 'vault/db-readonly', state: 'revoking' },
    ]);
    assert.ok(vault.lease(vaultLeaseId), 'still live at Vault right after the refused revoke');
    // The ledger changed at once: the lease is no longer active.
    assert.equal((await h.broker.store.getLease(db.lease_id))?.state, 'revoking');

    await eventually(async () => (await h.broker.store.getLease(db.lease_id))?.state === 'revoked', 10_000);
    assert.equal(vault.lease(vaultLeaseId), undefined, 'revoked at Vault by the worker');
    const audit = await readAudit(h.auditFile);
    const forLease = audit.filter((r) => r.lease === db.lease_id).map((r) => r.type);
    assert.ok(forLease.includes('lease.revoke_queued'), forLease.join(','));
    assert.ok(forLease.includes('lease.revoked'), forLease.join(','));
  });

  it('RevokeLeases reports a revoke Vault keeps refusing as pending; the worker ends it revoke_failed, never revoked', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'vault refuses' });
    const db = await demo.issueCredential({ task_id: task.task_id, role: 'vault/db-readonly' });
    const vaultLeaseId = ((await h.broker.store.getLease(db.lease_id))?.backendRef ?? '').slice(
      'lease:'.length,
    );
    vault.faults = { failRevokes: 1000 };
    const admin = await h.adminClient('security');
    const report = await admin.revokeLeases({ selector: { lease_id: db.lease_id }, reason: 'INC-11' });
    assert.equal(report.matched, 1);
    assert.equal(report.revoked, 0);
    assert.equal(report.pending_retry, 1);
    assert.equal(report.by_backend.vault?.pending_retry, 1);
    await eventually(
      async () => (await h.broker.store.getLease(db.lease_id))?.state === 'revoke_failed',
      15_000,
    );
    assert.ok(vault.lease(vaultLeaseId), 'Vault never confirmed: the lease is reported, not hidden');
    const listed = await admin.listLeases({ selector: { task_id: task.task_id, state: 'revoke_failed' } });
    assert.deepEqual(
      listed.leases.map((l) => l.lease_id),
      [db.lease_id],
    );
    const audit = (await readAudit(h.auditFile)).filter((r) => r.lease === db.lease_id).map((r) => r.type);
    assert.ok(audit.includes('lease.revoke_failed'), audit.join(','));
    assert.ok(!audit.includes('lease.revoked'), audit.join(','));
  });

  it('an AWS STS session is reported not revocable, never counted as revoked', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'sts', ttl_seconds: 3600 });
    const sts = await demo.issueCredential({
      task_id: task.task_id,
      role: 'vault/deploy-sts',
      ttl_seconds: 900,
    });
    assert.equal(sts.status, 'ISSUED');
    const admin = await h.adminClient('security');
    const report = await admin.revokeLeases({ selector: { task_id: task.task_id }, reason: 'INC-12' });
    assert.equal(report.matched, 1);
    assert.equal(report.revoked, 0);
    assert.equal(report.not_revocable, 1);
    assert.equal(report.by_backend.vault?.not_revocable, 1);
    const lease = await h.broker.store.getLease(sts.lease_id);
    assert.equal(lease?.state, 'revoke_failed');
    assert.match(lease?.revokeReason ?? '', /^not_revocable: /);
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'lease.not_revocable' && r.lease === sts.lease_id,
    );
    assert.ok(record?.valid_until, 'the audit record says until when the session lives');
  });

  it('a wrapped dynamic secret, once unwrapped, is reported not revocable until its real end, never revoked', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'wrapped', ttl_seconds: 300 });
    const wrapped = await demo.issueCredential({ task_id: task.task_id, role: 'vault/db-wrapped' });
    assert.equal(wrapped.credential?.kind, 'vault_wrapped');
    const realEnd = wrapped.credential?.metadata.secret_valid_until ?? '';
    const leaseEnd = Number(wrapped.expires_at?.seconds) * 1000;
    assert.ok(Date.parse(realEnd) > leaseEnd, 'Vault keeps the secret past the task: the agent is told so');
    // The agent unwraps it; the broker never sees the Vault lease behind it.
    const unwrapped = await fetch(`${vault.url}/v1/sys/wrapping/unwrap`, {
      method: 'POST',
      headers: { 'X-Vault-Token': wrapped.credential?.token ?? '' },
    });
    assert.equal(unwrapped.status, 200);
    const vaultLease = ((await unwrapped.json()) as { lease_id: string }).lease_id;

    const ended = await demo.endTask({ task_id: task.task_id });
    assert.deepEqual(
      ended.revoked.map((r) => [r.lease_id, r.state]),
      [[wrapped.lease_id, 'not_revocable']],
    );
    const records = (await readAudit(h.auditFile)).filter((r) => r.lease === wrapped.lease_id);
    assert.ok(!records.some((r) => r.type === 'lease.revoked'), records.map((r) => r.type).join());
    const notRevocable = records.find((r) => r.type === 'lease.not_revocable');
    assert.equal(notRevocable?.valid_until, realEnd, 'the real end, not the lease expiry');
    assert.ok(vault.lease(vaultLease), 'the secret is still alive at Vault, as reported');
  });

  it("Vault's error text and paths reach the log, never the agent's status or the audit record", async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'vault refuses the broker' });
    // The broker's Vault policy loses the database path: Vault answers 403 "permission denied".
    vault.setPolicy('svid-broker', { ...BROKER_VAULT_POLICY, 'database/creds/*': ['deny'] });
    let err;
    try {
      err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'vault/db-readonly' }));
    } finally {
      vault.setPolicy('svid-broker', BROKER_VAULT_POLICY);
    }
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.metadata['x-svid-broker-reason'], 'vault_permission_denied');
    assert.equal(err.details, 'backend "vault" is unavailable (vault_permission_denied)');
    const leaked = /database\/creds|permission denied|auth\/jwt|svid-broker/;
    assert.doesNotMatch(err.details, leaked);
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.failed' && r.task === task.task_id,
    );
    assert.ok(record, 'the failure is audited');
    assert.equal(record.error, 'vault_permission_denied');
    assert.doesNotMatch(JSON.stringify(record), leaked);
    assert.match(h.logs.text(), /GET database\/creds\/readonly: permission denied/, 'the detail is logged');
  });

  it('a sealed Vault answers UNAVAILABLE and leaves no active lease', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'vault sealed' });
    vault.faults = { sealed: true };
    const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'vault/db-readonly' }));
    assert.equal(err.code, status.UNAVAILABLE);
    assert.doesNotMatch(err.details, /hvs\.|\n\s+at /);
    assert.deepEqual(await h.broker.store.listLeases({ taskId: task.task_id, state: 'active' }), []);
  });
});
