import assert from 'node:assert/strict';
import { createUuidV7Factory } from '../../../src/audit/uuid-v7.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('audit/uuid-v7', () => {
  it('encodes the millisecond timestamp and the v7 / variant bits', () => {
    const ms = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
    const id = createUuidV7Factory(() => ms)();
    assert.match(id, UUID_V7);
    assert.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), ms);
  });

  it('is strictly increasing within one millisecond, past the counter, and when the clock steps back', () => {
    let clock = 1_700_000_000_000;
    const next = createUuidV7Factory(() => clock);
    const ids: string[] = [];
    for (let i = 0; i < 10_000; i += 1) ids.push(next());
    clock -= 5_000;
    for (let i = 0; i < 10; i += 1) ids.push(next());
    for (let i = 1; i < ids.length; i += 1)
      assert.ok((ids[i - 1] ?? '') < (ids[i] ?? ''), `ids[${i}] increases`);
    assert.equal(new Set(ids).size, ids.length);
  });

  it('draws fresh randomness for every id across pool refills (no random tail repeats)', () => {
    let clock = 1_700_000_000_000;
    const next = createUuidV7Factory(() => (clock += 1));
    // Each id has its own millisecond, so only the random bits can tell the tails apart.
    const tails = Array.from({ length: 2_000 }, () => next().slice(19));
    assert.equal(new Set(tails).size, tails.length);
  });
});
