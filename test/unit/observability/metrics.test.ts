/**
 * Broker metrics: counters derived from recorded audit events, gauges read at scrape time, and
 * label values that never carry request text, identities or secrets.
 */
import { strict as assert } from 'node:assert';
import { Registry } from 'prom-client';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import type { AuditEventInput } from '../../../src/audit/types.js';
import {
  createBrokerMetrics,
  MetricsAuditSink,
  withMetrics,
  type BrokerGaugeSources,
  type BrokerMetrics,
  type MetricsLogger,
} from '../../../src/observability/metrics.js';

const AGENT = 'spiffe://example.org/agents/demo';
const ROLES = new Map([
  ['token/demo', { backend: 'token' }],
  ['vault/db-read', { backend: 'vault' }],
]);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The exposition text as samples; `Nan` and `+Inf` are how prom-client writes those values. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    const raw = m[3] as string;
    const value =
      raw === 'Nan' ? Number.NaN : raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: m[1] as string, labels, value });
  }
  return samples;
}

function quarantineSet(fields: Record<string, unknown>): AuditEventInput {
  return { type: 'quarantine.set', agent: AGENT, ...fields };
}

class LogSpy implements MetricsLogger {
  readonly warnings: Array<{ obj: object; msg: string }> = [];
  readonly infos: Array<{ obj: object; msg: string }> = [];
  info(obj: object, msg: string): void {
    this.infos.push({ obj, msg });
  }
  warn(obj: object, msg: string): void {
    this.warnings.push({ obj, msg });
  }
}

function sources(overrides: Partial<BrokerGaugeSources> = {}): BrokerGaugeSources {
  return {
    pendingApprovals: async () => 2,
    activeLeasesByBackend: async () => ({ token: 3 }),
    pendingLeases: async () => 2,
    pendingRevocations: async () => 1,
    activeQuarantines: async () => 0,
    feedLagSeconds: () => 0.5,
    ...overrides,
  };
}

describe('broker metrics', () => {
  let registry: Registry;
  let logs: LogSpy;
  let metrics: BrokerMetrics;
  let inner: MemoryAuditSink;
  let audit: MetricsAuditSink;

  const build = (gauges: BrokerGaugeSources = sources(), sourceTimeoutMs?: number): void => {
    registry = new Registry();
    logs = new LogSpy();
    metrics = createBrokerMetrics(registry, gauges, {
      roles: ROLES,
      logger: logs,
      ...(sourceTimeoutMs !== undefined ? { sourceTimeoutMs } : {}),
    });
    inner = new MemoryAuditSink();
    audit = new MetricsAuditSink(inner, metrics);
  };

  const scrape = async (): Promise<Sample[]> => parse(await registry.metrics());

  /** The value of one series, or undefined when the scrape has no such series. */
  const value = async (name: string, labels: Record<string, string> = {}): Promise<number | undefined> =>
    (await scrape()).find(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )?.value;

  const write = (...events: AuditEventInput[]): Promise<unknown> =>
    Promise.all(events.map((e) => audit.write(e)));

  const policyDenial = { decision: 'deny', policy_ids: ['forbid-prod'], policy_digest: 'd' };

  beforeEach(() => build());

  describe('counters from audit events', () => {
    it('counts issuance by backend and role, starting every catalogued role at 0', async () => {
      assert.equal(
        await value('svid_broker_credentials_issued_total', { backend: 'token', role: 'token/demo' }),
        0,
      );
      assert.equal(
        await value('svid_broker_credentials_issued_total', { backend: 'vault', role: 'vault/db-read' }),
        0,
      );
      await write(
        { type: 'credential.issued', agent: AGENT, role: 'token/demo', backend: 'token', lease: 'l1' },
        { type: 'credential.issued', agent: AGENT, role: 'token/demo', backend: 'token', lease: 'l2' },
        { type: 'credential.issued', agent: AGENT, role: 'vault/db-read', backend: 'vault', lease: 'l3' },
      );
      assert.equal(
        await value('svid_broker_credentials_issued_total', { backend: 'token', role: 'token/demo' }),
        2,
      );
      assert.equal(
        await value('svid_broker_credentials_issued_total', { backend: 'vault', role: 'vault/db-read' }),
        1,
      );
    });

    it('counts denials by action and the reason code the caller saw', async () => {
      await write(
        // Policy: the three outcomes denialError reports.
        { type: 'credential.denied', agent: AGENT, role: 'token/demo', ...policyDenial },
        { type: 'credential.denied', agent: AGENT, role: 'token/demo', decision: 'deny', policy_ids: [] },
        {
          type: 'task.denied',
          agent: AGENT,
          decision: 'deny',
          policy_ids: [],
          policy_errors: ['unknown attribute'],
        },
        // Refusals recorded by the catch-all, with the BrokerError reason.
        { type: 'credential.denied', agent: AGENT, code: 'FAILED_PRECONDITION', reason: 'task_expired' },
        { type: 'credential.denied', agent: AGENT, code: 'PERMISSION_DENIED', reason: 'quarantined' },
        { type: 'task.failed', agent: AGENT, code: 'UNAVAILABLE', reason: 'lease_store_unavailable' },
        // Budgets: a role means a credential budget, none a task budget.
        { type: 'budget.exceeded', agent: AGENT, role: 'token/demo', budget_limit: 'activeLeases' },
        { type: 'budget.exceeded', agent: AGENT, environment: 'dev', budget_limit: 'openTasks' },
        // Failures by stage.
        { type: 'credential.failed', agent: AGENT, stage: 'backend', error: 'backend_error' },
        { type: 'credential.failed', agent: AGENT, stage: 'lease_store' },
        { type: 'credential.failed', agent: AGENT, stage: 'agent_quarantined' },
        // Authentication, human and admin refusals.
        {
          type: 'auth.denied',
          agent: '',
          method: 'IssueCredential',
          reason: 'svid_expired',
          peer: 'ipv4:1.2.3.4',
        },
        // The window's count of the same denials, per method (the first was recorded in full).
        {
          type: 'auth.denied',
          agent: '',
          aggregate: true,
          peer: '1.2.3.4',
          reason: 'svid_expired',
          count: 7,
          methods: { IssueCredential: 5, BeginTask: 2 },
        },
        { type: 'approval.denied', agent: AGENT, reason: 'not during the freeze', approve: false },
        { type: 'approval.decision_refused', agent: AGENT, refusal: 'self_approval', reason: 'pls' },
        { type: 'approval.decision_refused', agent: AGENT, refusal: 'policy', reason: 'ok', ...policyDenial },
        { type: 'breakglass.denied', agent: AGENT, role: 'token/demo', ...policyDenial },
      );
      const denials = (await scrape()).filter((s) => s.name === 'svid_broker_denials_total');
      const got = Object.fromEntries(denials.map((s) => [`${s.labels.action}/${s.labels.reason}`, s.value]));
      assert.deepEqual(got, {
        'IssueCredential/policy_denied': 1,
        'IssueCredential/default_deny': 1,
        'BeginTask/policy_invalid_request': 1,
        'IssueCredential/task_expired': 1,
        'IssueCredential/quarantined': 1,
        'BeginTask/lease_store_unavailable': 1,
        'IssueCredential/budget_exceeded': 1,
        'BeginTask/budget_exceeded': 1,
        'IssueCredential/backend_error': 1,
        'IssueCredential/lease_store_unavailable': 1,
        'IssueCredential/agent_quarantined': 1,
        'IssueCredential/svid_expired': 6,
        'BeginTask/svid_expired': 2,
        'IssueCredential/approval_denied': 1,
        'DecideApproval/self_approval': 1,
        'DecideApproval/policy_denied': 1,
        'BreakGlass/policy_denied': 1,
      });
    });

    it('counts revocations by backend and outcome, naming the backend from the role when the event does not', async () => {
      await write(
        { type: 'lease.revoked', agent: AGENT, lease: 'l1', role: 'token/demo', reason: 'task_ended' },
        {
          type: 'lease.revoked',
          agent: AGENT,
          lease: 'l2',
          backend: 'vault',
          reason: 'expired',
          attempts: 2,
        },
        { type: 'lease.revoke_queued', agent: AGENT, lease: 'l3', role: 'vault/db-read', error: 'timeout' },
        { type: 'lease.revoke_failed', agent: '', lease: 'l4', backend: 'vault', error: 'gone', attempts: 5 },
        { type: 'lease.expired', agent: AGENT, lease: 'l5', role: 'token/demo', reason: 'expired' },
        { type: 'lease.not_revocable', agent: AGENT, lease: 'l6', role: 'token/demo', backend: 'token' },
      );
      const rev = (backend: string, outcome: string): Promise<number | undefined> =>
        value('svid_broker_revocations_total', { backend, outcome });
      assert.equal(await rev('token', 'revoked'), 1);
      assert.equal(await rev('vault', 'revoked'), 1);
      assert.equal(await rev('vault', 'queued'), 1);
      assert.equal(await rev('vault', 'revoke_failed'), 1);
      assert.equal(await rev('token', 'expired'), 1);
      assert.equal(await rev('token', 'not_revocable'), 1);
      assert.equal(await rev('token', 'revoke_failed'), 0, 'known series start at 0');
    });

    it('counts quarantines by trigger', async () => {
      const quarantine = (trigger: string): AuditEventInput => quarantineSet({ pattern: AGENT, trigger });
      await write(quarantine('manual'), quarantine('manual'), quarantine('denial_burst'));
      assert.equal(await value('svid_broker_quarantines_total', { trigger: 'manual' }), 2);
      assert.equal(await value('svid_broker_quarantines_total', { trigger: 'denial_burst' }), 1);
    });

    it('counts refused shared-state entries by kind and reason, never by key or signer', async () => {
      const refused = (kind: string, reason: string): AuditEventInput => ({
        type: 'replica.entry_refused',
        agent: '',
        kind,
        reason,
        key: '{svb}:jwks/kid-1',
        signer: AGENT,
      });
      await write(refused('jwks', 'unsigned'), refused('jwks', 'unsigned'), refused('policy', 'Bad Reason!'));
      const name = 'svid_broker_replica_entries_refused_total';
      assert.equal(await value(name, { kind: 'jwks', reason: 'unsigned' }), 2);
      assert.equal(await value(name, { kind: 'policy', reason: 'other' }), 1);
      assert.ok(!(await registry.metrics()).includes('kid-1'));
    });

    it('ignores events that are not decisions', async () => {
      const before = await registry.metrics();
      await write(
        { type: 'task.begun', agent: AGENT, task: 't1' },
        { type: 'approval.requested', agent: AGENT, approval: 'a1' },
        { type: 'policy.reloaded', agent: '', digest: 'x' },
      );
      const counters = (text: string): Sample[] =>
        parse(text).filter((s) => /^svid_broker_(credentials|denials|revocations|quarantines)/.test(s.name));
      assert.deepEqual(counters(await registry.metrics()), counters(before));
    });

    it('counts nothing the inner sink failed to record, and passes its error on', async () => {
      inner.failWrites(new Error('disk full'));
      await assert.rejects(
        audit.write({ type: 'credential.issued', agent: AGENT, role: 'token/demo', backend: 'token' }),
        /audit log unavailable/,
      );
      assert.equal(
        await value('svid_broker_credentials_issued_total', { backend: 'token', role: 'token/demo' }),
        0,
      );
    });

    it('returns the inner record, and close() closes the inner sink', async () => {
      const record = await audit.write({ type: 'credential.issued', agent: AGENT, role: 'token/demo' });
      assert.deepEqual(record, inner.records[0]);
      await audit.close();
      await assert.rejects(inner.write({ type: 'task.begun', agent: AGENT }), /closed/);
    });

    it('never fails a recorded write because counting failed, and logs that once', async () => {
      const poisoned = (): AuditEventInput => {
        const event = { type: 'credential.issued', agent: AGENT } as AuditEventInput;
        Object.defineProperty(event, 'role', {
          enumerable: false,
          get: () => {
            throw new Error('boom');
          },
        });
        return event;
      };
      const sink = withMetrics(inner, metrics);
      await sink.write(poisoned());
      await sink.write(poisoned());
      assert.equal(inner.records.length, 2);
      assert.equal(logs.warnings.length, 1);
      assert.match(logs.warnings[0]?.msg ?? '', /counting an audit event failed/);
    });
  });

  describe('label values', () => {
    const SECRET = 'hvs.CAESIJ-secret-token';

    it('come only from the catalog or a fixed shape, never from request text, identities or secrets', async () => {
      await write(
        {
          type: 'credential.issued',
          agent: AGENT,
          role: SECRET,
          backend: `https://vault/?token=${SECRET}`,
          justification: SECRET,
          tool: SECRET,
          lease: SECRET,
        },
        { type: 'credential.denied', agent: AGENT, code: 'INVALID_ARGUMENT', reason: `Bearer ${SECRET}` },
        { type: 'credential.denied', agent: AGENT, code: 'INVALID_ARGUMENT', reason: AGENT },
        {
          type: 'auth.denied',
          agent: '',
          method: `/svid.Broker/${SECRET}`,
          reason: 'bad_svid',
          peer: SECRET,
        },
        { type: 'credential.failed', agent: AGENT, stage: 'backend', error: `permission denied: ${SECRET}` },
        { type: 'lease.revoke_failed', agent: AGENT, lease: 'l', backend: SECRET, error: SECRET },
        { type: 'lease.revoked', agent: AGENT, lease: 'l', role: `token/demo ${SECRET}` },
        { type: 'approval.decision_refused', agent: AGENT, refusal: `x ${SECRET}`, reason: SECRET },
        quarantineSet({ pattern: AGENT, trigger: AGENT, reason: SECRET }),
        quarantineSet({ pattern: AGENT, trigger: SECRET }),
      );
      const text = await registry.metrics();
      assert.ok(!text.includes('hvs.'), 'a secret reached the metrics');
      assert.ok(!text.includes('spiffe://'), 'a SPIFFE ID reached the metrics');
      const allowed: Record<string, (v: string) => boolean> = {
        backend: (v) => ['token', 'vault', 'other'].includes(v),
        role: (v) => [...ROLES.keys(), 'other'].includes(v),
        reason: (v) => /^[a-z][a-z0-9_]*$/.test(v),
        action: (v) => /^[A-Z][A-Za-z]*$/.test(v) || v === 'other',
        outcome: (v) =>
          ['revoked', 'queued', 'revoke_failed', 'not_revocable', 'expired', 'orphaned'].includes(v),
        trigger: (v) => /^[a-z][a-z0-9_]*$/.test(v),
      };
      const ours = parse(text).filter((s) =>
        /^svid_broker_(credentials|denials|revocations|quarantines)/.test(s.name),
      );
      for (const s of ours) {
        for (const [label, v] of Object.entries(s.labels)) {
          const check = allowed[label];
          assert.ok(check, `unexpected label ${label} on ${s.name}`);
          assert.ok(check(v), `label ${label}="${v}" on ${s.name}`);
        }
      }
      assert.equal(
        await value('svid_broker_credentials_issued_total', { backend: 'other', role: 'other' }),
        1,
      );
      assert.equal(await value('svid_broker_quarantines_total', { trigger: 'other' }), 2);
      assert.equal(
        await value('svid_broker_denials_total', { action: 'IssueCredential', reason: 'other' }),
        3,
      );
      assert.equal(await value('svid_broker_denials_total', { action: 'other', reason: 'bad_svid' }), 1);
    });

    it('caps distinct reason codes, counting the rest as other', async () => {
      for (let i = 0; i < 100; i++) {
        await audit.write({ type: 'credential.denied', agent: AGENT, code: 'X', reason: `reason_${i}` });
      }
      const reasons = (await scrape()).filter((s) => s.name === 'svid_broker_denials_total');
      assert.equal(reasons.length, 65);
      assert.equal(reasons.find((s) => s.labels.reason === 'other')?.value, 36);
    });
  });

  describe('gauges read at scrape time', () => {
    it('reports what the sources answer, with every catalogued backend present', async () => {
      let pending = 2;
      build(
        sources({
          pendingApprovals: async () => pending,
          activeLeasesByBackend: async () => ({ token: 3, gone: 2 }),
        }),
      );
      assert.equal(await value('svid_broker_pending_approvals'), 2);
      assert.equal(await value('svid_broker_active_leases', { backend: 'token' }), 3);
      assert.equal(await value('svid_broker_active_leases', { backend: 'vault' }), 0);
      assert.equal(await value('svid_broker_active_leases', { backend: 'other' }), 2);
      assert.equal(await value('svid_broker_pending_revocations'), 1);
      assert.equal(await value('svid_broker_pending_leases'), 2, 'pending leases apart from active ones');
      assert.equal(await value('svid_broker_active_quarantines'), 0);
      assert.equal(await value('svid_broker_invalidation_feed_lag_seconds'), 0.5);
      pending = 5;
      assert.equal(await value('svid_broker_pending_approvals'), 5, 'read again on every scrape');
    });

    it('keeps the existing request counter and latency histogram', async () => {
      metrics.requests.inc({ method: 'IssueCredential', code: 'OK' });
      metrics.latency.observe({ method: 'IssueCredential' }, 0.003);
      assert.equal(await value('svid_broker_requests_total', { method: 'IssueCredential', code: 'OK' }), 1);
      assert.equal(await value('svid_broker_request_seconds_count', { method: 'IssueCredential' }), 1);
    });

    it('reports a failing or hanging source as unknown without failing the scrape, logging once until it recovers', async () => {
      let redisDown = true;
      build(
        sources({
          pendingApprovals: async () => {
            if (redisDown) throw new Error('ECONNREFUSED');
            return 4;
          },
          activeLeasesByBackend: () =>
            redisDown ? new Promise<Record<string, number>>(() => undefined) : Promise.resolve({ vault: 1 }),
          feedLagSeconds: () => {
            throw new Error('no feed');
          },
        }),
        50,
      );
      for (let i = 0; i < 2; i++) {
        const samples = await scrape();
        const find = (name: string): Sample[] => samples.filter((s) => s.name === name);
        assert.ok(Number.isNaN(find('svid_broker_pending_approvals')[0]?.value), 'unknown is NaN');
        assert.deepEqual(
          find('svid_broker_active_leases'),
          [],
          'a labelled gauge has no series when unknown',
        );
        assert.ok(Number.isNaN(find('svid_broker_invalidation_feed_lag_seconds')[0]?.value));
        assert.equal(find('svid_broker_pending_revocations')[0]?.value, 1, 'the other gauges still report');
      }
      // Read without scraping again (a scrape would count more failures).
      const failures = await registry.getSingleMetric('svid_broker_metrics_source_failures_total')?.get();
      assert.deepEqual(Object.fromEntries((failures?.values ?? []).map((v) => [v.labels.gauge, v.value])), {
        pending_approvals: 2,
        active_leases: 2,
        feed_lag: 2,
      });
      assert.deepEqual(
        logs.warnings.map((w) => (w.obj as { gauge: string }).gauge).sort(),
        ['active_leases', 'feed_lag', 'pending_approvals'],
        'one warning per failing source, not one per scrape',
      );
      assert.match(JSON.stringify(logs.warnings), /no answer within 50 ms/);

      redisDown = false;
      assert.equal(await value('svid_broker_pending_approvals'), 4);
      assert.equal(await value('svid_broker_active_leases', { backend: 'vault' }), 1);
      assert.deepEqual(logs.infos.map((w) => (w.obj as { gauge: string }).gauge).sort(), [
        'active_leases',
        'pending_approvals',
      ]);
    });

    it('reports +Inf feed lag before the first read', async () => {
      build(sources({ feedLagSeconds: () => Number.POSITIVE_INFINITY }));
      assert.equal(await value('svid_broker_invalidation_feed_lag_seconds'), Infinity);
    });
  });
});
