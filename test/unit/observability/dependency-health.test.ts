import { strict as assert } from 'node:assert';
import { Registry } from 'prom-client';
import { LocalCa } from '../../../src/dev/local-ca.js';
import {
  DependencyHealth,
  describeNotReady,
  registerDependencyGauge,
  svidCheck,
  type DependencyState,
  type HealthReport,
} from '../../../src/observability/dependency-health.js';

function captureLogger(): {
  lines: Array<{ level: string; obj: Record<string, unknown> }>;
  error(obj: object): void;
  info(obj: object): void;
} {
  const lines: Array<{ level: string; obj: Record<string, unknown> }> = [];
  return {
    lines,
    error: (obj) => lines.push({ level: 'error', obj: obj as Record<string, unknown> }),
    info: (obj) => lines.push({ level: 'info', obj: obj as Record<string, unknown> }),
  };
}

describe('observability/dependency-health', () => {
  it('logs each change of state once, however often it is checked', async () => {
    let redis: DependencyState = { ok: true };
    const logs = captureLogger();
    const health = new DependencyHealth({
      checks: { redis: () => redis, audit: () => ({ ok: true }) },
      logger: logs,
    });
    await health.refresh();
    redis = { ok: false, reason: 'connection refused' };
    for (let i = 0; i < 5; i += 1) await health.refresh();
    redis = { ok: false, reason: 'still refused' };
    await health.refresh();
    assert.equal(
      health.report().dependencies.redis?.reason,
      'still refused',
      'the latest reason is reported',
    );
    redis = { ok: true };
    await health.refresh();
    await health.refresh();
    assert.deepEqual(
      logs.lines.map((l) => [l.level, l.obj.dependency]),
      [
        ['error', 'redis'],
        ['info', 'redis'],
      ],
    );
    assert.equal(logs.lines[0]?.obj.reason, 'connection refused');
    assert.equal(typeof logs.lines[1]?.obj.down_ms, 'number');
  });

  it('tells listeners when readiness changes, and only then', async () => {
    let audit: DependencyState = { ok: true };
    const seen: boolean[] = [];
    const health = new DependencyHealth({ checks: { audit: () => audit }, logger: captureLogger() });
    health.onReadinessChange((report) => seen.push(report.ready));
    await health.refresh();
    await health.refresh();
    audit = { ok: false, reason: 'ENOSPC' };
    await health.refresh();
    await health.refresh();
    audit = { ok: true };
    await health.refresh();
    assert.deepEqual(seen, [true, false, true]);
  });

  it('counts a check that throws or does not answer as down, and stays quiet once stopped', async () => {
    let hang = true;
    const health = new DependencyHealth({
      checks: {
        redis: () => (hang ? new Promise<DependencyState>(() => undefined) : { ok: true }),
        feed: () => {
          if (hang) throw new Error('stream gone');
          return { ok: true };
        },
      },
      logger: captureLogger(),
      timeoutMs: 10,
    });
    const seen: HealthReport[] = [];
    health.onReadinessChange((report) => seen.push(report));
    const report = await health.refresh();
    assert.equal(report.ready, false);
    assert.equal(report.dependencies.redis?.reason, 'no answer within 10 ms');
    assert.equal(report.dependencies.feed?.reason, 'stream gone');
    assert.equal(describeNotReady(report), 'redis: no answer within 10 ms; feed: stream gone');
    health.stop();
    hang = false;
    assert.equal((await health.refresh()).ready, true);
    assert.equal(seen.length, 1, 'no notification after stop (shutdown owns gRPC health then)');
  });

  it('exports svid_broker_dependency_up per dependency', async () => {
    const registry = new Registry();
    const health = new DependencyHealth({
      checks: { redis: () => ({ ok: true }), audit: () => ({ ok: false, reason: 'EIO' }) },
      logger: captureLogger(),
    });
    registerDependencyGauge(registry, health);
    await health.refresh();
    const text = await registry.metrics();
    assert.match(text, /^svid_broker_dependency_up\{dependency="redis"\} 1$/m);
    assert.match(text, /^svid_broker_dependency_up\{dependency="audit"\} 0$/m);
  });

  describe('svidCheck', () => {
    it('is up within the leaf validity, down before, after and without an SVID', async () => {
      const ca = await LocalCa.create('example.org');
      const svid = await ca.issueX509Svid('spiffe://example.org/broker', { ttlSeconds: 600 });
      let now = Date.now();
      const check = svidCheck(
        () => svid,
        () => now,
      );
      assert.deepEqual(await check(), { ok: true });
      now += 3_600_000;
      const expired = await check();
      assert.equal(expired.ok, false);
      assert.match(expired.ok ? '' : expired.reason, /X\.509-SVID expired at/);
      now -= 7_200_000;
      assert.deepEqual(await check(), { ok: false, reason: 'X.509-SVID not yet valid' });
      assert.deepEqual(await svidCheck(() => undefined, Date.now)(), {
        ok: false,
        reason: 'no X.509-SVID from the Workload API',
      });
    });
  });
});
