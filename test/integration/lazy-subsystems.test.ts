/**
 * A subsystem the config does not turn on costs no memory for its libraries: the Vault client,
 * the cloud SDKs and the OIDC client are imported only when their backend or the console is
 * configured (README "Capacity"). Each broker runs in a child process of its own
 * (support/loaded-packages.ts), which lists every package it loaded from before it started.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { packageRoot } from '../../src/package-root.js';
import { sharedRedis } from '../support/redis-server.js';
import { runProcess } from '../support/run-cli.js';

/** Libraries of optional subsystems: no broker without the matching config section loads them. */
const OPTIONAL_PACKAGES = [
  'node-vault',
  'axios',
  'openid-client',
  '@aws-sdk/client-sts',
  '@aws-sdk/client-iam',
  'google-auth-library',
  '@azure/identity',
  '@modelcontextprotocol/sdk',
];

type Mode = 'plain' | 'vault' | 'console';

/** The packages a broker started as `mode` loaded, in a child process of its own. */
async function packagesLoadedBy(mode: Mode): Promise<string[]> {
  const redis = await sharedRedis();
  const child = await runProcess(
    process.execPath,
    ['--import', 'tsx', join('test', 'support', 'loaded-packages.ts'), mode],
    { cwd: packageRoot(), env: { ...process.env, SVID_BROKER_TEST_REDIS_URL: redis.url } },
  );
  assert.equal(child.code, 0, child.stderr);
  const loaded = JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as {
    packages: string[];
    sources: string[];
  };
  // The trace saw the broker start: its own modules and the libraries every broker needs.
  assert.ok(loaded.sources.includes('main'), loaded.sources.join(', '));
  for (const pkg of ['@grpc/grpc-js', 'ioredis', '@cedar-policy/cedar-wasm']) {
    assert.ok(loaded.packages.includes(pkg), `${pkg} not seen: ${loaded.packages.join(', ')}`);
  }
  return loaded.packages;
}

const optionalIn = (packages: string[]): string[] => OPTIONAL_PACKAGES.filter((p) => packages.includes(p));

describe('subsystems load their libraries only when configured', function () {
  this.timeout(120_000);

  it('a broker without vault, cloud backends, console or MCP loads none of their libraries', async () => {
    assert.deepEqual(optionalIn(await packagesLoadedBy('plain')), []);
  });

  it('a broker with backends.vault loads the Vault client (node-vault, axios) and no other', async () => {
    assert.deepEqual(optionalIn(await packagesLoadedBy('vault')), ['node-vault', 'axios']);
  });

  it('a broker with the web console loads the OIDC client (openid-client) and no other', async () => {
    assert.deepEqual(optionalIn(await packagesLoadedBy('console')), ['openid-client']);
  });
});
