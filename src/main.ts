/**
 * The composition root: the only place where parts are built and wired together.
 * `serve`, `dev` and the integration tests all start the broker through startBroker().
 */
import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { FileChainSink } from './audit/file-chain-sink.js';
import { LOG_REDACT_PATHS } from './audit/redact.js';
import type { AuditEventInput, AuditSink } from './audit/types.js';
import { Broker, type IncidentHooks, type ScreenedRequest } from './broker/broker.js';
import { QuarantineAdmin } from './broker/quarantine-admin.js';
import type { BrokerError } from './errors.js';
import { MemoryInvalidationFeed } from './feed/memory-feed.js';
import { RedisInvalidationFeed } from './feed/redis-feed.js';
import { FeedFreshness, type InvalidationFeed } from './feed/types.js';
import { MemoryQuarantineStore } from './quarantine/memory-quarantine-store.js';
import { QuarantineService } from './quarantine/quarantine-service.js';
import { QuarantineView } from './quarantine/quarantine-view.js';
import { RedisQuarantineStore } from './quarantine/redis-quarantine-store.js';
import type { QuarantineStore } from './quarantine/types.js';
import { roleDefinitions } from './config/load-config.js';
import type { BrokerConfig } from './config/schema.js';
import type { CredentialBackend } from './credentials/backend.js';
import { SigningKeyRing } from './credentials/token/signing-keys.js';
import { SharedJwks } from './credentials/token/shared-jwks.js';
import { createTokenBackend } from './credentials/token/token-backend.js';
import { BundleSet } from './identity/bundle-set.js';
import { parseSpiffeId } from './identity/spiffe-id.js';
import type { JwtBundle, JwtBundleSource, X509Bundle } from './identity/types.js';
import { JwtBundleSourceClient, X509Source, fetchJwtSvid } from './identity/workload-api.js';
import { MemoryLeaseStore } from './leases/memory-lease-store.js';
import { createBrokerMetrics, withMetrics } from './observability/metrics.js';
import { LeaseReaper } from './leases/reaper.js';
import { RedisLeaseStore } from './leases/redis-lease-store.js';
import type { LeaseStore } from './leases/types.js';
import { AgentCatalog } from './policy/agent-catalog.js';
import { formatPolicyProblem } from './policy/policy-load-error.js';
import { PolicyManager } from './policy/policy-manager.js';
import { PolicySync } from './policy/policy-sync.js';
import { MemoryApprovalStore } from './approvals/memory-approval-store.js';
import { MemoryBreakGlassStore } from './approvals/memory-break-glass-store.js';
import { RedisApprovalStore } from './approvals/redis-approval-store.js';
import { RedisBreakGlassStore } from './approvals/redis-break-glass-store.js';
import type { ApprovalStore, BreakGlassStore } from './approvals/types.js';
import { MemoryBudgetStore } from './budgets/memory-budget-store.js';
import { RedisBudgetStore } from './budgets/redis-budget-store.js';
import type { BudgetStore } from './budgets/types.js';
import { BrokerAdmin } from './broker/admin.js';
import { LeaseAdmin } from './broker/lease-admin.js';
import { buildVaultBackend } from './credentials/vault/vault-config.js';
import { MemoryRevocationQueue } from './leases/memory-revocation-queue.js';
import { RedisRevocationQueue } from './leases/redis-revocation-queue.js';
import type { RevocationQueue } from './leases/revocation-queue.js';
import { RevocationWorker } from './leases/revocation-worker.js';
import { createRedisConnection, describeRedisTarget, type RedisClient } from './redis/connect.js';
import { Authenticator } from './server/authenticate.js';
import { startGrpcServer, type RunningGrpcServer } from './server/grpc-server.js';
import { startOpsHttp, type RunningOpsHttp } from './server/ops-http.js';
import { startAuthzenHttp } from './server/authzen-http.js';
import { AccessEvaluator } from './broker/access-evaluation.js';
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
  /** The AuthZEN listener's port, when `authzen.listen` is set. */
  readonly authzenPort: number | undefined;
  readonly broker: Broker;
  readonly store: LeaseStore;
  readonly keys: SigningKeyRing;
  readonly reaper: LeaseReaper;
  readonly admin: BrokerAdmin;
  /** Re-reads the policy directory (what SIGHUP does); a bad set keeps the current one. */
  reloadPolicy(): { ok: boolean; digest: string };
  /** The digest of the policy set in service. */
  policyDigest(): string;
  /** This replica's view of the quarantines (and whether its invalidation feed is fresh). */
  readonly quarantines: QuarantineView;
  readonly feedFreshness: FeedFreshness;
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

    // 2. Policy: parsed, validated and preparsed once; reloaded on file change and SIGHUP, and a
    // bad set never replaces a good one. Reload events go to the audit trail (built below).
    const catalog = new AgentCatalog(
      config.agents.map((a) => ({ pattern: a.pattern, groups: [...a.groups] })),
    );
    const agentGroups = (id: string): string[] => catalog.groupsOf(id);
    // Filled once the audit sink exists (step 4); reloads only happen after startup.
    const reloadAudit: { sink?: AuditSink } = {};
    const policyEvent = (event: AuditEventInput): void => {
      reloadAudit.sink
        ?.write(event)
        .catch((err: unknown) =>
          logger.error({ err: { message: (err as Error).message }, type: event.type }, 'audit write failed'),
        );
    };
    const policySync: { current?: PolicySync } = {};
    const policies = PolicyManager.load({
      policyDir: config.policy.dir,
      ...(config.policy.schema ? { schemaPath: config.policy.schema } : {}),
      agentGroups,
      watch: config.policy.watch,
      onReloaded: (digest, previousDigest) => {
        logger.info({ digest, previousDigest }, 'policy set reloaded');
        policyEvent({ type: 'policy.reloaded', agent: '', digest, previous_digest: previousDigest });
        // Every other replica adopts it (PolicySync, built once Redis is there).
        policySync.current
          ?.publish()
          .catch((err: unknown) =>
            logger.error(
              { err: { message: (err as Error).message } },
              'policy set not published: other replicas keep theirs',
            ),
          );
      },
      onWatchError: (err) =>
        logger.error(
          { err: { message: (err as Error).message } },
          'policy watch failed: SIGHUP still reloads',
        ),
      onReloadFailed: (problems) => {
        const list = problems.map((p) => formatPolicyProblem(p));
        logger.error({ problems: list }, 'policy reload failed: keeping the previous set');
        policyEvent({
          type: 'policy.reload_failed',
          agent: '',
          errors: list,
          kept_digest: policies.current.digest,
        });
      },
    });
    cleanups.push(() => policies.close());
    logger.info({ digest: policies.current.digest, dir: config.policy.dir }, 'policy set loaded');

    // 3. Shared state: leases, approvals, break-glass grants, budgets (Redis, or memory in dev).
    let redis: RedisClient | undefined;
    // The latest connection problem (say, a sentinel that does not know the master), for the error below.
    let redisProblem: Error | undefined;
    if (config.redis.store === 'redis') {
      const client = createRedisConnection(config.redis, {
        onError: (err) => {
          redisProblem = err;
        },
      });
      redis = client;
      cleanups.push(() => void client.disconnect());
    }
    // Quarantines, the revocation queue and the invalidation feed come first: the in-memory lease
    // store consults the first two directly (the Redis one reads their keys in its scripts).
    const memoryFeed = redis ? undefined : new MemoryInvalidationFeed(opts.now);
    const memoryQuarantines = redis ? undefined : new MemoryQuarantineStore(memoryFeed);
    const quarantines: QuarantineStore = redis
      ? new RedisQuarantineStore(redis, { prefix: config.redis.prefix, feedMaxLen: config.feed.maxLen })
      : (memoryQuarantines as MemoryQuarantineStore);
    const revocations: RevocationQueue = redis
      ? new RedisRevocationQueue(redis, {
          prefix: config.redis.prefix,
          visibilityTimeoutMs: config.revocation.visibilityTimeoutMs,
        })
      : new MemoryRevocationQueue();
    let store = opts.store;
    if (!store) {
      if (!redis) {
        store = new MemoryLeaseStore({
          quarantined: (agent, now) => memoryQuarantines?.matchSync(agent, now) !== undefined,
          revocations,
        });
      } else {
        store = new RedisLeaseStore(redis, {
          prefix: config.redis.prefix,
          retentionSeconds: config.redis.retentionSeconds,
        });
        try {
          await store.ping();
        } catch (err) {
          throw new StartupError(
            `cannot reach ${describeRedisTarget(config.redis)}: ${(err as Error).message}` +
              (redisProblem ? ` (${redisProblem.message})` : ''),
          );
        }
      }
      const built = store;
      cleanups.push(() => built.close());
    }
    const storeOpts = { prefix: config.redis.prefix, retentionSeconds: config.redis.retentionSeconds };
    const approvals: ApprovalStore = redis
      ? new RedisApprovalStore(redis, storeOpts)
      : new MemoryApprovalStore();
    const breakGlass: BreakGlassStore = redis
      ? new RedisBreakGlassStore(redis, storeOpts)
      : new MemoryBreakGlassStore();
    const budgets: BudgetStore = redis
      ? new RedisBudgetStore(redis, { prefix: config.redis.prefix })
      : new MemoryBudgetStore();
    const feed: InvalidationFeed = redis
      ? new RedisInvalidationFeed(redis, {
          prefix: config.redis.prefix,
          blockMs: config.feed.blockMs,
          maxLen: config.feed.maxLen,
          logger,
        })
      : (memoryFeed as MemoryInvalidationFeed);
    const freshness = new FeedFreshness(feed, config.feed.staleAfterMs);
    const quarantineView = new QuarantineView(quarantines, freshness, opts.now);
    feed.listen(quarantineView);
    if (redis) {
      // The set this replica just loaded becomes everyone's (the last one loaded anywhere wins).
      const sync = new PolicySync({
        redis,
        prefix: config.redis.prefix,
        feedMaxLen: config.feed.maxLen,
        manager: policies,
        replica: `${spiffeId()}#${process.pid}`,
        logger,
        onSynced: (digest, previousDigest, from) => {
          logger.info({ digest, previousDigest, from }, 'policy set adopted from another replica');
          policyEvent({ type: 'policy.synced', agent: '', digest, previous_digest: previousDigest, from });
        },
        onSyncFailed: (digest, problems) => {
          const list = problems.map((p) => formatPolicyProblem(p));
          logger.error({ digest, problems: list }, 'policy set from another replica refused: keeping ours');
          policyEvent({
            type: 'policy.reload_failed',
            agent: '',
            errors: list,
            kept_digest: policies.current.digest,
            offered_digest: digest,
          });
        },
      });
      try {
        await sync.publish();
      } catch (err) {
        throw new StartupError(`cannot publish the policy set: ${(err as Error).message}`);
      }
      policySync.current = sync;
      feed.listen(sync);
    }
    try {
      await feed.start();
    } catch (err) {
      throw new StartupError(`cannot read the invalidation feed: ${(err as Error).message}`);
    }
    cleanups.push(() => feed.close());
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
    reloadAudit.sink = audit;

    // 5. Backends and the role catalog, validated together.
    const roles = roleDefinitions(config);
    const maxRoleTtl = Math.max(0, ...[...roles.values()].map((r) => r.maxTtlSeconds));
    const keys = await SigningKeyRing.create({
      overlapSeconds: config.backends.token.keyOverlapSeconds ?? maxRoleTtl + 300,
    });
    // Private keys stay in this process; the public halves of every replica's keys are shared
    // through Redis, so any replica's JWKS verifies any replica's tokens.
    const sharedJwks = redis
      ? new SharedJwks(redis, keys, { prefix: config.redis.prefix, logger })
      : undefined;
    if (sharedJwks) {
      try {
        await sharedJwks.publish();
      } catch (err) {
        throw new StartupError(`cannot publish the token signing keys: ${(err as Error).message}`);
      }
      sharedJwks.start();
      cleanups.push(() => sharedJwks.stop());
    }
    keys.startAutoRotation(
      opts.keyRotationSeconds ?? config.backends.token.keyRotationSeconds,
      (err) =>
        // The current key keeps signing; the next tick tries again.
        logger.error({ err: { message: (err as Error).message } }, 'signing key rotation failed'),
      () =>
        void sharedJwks
          ?.publish()
          .catch((err: unknown) =>
            logger.error({ err: { message: (err as Error).message } }, 'new signing key not published'),
          ),
    );
    cleanups.push(() => keys.stop());
    const backends = new Map<string, CredentialBackend>([
      ['token', createTokenBackend({ issuer: spiffeId, keys })],
    ]);
    if (config.backends.vault) {
      // The broker logs in to Vault with its own SVID (JWT-SVID or X.509-SVID), never a static token.
      const vault = buildVaultBackend(config.backends.vault, {
        fetchJwt: async (audience) => (await fetchJwtSvid(endpoint, [audience])).token,
        svid: () => x509.getX509Svid(),
        logger,
      });
      backends.set('vault', vault.backend);
      cleanups.push(() => vault.backend.close?.());
      vault.auth.token().then(
        () => logger.info({ address: config.backends.vault?.address }, 'logged in to Vault'),
        (err: unknown) =>
          logger.warn(
            { err: { message: (err as Error).message } },
            'Vault login failed at startup: vault roles answer UNAVAILABLE until it works',
          ),
      );
    }
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

    // --- metrics: begin ---
    // Counters count what the audit trail records, so the sink every part below writes to is
    // wrapped; gauges read the shared stores when Prometheus scrapes (served by the ops listener).
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const metricsNow = opts.now ?? Date.now;
    const metricsStore = store;
    const metrics = createBrokerMetrics(
      registry,
      {
        pendingApprovals: () => approvals.countPending(metricsNow()),
        activeLeasesByBackend: () => metricsStore.activeLeaseCounts(),
        pendingRevocations: () => revocations.pending(),
        activeQuarantines: () => Promise.resolve(quarantineView.list().length),
        feedLagSeconds: () => freshness.lagMs() / 1000,
      },
      { roles, logger },
    );
    audit = withMetrics(audit, metrics);
    reloadAudit.sink = audit;
    // --- metrics: end ---

    // 6. The use cases. The quarantine triggers need the lease admin, which needs the broker: the
    // broker gets a forwarder that is connected once they exist.
    const incidents = new IncidentForwarder();
    const broker = new Broker({
      store,
      policy: () => policies.current,
      audit,
      approvals,
      approvalTtlSeconds: config.approvals.ttlSeconds,
      breakGlass,
      budgets,
      budgetLimits: config.budgets,
      revocations,
      revocationRetry: {
        baseDelayMs: config.revocation.baseDelayMs,
        maxDelayMs: config.revocation.maxDelayMs,
      },
      agentGroups,
      backends,
      roles,
      environments: config.environments,
      tasks: config.tasks,
      quarantine: quarantineView,
      incidents,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });
    const admin = new BrokerAdmin({
      approvals,
      breakGlass,
      policy: () => policies.current,
      roles,
      audit,
      breakGlassMaxTtlSeconds: config.breakGlass.maxTtlSeconds,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });

    const leaseAdmin = new LeaseAdmin({
      store,
      broker,
      policy: () => policies.current,
      audit,
      logger,
      jobDelayMs: config.revocation.visibilityTimeoutMs,
      ...(opts.now ? { now: opts.now } : {}),
    });
    const quarantineService = new QuarantineService({
      store: quarantines,
      revoke: (by, selector, describe, reason) =>
        leaseAdmin.revokeSelected(by, selector, describe, reason, false),
      audit,
      logger,
      triggers: config.quarantine.triggers,
      agentGroups,
      ...(opts.now ? { now: opts.now } : {}),
    });
    incidents.service = quarantineService;
    const quarantineAdmin = new QuarantineAdmin(quarantineService, leaseAdmin);

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

    const grpc: RunningGrpcServer = await startGrpcServer(
      {
        broker,
        admin,
        leaseAdmin,
        quarantineAdmin,
        quarantine: quarantineView,
        approvalPollMs: config.approvals.pollMs,
        authenticator,
        certificates,
        audit,
        logger,
        metrics,
      },
      config.listen,
    );
    cleanups.push(() => grpc.shutdown());

    const leaseStore = store;
    const http: RunningOpsHttp = await startOpsHttp(
      {
        jwks: () => (sharedJwks ? sharedJwks.jwks() : keys.jwks()),
        store: leaseStore,
        registry,
        logger,
        ...(opts.now ? { now: opts.now } : {}),
        ready: async () => {
          const svid = x509.getX509Svid();
          if (!svid) throw new Error('no SVID');
          await leaseStore.ping();
          const lag = freshness.lagMs();
          if (lag > freshness.staleAfterMs)
            throw new Error(`invalidation feed stale (${Math.round(lag)} ms)`);
        },
      },
      config.httpListen,
    );
    cleanups.push(() => http.close());

    // The AuthZEN decision point for tool gateways: the same policy set, its own listener.
    let authzenPort: number | undefined;
    if (config.authzen.listen) {
      const evaluator = new AccessEvaluator({
        policy: () => policies.current,
        store,
        audit,
        quarantine: quarantineView,
        ...(opts.now ? { now: opts.now } : {}),
      });
      const authzen = await startAuthzenHttp(
        { evaluator, tls: tlsIdentity(x509), bundles: x509, trustDomains: config.auth.trustDomains, logger },
        config.authzen.listen,
      );
      cleanups.push(() => authzen.close());
      authzenPort = authzen.port;
    }

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

    // 9. The revocation worker: retries backend revokes that failed, also those queued before a restart.
    const auditSink = audit;
    const revocationWorker = new RevocationWorker({
      queue: revocations,
      backends,
      store,
      audit: (event) => auditSink.write(event).then(() => undefined),
      maxAttempts: config.revocation.maxAttempts,
      baseDelayMs: config.revocation.baseDelayMs,
      maxDelayMs: config.revocation.maxDelayMs,
      intervalMs: config.revocation.intervalMs,
      batchSize: config.revocation.batchSize,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });
    revocationWorker.start();
    cleanups.push(() => revocationWorker.stop());

    x509.onUpdate(() =>
      logger.info({ spiffeId: spiffeId(), trustDomain: ownTrustDomain() }, 'SVID or bundles rotated'),
    );
    logger.info({ grpc: grpc.port, http: http.port, spiffeId: spiffeId() }, 'svid-broker serving');

    let closed = false;
    return {
      spiffeId,
      grpcPort: grpc.port,
      httpPort: http.port,
      authzenPort,
      broker,
      store,
      keys,
      reaper,
      admin,
      policyDigest: () => policies.current.digest,
      quarantines: quarantineView,
      feedFreshness: freshness,
      reloadPolicy: () => {
        const r = policies.reload();
        return { ok: r.ok, digest: r.digest };
      },
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

/** Lets the broker call the quarantine triggers, which are built after it. */
class IncidentForwarder implements IncidentHooks {
  service: IncidentHooks | undefined;
  onRefused(agent: string, err: BrokerError, request: Record<string, unknown>): Promise<void> {
    return this.service?.onRefused(agent, err, request) ?? Promise.resolve();
  }
  screenRequest(agent: string, request: ScreenedRequest): Promise<void> {
    return this.service?.screenRequest(agent, request) ?? Promise.resolve();
  }
}

export { BundleSet, type JwtBundle };
