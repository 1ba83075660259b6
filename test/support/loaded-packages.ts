/**
 * Run as a child process (test/integration/lazy-subsystems.test.ts): records every module this
 * process loads from here on, starts a whole broker with the harness (argv[2]: `plain`; `vault`,
 * with `backends.vault` against the emulator; `console`, with the web console and a test IdP),
 * issues one credential, and prints the npm packages and the files of src/ that were loaded, as
 * JSON on stdout. SVID_BROKER_TEST_REDIS_URL names the Redis to use.
 */
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
import type { Harness } from './broker-harness.js';

const SENTINEL = 'data:text/javascript,export default "loaded-packages sentinel"';

const { port1, port2 } = new MessageChannel();
const urls: string[] = [];
const sentinelSeen = new Promise<void>((resolve) =>
  port1.on('message', (url: string) => {
    urls.push(url);
    if (url === SENTINEL) resolve();
  }),
);
register('./module-trace-hooks.mjs', {
  parentURL: import.meta.url,
  data: { port: port2 },
  transferList: [port2],
});

/** A broker as `mode` asks; closing it closes the harness too. */
async function start(mode: string | undefined): Promise<{ h: Harness; close(): Promise<void> }> {
  const redisUrl = process.env.SVID_BROKER_TEST_REDIS_URL;
  const opts = redisUrl ? { redisUrl } : {};
  if (mode === 'vault') return (await import('./vault-broker.js')).startVaultBroker(opts);
  if (mode === 'console') return (await import('./console-harness.js')).startConsoleHarness(opts);
  const h = await (await import('./broker-harness.js')).startHarness(opts);
  return { h, close: () => h.close() };
}

const running = await start(process.argv[2]);
try {
  const client = await running.h.client('demo');
  const task = await client.beginTask({ environment: 'dev', intent: 'which modules load' });
  await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
} finally {
  await running.close();
}
// Messages on one port arrive in order: once the sentinel's URL is here, every earlier one is.
await import(SENTINEL);
await sentinelSeen;
port1.close();

const packages = new Set<string>();
const sources = new Set<string>();
for (const url of urls) {
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
  if (pkg) packages.add(pkg);
  const src = /\/src\/(.+)\.[jt]s$/.exec(url)?.[1];
  if (src && !url.includes('/node_modules/')) sources.add(src);
}
console.log(JSON.stringify({ packages: [...packages].sort(), sources: [...sources].sort() }));
