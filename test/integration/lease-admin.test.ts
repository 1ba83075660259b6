/**
 * Incident tools: security lists and revokes leases by selector; a dry run changes nothing; agents
 * may not use the admin API; the CLI prints what it revoked.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { createRedisClient } from '../../src/leases/redis-lease-store.js';
import { RedisRevocationQueue } from '../../src/leases/redis-revocation-queue.js';
import { DEMO_AGENT, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { sharedRedis } from '../support/redis-server.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));

describe('integration: lease admin (list and revoke by selector)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  async function issueTwo(): Promise<{ taskId: string; leases: string[] }> {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'incident drill' });
    const a = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    const b = await demo.issueCredential({ task_id: task.task_id, role: 'token/logs-read' });
    return { taskId: task.task_id, leases: [a.lease_id, b.lease_id] };
  }

  it('lists by agent and pattern, dry-runs without change, then revokes and reports', async () => {
    const { leases } = await issueTwo();
    const admin = await h.adminClient('security');

    const listed = await admin.listLeases({ selector: { agent: DEMO_AGENT } });
    assert.ok(leases.every((id) => listed.leases.some((l) => l.lease_id === id)));
    const byPattern = await admin.listLeases({
      selector: { agent: 'spiffe://example.org/agents/*', role: 'token/logs-read' },
    });
    assert.ok(byPattern.leases.some((l) => l.lease_id === leases[1]));
    assert.ok(byPattern.leases.every((l) => l.role === 'token/logs-read'));

    const dry = await admin.revokeLeases({
      selector: { agent: DEMO_AGENT },
      reason: 'drill',
      dry_run: true,
    });
    assert.equal(dry.dry_run, true);
    assert.ok(dry.matched >= 2);
    for (const id of leases) assert.equal((await h.broker.store.getLease(id))?.state, 'active');

    const report = await admin.revokeLeases({
      selector: { agent: DEMO_AGENT },
      reason: 'INC-7 drill',
    });
    assert.equal(report.matched, dry.matched);
    assert.equal(report.revoked, report.matched);
    assert.equal(report.pending_retry, 0);
    assert.equal(report.by_backend.token?.revoked, report.matched);
    for (const id of leases) {
      const lease = await h.broker.store.getLease(id);
      assert.equal(lease?.state, 'revoked');
      assert.equal(lease?.revokeReason, 'admin: INC-7 drill');
    }
    const revokedList = (await h.httpJson('/v1/revoked')).body as { revoked: Array<{ jti: string }> };
    assert.ok(leases.every((id) => revokedList.revoked.some((r) => r.jti === id)));
    const summary = (await readAudit(h.auditFile)).filter((r) => r.type === 'admin.revoke').at(-1);
    assert.equal(summary?.revoked, report.matched);
    assert.deepEqual((summary?.selector as Record<string, unknown>).agent, DEMO_AGENT);
  });

  it("a lease revoked on its own after a bulk revocation moved it keeps the bulk revocation's job", async () => {
    const { leases } = await issueTwo();
    const id = leases[0] as string;
    const lease = await h.broker.store.getLease(id);
    assert.equal(lease?.state, 'active');
    // A bulk revocation moves it and queues its job, and its broker dies before the backend attempt.
    const at = Date.now();
    const run = h.broker.store.revokeSelected(
      { leaseId: id },
      { reason: 'admin: INC-9', at, runAt: at + 60_000, pageSize: 10 },
    );
    for await (const _page of run);
    // Another caller still holding the lease as active revokes it on its own (EndTask, say).
    assert.equal(await h.broker.broker.revokeLease(lease, 'task_ended'), undefined, 'someone else ended it');
    const redis = createRedisClient((await sharedRedis()).url);
    try {
      const queue = new RedisRevocationQueue(redis, { prefix: h.redisPrefix });
      assert.equal((await queue.get(id))?.reason, 'admin: INC-9', 'the queued revocation is not lost');
    } finally {
      redis.disconnect();
    }
    assert.equal((await h.broker.store.getLease(id))?.state, 'revoking');
  });

  it('every selector reaches the leases it names (dry runs against the ledger)', async () => {
    const { taskId, leases } = await issueTwo();
    const admin = await h.adminClient('security');
    const active = await h.broker.store.listLeases({ state: 'active' });
    const count = (pred: (l: (typeof active)[number]) => boolean): number => active.filter(pred).length;
    const cases: Array<[Record<string, unknown>, number]> = [
      [{ lease_id: leases[0] }, 1],
      [{ agent: DEMO_AGENT }, count((l) => l.agent === DEMO_AGENT)],
      [
        { agent: 'spiffe://example.org/agents/*' },
        count((l) => l.agent.startsWith('spiffe://example.org/agents/')),
      ],
      [{ task_id: taskId }, 2],
      [{ environment: 'dev' }, count((l) => l.environment === 'dev')],
      [{ role: 'token/logs-read' }, count((l) => l.role === 'token/logs-read')],
      [{ backend: 'token' }, count((l) => l.backend === 'token')],
      [{ trust_domain: 'example.org' }, active.length],
      [{ trust_domain: 'elsewhere.test' }, 0],
      [{ all: true }, active.length],
    ];
    for (const [selector, expected] of cases) {
      const dry = await admin.revokeLeases({
        selector,
        reason: 'selector check',
        dry_run: true,
        confirm_all: true,
      });
      assert.equal(dry.matched, expected, JSON.stringify(selector));
      assert.equal(dry.revoked, 0);
    }
    for (const id of leases) assert.equal((await h.broker.store.getLease(id))?.state, 'active');
  });

  it('refuses agents, empty selectors, a missing reason and an unconfirmed "all"', async () => {
    const demoAdmin = await h.adminClient('demo');
    assert.equal(
      (await grpcError(demoAdmin.listLeases({ selector: { agent: DEMO_AGENT } }))).code,
      status.PERMISSION_DENIED,
    );
    const admin = await h.adminClient('security');
    const empty = await grpcError(admin.listLeases({}));
    assert.equal(empty.code, status.INVALID_ARGUMENT);
    assert.equal(empty.metadata['x-svid-broker-field'], 'selector');
    const noReason = await grpcError(admin.revokeLeases({ selector: { agent: DEMO_AGENT } }));
    assert.equal(noReason.metadata['x-svid-broker-field'], 'reason');
    const all = await grpcError(admin.revokeLeases({ selector: { all: true }, reason: 'x' }));
    assert.equal(all.metadata['x-svid-broker-field'], 'confirm_all');
  });

  it('the CLI revokes a task and prints what it revoked', async () => {
    const { taskId, leases } = await issueTwo();
    const env = {
      ...process.env,
      SPIFFE_ENDPOINT_SOCKET: h.endpoints.security,
      SVID_BROKER_ADDR: h.address,
    };
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'admin', 'revoke', '--task', taskId, '--reason', 'cli drill'],
      { cwd: REPO, env },
    );
    for (const id of leases) assert.match(stdout, new RegExp(id));
    assert.match(stdout, /matched 2: revoked 2 at the backend, 0 pending retry/);
    for (const id of leases) assert.equal((await h.broker.store.getLease(id))?.state, 'revoked');
  });

  it('the CLI quarantines with --revoke, lists quarantines, pages leases, reads one, and releases', async function () {
    // Eight CLI processes, each loading the whole CLI: on a loaded machine that outlasts 20 s.
    this.timeout(60_000);
    const { taskId, leases } = await issueTwo();
    const env = {
      ...process.env,
      SPIFFE_ENDPOINT_SOCKET: h.endpoints.security,
      SVID_BROKER_ADDR: h.address,
    };
    const cli = (...args: string[]) =>
      run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'admin', ...args], { cwd: REPO, env });

    const paged = JSON.parse((await cli('leases', '--task', taskId, '--limit', '1', '--json')).stdout) as {
      leases: Array<{ lease_id: string }>;
      next_page_token: string;
    };
    assert.equal(paged.leases.length, 1);
    assert.ok(paged.next_page_token, 'a second page is offered');
    const rest = JSON.parse(
      (await cli('leases', '--task', taskId, '--page-token', paged.next_page_token, '--json')).stdout,
    ) as { leases: Array<{ lease_id: string }> };
    assert.deepEqual([...paged.leases, ...rest.leases].map((l) => l.lease_id).sort(), [...leases].sort());

    const held = (await h.broker.store.listLeases({ agent: DEMO_AGENT, state: 'active' })).length;
    assert.ok(held >= 2);
    const q = await cli(
      'quarantine',
      '--agent',
      DEMO_AGENT,
      '--reason',
      'cli drill',
      '--ttl',
      '2h',
      '--revoke',
    );
    assert.match(q.stdout, new RegExp(`quarantined ${DEMO_AGENT} until `));
    assert.match(q.stdout, new RegExp(`matched ${held}: revoked ${held} at the backend`));
    const list = await cli('quarantines');
    assert.match(list.stdout, /PATTERN\s+TRIGGER/);
    assert.match(list.stdout, new RegExp(`${DEMO_AGENT}\\s+manual`));
    const one = JSON.parse((await cli('lease', leases[0] as string, '--json')).stdout) as {
      state: string;
      revoke_reason: string;
    };
    assert.equal(one.state, 'revoked');
    assert.equal(one.revoke_reason, 'admin: quarantine: cli drill');
    const demo = await h.client('demo');
    assert.equal(
      (await grpcError(demo.beginTask({ environment: 'dev', intent: 'x' }))).code,
      status.PERMISSION_DENIED,
    );
    const released = await cli('release', '--agent', DEMO_AGENT, '--reason', 'drill over');
    assert.match(released.stdout, new RegExp(`released ${DEMO_AGENT}`));
    await demo.beginTask({ environment: 'dev', intent: 'after release' });
    assert.match((await cli('quarantines')).stdout, /no quarantines in force/);
  });
});
