import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { JSONWebKeySet } from 'jose';
import type { BrokerAdminClient } from '../../src/client/broker-client.js';
import { MemoryAuditSink } from '../../src/audit/memory-sink.js';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import {
  BROKER_ID,
  OTHER_AGENT,
  SECURITY,
  SECURITY_2,
  TRUST_DOMAIN,
  breakGlassStoreFor,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';

const REASON = 'x-svid-broker-reason';
const FIELD = 'x-svid-broker-field';
const POLICIES = 'x-svid-broker-policies';
const THIRD_AGENT = `spiffe://${TRUST_DOMAIN}/agents/third`;
const MAX_TTL = 900;

describe('integration: break-glass', function () {
  this.timeout(30_000);
  let h: Harness;
  let security: BrokerAdminClient;

  before(async () => {
    h = await startHarness({
      workloads: { third: { spiffeId: THIRD_AGENT } },
      config: { breakGlass: { maxTtlSeconds: MAX_TTL } },
    });
    security = await h.adminClient('security');
  });
  after(async () => {
    await h?.close();
  });

  it('a grant lets an agent with no permit of its own get a non-restricted role, audited as critical, until reviewed', async () => {
    const other = await h.client('other');
    const otherAdmin = await h.adminClient('other');
    const { task_id } = await other.beginTask({ environment: 'dev', intent: 'incident triage' });
    const req = { task_id, role: 'token/logs-read' };

    const before = await grpcError(other.issueCredential(req));
    assert.equal(before.code, status.PERMISSION_DENIED);
    assert.equal(before.metadata[REASON], 'default_deny');

    const grant = await security.breakGlass({
      agent: OTHER_AGENT,
      roles: ['token/logs-read'],
      reason: 'incident 42: logs needed now',
      ttl_seconds: 600,
    });
    assert.match(grant.grant_id, /^[0-9a-f-]{36}$/);
    assert.equal(grant.agent, OTHER_AGENT);
    assert.equal(grant.granted_by, SECURITY);
    assert.deepEqual(grant.roles, ['token/logs-read']);
    assert.equal(grant.task_id, '');
    assert.equal(grant.uses, 0);
    assert.equal(grant.reviewed, false);

    const issued = await other.issueCredential(req);
    assert.equal(issued.status, 'ISSUED');
    assert.equal(issued.break_glass, true);
    assert.ok(issued.policy_ids.includes('break-glass-permits-non-restricted'), issued.policy_ids.join());
    const jwks = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
    const { claims } = await verifyAccessToken(issued.credential?.token ?? '', {
      jwks,
      issuer: BROKER_ID,
      audience: 'logs-api',
    });
    assert.equal(claims.sub, OTHER_AGENT);

    const audit = await readAudit(h.auditFile);
    const granted = audit.find((r) => r.type === 'breakglass.granted' && r.grant === grant.grant_id);
    assert.equal(granted?.severity, 'critical');
    assert.equal(granted?.agent, SECURITY);
    assert.equal(granted?.target, OTHER_AGENT);
    assert.equal(granted?.reason, 'incident 42: logs needed now');
    const used = audit.find((r) => r.type === 'credential.issued' && r.lease === issued.lease_id);
    assert.equal(used?.break_glass, grant.grant_id);
    assert.equal(used?.severity, 'critical');
    assert.equal(used?.agent, OTHER_AGENT);

    // On the review list, with its use counted; an agent may not read the list.
    const listed = (await security.listBreakGlass()).grants.find((g) => g.grant_id === grant.grant_id);
    assert.ok(listed, 'the grant is on the review list');
    assert.equal(listed.uses, 1);
    assert.equal(listed.reviewed, false);
    const peek = await grpcError(otherAdmin.listBreakGlass());
    assert.equal(peek.code, status.PERMISSION_DENIED);
    const selfReview = await grpcError(
      otherAdmin.reviewBreakGlass({ grant_id: grant.grant_id, note: 'fine' }),
    );
    assert.equal(selfReview.code, status.PERMISSION_DENIED);
    // Separation of duties: the grantor cannot review its own grant either.
    const grantorReview = await grpcError(
      security.reviewBreakGlass({ grant_id: grant.grant_id, note: 'ok' }),
    );
    assert.equal(grantorReview.code, status.PERMISSION_DENIED);
    assert.equal(grantorReview.metadata[REASON], 'self_review');
    const refusal = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'admin.denied' && r.grant === grant.grant_id && r.agent === SECURITY,
    );
    assert.equal(refusal?.method, 'ReviewBreakGlass');
    assert.equal(refusal?.refusal, 'self_review');
    assert.equal(refusal?.granted_by, SECURITY);

    const reviewer = await h.adminClient('security2');
    const noNote = await grpcError(reviewer.reviewBreakGlass({ grant_id: grant.grant_id, note: ' ' }));
    assert.equal(noNote.code, status.INVALID_ARGUMENT);
    assert.equal(noNote.metadata[FIELD], 'note');
    const reviewed = await reviewer.reviewBreakGlass({
      grant_id: grant.grant_id,
      note: 'incident 42 closed; one logs token used',
    });
    assert.equal(reviewed.reviewed, true);
    assert.equal(reviewed.reviewed_by, SECURITY_2);
    assert.equal(reviewed.uses, 1);
    assert.equal(reviewed.review_note, 'incident 42 closed; one logs token used');
    assert.ok(!(await security.listBreakGlass()).grants.some((g) => g.grant_id === grant.grant_id));
    const reviewRecord = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'breakglass.reviewed' && r.grant === grant.grant_id,
    );
    assert.equal(reviewRecord?.uses, 1);
    assert.equal(reviewRecord?.agent, SECURITY_2);
  });

  it('restricted roles stay out of reach: refused at grant time, and forbidden even with a grant in the store', async () => {
    const refused = await grpcError(
      security.breakGlass({
        agent: THIRD_AGENT,
        roles: ['token/customer-data'],
        reason: 'customer escalation',
        ttl_seconds: 600,
      }),
    );
    assert.equal(refused.code, status.PERMISSION_DENIED);
    const deniedRecord = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'breakglass.denied' && r.target === THIRD_AGENT,
    );
    assert.equal(deniedRecord?.role, 'token/customer-data');
    assert.equal(deniedRecord?.severity, 'critical');

    // A grant no policy would allow, planted in the shared store: the broker-side forbid still holds.
    const planted = await breakGlassStoreFor(h);
    const grantId = randomUUID();
    try {
      const now = Date.now();
      await planted.store.grant({
        id: grantId,
        grantedBy: SECURITY,
        agent: THIRD_AGENT,
        roles: ['token/customer-data', 'token/logs-read'],
        reason: 'planted by the test',
        createdAt: now,
        expiresAt: now + 600_000,
        uses: 0,
        reviewed: false,
      });
    } finally {
      planted.close();
    }
    const third = await h.client('third');
    const { task_id } = await third.beginTask({ environment: 'dev' });
    const forbidden = await grpcError(third.issueCredential({ task_id, role: 'token/customer-data' }));
    assert.equal(forbidden.code, status.PERMISSION_DENIED);
    assert.equal(forbidden.metadata[POLICIES], 'break-glass-never-restricted');
    assert.match(forbidden.details, /break-glass never applies to restricted roles/);
    const denied = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.denied' && r.task === task_id && r.role === 'token/customer-data',
    );
    assert.equal(denied?.break_glass, grantId);
    assert.equal(denied?.severity, 'critical');
    assert.deepEqual(denied?.policy_ids, ['break-glass-never-restricted']);

    // Declaring restricted data on a covered, non-restricted role is forbidden the same way.
    const declared = await grpcError(
      third.issueCredential({ task_id, role: 'token/logs-read', sensitivity: 'restricted' }),
    );
    assert.equal(declared.code, status.PERMISSION_DENIED);
    assert.equal(declared.metadata[POLICIES], 'break-glass-never-restricted');
    // The same role at its own sensitivity is what the grant is for.
    const ok = await third.issueCredential({ task_id, role: 'token/logs-read' });
    assert.equal(ok.status, 'ISSUED');
    assert.equal(ok.break_glass, true);
  });

  it('grants are validated: TTL cap, mandatory reason, known roles, a granting identity', async () => {
    const base = { agent: OTHER_AGENT, roles: ['token/logs-read'], reason: 'why', ttl_seconds: 60 };
    const tooLong = await grpcError(security.breakGlass({ ...base, ttl_seconds: MAX_TTL + 1 }));
    assert.equal(tooLong.code, status.INVALID_ARGUMENT);
    assert.equal(tooLong.metadata[FIELD], 'ttl_seconds');
    const noTtl = await grpcError(security.breakGlass({ ...base, ttl_seconds: 0 }));
    assert.equal(noTtl.code, status.INVALID_ARGUMENT);
    assert.equal(noTtl.metadata[FIELD], 'ttl_seconds');
    const noReason = await grpcError(security.breakGlass({ ...base, reason: '   ' }));
    assert.equal(noReason.code, status.INVALID_ARGUMENT);
    assert.equal(noReason.metadata[FIELD], 'reason');
    const unknownRole = await grpcError(security.breakGlass({ ...base, roles: ['token/nope'] }));
    assert.equal(unknownRole.code, status.INVALID_ARGUMENT);
    assert.equal(unknownRole.metadata[FIELD], 'roles');
    const noRoles = await grpcError(security.breakGlass({ ...base, roles: [] }));
    assert.equal(noRoles.code, status.INVALID_ARGUMENT);
    const badAgent = await grpcError(security.breakGlass({ ...base, agent: 'not-a-spiffe-id' }));
    assert.equal(badAgent.code, status.INVALID_ARGUMENT);
    assert.equal(badAgent.metadata[FIELD], 'agent');

    const otherAdmin = await h.adminClient('other');
    const selfGrant = await grpcError(otherAdmin.breakGlass(base));
    assert.equal(selfGrant.code, status.PERMISSION_DENIED);
  });

  it('a task-scoped grant holds only inside its task', async () => {
    const other = await h.client('other');
    const [t1, t2] = await Promise.all([
      other.beginTask({ environment: 'dev', intent: 'scoped one' }),
      other.beginTask({ environment: 'dev', intent: 'scoped two' }),
    ]);
    const grant = await security.breakGlass({
      agent: OTHER_AGENT,
      task_id: t1.task_id,
      roles: ['token/secrets-read'],
      reason: 'one task only',
      ttl_seconds: 300,
    });
    assert.equal(grant.task_id, t1.task_id);

    const inTask = await other.issueCredential({ task_id: t1.task_id, role: 'token/secrets-read' });
    assert.equal(inTask.status, 'ISSUED');
    assert.equal(inTask.break_glass, true);
    const elsewhere = await grpcError(
      other.issueCredential({ task_id: t2.task_id, role: 'token/secrets-read' }),
    );
    assert.equal(elsewhere.code, status.PERMISSION_DENIED);
    assert.equal(elsewhere.metadata[REASON], 'default_deny');
  });
});

describe('integration: break-glass with the audit trail down', () => {
  it('refuses the grant and stores nothing: an unrecorded grant never works', async () => {
    const sink = new MemoryAuditSink();
    const h = await startHarness({ audit: sink });
    try {
      const admin = await h.adminClient('security');
      sink.failWrites();
      const err = await grpcError(
        admin.breakGlass({
          agent: OTHER_AGENT,
          roles: ['token/logs-read'],
          reason: 'audit down drill',
          ttl_seconds: 600,
        }),
      );
      assert.equal(err.code, status.UNAVAILABLE);
      assert.equal(err.metadata['x-svid-broker-reason'], 'audit_unavailable');
      const planted = await breakGlassStoreFor(h);
      try {
        assert.equal(
          await planted.store.findActive(OTHER_AGENT, randomUUID(), 'token/logs-read', Date.now()),
          undefined,
        );
        assert.deepEqual(await planted.store.listUnreviewed(), []);
      } finally {
        planted.close();
      }
    } finally {
      await h.close();
    }
  });
});
