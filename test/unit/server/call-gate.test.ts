import assert from 'node:assert/strict';
import pino from 'pino';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import {
  grpcServerConfigSchema,
  grpcServerOptions,
  type GrpcServerConfig,
} from '../../../src/config/grpc-server-config.js';
import { isBrokerError, unauthenticated } from '../../../src/errors.js';
import { AuthDenialAudit, peerAddress } from '../../../src/server/auth-denial-audit.js';
import { CallGate } from '../../../src/server/call-gate.js';

const logger = pino({ level: 'silent' });

describe('open surfaces: per-peer limits and auth.denied aggregation', () => {
  let clock: number;
  let audit: MemoryAuditSink;
  beforeEach(() => {
    clock = 1_700_000_000_000;
    audit = new MemoryAuditSink({ now: () => new Date(clock) });
  });
  const gate = (overrides: Partial<GrpcServerConfig> = {}): CallGate =>
    new CallGate({
      config: grpcServerConfigSchema.parse({ ...overrides }),
      audit,
      logger,
      now: () => clock,
    });
  const bad = unauthenticated('jwt_invalid', 'credential verification failed');

  describe('AuthDenialAudit', () => {
    const denials = (maxKeys = 100): AuthDenialAudit =>
      new AuthDenialAudit({ audit, logger, windowMs: 60_000, maxKeys, now: () => clock });

    it('records the first denial per peer and reason in full and the rest as one count per window', async () => {
      const d = denials();
      for (let i = 0; i < 1000; i++) {
        await d.record({
          peer: `10.0.0.1:${40000 + i}`,
          method: 'IssueCredential',
          reason: 'jwt_invalid',
          message: 'm',
        });
      }
      for (let i = 0; i < 10; i++) {
        await d.record({ peer: '10.0.0.2:1', method: 'BeginTask', reason: 'jwt_invalid', message: 'm' });
        await d.record({ peer: '10.0.0.2:1', method: 'GetTask', reason: 'no_credentials', message: 'm' });
      }
      assert.equal(audit.records.length, 3, 'one full record per peer and reason');
      clock += 60_000;
      await d.flush();
      const aggregates = audit.records.slice(3).map(({ type, peer, reason, count, methods, aggregate }) => ({
        type,
        aggregate,
        peer,
        reason,
        count,
        methods,
      }));
      assert.deepEqual(aggregates, [
        {
          type: 'auth.denied',
          aggregate: true,
          peer: '10.0.0.1',
          reason: 'jwt_invalid',
          count: 999,
          methods: { IssueCredential: 999 },
        },
        {
          type: 'auth.denied',
          aggregate: true,
          peer: '10.0.0.2',
          reason: 'jwt_invalid',
          count: 9,
          methods: { BeginTask: 9 },
        },
        {
          type: 'auth.denied',
          aggregate: true,
          peer: '10.0.0.2',
          reason: 'no_credentials',
          count: 9,
          methods: { GetTask: 9 },
        },
      ]);
      assert.equal(audit.records[3]?.window_end, new Date(clock).toISOString());
      // A new window starts fresh: the next denial is recorded in full again; a quiet window writes nothing.
      await d.flush();
      assert.equal(audit.records.length, 6);
      await d.record({ peer: '10.0.0.1:5', method: 'IssueCredential', reason: 'jwt_invalid', message: 'm' });
      assert.equal(audit.records.length, 7);
      assert.equal(audit.records[6]?.aggregate, undefined);
    });

    it('past maxKeys, new peers are counted under peer * instead of each getting a full record', async () => {
      const d = denials(2);
      for (let i = 0; i < 50; i++) {
        await d.record({ peer: `10.0.1.${i}:1`, method: 'BeginTask', reason: 'jwt_invalid', message: 'm' });
      }
      assert.equal(audit.records.length, 2);
      await d.flush();
      assert.equal(audit.records.length, 3);
      assert.equal(audit.records[2]?.peer, '*');
      assert.equal(audit.records[2]?.count, 48);
    });
  });

  describe('CallGate', () => {
    it('refuses a peer that spent its failed-authentication burst until the bucket refills', async () => {
      const g = gate({ authFailureBurst: 3, authFailuresPerSecond: 1 });
      for (let i = 0; i < 3; i++) {
        assert.equal(g.admit('192.0.2.7:1000'), undefined);
        await g.denied('192.0.2.7:1000', 'BeginTask', bad);
      }
      const refused = g.admit('192.0.2.7:2000');
      assert.ok(isBrokerError(refused));
      assert.equal(refused.code, 'RESOURCE_EXHAUSTED');
      assert.equal(refused.reason, 'rate_limited');
      assert.equal(g.admit('192.0.2.8:1000'), undefined, 'another address is not affected');
      clock += 999;
      assert.ok(g.admit('192.0.2.7:1000'));
      clock += 1;
      assert.equal(g.admit('192.0.2.7:1000'), undefined);
    });

    it('an optional limit on every call of a peer', () => {
      const g = gate({ callsPerSecond: 10, callBurst: 2 });
      assert.equal(g.admit('192.0.2.7:1'), undefined);
      assert.equal(g.admit('192.0.2.7:1'), undefined);
      assert.equal(g.admit('192.0.2.7:1')?.reason, 'rate_limited');
      clock += 100;
      assert.equal(g.admit('192.0.2.7:1'), undefined);
      assert.equal(gate().admit('192.0.2.7:1'), undefined, 'off by default');
    });

    it('calls refused by the call limit do not spend the failed-authentication budget', async () => {
      const g = gate({ callsPerSecond: 10, callBurst: 1, authFailureBurst: 2 });
      assert.equal(g.admit('192.0.2.7:1'), undefined);
      for (let i = 0; i < 3; i++) {
        const refused = g.admit('192.0.2.7:1');
        assert.equal(refused?.message, 'too many calls from this address: slow down');
        await g.denied('192.0.2.7:1', 'BeginTask', refused);
      }
      clock += 100;
      assert.equal(g.admit('192.0.2.7:1'), undefined);
    });

    it('caps AwaitApproval streams per caller; a slot comes back once, however often it is released', () => {
      const g = gate({ maxAwaitApprovalStreamsPerCaller: 2 });
      const a = g.openStream('spiffe://example.org/agents/a');
      g.openStream('spiffe://example.org/agents/a');
      assert.throws(
        () => g.openStream('spiffe://example.org/agents/a'),
        (err: unknown) =>
          isBrokerError(err) && err.code === 'RESOURCE_EXHAUSTED' && err.reason === 'too_many_streams',
      );
      g.openStream('spiffe://example.org/agents/b');
      a();
      a();
      g.openStream('spiffe://example.org/agents/a');
      assert.throws(() => g.openStream('spiffe://example.org/agents/a'));
    });
  });

  it('peerAddress drops the port and groups IPv6 by /64', () => {
    assert.equal(peerAddress('127.0.0.1:5000'), '127.0.0.1');
    assert.equal(peerAddress('::ffff:127.0.0.1:5000'), '127.0.0.1');
    assert.equal(peerAddress('2001:db8:0:1:aaaa::1:5000'), '2001:db8:0:1::/64');
    assert.equal(peerAddress('[2001:db8::7]:5000'), '2001:db8:0:0::/64');
    assert.equal(peerAddress('2001:db8:0:1:ffff:ffff:ffff:ffff:443'), '2001:db8:0:1::/64');
  });

  it('maps the connection limits to grpc-js server options, with defaults', () => {
    assert.deepEqual(grpcServerOptions(grpcServerConfigSchema.parse({ maxConcurrentStreams: 7 })), {
      'grpc.max_concurrent_streams': 7,
      'grpc.keepalive_time_ms': 300_000,
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.max_connection_idle_ms': 300_000,
      'grpc.max_connection_age_ms': 1_800_000,
      'grpc.max_connection_age_grace_ms': 900_000,
    });
  });
});
