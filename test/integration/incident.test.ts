/**
 * Incident response through the real broker: quarantine (every call refused, a request in flight
 * included), automatic triggers, two replicas on one Redis seeing quarantine, revocation and policy
 * changes, a replica whose invalidation feed goes stale failing closed, and revocation by every
 * selector with streamed progress.
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { JSONWebKeySet } from 'jose';
import { MemoryAuditSink } from '../../src/audit/memory-sink.js';
import type { AuditEventInput, AuditSink } from '../../src/audit/types.js';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { createRedisClient, RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import type { Lease, PutLeaseResult } from '../../src/leases/types.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  OTHER_AGENT,
  SECURITY,
  SECURITY_2,
  eventually,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { randomPrefix, sharedRedis, startRedisServer } from '../support/redis-server.js';

describe('integration: incident response', function () {
  this.timeout(30_000);

  describe('quarantine on one broker', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness();
    });
    after(async () => h?.close());

    it('refuses every call of a quarantined agent, leaves others alone, and release restores it', async () => {
      const demo = await h.client('demo');
      const other = await h.client('other');
      const task = await demo.beginTask({ environment: 'dev', intent: 'before quarantine' });
      const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      const admin = await h.adminClient('security');

      const res = await admin.quarantine({
        agent: DEMO_AGENT,
        reason: 'INC-9 odd behaviour',
        revoke_active: true,
      });
      assert.equal(res.quarantine?.pattern, DEMO_AGENT);
      assert.equal(res.revocation?.revoked, 1);
      assert.equal((await h.broker.store.getLease(issued.lease_id))?.state, 'revoked');

      const calls = [
        () => demo.beginTask({ environment: 'dev', intent: 'x' }),
        () => demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
        () => demo.getTask({ task_id: task.task_id }),
        () => demo.endTask({ task_id: task.task_id }),
      ];
      for (const call of calls) {
        const err = await grpcError(call());
        assert.equal(err.code, status.PERMISSION_DENIED);
        assert.match(err.details, /quarantined/);
      }
      // Another agent is untouched; history is kept for forensics.
      await other.beginTask({ environment: 'dev', intent: 'unaffected' });
      assert.equal((await h.broker.store.getTask(task.task_id))?.state, 'active');

      const listed = await admin.listQuarantines();
      assert.deepEqual(
        listed.quarantines.map((q) => [q.pattern, q.trigger, q.by]),
        [[DEMO_AGENT, 'manual', SECURITY]],
      );
      // Agents may not administer quarantines; the security group may not quarantine itself.
      const demoAdmin = await h.adminClient('demo');
      assert.equal(
        (await grpcError(demoAdmin.releaseQuarantine({ agent: DEMO_AGENT, reason: 'let me out' }))).code,
        status.PERMISSION_DENIED,
      );
      const self = await grpcError(
        admin.quarantine({ agent: 'spiffe://example.org/security/*', reason: 'x' }),
      );
      assert.equal(self.code, status.INVALID_ARGUMENT);
      assert.equal(self.metadata['x-svid-broker-field'], 'agent');

      await admin.releaseQuarantine({ agent: DEMO_AGENT, reason: 'cleared' });
      await demo.beginTask({ environment: 'dev', intent: 'after release' });

      const audit = await readAudit(h.auditFile);
      const set = audit.find((r) => r.type === 'quarantine.set' && r.pattern === DEMO_AGENT);
      assert.equal(set?.agent, SECURITY);
      assert.equal(set?.reason, 'INC-9 odd behaviour');
      assert.ok(audit.some((r) => r.type === 'quarantine.released' && r.pattern === DEMO_AGENT));
      assert.ok(
        audit.some((r) => r.type === 'task.denied' && r.agent === DEMO_AGENT && r.reason === 'quarantined'),
      );
    });

    it('a quarantined admin identity is refused on every admin call', async () => {
      const admin = await h.adminClient('security');
      await admin.quarantine({ agent: SECURITY_2, reason: 'stolen admin SVID?' });
      const suspect = await h.adminClient('security2');
      const calls = [
        () => suspect.listApprovals(),
        () => suspect.listBreakGlass(),
        () => suspect.listLeases({ selector: { agent: DEMO_AGENT } }),
        () => suspect.listQuarantines(),
        () => suspect.releaseQuarantine({ agent: SECURITY_2, reason: 'let me out' }),
      ];
      for (const call of calls) {
        const err = await grpcError(call());
        assert.equal(err.code, status.PERMISSION_DENIED);
        assert.match(err.details, /quarantined/);
      }
      await admin.releaseQuarantine({ agent: SECURITY_2, reason: 'false alarm' });
      await suspect.listApprovals();
    });

    it('a pattern quarantine with a TTL covers the subtree and ends by itself', async () => {
      const admin = await h.adminClient('security');
      const res = await admin.quarantine({
        agent: 'spiffe://example.org/agents/*',
        reason: 'all agents',
        ttl_seconds: 1,
      });
      assert.ok(res.quarantine?.expires_at);
      const other = await h.client('other');
      assert.equal(
        (await grpcError(other.beginTask({ environment: 'dev', intent: 'x' }))).code,
        status.PERMISSION_DENIED,
      );
      await eventually(() => other.beginTask({ environment: 'dev', intent: 'after expiry' }), 5000);
      assert.deepEqual((await admin.listQuarantines()).quarantines, []);
    });
  });

  describe('a request in flight when the quarantine lands', () => {
    let h: Harness;
    let release: (() => void) | undefined;
    let paused: (() => void) | undefined;
    const puts: PutLeaseResult[] = [];

    before(async () => {
      const prefix = randomPrefix();
      const inner = new RedisLeaseStore(createRedisClient((await sharedRedis()).url), { prefix });
      // Holds the lease write of the next request until the test has quarantined the agent: the
      // credential is minted and the front-door check long passed.
      const store = Object.create(inner) as RedisLeaseStore;
      store.putLease = async (lease: Lease, now: number): Promise<PutLeaseResult> => {
        if (release === undefined) {
          await new Promise<void>((resume) => {
            release = resume;
            paused?.();
          });
        }
        const result = await inner.putLease(lease, now);
        puts.push(result);
        return result;
      };
      h = await startHarness({ store, redisPrefix: prefix });
    });
    after(async () => h?.close());

    it('never returns the credential and records no lease', async () => {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'in flight' });
      const reachedLeaseWrite = new Promise<void>((r) => (paused = r));
      const inFlight = grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      await reachedLeaseWrite;
      const admin = await h.adminClient('security');
      await admin.quarantine({ agent: DEMO_AGENT, reason: 'caught mid-request' });
      release?.();
      const err = await inFlight;
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /quarantined/);
      assert.deepEqual(puts, ['agent_quarantined']);
      assert.deepEqual(await h.broker.store.listLeases({ taskId: task.task_id }), []);
      const denied = (await readAudit(h.auditFile)).find(
        (r) => r.type === 'credential.denied' && r.stage === 'agent_quarantined',
      );
      assert.equal(denied?.reason, 'quarantined');
    });
  });

  describe('a quarantine landing after the lease was written', () => {
    let h: Harness;
    const audit = new MemoryAuditSink();
    let hold: Promise<void> | undefined;
    let reached: (() => void) | undefined;
    before(async () => {
      // Holds the credential.issued record (the last step before the credential is returned).
      const sink: AuditSink = {
        write: async (event: AuditEventInput) => {
          const record = await audit.write(event);
          if (event.type === 'credential.issued' && hold) {
            reached?.();
            await hold;
          }
          return record;
        },
        close: () => audit.close(),
      };
      h = await startHarness({ audit: sink });
    });
    after(async () => h?.close());

    it('revokes the recorded lease and still refuses the call', async () => {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'late quarantine' });
      let resume: (() => void) | undefined;
      hold = new Promise<void>((r) => (resume = r));
      const atRecord = new Promise<void>((r) => (reached = r));
      const inFlight = grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      await atRecord;
      await (await h.adminClient('security')).quarantine({ agent: DEMO_AGENT, reason: 'late' });
      await eventually(() => h.broker.quarantines.list().some((q) => q.pattern === DEMO_AGENT), 2000);
      hold = undefined;
      resume?.();
      const err = await inFlight;
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /quarantined/);
      const issued = audit.records.find((r) => r.type === 'credential.issued' && r.task === task.task_id);
      const lease = await h.broker.store.getLease(issued?.lease as string);
      assert.equal(lease?.state, 'revoked');
      assert.equal(lease?.revokeReason, 'quarantined');
      assert.ok(audit.records.some((r) => r.type === 'lease.revoked' && r.lease === issued?.lease));
    });
  });

  describe('automatic quarantine triggers', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        config: {
          quarantine: {
            triggers: {
              denials: { count: 3, windowSeconds: 60 },
              restrictedData: { allowedGroups: ['security'] },
            },
          },
        },
      });
    });
    after(async () => h?.close());

    it('quarantines after N denials in the window, with the evidence audited', async () => {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'probing' });
      for (let i = 0; i < 3; i++) {
        const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/admin' }));
        assert.notEqual(err.details, 'quarantined');
      }
      const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /quarantined/);
      const set = (await readAudit(h.auditFile)).find((r) => r.type === 'quarantine.set');
      assert.equal(set?.pattern, DEMO_AGENT);
      assert.equal(set?.trigger, 'denials');
      assert.equal(set?.agent, 'broker');
      const evidence = set?.evidence as Record<string, unknown>;
      assert.equal(evidence.strikes, 3);
      assert.equal(evidence.threshold, 3);
    });

    it('quarantines at once an agent outside the allowed groups asking for restricted data', async () => {
      const other = await h.client('other');
      const task = await other.beginTask({ environment: 'dev', intent: 'exfiltration?' });
      const err = await grpcError(
        other.issueCredential({ task_id: task.task_id, role: 'token/customer-data' }),
      );
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /quarantined/);
      const set = (await readAudit(h.auditFile)).find(
        (r) => r.type === 'quarantine.set' && r.pattern === OTHER_AGENT,
      );
      assert.equal(set?.trigger, 'restricted_data');
      const evidence = set?.evidence as { request: Record<string, unknown>; agent_groups: string[] };
      assert.equal(evidence.request.role, 'token/customer-data');
      assert.deepEqual(evidence.agent_groups, ['agents']);
    });
  });

  describe('two replicas on one Redis', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness();
    });
    after(async () => h?.close());

    it('a quarantine set on one is enforced by the other within a second', async () => {
      const b = await h.replica();
      const demoOnB = await b.client('demo');
      await demoOnB.beginTask({ environment: 'dev', intent: 'fine so far' });
      const adminOnA = await h.adminClient('security');
      await adminOnA.quarantine({ agent: DEMO_AGENT, reason: 'replica test' });
      const returned = Date.now();
      await eventually(async () => {
        const err = await grpcError(demoOnB.beginTask({ environment: 'dev', intent: 'x' }));
        return /quarantined/.test(err.details);
      }, 1000);
      assert.ok(Date.now() - returned < 1000);
      // Released on B, effective on A.
      const adminOnB = await b.adminClient('security');
      await adminOnB.releaseQuarantine({ agent: DEMO_AGENT, reason: 'done' });
      const demoOnA = await h.client('demo');
      await eventually(() => demoOnA.beginTask({ environment: 'dev', intent: 'back' }), 1000);
    });

    it('a lease issued on one is revoked from the other, and both deny it', async () => {
      const b = await h.replica();
      const demoOnA = await h.client('demo');
      const task = await demoOnA.beginTask({ environment: 'dev', intent: 'cross-replica' });
      const issued = await demoOnA.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      const adminOnB = await b.adminClient('security');
      const report = await adminOnB.revokeLeases({
        selector: { lease_id: issued.lease_id },
        reason: 'cross',
      });
      assert.equal(report.revoked, 1);
      const revoked = (await h.httpJson('/v1/revoked')).body as { revoked: Array<{ jti: string }> };
      assert.ok(revoked.revoked.some((r) => r.jti === issued.lease_id));
      const lease = await (await h.adminClient('security')).getLease(issued.lease_id);
      assert.equal(lease.state, 'revoked');
      assert.equal(lease.revoke_reason, 'admin: cross');
    });

    it("either replica's JWKS verifies a token the other signed", async () => {
      const b = await h.replica();
      const demoOnB = await b.client('demo');
      const task = await demoOnB.beginTask({ environment: 'dev', intent: 'jwks' });
      const issued = await demoOnB.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      const jwksOfA = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
      const kidOfB = b.broker.keys.current().kid;
      assert.ok(!h.broker.keys.jwks().keys.some((k) => k.kid === kidOfB), 'A signs with keys of its own');
      const { kid } = await verifyAccessToken(issued.credential?.token ?? '', {
        jwks: jwksOfA,
        issuer: BROKER_ID,
        audience: 'demo-api',
      });
      assert.equal(kid, kidOfB);
      for (const key of jwksOfA.keys) assert.equal((key as Record<string, unknown>).d, undefined);
    });

    it('a policy reloaded on one replica takes effect on the other', async () => {
      const b = await h.replica();
      const demoOnB = await b.client('demo');
      await demoOnB.beginTask({ environment: 'dev', intent: 'allowed before' });
      // Only A's directory changes: B adopts the set through Redis.
      writeFileSync(
        join(h.dir, 'policies', 'zz-freeze.cedar'),
        '@id("freeze-dev")\n@reason("change freeze")\nforbid (principal, action == Action::"BeginTask", resource);\n',
      );
      const reloaded = h.broker.reloadPolicy();
      assert.ok(reloaded.ok);
      await eventually(() => b.broker.policyDigest() === reloaded.digest, 2000);
      const err = await grpcError(demoOnB.beginTask({ environment: 'dev', intent: 'frozen' }));
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /freeze-dev|change freeze/);
      const synced = (await readAudit(b.auditFile)).find((r) => r.type === 'policy.synced');
      assert.equal(synced?.digest, reloaded.digest);
    });
  });

  describe('a replica whose invalidation feed goes stale', () => {
    it('answers UNAVAILABLE and is not ready, then recovers with Redis', async () => {
      const redis = await startRedisServer();
      const h = await startHarness({
        redisUrl: redis.url,
        config: { feed: { blockMs: 100, staleAfterMs: 600 } },
      });
      try {
        const demo = await h.client('demo');
        await demo.beginTask({ environment: 'dev', intent: 'fresh' });
        redis.kill();
        await eventually(async () => {
          const err = await grpcError(demo.beginTask({ environment: 'dev', intent: 'stale' }));
          return err.code === status.UNAVAILABLE && /invalidation feed/.test(err.details);
        }, 5000);
        assert.equal((await h.httpJson('/readyz')).status, 503);
        await redis.restart();
        await eventually(() => demo.beginTask({ environment: 'dev', intent: 'recovered' }), 10_000);
      } finally {
        await h.close();
        await redis.stop();
      }
    });
  });
});
