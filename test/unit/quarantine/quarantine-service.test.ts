/**
 * QuarantineService: manual quarantine and release with their audit records, and the automatic
 * triggers (denials, budget refusals, restricted data). Real fakes only: the in-memory quarantine
 * store and audit sink, a controllable clock, and a `revoke` that records what it was asked.
 */
import { strict as assert } from 'node:assert';
import { pino } from 'pino';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import type { RevokeReport } from '../../../src/broker/lease-admin.js';
import { BrokerError, permissionDenied, unavailable } from '../../../src/errors.js';
import type { LeaseSelector } from '../../../src/leases/types.js';
import { MemoryQuarantineStore } from '../../../src/quarantine/memory-quarantine-store.js';
import {
  QuarantineService,
  type QuarantineInput,
  type QuarantineTriggers,
} from '../../../src/quarantine/quarantine-service.js';
import { quarantinedError } from '../../../src/quarantine/quarantine-view.js';
import { rejectsWith } from '../../support/eventually.js';

const AGENT = 'spiffe://example.org/agents/a';
const OTHER = 'spiffe://example.org/agents/b';
const ADMIN = 'spiffe://example.org/security/oncall';
const T0 = Date.UTC(2025, 0, 2, 3, 4, 5);

interface RevokeCall {
  by: string;
  selector: LeaseSelector;
  describe: Record<string, unknown>;
  reason: string;
  /** What the store held when revoke was called: the quarantine must be in force by then. */
  quarantinedAtCall: string[];
}

function report(matched: number): RevokeReport {
  return {
    matched,
    revoked: matched,
    pendingRetry: 0,
    notRevocable: 0,
    byBackend: {},
    dryRun: false,
    scanned: matched,
    toScan: matched,
    done: true,
  };
}

function setup(triggers: QuarantineTriggers = {}, groups: Record<string, string[]> = {}) {
  let clock = T0;
  const store = new MemoryQuarantineStore();
  const audit = new MemoryAuditSink();
  const revokes: RevokeCall[] = [];
  const service = new QuarantineService({
    store,
    audit,
    logger: pino({ level: 'silent' }),
    triggers,
    agentGroups: (id) => groups[id] ?? [],
    now: () => clock,
    revoke: async (by, selector, describe, reason) => {
      const quarantinedAtCall = (await store.list(clock)).map((q) => q.pattern);
      revokes.push({ by, selector, describe, reason, quarantinedAtCall });
      return report(2);
    },
  });
  return {
    store,
    audit,
    revokes,
    service,
    advance: (ms: number) => {
      clock += ms;
    },
    now: () => clock,
  };
}

function manual(overrides: Partial<QuarantineInput> = {}): QuarantineInput {
  return {
    pattern: AGENT,
    selector: { agent: AGENT },
    reason: 'leaked token',
    ttlSeconds: 3600,
    revokeActive: false,
    by: ADMIN,
    trigger: 'manual',
    ...overrides,
  };
}

const denied = (): BrokerError => permissionDenied('denied by policy', ['deny-prod'], 'policy_denied');
const overBudget = (): BrokerError =>
  new BrokerError('RESOURCE_EXHAUSTED', 'budget exceeded', { reason: 'budget_exceeded' });

const strikeRule = { count: 3, windowSeconds: 60, ttlSeconds: 600, revokeActive: true };

describe('QuarantineService', () => {
  describe('manual quarantine and release', () => {
    it('stores the quarantine and audits quarantine.set, revoking nothing without revokeActive', async () => {
      const { service, store, audit, revokes } = setup();
      const result = await service.quarantine(manual({ evidence: { ticket: 'SEC-9' } }));
      const expected = {
        pattern: AGENT,
        reason: 'leaked token',
        by: ADMIN,
        trigger: 'manual',
        createdAt: T0,
        expiresAt: T0 + 3_600_000,
        evidence: { ticket: 'SEC-9' },
      };
      assert.deepEqual(result, { quarantine: expected, replaced: false });
      assert.deepEqual(await store.list(T0), [expected]);
      assert.deepEqual(await service.list(), [expected]);
      assert.deepEqual(revokes, []);
      const [record, ...more] = audit.ofType('quarantine.set');
      assert.equal(more.length, 0);
      assert.ok(record);
      const {
        id: _id,
        time: _time,
        seq: _seq,
        source: _source,
        prev_hash: _prev,
        hash: _hash,
        ...fields
      } = record;
      assert.deepEqual(fields, {
        type: 'quarantine.set',
        agent: ADMIN,
        pattern: AGENT,
        reason: 'leaked token',
        trigger: 'manual',
        ttl_seconds: 3600,
        expires_at: new Date(T0 + 3_600_000).toISOString(),
        revoke_active: false,
        replaced: false,
        evidence: { ticket: 'SEC-9' },
      });
    });

    it('with revokeActive, revokes the selector once the quarantine is already in force', async () => {
      const { service, audit, revokes } = setup();
      const pattern = 'spiffe://example.org/agents/**';
      const result = await service.quarantine(
        manual({ pattern, selector: { agentPattern: pattern }, ttlSeconds: 0, revokeActive: true }),
      );
      assert.equal(result.quarantine.expiresAt, 0, 'ttl 0: until released');
      assert.deepEqual(result.revocation, report(2));
      assert.deepEqual(revokes, [
        {
          by: ADMIN,
          selector: { agentPattern: pattern },
          describe: { agent: pattern, quarantine: true },
          reason: 'quarantine: leaked token',
          quarantinedAtCall: [pattern],
        },
      ]);
      const [record] = audit.ofType('quarantine.set');
      assert.equal(record?.expires_at, null);
      assert.equal(record?.revoke_active, true);
    });

    it('reports a replaced quarantine, and keeps it when the audit trail is down', async () => {
      const { service, store, audit } = setup();
      await service.quarantine(manual());
      audit.failWrites();
      const again = await service.quarantine(manual({ reason: 'second look' }));
      assert.equal(again.replaced, true);
      assert.deepEqual(
        (await store.list(T0)).map((q) => q.reason),
        ['second look'],
      );
      assert.equal(audit.ofType('quarantine.set').length, 1, 'the second record could not be written');
    });

    it('releases with a quarantine.released record, and answers NOT_FOUND for an unknown pattern', async () => {
      const { service, store, audit, advance, now } = setup();
      await service.quarantine(manual());
      advance(5000);
      const released = await service.release(AGENT, ADMIN, 'false alarm');
      assert.equal(released.pattern, AGENT);
      assert.deepEqual(await store.list(now()), []);
      const [record] = audit.ofType('quarantine.released');
      assert.equal(record?.agent, ADMIN);
      assert.equal(record?.pattern, AGENT);
      assert.equal(record?.reason, 'false alarm');
      assert.equal(record?.quarantined_by, ADMIN);
      assert.equal(record?.quarantined_at, new Date(T0).toISOString());
      assert.equal(record?.trigger, 'manual');

      await rejectsWith(service.release(AGENT, ADMIN, 'again'), 'NOT_FOUND', 'quarantine_not_found');
      await rejectsWith(service.release(OTHER, ADMIN, 'never'), 'NOT_FOUND', 'quarantine_not_found');
      assert.equal(audit.ofType('quarantine.released').length, 1);
    });
  });

  describe('trigger: denials', () => {
    it('quarantines the exact agent once, at the Nth PERMISSION_DENIED within the window', async () => {
      const { service, store, audit, revokes, advance, now } = setup({ denials: strikeRule });
      await service.onRefused(AGENT, denied(), { role: 'vault/db' });
      advance(20_000);
      await service.onRefused(AGENT, denied(), { role: 'vault/db' });
      await service.onRefused(OTHER, denied(), { role: 'vault/db' });
      assert.deepEqual(await store.list(now()), [], 'two strikes of three');
      advance(20_000);
      await service.onRefused(AGENT, denied(), { role: 'vault/admin' });

      const [q, ...more] = await store.list(now());
      assert.equal(more.length, 0, 'the other agent is not quarantined');
      assert.deepEqual(q, {
        pattern: AGENT,
        reason: '3 denials in 60 s',
        by: 'broker',
        trigger: 'denials',
        createdAt: now(),
        expiresAt: now() + 600_000,
        evidence: {
          strikes: 3,
          threshold: 3,
          window_seconds: 60,
          last_refusal: { reason: 'policy_denied', policies: ['deny-prod'], role: 'vault/admin' },
        },
      });
      assert.deepEqual(
        revokes.map((r) => [r.by, r.selector]),
        [['broker', { agent: AGENT }]],
      );

      // Further refusals while quarantined add no second quarantine or revocation.
      await service.onRefused(AGENT, denied(), {});
      await service.onRefused(AGENT, denied(), {});
      assert.equal(audit.ofType('quarantine.set').length, 1);
      assert.equal(revokes.length, 1);
      assert.equal((await store.list(now())).length, 1);
    });

    it('does not quarantine when the denials are spread wider than the window', async () => {
      const { service, store, now, advance } = setup({ denials: strikeRule });
      for (let i = 0; i < 6; i++) {
        await service.onRefused(AGENT, denied(), {});
        advance(31_000);
      }
      assert.deepEqual(await store.list(now()), []);
    });

    it('does not count refusals that were themselves for being quarantined, nor other codes', async () => {
      const { service, store, now } = setup({ denials: strikeRule });
      for (let i = 0; i < 5; i++) await service.onRefused(AGENT, quarantinedError({ pattern: AGENT }), {});
      for (let i = 0; i < 5; i++) await service.onRefused(AGENT, unavailable('x', 'down'), {});
      for (let i = 0; i < 5; i++) await service.onRefused(AGENT, overBudget(), {});
      assert.deepEqual(await store.list(now()), []);
      // None of those left a strike behind: two real denials are still two of three.
      await service.onRefused(AGENT, denied(), {});
      await service.onRefused(AGENT, denied(), {});
      assert.deepEqual(await store.list(now()), []);
      await service.onRefused(AGENT, denied(), {});
      assert.equal((await store.list(now()))[0]?.trigger, 'denials');
    });

    it('counts nothing when the trigger is not configured', async () => {
      const { service, store, now } = setup({});
      for (let i = 0; i < 10; i++) await service.onRefused(AGENT, denied(), {});
      assert.deepEqual(await store.list(now()), []);
    });
  });

  describe('trigger: budget exceeded', () => {
    it('quarantines at the Nth RESOURCE_EXHAUSTED, counted apart from denials', async () => {
      const { service, store, revokes, now } = setup({
        denials: strikeRule,
        budgetExceeded: { ...strikeRule, count: 2, revokeActive: false, ttlSeconds: 0 },
      });
      await service.onRefused(AGENT, denied(), {});
      await service.onRefused(AGENT, overBudget(), { role: 'token/reader' });
      await service.onRefused(AGENT, denied(), {});
      assert.deepEqual(await store.list(now()), [], 'two denials and one budget refusal');
      await service.onRefused(AGENT, overBudget(), { role: 'token/reader' });
      const [q] = await store.list(now());
      assert.equal(q?.trigger, 'budget_exceeded');
      assert.equal(q?.reason, '2 budget refusals in 60 s');
      assert.equal(q?.expiresAt, 0);
      assert.deepEqual(q?.evidence, {
        strikes: 2,
        threshold: 2,
        window_seconds: 60,
        last_refusal: { reason: 'budget_exceeded', role: 'token/reader' },
      });
      assert.deepEqual(revokes, [], 'revokeActive false');
    });
  });

  describe('trigger: restricted data', () => {
    const rule = { allowedGroups: ['db-admins', 'sre'], ttlSeconds: 900, revokeActive: true };
    const request = {
      taskId: 't-1',
      role: 'vault/pii',
      environment: 'prod',
      sensitivity: 'restricted' as const,
    };

    it('quarantines an agent outside the allowed groups and refuses it as quarantined', async () => {
      const { service, store, revokes, audit, now } = setup(
        { restrictedData: rule },
        { [AGENT]: ['contractors'] },
      );
      await rejectsWith(service.screenRequest(AGENT, request), 'PERMISSION_DENIED', 'quarantined');
      const [q] = await store.list(now());
      assert.deepEqual(q, {
        pattern: AGENT,
        reason: 'requested restricted data (vault/pii) from outside the allowed groups',
        by: 'broker',
        trigger: 'restricted_data',
        createdAt: now(),
        expiresAt: now() + 900_000,
        evidence: { request, agent_groups: ['contractors'], allowed_groups: ['db-admins', 'sre'] },
      });
      assert.deepEqual(
        revokes.map((r) => r.selector),
        [{ agent: AGENT }],
      );
      assert.equal(audit.ofType('quarantine.set')[0]?.trigger, 'restricted_data');
    });

    it('lets an agent of an allowed group through, and ignores requests that are not restricted', async () => {
      const { service, store, revokes, now } = setup(
        { restrictedData: rule },
        { [AGENT]: ['contractors', 'sre'], [OTHER]: [] },
      );
      await service.screenRequest(AGENT, request);
      for (const sensitivity of ['public', 'internal', 'confidential'] as const) {
        await service.screenRequest(OTHER, { ...request, sensitivity });
      }
      assert.deepEqual(await store.list(now()), []);
      assert.deepEqual(revokes, []);
    });

    it('screens nothing when the rule is not configured', async () => {
      const { service, store, now } = setup({}, {});
      await service.screenRequest(AGENT, request);
      assert.deepEqual(await store.list(now()), []);
    });
  });
});
