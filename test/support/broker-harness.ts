/**
 * A whole broker for integration tests: a LocalCa serving the real Workload API on Unix sockets
 * (one per workload), a real redis-server (shared, fresh key prefix per harness), a real gRPC server
 * on port 0, and helpers to connect as any workload.
 */
import 'reflect-metadata';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { AuditSink } from '../../src/audit/types.js';
import { BrokerAdminClient, BrokerClient, type BrokerClientOptions } from '../../src/client/broker-client.js';
import { parseConfig } from '../../src/config/load-config.js';
import type { BrokerConfig } from '../../src/config/schema.js';
import { CaWorkloadIdentity } from '../../src/dev/ca-workload-identity.js';
import { devAgents, devRoles } from '../../src/dev/dev-stack.js';
import { LocalCa } from '../../src/dev/local-ca.js';
import { WorkloadApiServer } from '../../src/dev/workload-api-server.js';
import { X509Source, fetchJwtSvid } from '../../src/identity/workload-api.js';
import type { LeaseStore } from '../../src/leases/types.js';
import { createLogger, startBroker, type RunningBroker, type StartBrokerOptions } from '../../src/main.js';
import { packageRoot } from '../../src/package-root.js';
import { randomPrefix, sharedRedis } from './redis-server.js';
export { eventually } from './eventually.js';

export const TRUST_DOMAIN = 'example.org';
export const BROKER_ID = `spiffe://${TRUST_DOMAIN}/broker`;
export const DEMO_AGENT = `spiffe://${TRUST_DOMAIN}/agents/demo`;
export const OTHER_AGENT = `spiffe://${TRUST_DOMAIN}/agents/other`;
export const SECURITY = `spiffe://${TRUST_DOMAIN}/security/oncall`;
export const SECURITY_2 = `spiffe://${TRUST_DOMAIN}/security/second`;

/** Collects every log line the broker writes, so tests can search them for secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  text(): string {
    return this.lines.join('\n');
  }
}

export interface WorkloadSpec {
  spiffeId: string;
  /** CA that issues this workload's SVID; default the harness CA. */
  ca?: LocalCa;
  /** CAs whose bundles this workload also receives as federated. */
  federatesWith?: LocalCa[];
}

export interface HarnessOptions {
  /** Extra workloads by name (broker, demo and other always exist). */
  workloads?: Record<string, WorkloadSpec>;
  /** CAs the broker federates with. */
  brokerFederatesWith?: LocalCa[];
  /** Extra Cedar policy text, added as `test.cedar` beside the shipped policies. */
  extraPolicies?: string;
  /** Config keys merged over the harness defaults (roles are merged with the dev roles). */
  config?: Record<string, unknown>;
  store?: LeaseStore | 'redis' | 'memory';
  audit?: AuditSink;
  svidTtlSeconds?: number;
  caOptions?: Parameters<typeof LocalCa.create>[1];
  now?: () => number;
  /** Reuse another harness's Redis key prefix (a broker "restart" on the same data); default a fresh one. */
  redisPrefix?: string;
  /** A Redis of the test's own (one it may kill); default the run's shared server. */
  redisUrl?: string;
  /** startBroker's bench hooks: the stage timer, and the hot path as it was before. */
  measure?: Pick<StartBrokerOptions, 'stageTimer' | 'previousHotPath'>;
}

export interface Harness {
  readonly dir: string;
  readonly ca: LocalCa;
  readonly broker: RunningBroker;
  readonly logs: LogCapture;
  readonly logger: Logger;
  readonly auditFile: string;
  readonly redisPrefix: string;
  readonly identities: Record<string, CaWorkloadIdentity>;
  readonly endpoints: Record<string, string>;
  readonly address: string;
  readonly httpBase: string;
  /** A client authenticated as the workload (mTLS by default). Closed by harness.close(). */
  client(
    workload: string,
    opts?: Partial<Pick<BrokerClientOptions, 'auth' | 'brokerId' | 'timeoutMs' | 'traceparent'>>,
  ): Promise<BrokerClient>;
  /** An admin client (BrokerAdmin service) authenticated as the workload over mTLS. */
  adminClient(workload: string): Promise<BrokerAdminClient>;
  /** A client that sends the workload's JWT-SVID (audience: the broker ID) without a client certificate. */
  jwtClient(workload: string, audience?: string): Promise<BrokerClient>;
  httpJson(path: string): Promise<{ status: number; body: unknown }>;
  /**
   * Another broker replica on the same Redis data and CA (its own ports, audit file and copy of
   * the policy directory), as `svid-broker serve` run twice. Closed by harness.close().
   */
  replica(): Promise<Replica>;
  /** Clients for a broker at another address that shares the harness CA (a child process, say). */
  clientsAt(address: string): Pick<Replica, 'client' | 'adminClient'>;
  /** The harness config for another broker (as a replica gets it), e.g. to write a config file. */
  configFor(policyDir: string, auditFile: string): BrokerConfig;
  close(): Promise<void>;
}

export interface Replica {
  readonly broker: RunningBroker;
  readonly address: string;
  readonly auditFile: string;
  readonly policyDir: string;
  readonly logs: LogCapture;
  client(workload: string): Promise<BrokerClient>;
  adminClient(workload: string): Promise<BrokerAdminClient>;
  close(): Promise<void>;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'svb-it-'));
  const closers: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const fn of closers.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // keep closing the rest
      }
    }
  };
  try {
    const ca = await LocalCa.create(TRUST_DOMAIN, opts.caOptions);
    const specs: Record<string, WorkloadSpec> = {
      broker: { spiffeId: BROKER_ID, federatesWith: opts.brokerFederatesWith ?? [] },
      demo: { spiffeId: DEMO_AGENT },
      other: { spiffeId: OTHER_AGENT },
      security: { spiffeId: SECURITY },
      security2: { spiffeId: SECURITY_2 },
      ...opts.workloads,
    };
    const identities: Record<string, CaWorkloadIdentity> = {};
    const endpoints: Record<string, string> = {};
    for (const [name, spec] of Object.entries(specs)) {
      const identity = await CaWorkloadIdentity.create({
        ca: spec.ca ?? ca,
        spiffeId: spec.spiffeId,
        x509TtlSeconds: opts.svidTtlSeconds ?? 3600,
        federatesWith: spec.federatesWith ?? [],
      });
      closers.push(() => identity.stop());
      const server = await WorkloadApiServer.start(join(dir, `${name}.sock`), identity);
      closers.push(() => server.close());
      identities[name] = identity;
      endpoints[name] = `unix://${join(dir, `${name}.sock`)}`;
    }

    const writePolicies = (policyDir: string): void => {
      mkdirSync(policyDir);
      for (const f of readdirSync(join(packageRoot(), 'policies'))) {
        if (f.endsWith('.cedar') || f.endsWith('.cedarschema'))
          copyFileSync(join(packageRoot(), 'policies', f), join(policyDir, f));
      }
      if (opts.extraPolicies) writeFileSync(join(policyDir, 'test.cedar'), opts.extraPolicies);
    };
    const policyDir = join(dir, 'policies');
    writePolicies(policyDir);

    const extraRedis = (opts.config?.redis as Record<string, unknown> | undefined) ?? {};
    // A test or bench naming its own prefix in `config.redis` gets it here too (seeders use this).
    const redisPrefix = opts.redisPrefix ?? (extraRedis.prefix as string | undefined) ?? randomPrefix();
    const storeKind =
      typeof opts.store === 'string' || opts.store === undefined ? (opts.store ?? 'redis') : undefined;
    // An injected lease store still leaves approvals, break-glass and budgets on the shared Redis.
    const redisUrl =
      storeKind === 'memory' ? 'redis://127.0.0.1:1' : (opts.redisUrl ?? (await sharedRedis()).url);
    const auditFile = join(dir, 'audit.jsonl');
    const extra = opts.config ?? {};
    const configFor = (policy: string, audit: string): BrokerConfig =>
      parseConfig({
        listen: '127.0.0.1:0',
        httpListen: '127.0.0.1:0',
        workloadApi: { socket: endpoints.broker, firstUpdateTimeoutMs: 5000 },
        policy: { dir: policy },
        reaper: { intervalMs: 100, batchSize: 100 },
        log: { level: 'debug' },
        // Tests read /v1/revoked right after a revocation: no per-replica cache (unit-tested on its own).
        revokedList: { cacheMs: 0 },
        // Many tests fail authentication on purpose, all from 127.0.0.1: the per-peer limit has its own tests.
        grpc: { authFailureBurst: 100_000 },
        ...extra,
        // A test's Redis keys (durability, say) go over the harness's connection and prefix.
        redis: {
          url: redisUrl,
          prefix: redisPrefix,
          store: storeKind === 'memory' ? 'memory' : 'redis',
          ...extraRedis,
        },
        // A test's audit keys (sinks, say) go beside the harness's file unless it names its own.
        audit: { file: audit, fsync: true, ...((extra.audit as Record<string, unknown> | undefined) ?? {}) },
        roles: { ...devRoles(), ...((extra.roles as Record<string, unknown>) ?? {}) },
        agents: (extra.agents as unknown[] | undefined) ?? devAgents(),
      });
    const config = configFor(policyDir, auditFile);

    const logs = new LogCapture();
    const logger = createLogger('debug', logs);
    const broker = await startBroker({
      config,
      logger,
      ...(typeof opts.store === 'object' ? { store: opts.store } : {}),
      ...(opts.audit ? { audit: opts.audit } : {}),
      ...(opts.now ? { now: opts.now } : {}),
      ...opts.measure,
    });
    closers.push(() => broker.close());

    const address = `127.0.0.1:${broker.grpcPort}`;
    const httpBase = `http://127.0.0.1:${broker.httpPort}`;

    const sourceFor = async (workload: string): Promise<X509Source> => {
      const endpoint = endpoints[workload];
      if (!endpoint) throw new Error(`no workload ${workload}`);
      const source = await X509Source.create({ endpoint, timeoutMs: 5000 });
      closers.push(() => source.close());
      return source;
    };

    const clientsFor = (brokerAddress: string) => ({
      async client(
        workload: string,
        clientOpts: Partial<
          Pick<BrokerClientOptions, 'auth' | 'brokerId' | 'timeoutMs' | 'traceparent'>
        > = {},
      ) {
        const source = await sourceFor(workload);
        const svid = source.getX509Svid();
        const serverBundle = source.getX509BundleForTrustDomain(TRUST_DOMAIN);
        if (!serverBundle) throw new Error(`${workload} holds no bundle for ${TRUST_DOMAIN}`);
        const client = new BrokerClient({
          address: brokerAddress,
          svid,
          serverBundle,
          brokerId: BROKER_ID,
          ...clientOpts,
        });
        closers.push(() => client.close());
        return client;
      },
      async adminClient(workload: string) {
        const source = await sourceFor(workload);
        const serverBundle = source.getX509BundleForTrustDomain(TRUST_DOMAIN);
        if (!serverBundle) throw new Error(`${workload} holds no bundle for ${TRUST_DOMAIN}`);
        const client = new BrokerAdminClient({
          address: brokerAddress,
          svid: source.getX509Svid(),
          serverBundle,
          brokerId: BROKER_ID,
        });
        closers.push(() => client.close());
        return client;
      },
    });
    let replicas = 0;

    const harness: Harness = {
      dir,
      ca,
      broker,
      logs,
      logger,
      auditFile,
      redisPrefix,
      identities,
      endpoints,
      address,
      httpBase,
      ...clientsFor(address),
      async jwtClient(workload, audience = BROKER_ID) {
        const endpoint = endpoints[workload] as string;
        return harness.client(workload, {
          auth: { kind: 'jwt', token: async () => (await fetchJwtSvid(endpoint, [audience])).token },
        });
      },
      async httpJson(path) {
        const res = await fetch(`${httpBase}${path}`);
        const text = await res.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON (metrics)
        }
        return { status: res.status, body };
      },
      async replica() {
        const n = ++replicas;
        const replicaPolicies = join(dir, `policies-replica-${n}`);
        writePolicies(replicaPolicies);
        const replicaAudit = join(dir, `audit-replica-${n}.jsonl`);
        const replicaLogs = new LogCapture();
        const replicaBroker = await startBroker({
          config: configFor(replicaPolicies, replicaAudit),
          logger: createLogger('debug', replicaLogs),
          ...(opts.now ? { now: opts.now } : {}),
        });
        let closed = false;
        const closeReplica = async (): Promise<void> => {
          if (closed) return;
          closed = true;
          await replicaBroker.close();
        };
        closers.push(closeReplica);
        return {
          broker: replicaBroker,
          address: `127.0.0.1:${replicaBroker.grpcPort}`,
          auditFile: replicaAudit,
          policyDir: replicaPolicies,
          logs: replicaLogs,
          ...clientsFor(`127.0.0.1:${replicaBroker.grpcPort}`),
          close: closeReplica,
        };
      },
      clientsAt: (at) => clientsFor(at),
      configFor,
      close,
    };
    return harness;
  } catch (err) {
    await close();
    throw err;
  }
}

/** Reads the audit file as parsed records. */
export async function readAudit(file: string): Promise<Array<Record<string, unknown>>> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The gRPC status code and trailing metadata of a failed call. */
export async function grpcError(
  p: Promise<unknown>,
): Promise<{ code: number; details: string; metadata: Record<string, string> }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: number; details: string; metadata?: { getMap(): Record<string, unknown> } };
    const map = e.metadata?.getMap() ?? {};
    return {
      code: e.code,
      details: e.details,
      metadata: Object.fromEntries(Object.entries(map).map(([k, v]) => [k, String(v)])),
    };
  }
  throw new Error('expected the call to fail');
}

/**
 * A BreakGlassStore on the harness's Redis data (shared redis-server, same key prefix), for tests
 * that must plant a grant no policy would let BrokerAdmin create. Close it when done.
 */
export async function breakGlassStoreFor(
  h: Pick<Harness, 'redisPrefix'>,
): Promise<{ store: import('../../src/approvals/types.js').BreakGlassStore; close(): void }> {
  const { RedisBreakGlassStore } = await import('../../src/approvals/redis-break-glass-store.js');
  const { createRedisClient } = await import('../../src/leases/redis-lease-store.js');
  const redis = createRedisClient((await sharedRedis()).url);
  return {
    store: new RedisBreakGlassStore(redis, { prefix: h.redisPrefix }),
    close: () => redis.disconnect(),
  };
}
