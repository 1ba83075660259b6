/**
 * ES256 access-token signing: the token backend through jose (WebCrypto, before) and through
 * node's crypto.sign with the cached KeyObject (now), interleaved in the same rounds. Run alone
 * with `npx tsx bench/signing.ts`, or through `npm run bench`. Figures are printed, never asserted.
 */
import { pathToFileURL } from 'node:url';
import type { IssueRequest } from '../src/credentials/backend.js';
import { SigningKeyRing } from '../src/credentials/token/signing-keys.js';
import { createTokenBackend } from '../src/credentials/token/token-backend.js';

const ROUNDS = 3;
const PER_ROUND = process.env.BENCH_QUICK === '1' ? 300 : 1000;

export async function runSigningBench(): Promise<string[]> {
  const keys = await SigningKeyRing.create({ overlapSeconds: 3600 });
  const request = (i: number): IssueRequest => ({
    leaseId: `lease-${i}`,
    agent: 'spiffe://example.org/agents/demo',
    taskId: 'task-bench',
    environment: 'dev',
    role: {
      name: 'token/demo',
      backend: 'token',
      maxTtlSeconds: 900,
      sensitivity: 'internal',
      environments: ['dev'],
      description: '',
      settings: { audience: 'demo-api', scope: 'demo:read' },
    },
    ttlSeconds: 300,
    notAfter: Date.now() + 3_600_000,
    now: Date.now(),
  });
  const paths = [
    { name: 'jose (WebCrypto), before', backend: createTokenBackend({ issuer: 'b', keys, signer: 'jose' }) },
    { name: 'crypto.sign + KeyObject, now', backend: createTokenBackend({ issuer: 'b', keys }) },
  ];
  const samples = paths.map(() => [] as number[]);
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [k, p] of paths.entries()) {
      for (let i = 0; i < PER_ROUND; i++) {
        const cpu0 = process.cpuUsage();
        await p.backend.issue(request(i));
        const cpu = process.cpuUsage(cpu0);
        if (round > 0) samples[k]?.push(cpu.user + cpu.system); // round 0 warms up
      }
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  return [
    'ES256 access token (token backend issue()), CPU µs per token, median, same rounds:',
    ...paths.map(
      (p, k) =>
        `  ${p.name.padEnd(34)} ${median(samples[k] ?? [])
          .toFixed(0)
          .padStart(6)} µs`,
    ),
  ];
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  for (const line of await runSigningBench()) console.log(line);
}
