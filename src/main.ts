/**
 * The composition root: the only place where parts are built and wired together.
 * `serve`, `dev` and the integration tests all start the broker through startBroker().
 */
import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { pino, type Logger } from 'pino';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FileChainSink } from './audit/file-chain-sink.js';
import { LOG_REDACT_PATHS } from './audit/redact.js';
import type { AuditSink } from './audit/types.js';
import { Broker } from './broker/broker.js';
import { roleDefinitions } from './config/load-config.js';
import type { BrokerConfig } from './config/schema.js';
import type { CredentialBackend } from './credentials/backend.js';
import { SigningKeyRing } from './credentials/token/signing-keys.js';
import { createTokenBackend } from './credentials/token/token-backend.js';
import { BundleSet } from './identity/bundle-set.js';
import { parseSpiffeId } from './identity/spiffe-id.js';
import type { JwtBundle, JwtBundleSource, X509Bundle } from './identity/types.js';
import { JwtBundleSourceClient, X509Source } from './identity/workload-api.js';
import { MemoryLeaseStore } from './leases/memory-lease-store.js';
import { LeaseReaper } from './leases/reaper.js';
import { createRedisClient, RedisLeaseStore } from './leases/redis-lease-store.js';
import type { LeaseStore } from './leases/types.js';
import { CedarPolicyEngine } from './policy/cedar-engine.js';
import { Authenticator } from './server/authenticate.js';
import { startGrpcServer, type RunningGrpcServer } from './server/grpc-server.js';
import { startOpsHttp, type RunningOpsHttp } from './server/ops-http.js';
import { SvidCertificateProvider, type TlsIdentitySource } from './server/svid-certificate-provider.js';

// The broker's live heap is small (about 25 MB under load: `npm run bench -- --rss-detail`), but
// V8's default old-space growth let the heap reach two to three times that between major GCs,
// which alone took the broker's peak RSS past 200 MB under load. Growing the limit by half the
// live size instead kept the peak near 170 MB with no measurable cost in throughput or latency.
// V8 reads this whenever it sets the next GC limit, so setting it at startup is enough.
setFlagsFromString('--heap-growing-percent=50');

export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}

export interface StartBrokerOptions {
  config: Readonly<BrokerConfig>;
  logger?: Logger;
  /** Injected by the dev stack (in-process store) and tests; otherwise built from config.redis. */
  store?: LeaseStore;
  /** Injected by tests; otherwise a FileChainSink on config.audit.file. */
  audit?: AuditSink;
  now?: () => number;
  /** Seconds between signing-key rotations, for tests. */
  keyRotationSeconds?: number;
}

export interface RunningBroker {
  readonly spiffeId: () => string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly broker: Broker;
  readonly store: LeaseStore;
  readonly keys: SigningKeyRing;
  readonly reaper: LeaseReaper;
  close(): Promise<void>;
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, redact: { paths: [...LOG_REDACT_PATHS], censor: '[REDACTED]' }, base: { svc: 'svid-broker' } },
    destination ?? process.stderr,
  );
}

/** Adapts the Workload API X509Source to what TLS needs (all bundles + update events). */
function tlsIdentity(source: X509Source): TlsIdentitySource {
  return {
    getX509Svid: () => source.getX509Svid(),
    getX509BundleForTrustDomain: (td) => source.getX509BundleForTrustDomain(td),
    getX509Bundles: (): X509Bundle[] => source.getX509Bundles(),
    onUpdate: (listener) => source.onUpdate(listener),
  };
}

export async function startBroker(opts: StartBrokerOptions): Promise<RunningBroker> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger(config.log.level);
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn({ err: { message: (err as Error).message } }, 'shutdown step failed');
      }
    }
  };

  try {
    // 1. Identity: block until the Workload API gives us an SVID and bundles.
    const endpoint = config.workloadApi.socket;
    let x509: X509Source;
    let jwt: JwtBundleSourceClient;
    try {
      x509 = await X509Source.create({
        endpoint,
        logger,
        timeoutMs: config.workloadApi.firstUpdateTimeoutMs,
      });
      cleanups.push(() => x509.close());
      jwt = await JwtBundleSourceClient.create({
        endpoint,
        logger,
        timeoutMs: config.workloadApi.firstUpdateTimeoutMs,
      });
      cleanups.push(() => jwt.close());
    } catch (err) {
      throw new StartupError(
        `cannot get an SVID from the Workload API at ${endpoint}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const spiffeId = (): string => x509.getX509Svid().spiffeId;
    const ownTrustDomain = (): string => parseSpiffeId(spiffeId()).trustDomain;
    logger.info({ spiffeId: spiffeId() }, 'broker SVID received');

    // 2. Policy: parsed, validated and preparsed once.
    const policy = CedarPolicyEngine.load({
      policyDir: config.policy.dir,
      ...(config.policy.schema ? { schemaPath: config.policy.schema } : {}),
    });
    logger.info({ digest: policy.digest, dir: config.policy.dir }, 'policy set loaded');

    // 3. Leases.
    let store = opts.store;
    if (!store) {
      if (config.redis.store === 'memory') {
        store = new MemoryLeaseStore();
      } else {
        const redis = createRedisClient(config.redis.url);
        cleanups.push(() => void redis.disconnect());
        store = new RedisLeaseStore(redis, {
          prefix: config.redis.prefix,
          retentionSeconds: config.redis.retentionSeconds,
        });
        try {
          await store.ping();
        } catch (err) {
          throw new StartupError(
            `cannot reach Redis at ${redactUrl(config.redis.url)}: ${(err as Error).message}`,
          );
        }
      }
      const built = store;
      cleanups.push(() => built.close());
    }
    if (!store.durable) {
      logger.warn(
        'LEASE STORE IS IN-PROCESS MEMORY: leases are NOT durable and NOT shared; a restart forgets every lease. Dev only.',
      );
    }

    // 4. Audit.
    let audit = opts.audit;
    if (!audit) {
      audit = await FileChainSink.open(config.audit.file, { fsync: config.audit.fsync });
      const built = audit;
      cleanups.push(() => built.close());
    }

    // 5. Backends and the role catalog, validated together.
    const roles = roleDefinitions(config);
    const maxRoleTtl = Math.max(0, ...[...roles.values()].map((r) => r.maxTtlSeconds));
    const keys = await SigningKeyRing.create({
      overlapSeconds: config.backends.token.keyOverlapSeconds ?? maxRoleTtl + 300,
    });
    keys.startAutoRotation(opts.keyRotationSeconds ?? config.backends.token.keyRotationSeconds, (err) =>
      // The current key keeps signing; the next tick tries again.
      logger.error({ err: { message: (err as Error).message } }, 'signing key rotation failed'),
    );
    cleanups.push(() => keys.stop());
    const backends = new Map<string, CredentialBackend>([
      ['token', createTokenBackend({ issuer: spiffeId, keys })],
    ]);
    const problems: string[] = [];
    for (const role of roles.values()) {
      const backend = backends.get(role.backend);
      if (!backend) {
        problems.push(
          `roles.${role.name}: unknown backend "${role.backend}" (available: ${[...backends.keys()].join(', ')})`,
        );
        continue;
      }
      for (const p of backend.validateRole(role)) problems.push(`roles.${role.name}: ${p}`);
    }
    if (problems.length) throw new StartupError(`invalid role catalog:\n  - ${problems.join('\n  - ')}`);

    // 6. The use cases.
    const broker = new Broker({
      store,
      policy: () => policy,
      audit,
      backends,
      roles,
      environments: config.environments,
      tasks: config.tasks,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });

    // 7. Transport: TLS with rotating SVID, per-trust-domain peer verification.
    const certificates = new SvidCertificateProvider(tlsIdentity(x509));
    cleanups.push(() => certificates.close());
    const bundles = {
      x509: x509,
      jwt: jwt as JwtBundleSource,
    };
    const authenticator = new Authenticator({
      x509Bundles: bundles.x509,
      jwtBundles: bundles.jwt,
      audiences: () => (config.auth.jwtAudiences.length ? [...config.auth.jwtAudiences] : [spiffeId()]),
      trustDomains: config.auth.trustDomains,
      generation: () => certificates.currentGeneration,
      ...(opts.now ? { now: opts.now } : {}),
    });

    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const metrics = {
      requests: new Counter({
        name: 'svid_broker_requests_total',
        help: 'gRPC requests by method and status code',
        labelNames: ['method', 'code'] as const,
        registers: [registry],
      }),
      latency: new Histogram({
        name: 'svid_broker_request_seconds',
        help: 'gRPC request latency',
        labelNames: ['method'] as const,
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
        registers: [registry],
      }),
    };

    const grpc: RunningGrpcServer = await startGrpcServer(
      { broker, authenticator, certificates, audit, logger, metrics },
      config.listen,
    );
    cleanups.push(() => grpc.shutdown());

    const leaseStore = store;
    const http: RunningOpsHttp = await startOpsHttp(
      {
        jwks: () => keys.jwks(),
        store: leaseStore,
        registry,
        logger,
        ...(opts.now ? { now: opts.now } : {}),
        ready: async () => {
          const svid = x509.getX509Svid();
          if (!svid) throw new Error('no SVID');
          await leaseStore.ping();
        },
      },
      config.httpListen,
    );
    cleanups.push(() => http.close());

    // 8. The reaper: expires tasks and leases, revokes at the backend, also after a restart.
    const reaper = new LeaseReaper({
      store,
      revoke: (lease) => broker.onLeaseExpired(lease),
      onTaskExpired: (task) => broker.onTaskExpired(task),
      intervalMs: config.reaper.intervalMs,
      batchSize: config.reaper.batchSize,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });
    reaper.start();
    cleanups.push(() => reaper.stop());

    x509.onUpdate(() =>
      logger.info({ spiffeId: spiffeId(), trustDomain: ownTrustDomain() }, 'SVID or bundles rotated'),
    );
    logger.info({ grpc: grpc.port, http: http.port, spiffeId: spiffeId() }, 'svid-broker serving');

    let closed = false;
    return {
      spiffeId,
      grpcPort: grpc.port,
      httpPort: http.port,
      broker,
      store,
      keys,
      reaper,
      async close() {
        if (closed) return;
        closed = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Redis URLs may carry a password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}

export { BundleSet, type JwtBundle };
