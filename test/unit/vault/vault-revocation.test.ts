/**
 * End of task for Vault credentials through the durable revocation queue: the lease moves to
 * `revoking` at once, a revoke Vault fails is retried with backoff until it succeeds (the Vault
 * lease is gone), a broker restart resumes it from Redis, and after maxAttempts the lease is
 * `revoke_failed` with an audit event that carries no secret.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import type { CredentialBackend, IssuedCredential } from '../../../src/credentials/backend.js';
import { createRedisClient, RedisLeaseStore } from '../../../src/leases/redis-lease-store.js';
import { RedisRevocationQueue } from '../../../src/leases/redis-revocation-queue.js';
import type { RevocationQueue } from '../../../src/leases/revocation-queue.js';
import { RevocationWorker, type RevocationAuditEvent } from '../../../src/leases/revocation-worker.js';
import type { Lease, LeaseStore } from '../../../src/leases/types.js';
import { VaultAuth } from '../../../src/credentials/vault/vault-auth.js';
import { createVaultBackend } from '../../../src/credentials/vault/vault-backend.js';
import { VaultClient } from '../../../src/credentials/vault/vault-client.js';
import { makeTask } from '../../support/lease-store-harness.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';
import {
  AGENT_ID,
  BROKER_ID,
  BROKER_VAULT_ROLE,
  issueRequest,
  startVaultHarness,
  vaultRole,
  type VaultHarness,
} from './vault-harness.js';

/** One broker process: its Redis connection, store, queue and Vault backend. */
interface BrokerProcess {
  store: LeaseStore;
  queue: RevocationQueue;
  backend: CredentialBackend;
  close(): Promise<void>;
}

describe('vault backend: revocation through the durable queue', () => {
  let h: VaultHarness;
  let prefix: string;
  let processes: BrokerProcess[];
  let audit: RevocationAuditEvent[];
  let clock: number;

  async function startBroker(): Promise<BrokerProcess> {
    const server = await sharedRedis();
    const redis: Redis = createRedisClient(server.url);
    const store = new RedisLeaseStore(redis, { prefix });
    await store.ping();
    const queue = new RedisRevocationQueue(redis, { prefix, visibilityTimeoutMs: 5000 });
    // A restarted broker logs in to Vault again: nothing of the old process survives but Redis.
    const client = new VaultClient({ endpoint: h.vault.url, timeoutMs: 1000, insecure: true });
    const auth = new VaultAuth({
      client,
      method: { method: 'jwt', role: BROKER_VAULT_ROLE, audience: 'vault' },
      fetchJwt: (aud) => h.ca.mintJwtSvid(BROKER_ID, [aud]),
    });
    const process: BrokerProcess = {
      store,
      queue,
      backend: createVaultBackend({ client, auth }),
      close: () => store.close(),
    };
    processes.push(process);
    return process;
  }

  /** What the workers logged, as JSON lines. */
  const logged: string[] = [];
  const log = (obj: object, msg: string): void => {
    logged.push(JSON.stringify({ ...obj, msg }));
  };

  function worker(p: BrokerProcess, maxAttempts = 6): RevocationWorker {
    return new RevocationWorker({
      queue: p.queue,
      store: p.store,
      backends: new Map([['vault', p.backend]]),
      audit: async (event) => {
        audit.push(event);
      },
      maxAttempts,
      baseDelayMs: 10_000,
      maxDelayMs: 300_000,
      intervalMs: 1000,
      logger: { info: log, warn: log, error: log },
      now: () => clock,
    });
  }

  /** Issues a Vault credential and records its lease, as IssueCredential does. */
  async function issueLease(
    p: BrokerProcess,
    settings: Record<string, unknown>,
  ): Promise<{ lease: Lease; issued: IssuedCredential }> {
    const task = makeTask(clock, { agent: AGENT_ID });
    await p.store.createTask(task);
    const role = vaultRole('r', settings);
    const req = issueRequest(role, { now: clock, notAfter: task.expiresAt, taskId: task.id });
    const issued = await p.backend.issue(req);
    const lease: Lease = {
      id: req.leaseId,
      agent: AGENT_ID,
      taskId: task.id,
      environment: 'staging',
      role: role.name,
      backend: 'vault',
      backendRef: issued.backendRef,
      issuedAt: clock,
      expiresAt: issued.expiresAt,
      state: 'active',
    };
    assert.equal(await p.store.putLease(lease, clock), 'ok');
    return { lease, issued };
  }

  /**
   * What broker.revokeLease does with a queue: the ledger changes at once (`revoking`, on the deny
   * list), one inline attempt, and a queued job when it fails.
   */
  async function endLease(p: BrokerProcess, lease: Lease): Promise<'revoked' | 'queued'> {
    assert.ok(await p.store.markLeaseEnded(lease.id, 'revoking', 'task_ended', clock));
    try {
      await p.backend.revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt });
      await p.store.markRevokeOutcome(lease.id, 'revoked', 'task_ended', clock);
      return 'revoked';
    } catch (err) {
      await p.queue.enqueue(
        {
          leaseId: lease.id,
          backend: lease.backend,
          backendRef: lease.backendRef,
          expiresAt: lease.expiresAt,
          reason: 'task_ended',
          attempts: 1,
          lastError: err instanceof Error ? err.message : String(err),
        },
        clock + 10_000,
      );
      return 'queued';
    }
  }

  beforeEach(async () => {
    h = await startVaultHarness();
    prefix = randomPrefix();
    processes = [];
    audit = [];
    clock = Date.now();
  });
  afterEach(async () => {
    await Promise.all(processes.map((p) => p.close()));
    await h.close();
  });

  it('a revoke Vault fails twice is retried with backoff until the Vault lease is gone', async () => {
    const p = await startBroker();
    const { lease, issued } = await issueLease(p, { kind: 'dynamic', path: 'database/creds/readonly' });
    const vaultLease = issued.backendRef.slice('lease:'.length);
    h.vault.faults = { failRevokes: 2 };

    assert.equal(await endLease(p, lease), 'queued');
    assert.equal((await p.store.getLease(lease.id))?.state, 'revoking');
    assert.deepEqual(
      (await p.store.listRevokedUnexpired(clock)).map((l) => l.id),
      [lease.id],
      'refused downstream while the revocation is pending',
    );
    const w = worker(p);
    assert.equal((await w.drainOnce()).revoked, 0, 'not due yet');
    clock += 10_000;
    assert.equal((await w.drainOnce()).retried, 1, 'the second failure');
    assert.ok(h.vault.lease(vaultLease), 'Vault still has it');
    const job = await p.queue.get(lease.id);
    assert.match(job?.lastError ?? '', /vault_unavailable/);
    clock = job?.runAt ?? 0;
    assert.equal((await w.drainOnce()).revoked, 1);
    assert.equal(h.vault.lease(vaultLease), undefined, 'gone at Vault');
    assert.equal((await p.store.getLease(lease.id))?.state, 'revoked');
    assert.equal(await p.queue.pending(), 0);
    assert.equal(audit[0]?.type, 'lease.revoked');
    assert.equal(audit[0]?.attempts, 3);
  });

  it('pending revocations resume after a broker restart', async () => {
    const before = await startBroker();
    const { lease, issued } = await issueLease(before, { kind: 'token', policies: ['ci-read'] });
    h.vault.faults = { failRevokes: 2 };
    assert.equal(await endLease(before, lease), 'queued');
    clock += 10_000;
    assert.equal((await worker(before).drainOnce()).retried, 1);
    await before.close(); // the broker goes away with the job still queued

    const after = await startBroker();
    assert.equal(await after.queue.pending(), 1);
    clock += 60_000;
    assert.equal((await worker(after).drainOnce()).revoked, 1);
    assert.equal(h.vault.lookupToken(issued.credential.token), undefined, 'the token is revoked at Vault');
    assert.equal((await after.store.getLease(lease.id))?.state, 'revoked');
  });

  it('after maxAttempts: revoke_failed and an audit event without secrets', async () => {
    const p = await startBroker();
    const { lease, issued } = await issueLease(p, { kind: 'token', policies: ['ci-read'] });
    h.vault.faults = { failRevokes: 100 };
    assert.equal(await endLease(p, lease), 'queued');
    const w = worker(p, 3);
    for (let i = 0; i < 5 && (await p.queue.pending()) > 0; i++) {
      clock += 600_000;
      await w.drainOnce();
    }
    assert.equal((await p.store.getLease(lease.id))?.state, 'revoke_failed');
    assert.ok(h.vault.lookupToken(issued.credential.token), 'Vault never confirmed');
    assert.equal(audit.length, 1);
    const event = audit[0];
    assert.equal(event?.type, 'lease.revoke_failed');
    assert.equal(event?.attempts, 3);
    assert.equal(event?.agent, AGENT_ID);
    // The reason code only: Vault's path and error text stay in the queue and the log.
    assert.equal(event?.error, 'vault_unavailable');
    assert.ok(logged.some((l) => l.includes('Vault failed POST auth/token/revoke-accessor (500')));
    const text = JSON.stringify(audit);
    assert.ok(!text.includes(issued.credential.token));
    assert.doesNotMatch(text, /hvs\./);
  });
});
