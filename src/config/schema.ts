/**
 * The configuration schema. Every field has a default so `svid-broker serve` starts with no file.
 * Validation lists every problem (zod collects all issues), then the result is frozen.
 *
 * A block left out is parsed as `{}` (`.prefault({})`), so its defaults are the ones its fields
 * declare, written once; `.default(value)` would hand back `value` unparsed, a second copy to keep.
 */
import { delegationConfigSchema } from './delegation-schema.js';
import { z } from 'zod';
import { awsBackendConfigSchema } from '../credentials/aws/aws-config.js';
import { azureBackendConfigSchema } from '../credentials/azure/azure-config.js';
import { gcpBackendConfigSchema } from '../credentials/gcp/gcp-config.js';
import { githubBackendConfigSchema } from '../credentials/github/github-config.js';
import { vaultBackendConfigSchema } from '../credentials/vault/vault-config.js';
import { isValidSpiffeId } from '../identity/spiffe-id.js';
import { GRPC_SERVER_DEFAULTS, grpcServerConfigSchema } from './grpc-server-config.js';
import { DURABILITY_MODES } from '../redis/durability.js';
import { agentCatalogEntrySchema, spireSettingsSchema } from './catalog-schema.js';
import { redisAuthSchema, refineRedisAuth, workloadApiIdentitySchema } from './deploy-schema.js';
import { auditConfigSchema } from './audit-schema.js';
import { notificationsConfigSchema } from './notifications-schema.js';
import { humansConfigSchema } from './humans-schema.js';

const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, 'expected host:port (port 0 picks a free one)');

const strikeTrigger = z
  .object({
    count: z.number().int().min(1),
    windowSeconds: z.number().int().min(1),
    /** 0: until released. */
    ttlSeconds: z.number().int().min(0).default(0),
    revokeActive: z.boolean().default(true),
  })
  .strict();

export const SENSITIVITIES = ['public', 'internal', 'confidential', 'restricted'] as const;
export const CHANGE_TYPES = ['read', 'write', 'destructive', 'admin'] as const;
export type Sensitivity = (typeof SENSITIVITIES)[number];
export type ChangeType = (typeof CHANGE_TYPES)[number];

const roleName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'role names are "<backend>/<name>"');

/** Generic role fields; every other key is backend-specific and checked by the backend. */
export const roleSchema = z
  .object({
    description: z.string().default(''),
    maxTtlSeconds: z.number().int().positive().max(86_400).default(900),
    sensitivity: z.enum(SENSITIVITIES).default('internal'),
    environments: z.array(z.string().min(1)).default([]),
  })
  .catchall(z.unknown());

const budgetLimits = z
  .object({
    credentialsPerMinute: z.number().int().positive().optional(),
    activeLeases: z.number().int().positive().optional(),
    openTasks: z.number().int().positive().optional(),
  })
  .strict();

/** The path of a URL (`/<db>` for Redis), or '' when it does not parse. */
function urlPath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return '';
  }
}

/** `host:port`, or `[v6addr]:port`. */
const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:,[\]]+)):(\d{1,5})$/;

/**
 * Redis nodes: a list of `{host, port}` in the file, or `host:port,host:port` from an env override
 * (REDIS_SENTINELS, REDIS_CLUSTER_NODES).
 */
const redisNodes = z.preprocess(
  (value, ctx) => {
    if (typeof value !== 'string') return value;
    return value.split(',').map((entry) => {
      const match = HOST_PORT.exec(entry.trim());
      if (!match) {
        ctx.addIssue({ code: 'custom', message: `"${entry.trim()}" is not host:port` });
        return entry;
      }
      return { host: match[1] ?? match[2], port: Number(match[3]) };
    });
  },
  z
    .array(
      z
        .object({
          host: z.string().min(1),
          port: z.number().int().min(1).max(65_535),
        })
        .strict(),
    )
    .min(1),
);

export const configSchema = z
  .object({
    listen: listenAddress.default('0.0.0.0:8443'),
    httpListen: listenAddress.default('127.0.0.1:8080'),
    /** The AuthZEN decision point (HTTPS, mTLS with SVIDs); off unless `listen` is set. */
    authzen: z.object({ listen: listenAddress.optional() }).strict().default({}),
    workloadApi: z
      .object({
        /** `unix:///abs/path` or `tcp://IP:port`; SPIFFE_ENDPOINT_SOCKET overrides. */
        socket: z.string().default('unix:///tmp/spire-agent/public/api.sock'),
        /** How long startup waits for the first SVID. */
        firstUpdateTimeoutMs: z.number().int().positive().default(30_000),
        ...workloadApiIdentitySchema,
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** Audiences accepted on JWT-SVIDs; empty = the broker's own SPIFFE ID. */
        jwtAudiences: z.array(z.string().min(1)).default([]),
        /** Trust domains whose agents may call at all; empty = own + every federated bundle. */
        trustDomains: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .prefault({}),
    redis: z
      .object({
        /** One server; with `sentinels` or `cluster` only its credentials (and db, for Sentinel) count. */
        url: z.string().default('redis://127.0.0.1:6379'),
        /** Sentinels that monitor the master `sentinelName`: `[{host, port}]`, or `host:port,...`. */
        sentinels: redisNodes.optional(),
        sentinelName: z.string().min(1).optional(),
        /** The sentinels' own password, when they have one (the master's is in `url`). */
        sentinelPassword: z.string().min(1).optional(),
        /** Some nodes of a Redis Cluster (the client finds the rest): `[{host, port}]` or `host:port,...`. */
        cluster: redisNodes.optional(),
        /** Hash tag for every key: `{<prefix>}:...`, one slot, so scripts work on Redis Cluster. */
        prefix: z
          .string()
          .regex(/^[A-Za-z0-9_.-]+$/)
          .default('svb'),
        /** Ended tasks and leases stay listable this long, then Redis drops them. */
        retentionSeconds: z
          .number()
          .int()
          .positive()
          .default(7 * 86_400),
        /** `memory` is for the dev stack only: not durable, not shared between replicas. */
        store: z.enum(['redis', 'memory']).default('redis'),
        /** How durable a lease write is before the credential leaves (src/redis/durability.ts). */
        durability: z.enum(DURABILITY_MODES).default('fsync'),
        /** `replica`: replicas that must have each lease write (WAIT). */
        replicas: z.number().int().positive().default(1),
        /** How long one WAIT / WAITAOF may block before the write counts as not durable. */
        durabilityTimeoutMs: z.number().int().positive().default(1000),
        /** `fsync` on Redis < 7.2 with CONFIG disabled: the operator vouches for appendfsync always. */
        assumeAppendfsyncAlways: z.boolean().default(false),
        /** Commands issued in one event-loop tick go out as one write (ioredis auto pipelining). */
        autoPipelining: z.boolean().default(true),
        ...redisAuthSchema,
      })
      .strict()
      // One topology: `url` alone (the default), `sentinels` + `sentinelName`, or `cluster`.
      .superRefine((redis, ctx) => {
        const problem = (field: string, message: string): void =>
          ctx.addIssue({ code: 'custom', path: [field], message });
        if (redis.sentinels && redis.cluster) {
          problem('cluster', 'set either redis.sentinels or redis.cluster, not both');
        }
        if (redis.sentinels && !redis.sentinelName) {
          problem('sentinelName', 'required with redis.sentinels: the name of the master they monitor');
        }
        if (!redis.sentinels && redis.sentinelName) problem('sentinels', 'required with redis.sentinelName');
        if (!redis.sentinels && redis.sentinelPassword) {
          problem('sentinelPassword', 'only used with redis.sentinels');
        }
        if (redis.cluster && !['', '/', '/0'].includes(urlPath(redis.url))) {
          problem('url', 'names a database, but a Redis Cluster has only db 0');
        }
        refineRedisAuth(redis, problem);
      })
      .prefault({}),
    policy: z
      .object({
        dir: z.string().default('policies'),
        /** Defaults to `<dir>/schema.cedarschema`. */
        schema: z.string().optional(),
        /** Reload when a file in the directory changes (SIGHUP always reloads). */
        watch: z.boolean().default(true),
        /** Serve only the set with this digest (`svid-broker policy validate` prints it). */
        pinDigest: z
          .string()
          .regex(/^[0-9a-f]{64}$/, 'a policy set digest: 64 lowercase hex digits')
          .optional(),
      })
      .strict()
      .prefault({}),
    /** The brokers whose entries in shared state (JWKS, policy set) this replica trusts. */
    replicas: z
      .object({
        /** SPIFFE IDs of the brokers; empty = this broker's own ID. */
        allowedIds: z.array(z.string().refine(isValidSpiffeId, 'must be a SPIFFE ID')).default([]),
      })
      .strict()
      .prefault({}),
    audit: auditConfigSchema.prefault({}),
    notifications: notificationsConfigSchema.prefault({}),
    delegation: delegationConfigSchema.prefault({}),
    tasks: z
      .object({
        defaultTtlSeconds: z.number().int().positive().default(900),
        maxTtlSeconds: z.number().int().positive().default(3600),
      })
      .strict()
      .prefault({}),
    environments: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/))
      .min(1)
      .default(['dev', 'staging', 'prod']),
    roles: z.record(roleName, roleSchema).default({}),
    /** The agent catalog: SPIFFE ID patterns (exact, `/*` one segment, `/**` subtree) to AgentGroups. */
    agents: z.array(agentCatalogEntrySchema).default([]),
    /** How `svid-broker spire entries` registers the catalog's workloads (the broker ignores it). */
    spire: spireSettingsSchema.prefault({}),
    approvals: z
      .object({
        /** How long a pending approval waits for humans before it expires. */
        ttlSeconds: z.number().int().positive().max(86_400).default(900),
        /** How often AwaitApproval re-reads the shared store. */
        pollMs: z.number().int().positive().max(10_000).default(250),
        /** Open requests (pending or approved, unexpired) one agent may hold at once; 0: no cap. */
        maxOpenPerAgent: z.number().int().min(0).default(20),
        /** Open requests one task may hold at once; 0: no cap. */
        maxOpenPerTask: z.number().int().min(0).default(5),
      })
      .strict()
      .prefault({}),
    breakGlass: z
      .object({
        /** Hard cap on a grant's lifetime; longer requests are refused. */
        maxTtlSeconds: z.number().int().positive().max(86_400).default(3600),
      })
      .strict()
      .prefault({}),
    budgets: z
      .object({
        /** Limits per AgentGroup, shared by every agent in the group. */
        groups: z.record(z.string(), budgetLimits).default({}),
        /** Limits per agent, for agents that belong to no group. */
        ungrouped: budgetLimits.optional(),
        /** Limits per task (credentialsPerMinute, activeLeases). */
        task: budgetLimits.optional(),
      })
      .strict()
      .prefault({}),
    backends: z
      .object({
        token: z
          .object({
            /** A new signing key this often; the old one stays in the JWKS for the overlap. */
            keyRotationSeconds: z.number().int().positive().default(86_400),
            /** Must cover the longest token lifetime; defaults to the longest role max TTL + 5 min. */
            keyOverlapSeconds: z.number().int().positive().optional(),
            /** The most clock skew a verifier tolerates past `exp`: /v1/revoked lists a jti until exp + this. */
            maxClockSkewSeconds: z.number().int().min(0).max(3600).default(60),
          })
          .strict()
          .prefault({}),
        /** Vault dynamic secrets and tokens; the `vault/...` roles need it. */
        vault: vaultBackendConfigSchema.optional(),
        /** AWS STS sessions per task from the broker's JWT-SVID; the `aws/...` roles need it. */
        aws: awsBackendConfigSchema.optional(),
        /** GitHub App installation tokens per request; the `github/...` roles need it. */
        github: githubBackendConfigSchema.optional(),
        /** Google access tokens through workload identity federation; the `gcp/...` roles need it. */
        gcp: gcpBackendConfigSchema.optional(),
        /** Entra ID tokens by client assertion (the JWT-SVID); the `azure/...` roles need it. */
        azure: azureBackendConfigSchema.optional(),
      })
      .strict()
      .prefault({}),
    /** GET /v1/revoked on the ops listener. */
    revokedList: z
      .object({
        /** How long this replica serves a page from memory (single-flight: one store read per page). */
        cacheMs: z.number().int().min(0).max(60_000).default(1000),
        defaultPageSize: z.number().int().min(1).max(10_000).default(1000),
        maxPageSize: z.number().int().min(1).max(10_000).default(5000),
      })
      .strict()
      .refine((r) => r.defaultPageSize <= r.maxPageSize, {
        message: 'defaultPageSize must not exceed maxPageSize',
        path: ['defaultPageSize'],
      })
      .prefault({}),
    grpc: grpcServerConfigSchema.default(GRPC_SERVER_DEFAULTS),
    /** The durable revocation queue: backend revokes that failed are retried with backoff. */
    revocation: z
      .object({
        maxAttempts: z.number().int().min(1).max(100).default(6),
        baseDelayMs: z.number().int().positive().default(10_000),
        maxDelayMs: z.number().int().positive().default(300_000),
        intervalMs: z.number().int().positive().default(1000),
        batchSize: z.number().int().positive().max(1000).default(50),
        /** A claimed job a worker did not finish comes back after this long. */
        visibilityTimeoutMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .prefault({}),
    reaper: z
      .object({
        intervalMs: z.number().int().positive().default(1000),
        batchSize: z.number().int().positive().default(100),
        /**
         * A `pending` lease (written, never activated) this old is an orphan: the reaper revokes it
         * at its backend and records `lease.orphaned`. Several times the longest issuance (a
         * request deadline), so an issuance still in flight is never taken for one.
         */
        orphanAfterMs: z.number().int().min(1000).default(60_000),
      })
      .strict()
      .prefault({}),
    /** The invalidation feed (a Redis Stream) that carries quarantine and policy changes to every replica. */
    feed: z
      .object({
        /** How long one blocking read waits for entries. */
        blockMs: z.number().int().min(50).max(5000).default(500),
        /** A replica that has not confirmed the feed for this long refuses to decide (UNAVAILABLE). */
        staleAfterMs: z.number().int().min(500).default(5000),
        /** Approximate number of entries the stream keeps. */
        maxLen: z.number().int().min(100).default(10_000),
      })
      .strict()
      .refine((f) => f.staleAfterMs > f.blockMs * 2, {
        message: 'staleAfterMs must be more than twice blockMs',
        path: ['staleAfterMs'],
      })
      .prefault({}),
    quarantine: z
      .object({
        /** Automatic quarantine of the offending agent (its exact SPIFFE ID); each is audited with its evidence. */
        triggers: z
          .object({
            /** N policy denials (PERMISSION_DENIED) within the window. */
            denials: strikeTrigger.optional(),
            /** N budget refusals (RESOURCE_EXHAUSTED) within the window. */
            budgetExceeded: strikeTrigger.optional(),
            /** Any request for `restricted` data by an agent outside these groups. */
            restrictedData: z
              .object({
                allowedGroups: z.array(z.string().min(1)).min(1),
                ttlSeconds: z.number().int().min(0).default(0),
                revokeActive: z.boolean().default(true),
              })
              .strict()
              .optional(),
          })
          .strict()
          .default({}),
        /** Quarantining an agent also ends the tasks delegated from its tasks, revoking what they hold. */
        revokeDelegates: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    /** People: OpenID Connect sign-in and the web console (humans-schema.ts). */
    humans: humansConfigSchema.prefault({}),
  })
  .strict()
  // Runs even when other fields failed (`when`), so one pass lists every problem; the value may then
  // hold raw, unvalidated input, hence the type guards.
  .superRefine(
    (cfg, ctx) => {
      // One revoke can be a call, a re-login and a retry: a shorter claim would let two workers race.
      const raw = cfg as {
        backends?: { vault?: { timeoutMs?: unknown } };
        revocation?: { visibilityTimeoutMs?: unknown };
      };
      const vaultTimeout = raw.backends?.vault?.timeoutMs;
      const visibility = raw.revocation?.visibilityTimeoutMs;
      if (
        typeof vaultTimeout === 'number' &&
        typeof visibility === 'number' &&
        visibility < 4 * vaultTimeout
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['revocation', 'visibilityTimeoutMs'],
          message: `must be at least 4 x backends.vault.timeoutMs (${4 * vaultTimeout})`,
        });
      }
      const tasks = cfg.tasks as { defaultTtlSeconds?: unknown; maxTtlSeconds?: unknown } | undefined;
      if (
        typeof tasks?.defaultTtlSeconds === 'number' &&
        typeof tasks.maxTtlSeconds === 'number' &&
        tasks.defaultTtlSeconds > tasks.maxTtlSeconds
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['tasks', 'defaultTtlSeconds'],
          message: 'must not exceed tasks.maxTtlSeconds',
        });
      }
      const environments: unknown = cfg.environments;
      const envsValid = Array.isArray(environments) && environments.every((e) => typeof e === 'string');
      if (!envsValid) return;
      if (typeof cfg.roles !== 'object' || cfg.roles === null) return;
      for (const [name, role] of Object.entries(cfg.roles)) {
        const roleEnvs: unknown = (role as { environments?: unknown } | null)?.environments;
        if (!Array.isArray(roleEnvs)) continue;
        for (const env of roleEnvs) {
          if (typeof env === 'string' && !environments.includes(env)) {
            ctx.addIssue({
              code: 'custom',
              path: ['roles', name, 'environments'],
              message: `unknown environment "${env}" (configured: ${environments.join(', ')})`,
            });
          }
        }
      }
    },
    { when: () => true },
  );

export type BrokerConfig = z.infer<typeof configSchema>;
export type RoleConfig = z.infer<typeof roleSchema>;
