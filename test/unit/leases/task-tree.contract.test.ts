/**
 * The delegated-task contract (createChildTask, listChildTasks, listActiveTasks), run against both
 * stores: a child is written only under an active parent that outlives it, is linked under it, and
 * reads back with its delegation whole; a replica sees the same tree.
 */
import { strict as assert } from 'node:assert';
import type { Task, TaskDelegation } from '../../../src/leases/types.js';
import {
  makeTask,
  memoryHarness,
  redisHarness,
  wallNow,
  type MakeHarness,
  type StoreHarness,
} from '../../support/lease-store-harness.js';

const PARENT = 'spiffe://example.org/agent/planner';
const CHILD = 'spiffe://example.org/agent/coder';

function childOf(parent: Task, now: number, overrides: Partial<Task> = {}): Task {
  const delegation: TaskDelegation = {
    parentTaskId: parent.id,
    chain: [parent.agent, CHILD],
    roles: ['token/reader'],
    sensitivityCeiling: 'internal',
    changeTypeCeiling: 'read',
    remainingDepth: 0,
  };
  return makeTask(now, { agent: CHILD, expiresAt: parent.expiresAt - 1000, delegation, ...overrides });
}

function describeTaskTree(name: string, make: MakeHarness): void {
  describe(`delegated tasks: ${name}`, () => {
    let h: StoreHarness;
    let now: number;
    let parent: Task;

    beforeEach(async () => {
      h = await make();
      now = wallNow();
      parent = makeTask(now, { agent: PARENT });
      await h.store.createTask(parent);
    });
    afterEach(() => h.close());

    it('writes a child under an active parent, links it, and reads its delegation back whole', async () => {
      const child = childOf(parent, now);
      assert.equal(await h.store.createChildTask(child, now), 'ok');
      assert.deepEqual(await h.store.listChildTasks(parent.id), [child.id]);
      assert.deepEqual(await h.store.getTask(child.id), child);
      assert.deepEqual(await h.store.listChildTasks(child.id), []);
      assert.deepEqual(
        (await h.store.listActiveTasks(CHILD)).map((t) => t.id),
        [child.id],
      );
    });

    it('refuses a child of a missing, ended or expired parent, or one that outlives it', async () => {
      const orphan = childOf({ ...parent, id: 'no-such-task' }, now);
      assert.equal(await h.store.createChildTask(orphan, now), 'parent_not_found');
      const outliving = childOf(parent, now, { expiresAt: parent.expiresAt + 1 });
      assert.equal(await h.store.createChildTask(outliving, now), 'child_outlives_parent');
      assert.equal(await h.store.createChildTask(childOf(parent, now), parent.expiresAt), 'parent_expired');
      await h.store.endTask(parent.id, 'ended', 'done', now + 1);
      assert.equal(await h.store.createChildTask(childOf(parent, now), now + 2), 'parent_not_active');
      // Nothing refused was written or linked.
      assert.deepEqual(await h.store.listChildTasks(parent.id), []);
      assert.equal(await h.store.getTask(outliving.id), undefined);
    });

    it('a replica sees the children another wrote, and ended tasks leave listActiveTasks', async () => {
      const a = childOf(parent, now);
      const b = childOf(parent, now);
      assert.equal(await h.store.createChildTask(a, now), 'ok');
      const replica = await h.replica();
      assert.equal(await replica.createChildTask(b, now), 'ok');
      assert.deepEqual((await h.store.listChildTasks(parent.id)).sort(), [a.id, b.id].sort());
      await replica.endTask(a.id, 'ended', 'parent_ended', now + 1);
      assert.deepEqual(
        (await h.store.listActiveTasks(CHILD)).map((t) => t.id),
        [b.id],
      );
    });

    it('refuses a delegation whose chain does not end at the task agent', async () => {
      const bad = childOf(parent, now);
      bad.delegation = { ...bad.delegation!, chain: [PARENT] };
      await assert.rejects(h.store.createChildTask(bad, now), /task\.delegation\.chain/);
    });
  });
}

describeTaskTree('memory', memoryHarness);
describeTaskTree('redis', redisHarness);
