/**
 * The first decision of IssueCredential reads the break-glass grant and whether the task has any
 * open approval in the task read's own wait, and looks an approval up by its digest only when the
 * task may have one open. Watched with MONITOR on the broker's Redis (its key prefix only).
 */
import { strict as assert } from 'node:assert';
import { Redis } from 'ioredis';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { startHarness, type Harness } from '../support/broker-harness.js';
import { sharedRedis } from '../support/redis-server.js';

describe('IssueCredential: Redis reads of the first decision', () => {
  let h: Harness;
  let demo: BrokerClient;
  let redis: Redis;
  let monitor: Redis;
  const seen: string[][] = [];

  before(async () => {
    h = await startHarness({ config: { approvals: { ttlSeconds: 900, pollMs: 50 } } });
    demo = await h.client('demo');
    redis = new Redis((await sharedRedis()).url, { lazyConnect: true });
    await redis.connect();
    monitor = await redis.monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      // The broker's own commands on this harness's keys (not those its scripts run).
      if (source !== 'lua' && args.some((a) => a.includes(h.redisPrefix))) seen.push(args);
    });
  });
  after(async () => {
    monitor?.disconnect();
    redis?.disconnect();
    await h?.close();
  });

  /** Commands the broker sent while `fn` ran that name a key containing `part`. */
  async function commandsOn(part: string, fn: () => Promise<unknown>): Promise<string[][]> {
    seen.length = 0;
    await fn();
    // MONITOR's stream trails the replies a little: a PING through it marks the end.
    await redis.ping();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return seen.filter((args) => args.some((a) => a.includes(part)));
  }

  it('no digest lookup while the task has no open approval; the lookup once it has one', async () => {
    const task = await demo.beginTask({ environment: 'prod', intent: 'round trips' });
    const deploy = { task_id: task.task_id, role: 'token/deploy', ttl_seconds: 300, justification: 'v2' };

    const read = await commandsOn(':approval-digest:', async () => {
      const issued = await demo.issueCredential({ ...deploy, change_type: 'read' });
      assert.equal(issued.status, 'ISSUED');
    });
    assert.equal(read.length, 0, 'no approval lookup for a task without open approvals');

    let approvalId = '';
    const parked = await commandsOn(':approval-digest:', async () => {
      const pending = await demo.issueCredential({ ...deploy, change_type: 'destructive' });
      assert.equal(pending.status, 'PENDING_APPROVAL');
      approvalId = pending.approval_id;
    });
    // Only the new request's own write touches the digest index (create-approval), no lookup.
    assert.equal(parked.length, 1, 'the approval is written, not looked up first');

    const again = await commandsOn(':approval-digest:', async () => {
      const same = await demo.issueCredential({ ...deploy, change_type: 'destructive' });
      assert.equal(same.status, 'PENDING_APPROVAL');
      assert.equal(same.approval_id, approvalId, 'the open request is found, not duplicated');
    });
    assert.ok(again.length >= 1, 'the task has an open approval: it is looked up by digest');
  });
});
