/**
 * The embedded dev stack (`svid-broker dev`, what `npm start` runs): a local CA for the dev trust
 * domain serving the real Workload API on one Unix socket per workload, a private redis-server
 * when one is on the PATH (else the in-process store, loudly), and a broker config with the
 * example policies and the `token/demo` role.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { parseConfig } from '../config/load-config.js';
import type { BrokerConfig } from '../config/schema.js';
import { derToPem } from '../identity/x509-verify.js';
import { packageRoot } from '../package-root.js';
import { CaWorkloadIdentity } from './ca-workload-identity.js';
import { acquireDevLock } from './dev-lock.js';
import { LocalCa } from './local-ca.js';
import { findRedisServer, spawnRedisServer, type RedisProcess } from './redis-process.js';
import { WorkloadApiServer } from './workload-api-server.js';

export const DEV_TRUST_DOMAIN = 'example.org';
/** The broker's DNS SAN in the dev stack, the name clients use as TLS server name. */
export const BROKER_DNS_NAME = 'svid-broker';

/** The dev workloads: one socket each under `<dir>/`. */
export const DEV_WORKLOADS = {
  // The DNS SAN lets clients whose TLS can only check host names (gRPC C-core: Python, C++) name
  // the broker (`grpc.ssl_target_name_override`); SPIRE gives it with the entry's dns_names.
  broker: {
    socket: 'broker.sock',
    spiffeId: `spiffe://${DEV_TRUST_DOMAIN}/broker`,
    dnsNames: [BROKER_DNS_NAME],
  },
  agent: { socket: 'agent.sock', spiffeId: `spiffe://${DEV_TRUST_DOMAIN}/agents/demo` },
  security: { socket: 'security.sock', spiffeId: `spiffe://${DEV_TRUST_DOMAIN}/security/oncall` },
} as const;

export type DevWorkloadName = keyof typeof DEV_WORKLOADS;

export interface DevStackOptions {
  /** Default `.svid-broker/dev` under the current directory. */
  dir?: string;
  logger: Logger;
  /** X.509-SVID lifetime (rotation at half). Default 10 minutes: short, so rotation is visible. */
  svidTtlSeconds?: number;
  /** `auto` (default): a private redis-server if one is on the PATH, else memory. */
  store?: 'auto' | 'redis' | 'memory';
  listen?: string;
  httpListen?: string;
  /** The web console against a real IdP (`svid-broker dev --console`), with a certificate from the dev CA. */
  console?: DevConsoleOptions;
}

export interface DevConsoleOptions {
  /** `host:port`, a fixed port: the IdP must know the callback URL. */
  listen: string;
  issuer: string;
  clientId: string;
  clientSecretFile?: string;
}

export interface DevStack {
  readonly dir: string;
  readonly ca: LocalCa;
  readonly identities: Record<DevWorkloadName, CaWorkloadIdentity>;
  /** `unix:///abs/path` endpoint of each workload's socket. */
  readonly endpoints: Record<DevWorkloadName, string>;
  readonly redis: RedisProcess | undefined;
  readonly config: Readonly<BrokerConfig>;
  close(): Promise<void>;
}

/** The dev role catalog: every role the example policies in policies/ talk about. */
export function devRoles(): Record<string, Record<string, unknown>> {
  const token = (
    audience: string,
    scope: string,
    extra: Record<string, unknown>,
  ): Record<string, unknown> => ({
    maxTtlSeconds: 900,
    sensitivity: 'internal',
    environments: [],
    audience,
    scope,
    ...extra,
  });
  return {
    'token/demo': token('demo-api', 'demo:read', {
      description: 'Demo API read token for the demo agent',
      environments: ['dev'],
    }),
    'token/deploy': token('deploy-api', 'deploy:write', {
      description: 'Deploy API token; destructive changes in prod need an approval',
      sensitivity: 'confidential',
      environments: ['staging', 'prod'],
    }),
    'token/admin': token('admin-api', 'admin', {
      description: 'Prod admin token; every issuance needs two approvers',
      sensitivity: 'confidential',
      environments: ['prod'],
    }),
    'token/logs-read': token('logs-api', 'logs:read', { description: 'Read logs' }),
    'token/secrets-read': token('secrets-api', 'secrets:read', {
      description: 'Read secrets; in prod never in a task that read logs',
      sensitivity: 'confidential',
    }),
    'token/customer-data': token('customer-api', 'customer:read', {
      description: 'Customer records: restricted, break-glass never applies',
      sensitivity: 'restricted',
    }),
  };
}

/** The dev agent catalog: agents, the demo agent and security engineers by SPIFFE ID pattern. */
export function devAgents(): Array<{ pattern: string; groups: string[] }> {
  return [
    { pattern: `spiffe://${DEV_TRUST_DOMAIN}/agents/*`, groups: ['agents'] },
    { pattern: DEV_WORKLOADS.agent.spiffeId, groups: ['demo'] },
    { pattern: `spiffe://${DEV_TRUST_DOMAIN}/security/*`, groups: ['security'] },
    { pattern: `spiffe://${DEV_TRUST_DOMAIN}/gateways/*`, groups: ['gateways'] },
  ];
}

type Closers = Array<() => Promise<void> | void>;

/** One Workload API socket per dev workload under `dir`, each serving SVIDs from `ca`. */
async function serveWorkloads(
  ca: LocalCa,
  dir: string,
  ttl: number,
  closers: Closers,
): Promise<Pick<DevStack, 'identities' | 'endpoints'>> {
  const identities = {} as Record<DevWorkloadName, CaWorkloadIdentity>;
  const endpoints = {} as Record<DevWorkloadName, string>;
  for (const [name, w] of Object.entries(DEV_WORKLOADS) as Array<
    [DevWorkloadName, (typeof DEV_WORKLOADS)[DevWorkloadName]]
  >) {
    const identity = await CaWorkloadIdentity.create({
      ca,
      spiffeId: w.spiffeId,
      x509TtlSeconds: ttl,
      ...('dnsNames' in w ? { dnsNames: [...w.dnsNames] } : {}),
    });
    closers.push(() => identity.stop());
    const socketPath = join(dir, w.socket);
    const server = await WorkloadApiServer.start(socketPath, identity);
    closers.push(() => server.close());
    identities[name] = identity;
    endpoints[name] = `unix://${socketPath}`;
  }
  return { identities, endpoints };
}

/** A private redis-server under `<dir>/redis` (fresh data), unless the store is memory or none is on PATH. */
async function startOwnRedis(
  opts: DevStackOptions,
  dir: string,
  closers: Closers,
): Promise<RedisProcess | undefined> {
  const wanted = opts.store ?? 'auto';
  if (wanted === 'memory' || (wanted === 'auto' && !findRedisServer())) return undefined;
  const redisDir = join(dir, 'redis');
  rmSync(redisDir, { recursive: true, force: true });
  const redis = await spawnRedisServer({
    dir: redisDir,
    onUnexpectedExit: (what) =>
      opts.logger.error(
        `dev stack: its own ${what}; the broker fails closed (no credential is issued) until ` +
          'Redis is back: restart svid-broker dev',
      ),
  });
  closers.push(() => redis.stop());
  return redis;
}

export async function startDevStack(opts: DevStackOptions): Promise<DevStack> {
  const dir = resolve(opts.dir ?? '.svid-broker/dev');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const closers: Closers = [];
  const close = async (): Promise<void> => {
    for (const fn of closers.reverse()) {
      try {
        await fn();
      } catch {
        // best effort: the rest still closes
      }
    }
  };
  // Before anything in `dir` is touched: a running stack's sockets and Redis data stay its own.
  const lock = acquireDevLock(dir);
  closers.push(() => lock.release());
  try {
    const ca = await LocalCa.create(DEV_TRUST_DOMAIN);
    const { identities, endpoints } = await serveWorkloads(ca, dir, opts.svidTtlSeconds ?? 600, closers);
    const redis = await startOwnRedis(opts, dir, closers);

    const config = parseConfig(
      {
        listen: opts.listen ?? '127.0.0.1:8443',
        httpListen: opts.httpListen ?? '127.0.0.1:8080',
        workloadApi: { socket: endpoints.broker },
        redis: redis ? { url: redis.url, store: 'redis' } : { store: 'memory' },
        policy: { dir: join(packageRoot(), 'policies') },
        audit: { file: join(dir, 'audit.jsonl') },
        tasks: { defaultTtlSeconds: 900, maxTtlSeconds: 3600 },
        roles: devRoles(),
        agents: devAgents(),
        log: { level: 'info' },
        ...(opts.console ? { humans: await devHumans(ca, dir, opts.console) } : {}),
      },
      'dev stack',
    );

    return { dir, ca, identities, endpoints, redis, config, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * `humans:` for the dev stack: the console on `https://localhost:<port>` with a certificate the dev
 * CA issues for `localhost` (browsers will warn: the dev CA is no public one).
 */
async function devHumans(ca: LocalCa, dir: string, c: DevConsoleOptions): Promise<Record<string, unknown>> {
  const port = Number(c.listen.slice(c.listen.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port <= 0)
    throw new Error('dev --console needs a fixed port (the IdP knows the callback URL)');
  const leaf = await ca.issueX509Svid(`spiffe://${DEV_TRUST_DOMAIN}/console`, { dnsNames: ['localhost'] });
  const certFile = join(dir, 'console.crt');
  const keyFile = join(dir, 'console.key');
  writeFileSync(certFile, leaf.certChain.map((der) => derToPem(der)).join(''));
  writeFileSync(keyFile, derToPem(leaf.privateKey, 'PRIVATE KEY'), { mode: 0o600 });
  return {
    oidc: {
      issuer: c.issuer,
      clientId: c.clientId,
      ...(c.clientSecretFile ? { clientSecretFile: c.clientSecretFile } : {}),
      redirectUrl: `https://localhost:${port}/auth/callback`,
    },
    console: { listen: c.listen, certFile, keyFile },
  };
}
