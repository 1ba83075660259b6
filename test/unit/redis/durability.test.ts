import assert from 'node:assert/strict';
import { planDurability } from '../../../src/redis/durability.js';
import type { RedisClient } from '../../../src/redis/connect.js';
import { isBrokerError } from '../../../src/errors.js';

/** A client answering each command from `replies` (one server, not a Cluster). */
const fakeClient = (replies: Record<string, unknown>): RedisClient =>
  ({ call: async (command: string) => replies[command] }) as unknown as RedisClient;

const cfg = {
  durability: 'replica',
  replicas: 2,
  durabilityTimeoutMs: 50,
  assumeAppendfsyncAlways: false,
} as const;

describe('redis/durability', () => {
  it('replica: a write confirmed by enough replicas passes', async () => {
    const plan = await planDurability(fakeClient({ WAIT: 2 }), 'k', cfg);
    await plan.confirm?.();
  });

  for (const [what, reply] of [
    ['too few replicas', 1],
    ['a reply that is not a count', 'QUEUED'],
    ['no reply', undefined],
  ] as const) {
    it(`replica: ${what} fails the write (UNAVAILABLE)`, async () => {
      const plan = await planDurability(fakeClient({ WAIT: reply }), 'k', cfg);
      assert.ok(plan.confirm);
      await assert.rejects(
        plan.confirm(),
        (err: unknown) => isBrokerError(err) && err.code === 'UNAVAILABLE',
      );
    });
  }
});
