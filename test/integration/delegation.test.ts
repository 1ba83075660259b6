/**
 * Agents that spawn agents, end to end over gRPC: DelegateTask narrows scope (each widening refused
 * with its reason), the depth limit, the chain reaches Cedar, ending a parent ends a three-level
 * subtree (also across two replicas), `act` claims verified with node:crypto (not jose), and
 * Transaction Tokens verified against the JWKS, refused after expiry or with another audience.
 */
import { strict as assert } from 'node:assert';
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { MemoryLeaseStore } from '../../src/leases/memory-lease-store.js';
import { unavailable } from '../../src/errors.js';
import { runCli } from '../support/run-cli.js';
import { grpcError, readAudit, startHarness, TRUST_DOMAIN, type Harness } from '../support/broker-harness.js';

const PLANNER = `spiffe://${TRUST_DOMAIN}/agents/planner`;
const CODER = `spiffe://${TRUST_DOMAIN}/agents/coder`;
const TESTER = `spiffe://${TRUST_DOMAIN}/agents/tester`;

const POLICIES = `
@id("test-agents-logs-and-deploy")
permit (
  principal in AgentGroup::"agents",
  action == Action::"IssueCredential",
  resource
) when {
  [Role::"token/logs-read", Role::"token/deploy"].contains(resource) && context.environment == "staging"
};

@id("no-writes-below-depth-1")
@reason("delegates below the first level may only read")
forbid (principal, action == Action::"IssueCredential", resource)
when { context.delegationDepth >= 2 && context.changeType != "read" };
`;

/** Decodes a compact JWS and checks its ES256 signature against the JWKS with node:crypto alone. */
function verifyByHand(
  token: string,
  jwks: { keys: Array<Record<string, unknown>> },
): Record<string, unknown> {
  const [h, p, s] = token.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { kid: string; alg: string };
  assert.equal(header.alg, 'ES256');
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, 'signing key published in the JWKS');
  const key = createPublicKey({ key: jwk as never, format: 'jwk' });
  const ok = verifySignature(
    'sha256',
    Buffer.from(`${h}.${p}`),
    { key, dsaEncoding: 'ieee-p1363' },
    Buffer.from(s, 'base64url'),
  );
  assert.ok(ok, 'ES256 signature verifies');
  return JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
}

describe('delegated tasks', function () {
  this.timeout(60_000);
  let h: Harness;
  let planner: BrokerClient;
  let coder: BrokerClient;
  let tester: BrokerClient;

  before(async () => {
    h = await startHarness({
      store: 'redis',
      extraPolicies: POLICIES,
      workloads: { planner: { spiffeId: PLANNER }, coder: { spiffeId: CODER }, tester: { spiffeId: TESTER } },
    });
    planner = await h.client('planner');
    coder = await h.client('coder');
    tester = await h.client('tester');
  });
  after(() => h?.close());

  async function rootTask(): Promise<string> {
    const t = await planner.beginTask({ environment: 'staging', intent: 'ship feature', ttl_seconds: 1800 });
    return t.task_id;
  }

  const delegate = (from: BrokerClient, parent: string, to: string, extra: Record<string, unknown> = {}) =>
    from.delegateTask({ parent_task_id: parent, delegate: to, roles: ['token/logs-read'], ...extra });

  it('refuses every widening with its reason, and a caller that does not own the parent', async () => {
    const root = await rootTask();
    const child = await delegate(planner, root, CODER, {
      roles: ['token/logs-read'],
      sensitivity_ceiling: 'internal',
      max_change_type: 'read',
      ttl_seconds: 600,
    });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ roles: ['token/deploy'] }, 'roles_exceed_parent'],
      [{ environment: 'dev' }, 'environment_differs'],
      [{ ttl_seconds: 1200 }, 'ttl_exceeds_parent'],
      [{ sensitivity_ceiling: 'confidential' }, 'sensitivity_exceeds_parent'],
      [{ max_change_type: 'write' }, 'change_type_exceeds_parent'],
    ];
    for (const [extra, reason] of cases) {
      const err = await grpcError(delegate(coder, child.task_id, TESTER, extra));
      assert.equal(err.code, status.PERMISSION_DENIED, reason);
    }
    const notOwner = await grpcError(delegate(tester, root, CODER));
    assert.equal(notOwner.code, status.FAILED_PRECONDITION);
    const audit = await readAudit(h.auditFile);
    const denied = audit.filter((r) => r.type === 'task.delegation_denied').map((r) => r.reason);
    for (const [, reason] of cases) assert.ok(denied.includes(reason), `audited ${reason}`);
  });

  it('stops at the depth limit (max_depth of the parent) and the delegate owns its task alone', async () => {
    const root = await rootTask();
    const child = await delegate(planner, root, CODER, { max_depth: 0 });
    assert.equal(child.agent, CODER);
    assert.deepEqual(child.delegation_chain, [PLANNER, CODER]);
    assert.equal(child.delegation_depth, 1);
    const err = await grpcError(delegate(coder, child.task_id, TESTER));
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.match(err.details, /depth/);
    // Nobody but the delegate may use the child task, not even the parent's owner.
    const stolen = await grpcError(
      planner.issueCredential({ task_id: child.task_id, role: 'token/logs-read' }),
    );
    assert.equal(stolen.code, status.FAILED_PRECONDITION);
  });

  it('gives Cedar the chain: a policy on depth refuses writes two levels down, act claims nest', async () => {
    const root = await rootTask();
    const roles = ['token/logs-read', 'token/deploy'];
    const child = await delegate(planner, root, CODER, { roles });
    const grandchild = await delegate(coder, child.task_id, TESTER, { roles });
    assert.deepEqual(grandchild.delegation_chain, [PLANNER, CODER, TESTER]);
    // Depth 1 may write; depth 2 may not (the forbid above).
    await coder.issueCredential({ task_id: child.task_id, role: 'token/deploy', change_type: 'write' });
    const err = await grpcError(
      tester.issueCredential({ task_id: grandchild.task_id, role: 'token/deploy', change_type: 'write' }),
    );
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.match(err.details, /no-writes-below-depth-1|delegates below/);
    const issued = await tester.issueCredential({ task_id: grandchild.task_id, role: 'token/logs-read' });
    const jwks = (await h.httpJson('/.well-known/jwks.json')).body as {
      keys: Array<Record<string, unknown>>;
    };
    const claims = verifyByHand(issued.credential!.token, jwks);
    assert.equal(claims.sub, TESTER);
    assert.deepEqual(claims.act, { sub: CODER, act: { sub: PLANNER } });
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.deepEqual(record?.delegation_chain, [PLANNER, CODER, TESTER]);
  });

  it('each delegation is recorded as task.delegated with the chain', async () => {
    const root = await rootTask();
    const child = await delegate(planner, root, CODER);
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'task.delegated' && r.task === child.task_id,
    );
    assert.ok(record, 'task.delegated recorded');
    assert.equal(record.agent, PLANNER);
    assert.equal(record.parent_task, root);
    assert.equal(record.delegate, CODER);
    assert.deepEqual(record.delegation_chain, [PLANNER, CODER]);
  });

  it('ending the parent ends and revokes a three-level subtree, one task.ended each', async () => {
    const root = await rootTask();
    const child = await delegate(planner, root, CODER);
    const grandchild = await delegate(coder, child.task_id, TESTER);
    const a = await coder.issueCredential({ task_id: child.task_id, role: 'token/logs-read' });
    const b = await tester.issueCredential({ task_id: grandchild.task_id, role: 'token/logs-read' });
    await planner.endTask({ task_id: root, reason: 'done' });
    for (const id of [child.task_id, grandchild.task_id]) {
      assert.equal((await h.broker.store.getTask(id))?.state, 'ended');
    }
    const audit = await readAudit(h.auditFile);
    const ended = audit.filter((r) => r.type === 'task.ended').map((r) => r.task);
    for (const id of [root, child.task_id, grandchild.task_id])
      assert.ok(ended.includes(id), `task.ended ${id}`);
    const revoked = audit.filter((r) => r.type === 'lease.revoked').map((r) => r.lease);
    assert.ok(revoked.includes(a.lease_id) && revoked.includes(b.lease_id));
    const lease = await h.broker.store.getLease(b.lease_id);
    assert.equal(lease?.state, 'revoked');
  });

  it('on two replicas: a subtree delegated through one replica ends when the parent ends on the other', async () => {
    const other = await h.replica();
    const coderB = await other.client('coder');
    const root = await rootTask();
    const child = await delegate(planner, root, CODER);
    const grandchild = await delegate(coderB, child.task_id, TESTER);
    await planner.endTask({ task_id: root, reason: 'done' });
    assert.equal((await h.broker.store.getTask(grandchild.task_id))?.state, 'ended');
    assert.equal((await other.broker.store.getTask(child.task_id))?.state, 'ended');
  });

  it('a Transaction Token verifies against the JWKS, stands in for task_id, and only its own agent may use it', async () => {
    const root = await planner.beginTask({ environment: 'staging', intent: 'ship feature' });
    const jwks = (await h.httpJson('/.well-known/jwks.json')).body as {
      keys: Array<Record<string, unknown>>;
    };
    const [h64] = root.transaction_token.split('.') as [string];
    assert.equal(JSON.parse(Buffer.from(h64, 'base64url').toString('utf8')).typ, 'txntoken+jwt');
    const claims = verifyByHand(root.transaction_token, jwks);
    assert.equal(claims.txn, root.task_id);
    assert.equal(claims.sub, PLANNER);
    assert.equal(claims.aud, TRUST_DOMAIN);
    assert.deepEqual(claims.tctx, {
      environment: 'staging',
      sensitivity_ceiling: 'restricted',
      change_type: 'admin',
      delegation_depth: 0,
    });
    const issued = await planner.issueCredential({
      transaction_token: root.transaction_token,
      role: 'token/logs-read',
    });
    assert.equal(issued.task_id, root.task_id);
    // Another agent cannot use it.
    const stolen = await grpcError(
      coder.issueCredential({ transaction_token: root.transaction_token, role: 'token/logs-read' }),
    );
    assert.equal(stolen.code, status.PERMISSION_DENIED);
    assert.doesNotMatch(stolen.details, /eyJ/);
  });

  it('admin revoke --task T --tree ends the tree from T down; the admin is named on each record', async () => {
    const root = await rootTask();
    const child = await delegate(planner, root, CODER);
    const grandchild = await delegate(coder, child.task_id, TESTER);
    const lease = await tester.issueCredential({ task_id: grandchild.task_id, role: 'token/logs-read' });
    const out = await runCli(
      ['admin', 'revoke', '--task', child.task_id, '--tree', '--reason', 'coder compromised', '--json'],
      { SPIFFE_ENDPOINT_SOCKET: h.endpoints.security, SVID_BROKER_ADDR: h.address },
    );
    assert.equal(out.code, 0, out.stderr);
    const res = JSON.parse(out.stdout) as { tasks: Array<{ task: { task_id: string } }> };
    assert.deepEqual(
      res.tasks.map((t) => t.task.task_id),
      [child.task_id, grandchild.task_id],
    );
    assert.equal((await h.broker.store.getTask(root))?.state, 'active');
    assert.equal((await h.broker.store.getLease(lease.lease_id))?.state, 'revoked');
    const records = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'task.ended' && (r.task === child.task_id || r.task === grandchild.task_id),
    );
    assert.equal(records.length, 2);
    for (const r of records) assert.equal(r.ended_by, `spiffe://${TRUST_DOMAIN}/security/oncall`);
    // Agents may not revoke trees.
    const refused = await runCli(['admin', 'revoke', '--task', root, '--tree', '--reason', 'x'], {
      SPIFFE_ENDPOINT_SOCKET: h.endpoints.coder,
      SVID_BROKER_ADDR: h.address,
    });
    assert.notEqual(refused.code, 0);
  });

  it('quarantining an agent revokes what its delegates hold (quarantine.revokeDelegates)', async () => {
    const root = await rootTask();
    const child = await delegate(planner, root, CODER);
    const lease = await coder.issueCredential({ task_id: child.task_id, role: 'token/logs-read' });
    const admin = await h.adminClient('security');
    await admin.quarantine({ agent: PLANNER, reason: 'planner went rogue', ttl_seconds: 60 });
    try {
      assert.equal((await h.broker.store.getTask(child.task_id))?.state, 'ended');
      assert.equal((await h.broker.store.getLease(lease.lease_id))?.state, 'revoked');
    } finally {
      await admin.releaseQuarantine({ agent: PLANNER, reason: 'test over' });
    }
  });
});

describe('delegated tasks on the in-process store', function () {
  this.timeout(60_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({
      store: 'memory',
      extraPolicies: POLICIES,
      workloads: { planner: { spiffeId: PLANNER }, coder: { spiffeId: CODER }, tester: { spiffeId: TESTER } },
    });
  });
  after(() => h?.close());

  it('ending the parent ends and revokes a three-level subtree', async () => {
    const planner = await h.client('planner');
    const coder = await h.client('coder');
    const tester = await h.client('tester');
    const root = await planner.beginTask({ environment: 'staging', intent: 'ship', ttl_seconds: 1800 });
    const roles = ['token/logs-read'];
    const child = await planner.delegateTask({ parent_task_id: root.task_id, delegate: CODER, roles });
    const grandchild = await coder.delegateTask({ parent_task_id: child.task_id, delegate: TESTER, roles });
    const lease = await tester.issueCredential({ task_id: grandchild.task_id, role: 'token/logs-read' });
    await planner.endTask({ task_id: root.task_id, reason: 'done' });
    for (const id of [child.task_id, grandchild.task_id]) {
      assert.equal((await h.broker.store.getTask(id))?.state, 'ended');
    }
    assert.equal((await h.broker.store.getLease(lease.lease_id))?.state, 'revoked');
  });
});

describe('delegated tasks: a lease store outage', function () {
  this.timeout(60_000);

  it('DelegateTask fails closed with UNAVAILABLE, records task.delegation_failed, and delegates nothing', async () => {
    // The in-process store, refusing the child write as Redis down would (the parent was written before).
    const store = new MemoryLeaseStore();
    const down = { on: false };
    const createChildTask = store.createChildTask.bind(store);
    store.createChildTask = async (task, now) => {
      if (down.on) throw unavailable('lease_store_unavailable', 'lease store unavailable');
      return createChildTask(task, now);
    };
    const h = await startHarness({
      store,
      extraPolicies: POLICIES,
      workloads: { planner: { spiffeId: PLANNER }, coder: { spiffeId: CODER } },
    });
    try {
      const planner = await h.client('planner');
      const root = await planner.beginTask({ environment: 'staging', intent: 'ship', ttl_seconds: 1800 });
      down.on = true;
      const err = await grpcError(
        planner.delegateTask({ parent_task_id: root.task_id, delegate: CODER, roles: ['token/logs-read'] }),
      );
      assert.equal(err.code, status.UNAVAILABLE);
      const failed = (await readAudit(h.auditFile)).filter((r) => r.type === 'task.delegation_failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]?.parent_task, root.task_id);
      assert.equal(failed[0]?.delegate, CODER);
      assert.equal((await readAudit(h.auditFile)).filter((r) => r.type === 'task.delegated').length, 0);
      assert.deepEqual(await store.listChildTasks(root.task_id), []);
    } finally {
      await h.close();
    }
  });
});
