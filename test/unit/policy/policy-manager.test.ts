import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PolicyLoadError, type PolicyProblem } from '../../../src/policy/policy-load-error.js';
import { PolicyManager, type PolicyManagerOptions } from '../../../src/policy/policy-manager.js';
import {
  ALLOW_DEV,
  ALLOW_PROD,
  DEMO_AGENT,
  SHIPPED_SCHEMA_TEXT,
  beginTaskRequest,
  policyDir,
  removePolicyDirs,
  selfContainedPolicyDir,
} from './policy-fixtures.js';

const BROKEN = '@id("broken") permit (principal, action, resource) when { context.nope };\n';

/** Collects the manager's events. */
function recorder(): {
  reloaded: Array<[string, string]>;
  failed: PolicyProblem[][];
  options: Pick<PolicyManagerOptions, 'onReloaded' | 'onReloadFailed'>;
} {
  const reloaded: Array<[string, string]> = [];
  const failed: PolicyProblem[][] = [];
  return {
    reloaded,
    failed,
    options: {
      onReloaded: (digest, previous) => reloaded.push([digest, previous]),
      onReloadFailed: (problems) => failed.push(problems),
    },
  };
}

const beginsIn = (manager: PolicyManager, env: string): boolean =>
  manager.current.authorize(beginTaskRequest(DEMO_AGENT, env)).decision === 'allow';

/** Polls `condition` every 20 ms, failing after `timeoutMs`: file events take a moment to arrive. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('PolicyManager', () => {
  const managers: PolicyManager[] = [];
  const manage = (options: PolicyManagerOptions): PolicyManager => {
    const m = PolicyManager.load(options);
    managers.push(m);
    return m;
  };
  afterEach(() => {
    for (const m of managers.splice(0)) m.close();
  });
  after(removePolicyDirs);

  it('refuses to start on an invalid set', () => {
    assert.throws(() => PolicyManager.load({ policyDir: selfContainedPolicyDir(BROKEN) }), PolicyLoadError);
  });

  it('keeps serving the old set when a reload is invalid, and reports the problems', () => {
    const dir = selfContainedPolicyDir(ALLOW_DEV);
    const events = recorder();
    const manager = manage({ policyDir: dir, ...events.options });
    const before = manager.current;

    writeFileSync(path.join(dir, 'main.cedar'), BROKEN);
    const result = manager.reload();
    assert.equal(result.ok, false);
    assert.equal(result.changed, false);
    assert.equal(result.digest, before.digest);
    assert.equal(result.problems?.[0]?.file, 'main.cedar');
    assert.equal(result.problems?.[0]?.policyId, 'broken');
    assert.deepEqual(events.failed, [result.problems]);
    assert.deepEqual(events.reloaded, []);
    assert.equal(manager.current, before, 'the very same engine');
    assert.equal(beginsIn(manager, 'dev'), true);

    // A set that does not even parse, or a missing schema, is refused the same way.
    writeFileSync(path.join(dir, 'main.cedar'), 'permit (');
    assert.equal(manager.reload().ok, false);
    rmSync(path.join(dir, 'schema.cedarschema'));
    assert.match(manager.reload().problems?.[0]?.message ?? '', /cannot read schema/);
    assert.equal(manager.current, before);
    assert.equal(events.failed.length, 3);
  });

  it('swaps in a good set and reports the new digest with the previous one', () => {
    const dir = selfContainedPolicyDir(ALLOW_DEV);
    const events = recorder();
    const manager = manage({ policyDir: dir, ...events.options });
    const old = manager.current.digest;

    writeFileSync(path.join(dir, 'main.cedar'), ALLOW_PROD);
    const result = manager.reload();
    assert.equal(result.ok, true);
    assert.equal(result.changed, true);
    assert.notEqual(result.digest, old);
    assert.equal(manager.current.digest, result.digest);
    assert.deepEqual(events.reloaded, [[result.digest, old]]);
    assert.equal(beginsIn(manager, 'prod'), true);
    assert.equal(beginsIn(manager, 'dev'), false);
  });

  it('treats a reload of identical content as a no-op: same engine, same digest, no event', () => {
    const dir = selfContainedPolicyDir(ALLOW_DEV);
    const events = recorder();
    const manager = manage({ policyDir: dir, ...events.options });
    const before = manager.current;

    writeFileSync(path.join(dir, 'main.cedar'), ALLOW_DEV); // rewritten, unchanged
    assert.deepEqual(manager.reload(), { ok: true, digest: before.digest, changed: false });
    assert.equal(manager.current, before);

    // Back to a known set after a failure is also not news.
    writeFileSync(path.join(dir, 'main.cedar'), BROKEN);
    manager.reload();
    writeFileSync(path.join(dir, 'main.cedar'), ALLOW_DEV);
    assert.equal(manager.reload().changed, false);
    assert.deepEqual(events.reloaded, []);
  });

  describe('sets from other replicas, and a pinned digest', () => {
    const sourcesOf = (
      policies: string,
    ): { digest: string; sources: PolicyManager['current']['sources'] } => {
      const other = manage({ policyDir: selfContainedPolicyDir(policies) });
      return { digest: other.current.digest, sources: other.current.sources };
    };

    it('adopts texts that hash to the announced digest, and refuses texts that do not', () => {
      const manager = manage({ policyDir: selfContainedPolicyDir(ALLOW_DEV) });
      const prod = sourcesOf(ALLOW_PROD);
      const other = sourcesOf(ALLOW_DEV + ALLOW_PROD);

      const forged = manager.adopt(prod.sources, 'redis:x', other.digest);
      assert.equal(forged.ok, false);
      assert.match(forged.problems?.[0]?.message ?? '', /not to the announced digest/);
      assert.equal(beginsIn(manager, 'prod'), false);

      const adopted = manager.adopt(prod.sources, 'redis:x', prod.digest);
      assert.deepEqual(adopted, { ok: true, digest: prod.digest, changed: true });
      assert.equal(beginsIn(manager, 'prod'), true);
    });

    it('does not roll an adopted set back on a reload when its own (older) directory did not change', () => {
      const dir = selfContainedPolicyDir(ALLOW_DEV);
      const events = recorder();
      const manager = manage({ policyDir: dir, ...events.options });
      const newer = sourcesOf(ALLOW_DEV + ALLOW_PROD);
      assert.equal(manager.adopt(newer.sources, 'redis:x', newer.digest).changed, true);

      assert.deepEqual(manager.reload(), { ok: true, digest: newer.digest, changed: false });
      assert.equal(manager.current.digest, newer.digest);
      assert.notEqual(manager.directoryDigest, newer.digest);
      // An edit of the directory is an operator's change: it takes effect (and is announced).
      writeFileSync(path.join(dir, 'main.cedar'), ALLOW_PROD);
      assert.equal(manager.reload().changed, true);
      assert.equal(events.reloaded.length, 1);
      assert.equal(manager.directoryDigest, manager.current.digest);
    });

    it('with pinDigest, serves only that set: loading, reloading or adopting another is refused', () => {
      const dir = selfContainedPolicyDir(ALLOW_DEV);
      const pinned = sourcesOf(ALLOW_DEV);
      const other = sourcesOf(ALLOW_PROD);
      assert.throws(
        () => manage({ policyDir: selfContainedPolicyDir(ALLOW_PROD), pinDigest: pinned.digest }),
        (err: unknown) => err instanceof PolicyLoadError && /policy.pinDigest/.test(err.message),
      );
      const events = recorder();
      const manager = manage({ policyDir: dir, pinDigest: pinned.digest, ...events.options });

      const adopted = manager.adopt(other.sources, 'redis:x', other.digest);
      assert.equal(adopted.ok, false);
      assert.match(adopted.problems?.[0]?.message ?? '', /is not policy.pinDigest/);
      writeFileSync(path.join(dir, 'main.cedar'), ALLOW_PROD);
      assert.equal(manager.reload().ok, false);
      assert.match(events.failed[0]?.[0]?.message ?? '', /is not policy.pinDigest/);
      assert.equal(manager.current.digest, pinned.digest);
    });
  });

  it('fails reload() after close(), and keeps answering with the last good set', () => {
    const manager = manage({ policyDir: selfContainedPolicyDir(ALLOW_DEV) });
    manager.close();
    manager.close();
    assert.throws(() => manager.reload(), /closed/);
    assert.equal(beginsIn(manager, 'dev'), true);
  });

  describe('watching', () => {
    it('reloads when a policy file changes, once per burst of writes', async () => {
      const dir = selfContainedPolicyDir(ALLOW_DEV);
      const events = recorder();
      const manager = manage({ policyDir: dir, watch: true, debounceMs: 100, ...events.options });
      const old = manager.current.digest;

      // An editor saving: several writes in quick succession, the last one complete.
      writeFileSync(path.join(dir, 'main.cedar'), '@id("half"');
      writeFileSync(path.join(dir, 'main.cedar'), ALLOW_DEV + ALLOW_PROD.slice(0, 20));
      writeFileSync(path.join(dir, 'main.cedar'), ALLOW_DEV + ALLOW_PROD);
      await eventually(() => events.reloaded.length > 0, 'a reload');
      assert.equal(beginsIn(manager, 'prod'), true);
      assert.deepEqual(events.reloaded, [[manager.current.digest, old]]);
      assert.deepEqual(events.failed, [], 'the half-written states were never loaded');
    });

    it('reports a bad file from the watcher, keeps the old set, then takes the fix', async () => {
      const dir = selfContainedPolicyDir(ALLOW_DEV);
      const events = recorder();
      const manager = manage({ policyDir: dir, watch: true, debounceMs: 50, ...events.options });
      const before = manager.current;

      writeFileSync(path.join(dir, 'extra.cedar'), BROKEN);
      await eventually(() => events.failed.length > 0, 'a failed reload');
      assert.equal(events.failed[0]?.[0]?.file, 'extra.cedar');
      assert.equal(manager.current, before);

      // Replaced atomically, as a ConfigMap or a careful deploy does it.
      writeFileSync(path.join(dir, '.extra.cedar.tmp'), ALLOW_PROD);
      renameSync(path.join(dir, '.extra.cedar.tmp'), path.join(dir, 'extra.cedar'));
      await eventually(() => events.reloaded.length > 0, 'a reload after the fix');
      assert.equal(beginsIn(manager, 'prod'), true);
    });

    it('watches a schema file outside the policy directory', async () => {
      const schemaDir = policyDir({ 'broker.cedarschema': SHIPPED_SCHEMA_TEXT, 'unrelated.txt': 'x' });
      const schemaPath = path.join(schemaDir, 'broker.cedarschema');
      const events = recorder();
      const manager = manage({
        policyDir: policyDir({ 'main.cedar': ALLOW_DEV }),
        schemaPath,
        watch: true,
        debounceMs: 50,
        ...events.options,
      });
      const old = manager.current.digest;

      writeFileSync(schemaPath, `${SHIPPED_SCHEMA_TEXT}\n// a comment changes the digest\n`);
      await eventually(() => events.reloaded.length > 0, 'a reload after the schema changed');
      assert.notEqual(manager.current.digest, old);
    });

    it('hands a throwing callback to onWatchError instead of crashing the process', async () => {
      const dir = selfContainedPolicyDir(ALLOW_DEV);
      const watchErrors: Error[] = [];
      const manager = manage({
        policyDir: dir,
        watch: true,
        debounceMs: 20,
        onReloaded: () => {
          throw new Error('callback failed');
        },
        onWatchError: (err) => watchErrors.push(err),
      });
      writeFileSync(path.join(dir, 'main.cedar'), ALLOW_PROD);
      await eventually(() => watchErrors.length > 0, 'the callback error');
      assert.equal(watchErrors[0]?.message, 'callback failed');
      assert.equal(beginsIn(manager, 'prod'), true, 'the new set took effect before the callback');
    });

    it('stops watching on close()', async () => {
      const dir = selfContainedPolicyDir(ALLOW_DEV);
      const events = recorder();
      const manager = manage({ policyDir: dir, watch: true, debounceMs: 20, ...events.options });
      manager.close();
      writeFileSync(path.join(dir, 'main.cedar'), ALLOW_PROD);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(events.reloaded, []);
      assert.deepEqual(events.failed, []);
    });
  });
});
