/**
 * The composition root: the only place where parts are built and wired together.
 * `serve`, `dev` and the integration tests all start the broker through startBroker().
 */
import 'reflect-metadata';
import { hostname } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { auditGate } from './audit/audit-gate.js';
import { FileChainSink } from './audit/file-chain-sink.js';
import { AuditPipeline } from './audit/pipeline.js';
import { startCheckpoints, type CheckpointPublisher } from './audit/checkpoint-publisher.js';
import { CallTrace, TracedAuditSink } from './audit/trace-context.js';
import { hmacKeyFileFor, identifierHmac, readHmacKey } from './audit/identifier-hmac.js';
import { startNotifications } from './notifications/build-notifications.js';
import { buildFollowers, buildSsfTransmitters } from './audit/sinks/build-followers.js';
import { SsfMetadata } from './audit/sinks/ssf-metadata.js';
import type { FollowerSink } from './audit/follower.js';
import { SinkMetrics } from './observability/sink-metrics.js';
import { AuditWatch } from './broker/audit-watch.js';
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
import { TaskDelegator } from './broker/delegate-task.js';
import { TaskTreeAdmin } from './broker/task-tree-admin.js';
import { TransactionTokens } from './broker/transaction-token.js';
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
import { createBrokerMetrics, withMetrics, type BrokerMetrics } from './observability/metrics.js';
import { registerDependencyGauge, type DependencyHealth } from './observability/dependency-health.js';
import type { StageTimer } from './observability/stage-timer.js';
import { buildDependencyHealth, setGrpcServing } from './server/readiness.js';
import { LeaseReaper } from './leases/reaper.js';
import { RedisLeaseStore } from './leases/redis-lease-store.js';
import type { LeaseStore } from './leases/types.js';
import { AgentCatalog } from './policy/agent-catalog.js';
import { formatPolicyProblem } from './policy/policy-load-error.js';
import { authorizeOnly } from './policy/approval-gate.js';
import { PolicyManager } from './policy/policy-manager.js';
import { PolicySync } from './policy/policy-sync.js';
import type { PolicyEngine } from './policy/types.js';
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
import { splitHostPort, startOpsHttp, type RunningOpsHttp } from './server/ops-http.js';
import { CallGate } from './server/call-gate.js';
import { grpcServerOptions } from './config/grpc-server-config.js';
import { RevokedList } from './server/revoked-list.js';
import { startAuthzenHttp } from './server/authzen-http.js';
import { AccessEvaluator } from './broker/access-evaluation.js';
import { SvidCertificateProvider, type TlsIdentitySource } from './server/svid-certificate-provider.js';
import { ActorScope, withActor } from './console/actor-audit.js';
import type { AuditFeed } from './console/audit-stream.js';
import { buildHumanConsole } from './console/build-console.js';

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
  /** Labels on every metric series (`serve --workers`: `worker`). */
  metricLabels?: Record<string, string>;
  /** The bench only: times each step of IssueCredential (its stage breakdown). */
  stageTimer?: StageTimer;
  /**
   * The bench only: the hot path as it was before policy slicing, the one-evaluation approval
   * gate and node-crypto signing, so `npm run bench` measures both in one run.
   */
  previousHotPath?: boolean;
}

export interface RunningBroker {
  readonly spiffeId: () => string;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The AuthZEN listener's port, when `authzen.listen` is set. */
  readonly authzenPort: number | undefined;
  /** The web console's port, when `humans.console.listen` is set. */
  readonly consolePort: number | undefined;
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
  /** This replica's metrics (what its /metrics serves). */
  readonly registry: Registry;
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

/** What every build step shares: the config, the logger, the test clock, and the shutdown list. */
interface Startup {
  readonly config: Readonly<BrokerConfig>;
  readonly logger: Logger;
  /** Spread into each part's options: the injected clock, when there is one. */
  readonly clock: { now?: () => number };
  /** Registers a shutdown step; steps run in the reverse order of registration. */
  onClose(fn: () => Promise<void> | void): void;
  /** The bench's hooks (StartBrokerOptions); production has neither. */
  readonly measure: { stageTimer?: StageTimer; previousHotPath: boolean };
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
  const ctx: Startup = {
    config,
    logger,
    clock: opts.now ? { now: opts.now } : {},
    onClose: (fn) => cleanups.push(fn),
    measure: {
      previousHotPath: opts.previousHotPath === true,
      ...(opts.stageTimer ? { stageTimer: opts.stageTimer } : {}),
    },
  };

  try {
    const identity = await buildIdentity(ctx);
    const events = new PolicyEvents(logger);
    const policy = buildPolicy(ctx, events);
    const stores = await buildStores(ctx, opts.store, identity, policy, events);
    const built = await buildAudit(ctx, opts.audit, identity, stores);
    const { audit: sink, pipeline, checkpoints, health, refuseWhileAuditDown } = built;
    const credentials = await buildBackends(ctx, opts.keyRotationSeconds, identity, stores.redis, events);
    const { registry, metrics } = buildMetrics(ctx, stores, credentials.roles, health);
    built.sinkMetrics?.register(registry);
    if (opts.metricLabels) registry.setDefaultLabels(opts.metricLabels);
    const { audit, trace, actors } = auditWriter(sink, metrics);
    events.attach(audit);
    startChatNotifications(ctx, pipeline, audit, stores);
    const useCases = buildUseCases(ctx, opts.issuance, {
      policy,
      stores,
      credentials,
      audit,
      refuseWhileAuditDown,
    });
    const ssfMetadata = new SsfMetadata();
    const servers = await startServers(ctx, {
      identity,
      policy,
      stores,
      credentials,
      audit,
      pipeline,
      health,
      registry,
      metrics,
      useCases,
      checkpoints,
      ssfMetadata,
      trace,
    });
    if (pipeline) startSsfTransmitters(ctx, pipeline, credentials.keys, servers.httpPort, ssfMetadata);
    const reaper = startWorkers(ctx, { stores, credentials, audit, broker: useCases.broker });
    const consolePort = await startHumanConsole(ctx, {
      redis: stores.redis,
      useCases,
      actors,
      audit,
      auditFeed: pipeline ?? auditFeedOf(opts.audit),
    });

    announce(identity, servers, logger);

    let closed = false;
    return {
      spiffeId: identity.spiffeId,
      grpcPort: servers.grpcPort,
      httpPort: servers.httpPort,
      authzenPort: servers.authzenPort,
      consolePort,
      broker: useCases.broker,
      store: stores.store,
      keys: credentials.keys,
      reaper,
      admin: useCases.admin,
      policyDigest: () => policy.policies.current.digest,
      policyGeneration: () => policy.sync.current?.generation ?? 0,
      quarantines: stores.quarantineView,
      feedFreshness: stores.freshness,
      registry,
      reloadPolicy: () => {
        const r = policy.policies.reload();
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

interface Identity {
  endpoint: string;
  x509: X509Source;
  jwt: JwtBundleSourceClient;
  /** The broker's own SVID, chosen by ID (or hint) from every update, never by position. */
  ownSvid: () => X509Svid;
  spiffeId: () => string;
  seal: SvidSeal;
}

/** 1. Identity: blocks until the Workload API gives us an SVID and bundles. */
async function buildIdentity({ config, logger, onClose }: Startup): Promise<Identity> {
  const endpoint = config.workloadApi.socket;
  let x509: X509Source;
  let jwt: JwtBundleSourceClient;
  try {
    x509 = await X509Source.create({
      endpoint,
      logger,
      timeoutMs: config.workloadApi.firstUpdateTimeoutMs,
    });
    onClose(() => x509.close());
    jwt = await JwtBundleSourceClient.create({
      endpoint,
      logger,
      timeoutMs: config.workloadApi.firstUpdateTimeoutMs,
    });
    onClose(() => jwt.close());
  } catch (err) {
    throw new StartupError(
      `cannot get an SVID from the Workload API at ${endpoint}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const ownSvid = (): X509Svid => selectOwnSvid(x509.getX509Svids(), config.workloadApi);
  try {
    ownSvid();
  } catch (err) {
    throw new StartupError((err as Error).message, { cause: err });
  }
  const spiffeId = (): string => ownSvid().spiffeId;
  logger.info({ spiffeId: spiffeId() }, 'broker SVID received');
  // What this replica writes into shared state (JWKS, policy set) it seals with its SVID; what it
  // reads there it uses only if sealed by an allowed broker (wall clock: certificates).
  const seal = new SvidSeal({
    svid: x509,
    bundles: x509,
    allowedIds: () => (config.replicas.allowedIds.length ? config.replicas.allowedIds : [spiffeId()]),
  });
  return { endpoint, x509, jwt, ownSvid, spiffeId, seal };
}

/**
 * The policy and shared-state events that go to the audit trail. Policy loads before the audit
 * sink (with its metrics) exists: events from before are held until it is attached.
 */
class PolicyEvents {
  private sink: AuditSink | undefined;
  private readonly early: AuditEventInput[] = [];

  constructor(private readonly logger: Logger) {}

  attach(sink: AuditSink): void {
    this.sink = sink;
    for (const event of this.early.splice(0)) this.write(event);
  }

  write(event: AuditEventInput): void {
    if (!this.sink) {
      this.early.push(event);
      return;
    }
    this.sink
      .write(event)
      .catch((err: unknown) =>
        this.logger.error(
          { err: { message: (err as Error).message }, type: event.type },
          'audit write failed',
        ),
      );
  }

  /** A JWKS entry or policy set in Redis that no allowed broker sealed. */
  readonly entryRefused = (entry: RefusedEntry): void => {
    this.logger.warn({ ...entry }, 'shared state entry refused: ignored');
    this.write({ type: 'replica.entry_refused', agent: '', ...entry });
  };
}

interface Policy {
  policies: PolicyManager;
  agentGroups: (id: string) => string[];
  /** The catalog's `owner` of an agent, if any. */
  agentOwner: (id: string) => string | undefined;
  /** Set once Redis is there (buildStores); a reload here is published to every other replica. */
  sync: { current?: PolicySync };
}

/**
 * 2. Policy: parsed, validated and preparsed once; reloaded on file change and SIGHUP, and a bad
 * set never replaces a good one.
 */
function buildPolicy({ config, logger, onClose, measure }: Startup, events: PolicyEvents): Policy {
  const catalog = new AgentCatalog(
    config.agents.map((a) => ({
      pattern: a.pattern,
      groups: [...a.groups],
      ...(a.owner ? { owner: a.owner } : {}),
    })),
  );
  const agentGroups = (id: string): string[] => catalog.groupsOf(id);
  const sync: { current?: PolicySync } = {};
  const policies = PolicyManager.load({
    policyDir: config.policy.dir,
    ...(config.policy.schema ? { schemaPath: config.policy.schema } : {}),
    agentGroups,
    slicing: !measure.previousHotPath,
    watch: config.policy.watch,
    ...(config.policy.pinDigest ? { pinDigest: config.policy.pinDigest } : {}),
    onReloaded: (digest, previousDigest) => {
      logger.info({ digest, previousDigest }, 'policy set reloaded');
      events.write({ type: 'policy.reloaded', agent: '', digest, previous_digest: previousDigest });
      // Every other replica adopts it (PolicySync, built once Redis is there).
      sync.current
        ?.publish(digest)
        .catch((err: unknown) =>
          logger.error(
            { err: { message: (err as Error).message } },
            'policy set not published: other replicas keep theirs',
          ),
        );
    },
    onWatchError: (err) =>
      logger.error({ err: { message: (err as Error).message } }, 'policy watch failed: SIGHUP still reloads'),
    onReloadFailed: (problems) => {
      const list = problems.map((p) => formatPolicyProblem(p));
      logger.error({ problems: list }, 'policy reload failed: keeping the previous set');
      events.write({
        type: 'policy.reload_failed',
        agent: '',
        errors: list,
        kept_digest: policies.current.digest,
      });
    },
  });
  onClose(() => policies.close());
  logger.info({ digest: policies.current.digest, dir: config.policy.dir }, 'policy set loaded');
  return { policies, agentGroups, agentOwner: (id) => catalog.ownerOf(id), sync };
}

interface Stores {
  redis: RedisClient | undefined;
  store: LeaseStore;
  quarantines: QuarantineStore;
  revocations: RevocationQueue;
  approvals: ApprovalStore;
  breakGlass: BreakGlassStore;
  budgets: BudgetStore;
  freshness: FeedFreshness;
  quarantineView: QuarantineView;
}

/**
 * 3. Shared state: leases, approvals, break-glass grants, budgets, quarantines (Redis, or memory
 * in dev), the invalidation feed, and the policy set shared between replicas.
 */
async function buildStores(
  ctx: Startup,
  injected: LeaseStore | undefined,
  identity: Identity,
  policy: Policy,
  events: PolicyEvents,
): Promise<Stores> {
  const { config, logger, clock, onClose } = ctx;
  const { redis, problem: redisProblem } = connectRedis(ctx);
  // Quarantines, the revocation queue and the invalidation feed come first: the in-memory lease
  // store consults the first two directly (the Redis one reads their keys in its scripts).
  const memoryFeed = redis ? undefined : new MemoryInvalidationFeed(clock.now);
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
  let store = injected;
  if (!store) {
    store = redis
      ? await openRedisLeaseStore(ctx, redis, redisProblem)
      : new MemoryLeaseStore({
          quarantined: (agent, now) => memoryQuarantines?.matchSync(agent, now) !== undefined,
          revocations,
        });
    const built = store;
    onClose(() => built.close());
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
  const quarantineView = new QuarantineView(quarantines, freshness, clock.now);
  feed.listen(quarantineView);
  if (redis) await startPolicySync(ctx, redis, feed, identity, policy, events);
  try {
    await feed.start();
  } catch (err) {
    throw new StartupError(`cannot read the invalidation feed: ${(err as Error).message}`);
  }
  onClose(() => feed.close());
  if (!store.durable) {
    logger.warn(
      'LEASE STORE IS IN-PROCESS MEMORY: leases are NOT durable and NOT shared; a restart forgets every lease. Dev only.',
    );
  }
  return {
    redis,
    store,
    quarantines,
    revocations,
    approvals,
    breakGlass,
    budgets,
    freshness,
    quarantineView,
  };
}

/** The Redis connection when `redis.store` is `redis`, and its latest connection problem. */
function connectRedis({ config, logger, onClose, measure }: Startup): {
  redis: RedisClient | undefined;
  /** The latest connection problem (say, a sentinel that does not know the master), for errors. */
  problem: () => Error | undefined;
} {
  let problem: Error | undefined;
  if (config.redis.store !== 'redis') return { redis: undefined, problem: () => problem };
  const client = createRedisConnection(config.redis, {
    // The previous hot path (bench/run.ts's issue-prev) sent each command as its own write.
    autoPipelining: config.redis.autoPipelining && !measure.previousHotPath,
    onError: (err) => {
      problem = err;
    },
  });
  watchRedisHealth(client, { logger, target: describeRedisTarget(config.redis) });
  onClose(() => void client.disconnect());
  return { redis: client, problem: () => problem };
}

/** The Redis lease store, once the server answers, with its durability planned and old revocations copied. */
async function openRedisLeaseStore(
  { config, logger, clock }: Startup,
  redis: RedisClient,
  redisProblem: () => Error | undefined,
): Promise<RedisLeaseStore> {
  // Each lease write is confirmed as redis.durability asks, once startup has checked the server.
  const durable: { confirm?: ConfirmWrite } = {};
  const store = new RedisLeaseStore(redis, {
    prefix: config.redis.prefix,
    retentionSeconds: config.redis.retentionSeconds,
    confirmWrite: () => durable.confirm?.() ?? Promise.resolve(),
  });
  try {
    await store.ping();
  } catch (err) {
    const problem = redisProblem();
    throw new StartupError(
      `cannot reach ${describeRedisTarget(config.redis)}: ${(err as Error).message}` +
        (problem ? ` (${problem.message})` : ''),
    );
  }
  const plan = await planDurability(redis, `{${config.redis.prefix}}:active-leases`, config.redis).catch(
    (err: unknown) => {
      throw new StartupError(`${describeRedisTarget(config.redis)}: ${(err as Error).message}`);
    },
  );
  if (plan.warning) logger.warn(plan.warning);
  else logger.info(plan.summary);
  if (plan.confirm) durable.confirm = plan.confirm;
  // /v1/revoked reads the token deny list only: bring over what older versions revoked.
  await store.backfillRevokedTokens((clock.now ?? Date.now)()).catch((err: unknown) => {
    throw new StartupError(`cannot copy revoked tokens to the token deny list: ${(err as Error).message}`);
  });
  return store;
}

/** The stored set (the highest generation) becomes this replica's; an empty Redis gets ours. */
async function startPolicySync(
  { config, logger, onClose }: Startup,
  redis: RedisClient,
  feed: InvalidationFeed,
  identity: Identity,
  { policies, sync: holder }: Policy,
  events: PolicyEvents,
): Promise<void> {
  const sync = new PolicySync({
    redis,
    prefix: config.redis.prefix,
    feedMaxLen: config.feed.maxLen,
    manager: policies,
    seal: identity.seal,
    replica: `${identity.spiffeId()}#${process.pid}`,
    logger,
    onSynced: (digest, previousDigest, from, generation) => {
      logger.info({ digest, previousDigest, from, generation }, 'policy set adopted from another replica');
      events.write({
        type: 'policy.synced',
        agent: '',
        digest,
        previous_digest: previousDigest,
        from,
        generation,
      });
    },
    onRefused: events.entryRefused,
    onDirectoryDiffers: (directoryDigest, stored) => {
      logger.warn(
        { directoryDigest, digest: stored.digest, generation: stored.generation },
        'policy directory differs from the shared set: serving the shared set, not publishing ours',
      );
      events.write({
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
      events.write({
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
  holder.current = sync;
  feed.listen(sync);
  sync.start();
  onClose(() => sync.stop());
}

/**
 * The sink every part writes to: counted (metrics), and carrying the W3C traceparent of the gRPC
 * call being served and the person of the console call being served (console/actor-audit.ts).
 */
function auditWriter(
  sink: AuditSink,
  metrics: BrokerMetrics,
): { audit: AuditSink; trace: CallTrace; actors: ActorScope } {
  const trace = new CallTrace();
  const actors = new ActorScope();
  return { audit: withActor(new TracedAuditSink(withMetrics(sink, metrics), trace), actors), trace, actors };
}

/** Chat notifications (notifications.webhooks): followers of the pipeline, and the approval watch. */
function startChatNotifications(
  ctx: Startup,
  pipeline: AuditPipeline | undefined,
  audit: AuditSink,
  stores: Stores,
): void {
  const stop = startNotifications({
    config: ctx.config.notifications,
    pipeline,
    audit,
    approvals: stores.approvals,
    redis: stores.redis,
    redisPrefix: `{${ctx.config.redis.prefix}}:`,
    logger: ctx.logger,
    ...ctx.clock,
  });
  if (stop) ctx.onClose(stop);
}

/** Logs that the broker serves, and every SVID or bundle rotation from now on. */
function announce(identity: Identity, servers: { grpcPort: number; httpPort: number }, logger: Logger): void {
  identity.x509.onUpdate(() =>
    logger.info(
      { spiffeId: identity.spiffeId(), trustDomain: parseSpiffeId(identity.spiffeId()).trustDomain },
      'SVID or bundles rotated',
    ),
  );
  logger.info(
    { grpc: servers.grpcPort, http: servers.httpPort, spiffeId: identity.spiffeId() },
    'svid-broker serving',
  );
}

/**
 * 4. Audit: the sink (a FileChainSink on audit.file unless injected), the dependency health that
 * watches it with the stores and the SVID, and the gate that refuses calls while it is down.
 */
async function buildAudit(
  { config, logger, clock, onClose }: Startup,
  injected: AuditSink | undefined,
  identity: Identity,
  stores: Stores,
): Promise<{
  audit: AuditSink;
  pipeline?: AuditPipeline;
  checkpoints?: CheckpointPublisher;
  sinkMetrics?: SinkMetrics;
  health: DependencyHealth;
  refuseWhileAuditDown: () => void;
}> {
  let audit = injected;
  let pipeline: AuditPipeline | undefined;
  let checkpoints: CheckpointPublisher | undefined;
  let sinkMetrics: SinkMetrics | undefined;
  if (!audit) {
    const keeper = await FileChainSink.open(config.audit.file, {
      fsync: config.audit.fsync,
      logger,
      source: identity.spiffeId(),
      rotate: config.audit.rotate,
    });
    const made: { followers: FollowerSink[] } = { followers: [] };
    sinkMetrics = new SinkMetrics(() => made.followers);
    made.followers = buildFollowers(config.audit, { logger, redis: stores.redis, metrics: sinkMetrics });
    sinkMetrics.declare(made.followers.map((f) => f.name));
    pipeline = new AuditPipeline(keeper, made.followers, { ackTimeoutMs: config.audit.ackTimeoutMs });
    audit = pipeline;
    const built = pipeline;
    onClose(() => built.close());
    // Closed first (cleanups run in reverse): it closes the keeper, signs the final head, and the
    // followers still get that note before the pipeline closes them.
    checkpoints = await startCheckpoints(config.audit, keeper, built, identity.spiffeId(), logger);
    const signer = checkpoints;
    if (signer) onClose(() => signer.close(() => keeper.close()));
  }
  const health = buildDependencyHealth({
    store: stores.store,
    freshness: stores.freshness,
    audit,
    // The broker's own SVID (workloadApi.expectedId), not whichever the Workload API lists first.
    x509: {
      getX509Svid: () => {
        try {
          return identity.ownSvid();
        } catch {
          return undefined;
        }
      },
    },
    logger,
    ...clock,
  });
  return {
    audit,
    ...(pipeline ? { pipeline } : {}),
    ...(checkpoints ? { checkpoints } : {}),
    ...(sinkMetrics ? { sinkMetrics } : {}),
    health,
    refuseWhileAuditDown: auditGate(audit),
  };
}

/** The audit trail's HMAC of sensitive identifiers, under the deployment's key (created when missing). */
function loadIdentifierHmac(audit: BrokerConfig['audit']): ReturnType<typeof identifierHmac> {
  const file = hmacKeyFileFor(audit);
  try {
    return identifierHmac(readHmacKey(file, { create: true }));
  } catch (err) {
    throw new StartupError(`audit.hmacKeyFile ${file}: ${(err as Error).message}`);
  }
}

interface Credentials {
  roles: ReturnType<typeof roleDefinitions>;
  keys: SigningKeyRing;
  /** The JWKS of every replica (Redis only). */
  sharedJwks: SharedJwks | undefined;
  backends: Map<string, CredentialBackend>;
  cloud: Awaited<ReturnType<typeof buildCloudBackends>>;
}

/** 5. Backends and the role catalog, validated together. */
async function buildBackends(
  ctx: Startup,
  keyRotationSeconds: number | undefined,
  identity: Identity,
  redis: RedisClient | undefined,
  events: PolicyEvents,
): Promise<Credentials> {
  const { config, logger, clock, onClose } = ctx;
  const { endpoint, spiffeId } = identity;
  const roles = roleDefinitions(config);
  const { keys, sharedJwks } = await startSigningKeys(
    ctx,
    keyRotationSeconds,
    roles,
    identity,
    redis,
    events,
  );
  const backends = new Map<string, CredentialBackend>([
    [
      'token',
      createTokenBackend({
        issuer: spiffeId,
        keys,
        clockSkewSeconds: config.backends.token.maxClockSkewSeconds,
        signer: ctx.measure.previousHotPath ? 'jose' : 'node',
      }),
    ],
  ]);
  // The broker's own JWT-SVID (never another identity the Workload API also offers this process).
  const fetchJwt = async (audience: string): Promise<string> =>
    (await fetchJwtSvid(endpoint, [audience], spiffeId())).token;
  let readVaultSecret: ((path: string) => Promise<Record<string, unknown> | null>) | undefined;
  if (config.backends.vault) {
    // The broker logs in to Vault with its own SVID (JWT-SVID or X.509-SVID), never a static token.
    const vault = buildVaultBackend(config.backends.vault, {
      fetchJwt,
      svid: identity.ownSvid,
      logger,
    });
    backends.set('vault', vault.backend);
    readVaultSecret = async (path) =>
      (await vault.auth.withToken((token) => vault.client.request({ method: 'GET', path, token })))?.data ??
      null;
    onClose(() => vault.backend.close?.());
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
      fetchJwt,
      logger,
      readVaultSecret,
      ...clock,
    });
  } catch (err) {
    throw new StartupError((err as Error).message, { cause: err });
  }
  for (const [name, backend] of cloud.backends) backends.set(name, backend);
  checkRoleCatalog(roles, backends);
  return { roles, keys, sharedJwks, backends, cloud };
}

/**
 * The token backend's signing keys, rotated on a timer. Private keys stay in this process; the
 * public halves of every replica's keys are shared through Redis, so any replica's JWKS verifies
 * any replica's tokens.
 */
async function startSigningKeys(
  { config, logger, onClose }: Startup,
  keyRotationSeconds: number | undefined,
  roles: ReturnType<typeof roleDefinitions>,
  identity: Identity,
  redis: RedisClient | undefined,
  events: PolicyEvents,
): Promise<{ keys: SigningKeyRing; sharedJwks: SharedJwks | undefined }> {
  const maxRoleTtl = Math.max(0, ...[...roles.values()].map((r) => r.maxTtlSeconds));
  const keys = await SigningKeyRing.create({
    overlapSeconds: config.backends.token.keyOverlapSeconds ?? maxRoleTtl + 300,
  });
  const sharedJwks = redis
    ? new SharedJwks(redis, keys, {
        prefix: config.redis.prefix,
        seal: identity.seal,
        onRefused: events.entryRefused,
        logger,
      })
    : undefined;
  if (sharedJwks) {
    try {
      await sharedJwks.publish();
    } catch (err) {
      throw new StartupError(`cannot publish the token signing keys: ${(err as Error).message}`);
    }
    sharedJwks.start();
    onClose(() => sharedJwks.stop());
  }
  keys.startAutoRotation(
    keyRotationSeconds ?? config.backends.token.keyRotationSeconds,
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
  onClose(() => keys.stop());
  return { keys, sharedJwks };
}

/** Every role names a backend that exists and that accepts it; all problems at once. */
function checkRoleCatalog(
  roles: ReturnType<typeof roleDefinitions>,
  backends: ReadonlyMap<string, CredentialBackend>,
): void {
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
}

/**
 * Metrics. Counters count what the audit trail records, so the sink every part below writes to is
 * wrapped (withMetrics); gauges read the shared stores when Prometheus scrapes (the ops listener).
 */
function buildMetrics(
  { logger, clock }: Startup,
  stores: Stores,
  roles: ReturnType<typeof roleDefinitions>,
  health: DependencyHealth,
): { registry: Registry; metrics: BrokerMetrics } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const now = clock.now ?? Date.now;
  const { store, approvals, revocations, quarantineView, freshness } = stores;
  const metrics = createBrokerMetrics(
    registry,
    {
      pendingApprovals: () => approvals.countPending(now()),
      activeLeasesByBackend: () => store.activeLeaseCounts(),
      pendingLeases: () => store.pendingLeaseCount(),
      pendingRevocations: () => revocations.pending(),
      activeQuarantines: () => Promise.resolve(quarantineView.list().length),
      feedLagSeconds: () => freshness.lagMs() / 1000,
    },
    { roles, logger },
  );
  registerDependencyGauge(registry, health);
  return { registry, metrics };
}

interface UseCases {
  broker: Broker;
  admin: BrokerAdmin;
  leaseAdmin: LeaseAdmin;
  quarantineAdmin: QuarantineAdmin;
  delegator: TaskDelegator;
  taskTree: TaskTreeAdmin;
}

/**
 * 6. The use cases. The quarantine triggers need the lease admin, which needs the broker: the
 * broker gets a forwarder that is connected once they exist.
 */
function buildUseCases(
  { config, logger, clock, measure }: Startup,
  issuance: IssuanceSafeguards | undefined,
  parts: {
    policy: Policy;
    stores: Stores;
    credentials: Credentials;
    audit: AuditSink;
    refuseWhileAuditDown: () => void;
  },
): UseCases {
  const { policy, stores, credentials, audit, refuseWhileAuditDown } = parts;
  const { store, approvals, breakGlass, budgets, revocations, quarantineView } = stores;
  const { backends, roles } = credentials;
  const engine = measure.previousHotPath
    ? (): PolicyEngine => authorizeOnly(policy.policies.current)
    : (): PolicyEngine => policy.policies.current;
  const incidents = new IncidentForwarder();
  const broker = new Broker({
    store,
    policy: engine,
    audit,
    // The same key file on every replica, so one identifier has one HMAC across the deployment.
    identifierHmac: loadIdentifierHmac(config.audit),
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
    agentGroups: policy.agentGroups,
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
    ...clock,
    ...(issuance ? { issuance } : {}),
    ...(measure.stageTimer ? { stageTimer: measure.stageTimer } : {}),
  });
  const admin = new BrokerAdmin({
    approvals,
    breakGlass,
    policy: engine,
    roles,
    audit,
    breakGlassMaxTtlSeconds: config.breakGlass.maxTtlSeconds,
    incidents,
    stepUp: {
      maxAgeSeconds: config.humans.oidc.stepUpMaxAgeSeconds,
      acrValues: config.humans.oidc.acrValues,
      productionEnvironments: config.humans.productionEnvironments,
    },
    agentOwner: policy.agentOwner,
    logger,
    ...clock,
  });
  const leaseAdmin = new LeaseAdmin({
    store,
    broker,
    policy: engine,
    audit,
    incidents,
    logger,
    jobDelayMs: config.revocation.visibilityTimeoutMs,
    cloudIncidents: credentials.cloud.incidents,
    ...clock,
  });
  const taskTree = new TaskTreeAdmin({ store, broker, leases: leaseAdmin, logger, ...clock });
  const quarantineService = new QuarantineService({
    ...(config.quarantine.revokeDelegates
      ? {
          revokeDelegates: (pattern: string, by: string, why: string) =>
            taskTree.revokeDelegatesOf(pattern, by, why),
        }
      : {}),
    store: stores.quarantines,
    revoke: (by, selector, describe, reason) =>
      leaseAdmin.revokeSelected(by, selector, describe, reason, false),
    audit,
    logger,
    triggers: config.quarantine.triggers,
    agentGroups: policy.agentGroups,
    ...clock,
  });
  incidents.service = quarantineService;
  const quarantineAdmin = new QuarantineAdmin(quarantineService, leaseAdmin);
  const delegator = new TaskDelegator({
    store,
    policy: engine,
    audit,
    roles,
    budgets,
    budgetLimits: config.budgets,
    agentGroups: policy.agentGroups,
    quarantine: {
      check: (agent) => {
        refuseWhileAuditDown();
        quarantineView.check(agent);
      },
    },
    maxDepth: config.delegation.maxDepth,
    logger,
    ...clock,
  });
  return { broker, admin, leaseAdmin, quarantineAdmin, delegator, taskTree };
}

/** Transaction Tokens: signed with the token backend's keys, verified against every replica's. */
function transactionTokens(
  { config, clock, measure }: Startup,
  identity: Identity,
  credentials: Credentials,
): TransactionTokens {
  const { keys, sharedJwks } = credentials;
  return new TransactionTokens({
    signingKey: () => keys.current(),
    jwks: () => (sharedJwks ? sharedJwks.jwks() : keys.jwks()),
    brokerId: identity.spiffeId,
    audience: () => parseSpiffeId(identity.spiffeId()).trustDomain,
    // A token must not outlive the key that verifies it.
    ttlSeconds: Math.min(config.delegation.transactionTokenTtlSeconds, keys.overlapSeconds),
    maxDepth: config.delegation.maxDepth,
    signer: measure.previousHotPath ? 'jose' : 'node',
    ...clock,
  });
}

/**
 * 7. Transport: gRPC (TLS with the rotating SVID, per-trust-domain peer verification), the ops
 * HTTP listener with readiness, and the AuthZEN decision point when `authzen.listen` is set.
 */
async function startServers(
  ctx: Startup,
  parts: {
    identity: Identity;
    policy: Policy;
    stores: Stores;
    credentials: Credentials;
    audit: AuditSink;
    pipeline: AuditPipeline | undefined;
    health: DependencyHealth;
    registry: Registry;
    metrics: BrokerMetrics;
    useCases: UseCases;
    checkpoints: CheckpointPublisher | undefined;
    ssfMetadata: SsfMetadata;
    trace: CallTrace;
  },
): Promise<{ grpcPort: number; httpPort: number; authzenPort: number | undefined }> {
  const { config, logger, clock, onClose } = ctx;
  const { identity, stores, credentials, audit, health, useCases } = parts;
  const certificates = new SvidCertificateProvider(tlsIdentity(identity.x509, identity.ownSvid));
  onClose(() => certificates.close());
  const authenticator = new Authenticator({
    x509Bundles: identity.x509,
    jwtBundles: identity.jwt as JwtBundleSource,
    audiences: () =>
      config.auth.jwtAudiences.length ? [...config.auth.jwtAudiences] : [identity.spiffeId()],
    trustDomains: config.auth.trustDomains,
    generation: () => certificates.currentGeneration,
    ...clock,
  });

  // Per-peer limits and the aggregated auth.denied audit; stopped after the server (cleanups run
  // in reverse), so the last window's counts are written before the audit sink closes.
  const gate = new CallGate({ config: config.grpc, audit, logger, ...clock });
  gate.start();
  onClose(() => gate.stop());
  const grpc: RunningGrpcServer = await startGrpcServer(
    {
      gate,
      serverOptions: grpcServerOptions(config.grpc),
      broker: useCases.broker,
      admin: useCases.admin,
      leaseAdmin: useCases.leaseAdmin,
      quarantineAdmin: useCases.quarantineAdmin,
      delegator: useCases.delegator,
      taskTree: useCases.taskTree,
      txnTokens: transactionTokens(ctx, identity, credentials),
      quarantine: stores.quarantineView,
      approvalPollMs: config.approvals.pollMs,
      authenticator,
      certificates,
      audit,
      trace: parts.trace,
      ...(parts.pipeline
        ? {
            auditWatch: new AuditWatch({
              source: parts.pipeline,
              auditFile: config.audit.file,
              policy: () => parts.policy.policies.current,
              audit,
              logger,
            }),
          }
        : {}),
      logger,
      ...(ctx.measure.stageTimer ? { stageTimer: ctx.measure.stageTimer } : {}),
      metrics: parts.metrics,
    },
    config.listen,
  );
  onClose(() => grpc.shutdown());

  const { sharedJwks, keys } = credentials;
  const http: RunningOpsHttp = await startOpsHttp(
    {
      jwks: () => (sharedJwks ? sharedJwks.jwks() : keys.jwks()),
      revoked: new RevokedList({
        store: stores.store,
        clockSkewMs: config.backends.token.maxClockSkewSeconds * 1000,
        ...config.revokedList,
        ...clock,
      }),
      registry: parts.registry,
      logger,
      readiness: () => health.refresh(),
      ...(parts.checkpoints ? { checkpoints: parts.checkpoints } : {}),
      ssfConfiguration: (path) => parts.ssfMetadata.configuration(path),
      ...(parts.pipeline ? { auditSinks: () => (parts.pipeline as AuditPipeline).sinks() } : {}),
    },
    config.httpListen,
  );
  onClose(() => http.close());
  // gRPC health follows the same checks; stopped before the server's shutdown sets NOT_SERVING.
  health.onReadinessChange((report) => setGrpcServing(grpc.health, report.ready));
  await health.refresh();
  health.start();
  onClose(() => health.stop());

  const authzenPort = await startAuthzen(ctx, { ...parts, authenticator });
  return { grpcPort: grpc.port, httpPort: http.port, authzenPort };
}

/**
 * The SSF transmitters (`audit.sinks` of type ssf): they sign SETs with the token signing keys and
 * name the ops listener as their default issuer, so they join the audit pipeline once both exist.
 */
function startSsfTransmitters(
  { config, logger }: Startup,
  pipeline: AuditPipeline,
  keys: SigningKeyRing,
  httpPort: number,
  metadata: SsfMetadata,
): void {
  const { host } = splitHostPort(config.httpListen);
  const reachable = host === '0.0.0.0' || host === '::' ? hostname() : host;
  const defaultIssuer = `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${httpPort}`;
  for (const transmitter of buildSsfTransmitters(config.audit, { logger, signer: keys, defaultIssuer })) {
    pipeline.addFollower(transmitter);
    metadata.add(transmitter.issuer);
  }
}

/** The AuthZEN decision point for tool gateways: the same policy set, its own listener. */
async function startAuthzen(
  { config, logger, clock, onClose }: Startup,
  parts: {
    identity: Identity;
    policy: Policy;
    stores: Stores;
    audit: AuditSink;
    authenticator: Authenticator;
    trace: CallTrace;
  },
): Promise<number | undefined> {
  if (!config.authzen.listen) return undefined;
  const { identity, policy, stores, audit, authenticator } = parts;
  const evaluator = new AccessEvaluator({
    policy: () => policy.policies.current,
    store: stores.store,
    audit,
    quarantine: stores.quarantineView,
    ...clock,
  });
  const authzen = await startAuthzenHttp(
    {
      evaluator,
      tls: tlsIdentity(identity.x509, identity.ownSvid),
      authenticator,
      logger,
      trace: parts.trace,
    },
    config.authzen.listen,
  );
  onClose(() => authzen.close());
  return authzen.port;
}

/**
 * 8. The reaper: expires tasks and leases, revokes at the backend, also after a restart.
 * 9. The revocation worker: retries backend revokes that failed, also those queued before a restart.
 */
function startWorkers(
  { config, logger, clock, onClose }: Startup,
  parts: { stores: Stores; credentials: Credentials; audit: AuditSink; broker: Broker },
): LeaseReaper {
  const { stores, credentials, audit, broker } = parts;
  const reaper = new LeaseReaper({
    store: stores.store,
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
    ...clock,
  });
  reaper.start();
  onClose(() => reaper.stop());

  const revocationWorker = new RevocationWorker({
    queue: stores.revocations,
    backends: credentials.backends,
    roles: credentials.roles,
    store: stores.store,
    audit: (event) => audit.write(event).then(() => undefined),
    maxAttempts: config.revocation.maxAttempts,
    baseDelayMs: config.revocation.baseDelayMs,
    maxDelayMs: config.revocation.maxDelayMs,
    intervalMs: config.revocation.intervalMs,
    batchSize: config.revocation.batchSize,
    logger,
    ...clock,
  });
  revocationWorker.start();
  onClose(() => revocationWorker.stop());
  return reaper;
}

/** 10. The web console for people, when `humans.console.listen` is set (console/build-console.ts). */
async function startHumanConsole(
  { config, logger, clock, onClose }: Startup,
  parts: {
    redis: RedisClient | undefined;
    useCases: UseCases;
    actors: ActorScope;
    audit: AuditSink;
    auditFeed: AuditFeed | undefined;
  },
): Promise<number | undefined> {
  const running = await buildHumanConsole({
    humans: config.humans,
    redis: parts.redis,
    redisPrefix: config.redis.prefix,
    use: parts.useCases,
    actors: parts.actors,
    audit: parts.audit,
    auditFeed: parts.auditFeed,
    logger,
    ...clock,
  });
  if (!running) return undefined;
  onClose(() => running.close());
  return running.port;
}

/** An injected sink that keeps the chain (a memory sink in tests) feeds the live view too. */
function auditFeedOf(sink: AuditSink | undefined): AuditFeed | undefined {
  const candidate = sink as Partial<AuditFeed> | undefined;
  return typeof candidate?.subscribe === 'function' ? (candidate as AuditFeed) : undefined;
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
