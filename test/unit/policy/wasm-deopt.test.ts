import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Node 20's V8 aborts the process when a function with an inlined JS->Wasm call returning an
// externref is deoptimized mid-call (cedar-wasm's entry points do exactly that under load).
// cedar-engine.ts turns that inlining off when it loads; this proves the flag still takes effect.
describe('cedar engine: V8 wasm deopt workaround', () => {
  it('keeps a process alive through the deopt once cedar-engine is loaded', () => {
    const script = fileURLToPath(new URL('../../support/wasm-deopt-repro.ts', import.meta.url));
    const run = spawnSync(process.execPath, ['--import', 'tsx', script, '--workaround'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(run.status, 0, `exit ${run.status} signal ${run.signal}: ${run.stderr.slice(-500)}`);
    assert.match(run.stdout, /survived/);
  });
});
