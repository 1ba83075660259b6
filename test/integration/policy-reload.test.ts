import { strict as assert } from 'node:assert';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { packageRoot } from '../../src/package-root.js';
import { eventually, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

const POLICIES = 'x-svid-broker-policies';

const PAUSE_DEMO = `
@id("test-demo-token-paused")
@reason("demo tokens are paused for maintenance")
forbid (
  principal,
  action == Action::"IssueCredential",
  resource == Role::"token/demo"
);
`;

describe('integration: policy reload', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;
  let policyDir: string;

  before(async () => {
    // A copy of the shipped set, not watched: every reload here is the explicit one (what SIGHUP does).
    policyDir = mkdtempSync(join(tmpdir(), 'svb-policies-'));
    for (const f of readdirSync(join(packageRoot(), 'policies'))) {
      if (f.endsWith('.cedar') || f.endsWith('.cedarschema'))
        copyFileSync(join(packageRoot(), 'policies', f), join(policyDir, f));
    }
    h = await startHarness({ config: { policy: { dir: policyDir, watch: false } } });
    demo = await h.client('demo');
  });
  after(async () => {
    await h?.close();
    rmSync(policyDir, { recursive: true, force: true });
  });

  it('an invalid set is refused and the old one keeps serving; a valid one takes effect with a new digest', async () => {
    const initial = h.broker.reloadPolicy();
    assert.equal(initial.ok, true);
    const oldDigest = initial.digest;
    assert.match(oldDigest, /^[0-9a-f]{16,}$/);
    const dev = await demo.beginTask({ environment: 'dev' });
    const staging = await demo.beginTask({ environment: 'staging' });

    assert.equal((await demo.issueCredential({ task_id: dev.task_id, role: 'token/demo' })).status, 'ISSUED');
    const outside = await grpcError(demo.issueCredential({ task_id: staging.task_id, role: 'token/demo' }));
    assert.equal(outside.code, status.PERMISSION_DENIED);

    // A syntax error, then a policy the schema rejects: both refused, the old set stays.
    writeFileSync(join(policyDir, 'broken.cedar'), 'permit (principal, action, resource) when { ;');
    const syntax = h.broker.reloadPolicy();
    assert.deepEqual(syntax, { ok: false, digest: oldDigest });
    writeFileSync(
      join(policyDir, 'broken.cedar'),
      '@id("bad-type")\npermit (principal is NoSuchType, action == Action::"IssueCredential", resource);\n',
    );
    const schema = h.broker.reloadPolicy();
    assert.deepEqual(schema, { ok: false, digest: oldDigest });
    assert.equal((await demo.issueCredential({ task_id: dev.task_id, role: 'token/demo' })).status, 'ISSUED');

    const failed = await eventually(async () => {
      const records = (await readAudit(h.auditFile)).filter((r) => r.type === 'policy.reload_failed');
      return records.length === 2 ? records : undefined;
    });
    for (const record of failed) {
      assert.equal(record.kept_digest, oldDigest);
      const errors = record.errors as string[];
      assert.ok(Array.isArray(errors) && errors.length > 0);
      assert.ok(
        errors.some((e) => e.includes('broken.cedar')),
        errors.join('\n'),
      );
    }
    assert.ok((failed[1]?.errors as string[]).some((e) => /NoSuchType/.test(e)));

    // Fixed: a valid new forbid.
    writeFileSync(join(policyDir, 'broken.cedar'), PAUSE_DEMO);
    const fixed = h.broker.reloadPolicy();
    assert.equal(fixed.ok, true);
    assert.notEqual(fixed.digest, oldDigest);
    const newDigest = fixed.digest;

    const paused = await grpcError(demo.issueCredential({ task_id: dev.task_id, role: 'token/demo' }));
    assert.equal(paused.code, status.PERMISSION_DENIED);
    assert.equal(paused.metadata[POLICIES], 'test-demo-token-paused');
    assert.match(paused.details, /demo tokens are paused for maintenance/);
    // Reloading the same content changes nothing and announces nothing.
    assert.deepEqual(h.broker.reloadPolicy(), { ok: true, digest: newDigest });

    const audit = await eventually(async () => {
      const records = await readAudit(h.auditFile);
      return records.some((r) => r.type === 'policy.reloaded') ? records : undefined;
    });
    const reloaded = audit.filter((r) => r.type === 'policy.reloaded');
    assert.equal(reloaded.length, 1);
    assert.equal(reloaded[0]?.digest, newDigest);
    assert.equal(reloaded[0]?.previous_digest, oldDigest);

    // Every decision names the digest of the set that made it.
    const at = audit.findIndex((r) => r.type === 'policy.reloaded');
    const decisions = audit
      .map((r, i) => ({ r, i }))
      .filter(({ r }) => r.type === 'credential.issued' || r.type === 'credential.denied');
    assert.deepEqual(
      decisions.map(({ r, i }) => [r.type, r.policy_digest === (i < at ? oldDigest : newDigest)]),
      [
        ['credential.issued', true],
        ['credential.denied', true],
        ['credential.issued', true],
        ['credential.denied', true],
      ],
    );
    assert.deepEqual(decisions[3]?.r.policy_ids, ['test-demo-token-paused']);
  });
});

describe('integration: policy file watch', function () {
  this.timeout(30_000);
  let h: Harness;

  before(async () => {
    h = await startHarness(); // policy.watch defaults to true
  });
  after(async () => {
    await h?.close();
  });

  it('editing a file in the policy directory reloads the set without a signal', async () => {
    const demo = await h.client('demo');
    const { task_id } = await demo.beginTask({ environment: 'dev' });
    const before = await demo.issueCredential({ task_id, role: 'token/demo' });
    assert.equal(before.status, 'ISSUED');

    const file = join(h.dir, 'policies', 'paused.cedar');
    writeFileSync(file, PAUSE_DEMO);
    const denied = await eventually(async () => {
      const err = await grpcError(demo.issueCredential({ task_id, role: 'token/demo' }));
      return err.code === status.PERMISSION_DENIED ? err : undefined;
    }, 5000);
    assert.equal(denied.metadata[POLICIES], 'test-demo-token-paused');
    const reloaded = (await readAudit(h.auditFile)).filter((r) => r.type === 'policy.reloaded');
    assert.equal(reloaded.length, 1);

    unlinkSync(file);
    const again = await eventually(async () => {
      const res = await demo.issueCredential({ task_id, role: 'token/demo' });
      return res.status === 'ISSUED' ? res : undefined;
    }, 5000);
    assert.equal(again.role, 'token/demo');
    const records = (await readAudit(h.auditFile)).filter((r) => r.type === 'policy.reloaded');
    assert.equal(records.length, 2);
    // Back to the original set: the second reload returns to the first digest.
    assert.equal(records[1]?.digest, records[0]?.previous_digest);
  });
});
