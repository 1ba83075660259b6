/**
 * The cloud backends' cost through the broker, beside direct calls to the same emulators in the
 * same run, at concurrency 1 and 16:
 * - AWS: IssueCredential `aws/deploy` (broker: cached web-identity session, then AssumeRole with
 *   session name, source identity, tags and policy) against a direct SDK AssumeRole with the same
 *   parameters, signed with a broker-role session obtained once;
 * - GitHub: IssueCredential `github/repo-writer` against a direct `POST
 *   /app/installations/{id}/access_tokens` with an App JWT signed once.
 *
 * Both sides talk to the in-process emulators (test/support/*-emulator) and the broker is the
 * in-process integration harness (real Redis, Cedar, fsync'd audit); one process, one event loop:
 * the ratio is the broker's added cost over these emulators on this machine, not a deployment's.
 *
 * `npx tsx bench/cloud.ts`, or through `npm run bench` (skip with `--no-cloud`). Figures are
 * printed, never asserted.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { AssumeRoleCommand, AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { SignJWT } from 'jose';
import type { BrokerClient } from '../src/client/broker-client.js';
import { BROKER_ID } from '../test/support/broker-harness.js';
import { BROKER_ROLE_ARN, DEPLOY_ROLE_ARN } from '../test/support/aws-emulator/index.js';
import { GITHUB_INSTALLATION, startCloudBroker, type CloudBroker } from '../test/support/cloud-broker.js';
import { stopSharedRedis } from '../test/support/redis-server.js';
import { runFor, summarize, type Op, type Result } from './vault.js';

const CONCURRENCIES = [1, 16] as const;
const WARMUP_MS = 300;
const MEASURE_MS = 2000;

interface Scenario {
  name: string;
  direct: Op;
  broker: Op;
}

async function awsScenario(stack: CloudBroker, demo: BrokerClient, tasks: string[]): Promise<Scenario> {
  const { aws, h } = stack;
  const plain = new STSClient({
    region: 'eu-west-1',
    endpoint: aws.url,
    maxAttempts: 1,
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
  });
  const own = await plain.send(
    new AssumeRoleWithWebIdentityCommand({
      RoleArn: BROKER_ROLE_ARN,
      RoleSessionName: 'bench-direct',
      WebIdentityToken: await h.ca.mintJwtSvid(BROKER_ID, 'sts.amazonaws.com'),
    }),
  );
  const c = own.Credentials;
  if (!c?.AccessKeyId || !c.SecretAccessKey) throw new Error('no direct session');
  const signed = new STSClient({
    region: 'eu-west-1',
    endpoint: aws.url,
    maxAttempts: 1,
    credentials: {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      ...(c.SessionToken ? { sessionToken: c.SessionToken } : {}),
    },
  });
  let n = 0;
  return {
    name: 'aws',
    direct: async () => {
      const out = await signed.send(
        new AssumeRoleCommand({
          RoleArn: DEPLOY_ROLE_ARN,
          RoleSessionName: `demo@bench-${n++}`,
          SourceIdentity: 'example.org.agents.demo',
          DurationSeconds: 900,
          Tags: [
            { Key: 'spiffe-id', Value: 'spiffe://example.org/agents/demo' },
            { Key: 'task-id', Value: 'bench' },
            { Key: 'environment', Value: 'dev' },
            { Key: 'lease-id', Value: String(n) },
          ],
          Policy: JSON.stringify({
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Allow', Action: 's3:PutObject', Resource: 'arn:aws:s3:::deploy-dev/bench/*' },
            ],
          }),
        }),
      );
      if (!out.Credentials?.SessionToken) throw new Error('direct AssumeRole returned no session');
    },
    broker: async (worker) => {
      const res = await demo.issueCredential({
        task_id: tasks[worker] as string,
        role: 'aws/deploy',
        ttl_seconds: 900,
      });
      if (!res.credential?.data.AWS_SESSION_TOKEN)
        throw new Error(`IssueCredential aws/deploy answered ${res.status}`);
    },
  };
}

async function githubScenario(stack: CloudBroker, demo: BrokerClient, tasks: string[]): Promise<Scenario> {
  const { github } = stack;
  const iat = Math.floor(Date.now() / 1000) - 60;
  const appJwt = await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256' })
    .setIssuer(github.appId)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 540)
    .sign(github.privateKey);
  return {
    name: 'github',
    direct: async () => {
      const res = await fetch(`${github.url}/api/v3/app/installations/${GITHUB_INSTALLATION}/access_tokens`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${appJwt}`,
          accept: 'application/vnd.github+json',
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          repositories: ['svid-broker'],
          permissions: { contents: 'write', pull_requests: 'write' },
        }),
      });
      if (res.status !== 201) throw new Error(`direct token request answered ${res.status}`);
      await res.json();
    },
    broker: async (worker) => {
      const res = await demo.issueCredential({
        task_id: tasks[worker] as string,
        role: 'github/repo-writer',
        ttl_seconds: 600,
      });
      if (!res.credential?.token)
        throw new Error(`IssueCredential github/repo-writer answered ${res.status}`);
    },
  };
}

export async function runCloudBench(): Promise<string[]> {
  let stack: CloudBroker | undefined;
  try {
    stack = await startCloudBroker();
    const demo = await stack.h.client('demo', { timeoutMs: 60_000 });
    const tasks: string[] = [];
    for (let w = 0; w < Math.max(...CONCURRENCIES); w++) {
      tasks.push(
        (await demo.beginTask({ environment: 'dev', intent: `cloud bench worker ${w}`, ttl_seconds: 3600 }))
          .task_id,
      );
    }
    const scenarios = [await awsScenario(stack, demo, tasks), await githubScenario(stack, demo, tasks)];
    const pad = (s: string, n: number): string => s.padStart(n);
    const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
    const lines = [
      'in-process cloud emulators and in-process broker harness (real Redis, Cedar, fsync audit), one process',
      'and event loop: the broker/direct ratio is the broker’s added cost over these emulators.',
      'aws:    direct = SDK AssumeRole (same names, tags, policy, 900 s) | broker = IssueCredential aws/deploy',
      'github: direct = POST access_tokens with one App JWT             | broker = IssueCredential github/repo-writer',
      `${WARMUP_MS} ms warm-up then ${MEASURE_MS / 1000} s per scenario and concurrency`,
      '',
      `  ${'cloud'.padEnd(8)}${'scenario'.padEnd(9)}${pad('conc', 5)}${pad('req/s', 9)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('calls', 8)}`,
    ];
    for (const s of scenarios) {
      const results: Result[] = [];
      for (const concurrency of CONCURRENCIES) {
        await runFor(concurrency, WARMUP_MS, s.direct);
        await runFor(concurrency, WARMUP_MS, s.broker);
        results.push(summarize('direct', concurrency, await runFor(concurrency, MEASURE_MS, s.direct)));
        results.push(summarize('broker', concurrency, await runFor(concurrency, MEASURE_MS, s.broker)));
      }
      for (const r of results) {
        lines.push(
          `  ${s.name.padEnd(8)}${r.scenario.padEnd(9)}${pad(String(r.concurrency), 5)}${pad(fx(r.rps, 0), 9)}` +
            `${pad(fx(r.p50), 9)}${pad(fx(r.p99), 9)}${pad(String(r.count), 8)}`,
        );
      }
      for (const concurrency of CONCURRENCIES) {
        const d = results.find((r) => r.scenario === 'direct' && r.concurrency === concurrency);
        const b = results.find((r) => r.scenario === 'broker' && r.concurrency === concurrency);
        if (d && b)
          lines.push(
            `  ${s.name} ratio (broker/direct) at concurrency ${concurrency}: throughput ${fx(b.rps / d.rps)}x, p50 ${fx(b.p50 / d.p50)}x`,
          );
      }
    }
    const t0 = performance.now();
    let ended = 0;
    for (const task_id of tasks)
      ended += (await demo.endTask({ task_id, reason: 'bench done' })).revoked.length;
    lines.push(
      `  ending ${tasks.length} tasks ended ${ended} leases (GitHub tokens revoked at the emulator) in ${fx((performance.now() - t0) / 1000, 1)} s`,
    );
    return lines;
  } finally {
    await stack?.close();
    await stopSharedRedis();
  }
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  for (const line of await runCloudBench()) console.log(line);
}
