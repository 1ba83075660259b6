/**
 * The composition root: the only place where parts are built and wired together.
 * `serve`, `dev` and the integration tests all start the broker through startBroker().
 */
import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { auditGate } from './audit/audit-gate.js';
import { FileChainSink } from './audit/file-chain-sink.js';
import { LOG_REDACT_PATHS } from './audit/redact.js';
import type { AuditEventInput, AuditSink } from './audit/types.js';
import {
  Broker,
  type IncidentHooks,
  type IssuanceSafeguards,
  type ScreenedRequest,
} from './broker/broker.js';
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
import { buildCloudBackends } from './credentials/cloud/cloud-backends.js';
import { SigningKeyRing } from './credentials/token/signing-keys.js';
import { SharedJwks } from './credentials/token/shared-jwks.js';
import { createTokenBackend } from './credentials/token/token-backend.js';
import { BundleSet } from './identity/bundle-set.js';
import { parseSpiffeId } from './identity/spiffe-id.js';
import { SvidSeal, type RefusedEntry } from './identity/svid-seal.js';
import type { JwtBundle, JwtBundleSource, X509Bundle, X509Svid } from './identity/types.js';
import { JwtBundleSourceClient, X509Source, fetchJwtSvid } from './identity/workload-api.js';
import { selectOwnSvid } from './identity/own-svid.js';
import { MemoryLeaseStore } from './leases/memory-lease-store.js';
import { createBrokerMetrics, withMetrics } from './observability/metrics.js';
import { registerDependencyGauge } from './observability/dependency-health.js';
import { buildDependencyHealth, setGrpcServing } from './server/readiness.js';
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
import { planDurability, type ConfirmWrite } from './redis/durability.js';
import { watchRedisHealth } from './redis/redis-health-log.js';
import { Authenticator } from './server/authenticate.js';
import { startGrpcServer, type RunningGrpcServer } from './server/grpc-server.js';
import { startOpsHttp, type RunningOpsHttp } from './server/ops-http.js';
import { CallGate } from './server/call-gate.js';
import { grpcServerOptions } from './config/grpc-server-config.js';
import { RevokedList } from './server/revoked-list.js';
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
  /** The bench's ledger comparison only (Broker's `issuance`): production keeps both safeguards on. */
  issuance?: IssuanceSafeguards;
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
  /** The generation of the shared policy set in service (0: none; always 0 without Redis). */
  policyGeneration(): number;
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

/** Adapts the Workload API X509Source to what TLS needs (own SVID, all bundles, update events). */
function tlsIdentity(source: X509Source, ownSvid: () => X509Svid): TlsIdentitySource {
  return {
    getX509Svid: ownSvid,
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
    // The broker's own SVID, chosen by ID (or hint) from every update, never by position.
    const ownSvid = (): X509Svid => selectOwnSvid(x509.getX509Svids(), config.workloadApi);
    try {
      ownSvid();
    } catch (err) {
      throw new StartupError((err as Error).message, { cause: err });
    }
    const spiffeId = (): string => ownSvid().spiffeId;
    const ownTrustDomain = (): string => parseSpiffeId(spiffeId()).trustDomain;
    logger.info({ spiffeId: spiffeId() }, 'broker SVID received');
    // What this replica writes into shared state (JWKS, policy set) it seals with its SVID; what it
    // reads there it uses only if sealed by an allowed broker (wall clock: certificates).
    const seal = new SvidSeal({
      svid: x509,
      bundles: x509,
      allowedIds: () => (config.replicas.allowedIds.length ? config.replicas.allowedIds : [spiffeId()]),
    });

    // 2. Policy: parsed, validated and preparsed once; reloaded on file change and SIGHUP, and a
    // bad set never replaces a good one. Reload events go to the audit trail (built below).
    const catalog = new AgentCatalog(
      config.agents.map((a) => ({ pattern: a.pattern, groups: [...a.groups] })),
    );
    const agentGroups = (id: string): string[] => catalog.groupsOf(id);
    // Filled once the audit sink (with its metrics) exists; events from before are held until then.
    const reloadAudit: { sink?: AuditSink; early: AuditEventInput[] } = { early: [] };
    const policyEvent = (event: AuditEventInput): void => {
      if (!reloadAudit.sink) {
        reloadAudit.early.push(event);
        return;
      }
      reloadAudit.sink
        .write(event)
        .catch((err: unknown) =>
          logger.error({ err: { message: (err as Error).message }, type: event.type }, 'audit write failed'),
        );
    };
    const entryRefused = (entry: RefusedEntry): void => {
      logger.warn({ ...entry }, 'shared state entry refused: ignored');
      policyEvent({ type: 'replica.entry_refused', agent: '', ...entry });
    };
    const policySync: { current?: PolicySync } = {};
    const policies = PolicyManager.load({
      policyDir: config.policy.dir,
      ...(config.policy.schema ? { schemaPath: config.policy.schema } : {}),
      agentGroups,
      watch: config.policy.watch,
      ...(config.policy.pinDigest ? { pinDigest: config.policy.pinDigest } : {}),
      onReloaded: (digest, previousDigest) => {
        logger.info({ digest, previousDigest }, 'policy set reloaded');
        policyEvent({ type: 'policy.reloaded', agent: '', digest, previous_digest: previousDigest });
        // Every other replica adopts it (PolicySync, built once Redis is there).
        policySync.current
          ?.publish(digest)
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
      watchRedisHealth(client, { logger, target: describeRedisTarget(config.redis) });
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
        // Each lease write is confirmed as redis.durability asks, once startup has checked the server.
        const durable: { confirm?: ConfirmWrite } = {};
        const redisStore = new RedisLeaseStore(redis, {
          prefix: config.redis.prefix,
          retentionSeconds: config.redis.retentionSeconds,
          confirmWrite: () => durable.confirm?.() ?? Promise.resolve(),
        });
        store = redisStore;
        try {
          await store.ping();
        } catch (err) {
          throw new StartupError(
            `cannot reach ${describeRedisTarget(config.redis)}: ${(err as Error).message}` +
              (redisProblem ? ` (${redisProblem.message})` : ''),
          );
        }
        const plan = await planDurability(
          redis,
          `{${config.redis.prefix}}:active-leases`,
          config.redis,
        ).catch((err: unknown) => {
          throw new StartupError(`${describeRedisTarget(config.redis)}: ${(err as Error).message}`);
        });
        if (plan.warning) logger.warn(plan.warning);
        else logger.info(plan.summary);
        if (plan.confirm) durable.confirm = plan.confirm;
        // /v1/revoked reads the token deny list only: bring over what older versions revoked.
        await redisStore.backfillRevokedTokens((opts.now ?? Date.now)()).catch((err: unknown) => {
          throw new StartupError(
            `cannot copy revoked tokens to the token deny list: ${(err as Error).message}`,
          );
        });
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
      // The stored set (the highest generation) becomes this replica's; an empty Redis gets ours.
      const sync = new PolicySync({
        redis,
        prefix: config.redis.prefix,
        feedMaxLen: config.feed.maxLen,
        manager: policies,
        seal,
        replica: `${spiffeId()}#${process.pid}`,
        logger,
        onSynced: (digest, previousDigest, from, generation) => {
          logger.info(
            { digest, previousDigest, from, generation },
            'policy set adopted from another replica',
          );
          policyEvent({
            type: 'policy.synced',
            agent: '',
            digest,
            previous_digest: previousDigest,
            from,
            generation,
          });
        },
        onRefused: entryRefused,
        onDirectoryDiffers: (directoryDigest, stored) => {
          logger.warn(
            { directoryDigest, digest: stored.digest, generation: stored.generation },
            'policy directory differs from the shared set: serving the shared set, not publishing ours',
          );
          policyEvent({
            type: 'policy.directory_differs',
            agent: '',
            directory_digest: directoryDigest,
            digest: stored.digest,
            generation: stored.generation,
          });
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
        await sync.initialize();
      } catch (err) {
        throw new StartupError(`cannot read or publish the policy set: ${(err as Error).message}`);
      }
      policySync.current = sync;
      feed.listen(sync);
      sync.start();
      cleanups.push(() => sync.stop());
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
      audit = await FileChainSink.open(config.audit.file, { fsync: config.audit.fsync, logger });
      const built = audit;
      cleanups.push(() => built.close());
    }
    const health = buildDependencyHealth({
      store,
      freshness,
      audit,
      // The broker's own SVID (workloadApi.expectedId), not whichever the Workload API lists first.
      x509: {
        getX509Svid: () => {
          try {
            return ownSvid();
          } catch {
            return undefined;
          }
        },
      },
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });
    const refuseWhileAuditDown = auditGate(audit);

    // 5. Backends and the role catalog, validated together.
    const roles = roleDefinitions(config);
    const maxRoleTtl = Math.max(0, ...[...roles.values()].map((r) => r.maxTtlSeconds));
    const keys = await SigningKeyRing.create({
      overlapSeconds: config.backends.token.keyOverlapSeconds ?? maxRoleTtl + 300,
    });
    // Private keys stay in this process; the public halves of every replica's keys are shared
    // through Redis, so any replica's JWKS verifies any replica's tokens.
    const sharedJwks = redis
      ? new SharedJwks(redis, keys, { prefix: config.redis.prefix, seal, onRefused: entryRefused, logger })
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
      [
        'token',
        createTokenBackend({
          issuer: spiffeId,
          keys,
          clockSkewSeconds: config.backends.token.maxClockSkewSeconds,
        }),
      ],
    ]);
    let readVaultSecret: ((path: string) => Promise<Record<string, unknown> | null>) | undefined;
    if (config.backends.vault) {
      // The broker logs in to Vault with its own SVID (JWT-SVID or X.509-SVID), never a static token.
      const vault = buildVaultBackend(config.backends.vault, {
        fetchJwt: async (audience) => (await fetchJwtSvid(endpoint, [audience], spiffeId())).token,
        svid: ownSvid,
        logger,
      });
      backends.set('vault', vault.backend);
      readVaultSecret = async (path) =>
        (await vault.auth.withToken((token) => vault.client.request({ method: 'GET', path, token })))?.data ??
        null;
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
    // Cloud backends: the broker federates with its own JWT-SVID; no long-lived cloud key.
    let cloud;
    try {
      cloud = await buildCloudBackends(config.backends, roles, {
        fetchJwt: async (audience) => (await fetchJwtSvid(endpoint, [audience])).token,
        logger,
        readVaultSecret,
        ...(opts.now ? { now: opts.now } : {}),
      });
    } catch (err) {
      throw new StartupError((err as Error).message, { cause: err });
    }
    for (const [name, backend] of cloud.backends) backends.set(name, backend);
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
        pendingLeases: () => metricsStore.pendingLeaseCount(),
        pendingRevocations: () => revocations.pending(),
        activeQuarantines: () => Promise.resolve(quarantineView.list().length),
        feedLagSeconds: () => freshness.lagMs() / 1000,
      },
      { roles, logger },
    );
    registerDependencyGauge(registry, health);
    audit = withMetrics(audit, metrics);
    reloadAudit.sink = audit;
    for (const event of reloadAudit.early.splice(0)) policyEvent(event);
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
      approvalCaps: {
        perAgent: config.approvals.maxOpenPerAgent,
        perTask: config.approvals.maxOpenPerTask,
      },
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
      // Run first on every call: nothing is decided or minted while the audit sink is down.
      quarantine: {
        check: (agent) => {
          refuseWhileAuditDown();
          quarantineView.check(agent);
        },
      },
      incidents,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.issuance ? { issuance: opts.issuance } : {}),
    });
    const admin = new BrokerAdmin({
      approvals,
      breakGlass,
      policy: () => policies.current,
      roles,
      audit,
      breakGlassMaxTtlSeconds: config.breakGlass.maxTtlSeconds,
      incidents,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });

    const leaseAdmin = new LeaseAdmin({
      store,
      broker,
      policy: () => policies.current,
      audit,
      incidents,
      logger,
      jobDelayMs: config.revocation.visibilityTimeoutMs,
      cloudIncidents: cloud.incidents,
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
    const certificates = new SvidCertificateProvider(tlsIdentity(x509, ownSvid));
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

    // Per-peer limits and the aggregated auth.denied audit; stopped after the server (cleanups run
    // in reverse), so the last window's counts are written before the audit sink closes.
    const gate = new CallGate({ config: config.grpc, audit, logger, ...(opts.now ? { now: opts.now } : {}) });
    gate.start();
    cleanups.push(() => gate.stop());
    const grpc: RunningGrpcServer = await startGrpcServer(
      {
        gate,
        serverOptions: grpcServerOptions(config.grpc),
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
        revoked: new RevokedList({
          store: leaseStore,
          clockSkewMs: config.backends.token.maxClockSkewSeconds * 1000,
          ...config.revokedList,
          ...(opts.now ? { now: opts.now } : {}),
        }),
        registry,
        logger,
        readiness: () => health.refresh(),
      },
      config.httpListen,
    );
    cleanups.push(() => http.close());
    // gRPC health follows the same checks; stopped before the server's shutdown sets NOT_SERVING.
    health.onReadinessChange((report) => setGrpcServing(grpc.health, report.ready));
    await health.refresh();
    health.start();
    cleanups.push(() => health.stop());

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
        {
          evaluator,
          tls: tlsIdentity(x509, ownSvid),
          bundles: x509,
          trustDomains: config.auth.trustDomains,
          logger,
        },
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
      orphans: {
        afterMs: config.reaper.orphanAfterMs,
        retryAfterMs: config.revocation.baseDelayMs,
        onOrphaned: (leases) => broker.onLeasesOrphaned(leases),
      },
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
      roles,
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
      policyGeneration: () => policySync.current?.generation ?? 0,
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
