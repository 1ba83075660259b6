import { strict as assert } from 'node:assert';
import { CallTrace, TracedAuditSink, validTraceparent } from '../../../src/audit/trace-context.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('audit: W3C traceparent', () => {
  it('accepts the W3C format (and a later version with extra fields)', () => {
    assert.equal(validTraceparent(VALID), VALID);
    assert.equal(
      validTraceparent(`${VALID.replace(/^00/, '01')}-extra`),
      `${VALID.replace(/^00/, '01')}-extra`,
    );
  });

  it('ignores what the spec says to ignore', () => {
    for (const bad of [
      undefined,
      '',
      42,
      VALID.toUpperCase(), // hex is lowercase
      VALID.replace(/^00/, 'ff'), // version ff is invalid
      `${VALID}-extra`, // version 00 has exactly four fields
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero parent id
      '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', // short trace id
      `${VALID}\n`,
      `01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-${'x'.repeat(600)}`, // oversized
    ]) {
      assert.equal(validTraceparent(bad), undefined, String(bad));
    }
  });

  it('records written inside a traced call carry its traceparent; outside, or with an invalid one, none', async () => {
    const memory = new MemoryAuditSink();
    const trace = new CallTrace();
    const sink = new TracedAuditSink(memory, trace);
    const inCall = await trace.run(VALID, async () => {
      await Promise.resolve(); // across an await, as a handler's writes are
      return sink.write({ type: 'task.begun', agent: 'spiffe://example.org/a' });
    });
    const invalid = await trace.run('garbage', () => sink.write({ type: 'task.begun', agent: '' }));
    const outside = await sink.write({ type: 'task.ended', agent: '' });
    assert.equal(inCall.traceparent, VALID);
    assert.equal('traceparent' in invalid, false);
    assert.equal('traceparent' in outside, false);
  });
});
