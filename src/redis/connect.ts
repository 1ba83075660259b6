/**
 * The Redis connection every store shares, in one of three topologies: one server (`url`), a
 * master found through Sentinel (`sentinels` + `sentinelName`), or a Redis Cluster (`cluster`).
 * The stores take the resulting RedisClient and work the same on all three: every key of a store
 * carries the one `{prefix}` hash tag, so each script touches one slot, which on a Cluster is one
 * node.
 *
 * All three fail fast, because the stores must fail closed and a caller waiting on a dead Redis is
 * worse than one told it is down: a command issued before the first connection waits for it (so a
 * startup `ping()` works), but once connected, a command during an outage rejects at once, and a
 * command a caller was told failed is never sent again after reconnecting.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export type RedisClient = Redis | Cluster;

export interface RedisNodeAddress {
  readonly host: string;
  readonly port: number;
}

/** Where Redis is; the `redis:` section of the config has this shape. */
export interface RedisConnectionConfig {
  /**
   * One server. With `sentinels` it only carries the master's credentials and db; with `cluster`
   * only the nodes' credentials (a Cluster has db 0 only). `rediss:` turns TLS on in every case.
   */
  readonly url?: string | undefined;
  /** Sentinels to ask for the address of the master named `sentinelName`. */
  readonly sentinels?: readonly RedisNodeAddress[] | undefined;
  readonly sentinelName?: string | undefined;
  /** The sentinels' own password (requirepass on the sentinels), if any. */
  readonly sentinelPassword?: string | undefined;
  /** Some nodes of a Redis Cluster; the client discovers the rest. */
  readonly cluster?: readonly RedisNodeAddress[] | undefined;
  /** ACL user; the URL's user wins when both are set. */
  readonly username?: string | undefined;
  /** File holding the password (read once, at connect; never logged). */
  readonly passwordFile?: string | undefined;
  /** PEM CA bundle to verify the servers' TLS certificates (`rediss://`) against. */
  readonly caFile?: string | undefined;
}

export interface CreateRedisClientOptions {
  /** Give up on a TCP connect after this long. Default 2000. */
  connectTimeoutMs?: number;
  /** Reject a command with no reply after this long (a hung server, a dropped network). Default 1500. */
  commandTimeoutMs?: number;
  /**
   * Connection problems (refused, reset, a sentinel that does not know the master) while
   * connecting or reconnecting; calls already report failures. Default: ignored.
   */
  onError?: (err: Error) => void;
  /**
   * Send the commands issued in one tick of the event loop as one write (ioredis's auto
   * pipelining): under concurrency, one socket write and one reply read for many requests' commands
   * instead of one each. Replies and failures stay per command. Default false; the broker turns it
   * on unless `redis.autoPipelining` is false.
   */
  autoPipelining?: boolean;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';

/** ACL user, password and TLS options beyond what a URL says. */
export type RedisLogin = Pick<RedisOptions, 'username' | 'password' | 'tls'>;

/** Keep reconnecting in the background, so the stores recover when Redis comes back. */
const reconnectDelay = (attempt: number): number => Math.min(attempt * 100, 1000);

/** What every connection to a Redis server gets, whatever the topology. */
function failFastCommandOptions(opts: CreateRedisClientOptions): RedisOptions {
  return {
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    // Also bounds a command waiting for the first connection.
    commandTimeout: opts.commandTimeoutMs ?? 1500,
    // Commands in flight when the connection drops, or queued while the first connection fails,
    // reject at the first failed attempt instead of waiting for a reconnect...
    maxRetriesPerRequest: 0,
    // ...and are not replayed after reconnecting: the caller was already told they failed, so a
    // late put-lease or mark-lease-ended would contradict what it did next.
    autoResendUnfulfilledCommands: false,
    enableAutoPipelining: opts.autoPipelining === true,
  };
}

/**
 * Options that make a Redis outage visible at once rather than queueing work behind it: the store
 * must fail closed, and a caller waiting on a dead Redis is worse than one told it is down.
 */
export function failFastRedisOptions(opts: CreateRedisClientOptions = {}): RedisOptions {
  return {
    ...failFastCommandOptions(opts),
    // During an outage a command rejects at once instead of waiting in a queue (a client built
    // with these options must be awaited to `ready` before use; createRedisClient handles that).
    enableOfflineQueue: false,
    retryStrategy: reconnectDelay,
  };
}

/**
 * Builds an ioredis client for one server with failFastRedisOptions. It connects in the
 * background; a command issued before the first connection waits for it (so a startup
 * `store.ping()` works), and once connected the offline queue is switched off: during an outage
 * every command rejects at once instead of queueing, so nothing runs after its caller was told it
 * failed.
 */
export function createRedisClient(
  url: string,
  opts: CreateRedisClientOptions = {},
  login: RedisLogin = {},
): Redis {
  // The URL's user, password and TLS choice win over `login` (ioredis fills only what it lacks).
  const redis = new Redis(url, { ...failFastRedisOptions(opts), enableOfflineQueue: true, ...login });
  closeOfflineQueueWhenReady(redis);
  // Without a listener ioredis prints every reconnect failure; failures reach callers anyway.
  redis.on('error', opts.onError ?? (() => undefined));
  return redis;
}

/** Builds the connection `cfg` describes: a Cluster, a Sentinel-managed master, or one server. */
export function createRedisConnection(
  cfg: RedisConnectionConfig,
  opts: CreateRedisClientOptions = {},
): RedisClient {
  const { sentinels, cluster } = cfg;
  if (sentinels?.length && cluster?.length) {
    throw new Error('redis: set either sentinels or cluster, not both');
  }
  const login = loginOptions(cfg);
  if (cluster?.length) return createClusterClient(cluster, cfg.url, login, opts);
  if (sentinels?.length) return createSentinelClient(sentinels, cfg, login, opts);
  return createRedisClient(cfg.url ?? DEFAULT_URL, opts, login);
}

/**
 * The ACL login and TLS trust `cfg` names beyond its URL: the user, the password read from
 * `passwordFile`, the CA from `caFile`. A file that cannot be read stops here with its path
 * (never its contents).
 */
export function loginOptions(cfg: RedisConnectionConfig): RedisLogin {
  const read = (file: string, what: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(
        `redis: cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  };
  const password =
    cfg.passwordFile === undefined ? undefined : read(cfg.passwordFile, 'password').replace(/\r?\n$/, '');
  if (password === '') throw new Error(`redis: the password file ${cfg.passwordFile ?? ''} is empty`);
  return {
    ...(cfg.username ? { username: cfg.username } : {}),
    ...(password === undefined ? {} : { password }),
    ...(cfg.caFile ? { tls: { ca: read(cfg.caFile, 'CA') } } : {}),
  };
}

/** Names the Redis `cfg` points at for an error message, without its password. */
export function describeRedisTarget(cfg: RedisConnectionConfig): string {
  const list = (nodes: readonly RedisNodeAddress[]): string =>
    nodes.map((n) => `${n.host}:${n.port}`).join(', ');
  if (cfg.cluster?.length) return `Redis Cluster (${list(cfg.cluster)})`;
  if (cfg.sentinels?.length) {
    return `Redis master "${cfg.sentinelName ?? ''}" through Sentinel (${list(cfg.sentinels)})`;
  }
  return `Redis at ${redactRedisUrl(cfg.url ?? DEFAULT_URL)}`;
}

/**
 * PINGs the server that holds `key`. A Cluster sends PING to a random master, which need not be
 * the one serving a store's slot, so there the check reads `key` itself (EXISTS) instead.
 */
export async function pingKeySlot(client: RedisClient, key: string): Promise<void> {
  if (client instanceof Cluster) await client.exists(key);
  else await client.ping();
}

function createSentinelClient(
  sentinels: readonly RedisNodeAddress[],
  cfg: RedisConnectionConfig,
  login: RedisLogin,
  opts: CreateRedisClientOptions,
): Redis {
  const name = cfg.sentinelName;
  if (!name) throw new Error('redis: sentinels need sentinelName, the name of the master they monitor');
  const report = opts.onError ?? (() => undefined);
  const target = withLogin(credentialsOf(cfg.url), login);
  // What each sentinel said in the current round; reported together when the round fails.
  let problems: string[] = [];
  const redis = new Redis({
    ...failFastRedisOptions(opts),
    enableOfflineQueue: true,
    ...target,
    ...(target.tls ? { enableTLSForSentinelMode: true } : {}),
    // ioredis reorders this list and adds the sentinels it learns of, so it gets its own copy.
    sentinels: sentinels.map(({ host, port }) => ({ host, port })),
    name,
    ...(cfg.sentinelPassword ? { sentinelPassword: cfg.sentinelPassword } : {}),
    sentinelCommandTimeout: opts.commandTimeoutMs ?? 1500,
    // Called when no sentinel gave a master; keep asking, as retryStrategy does for one server.
    sentinelRetryStrategy: (attempt: number) => {
      if (problems.length > 0) {
        report(new Error(`no sentinel gave the address of master "${name}": ${problems.join('; ')}`));
      }
      problems = [];
      return reconnectDelay(attempt);
    },
  });
  redis.on('sentinelError', (err: Error) => problems.push(explainSentinelError(err, name)));
  // ioredis follows a failed round with its own "All sentinels are unreachable" (even when they
  // answered, but did not know the name); the report above already said what went wrong.
  redis.on('error', (err: Error) => {
    if (!err.message.startsWith('All sentinels are unreachable')) report(err);
  });
  closeOfflineQueueWhenReady(redis);
  return redis;
}

/**
 * A sentinel that does not know the name answers with an error (Redis 7: "ERR No such master with
 * that name", which ioredis words as "failed to connect to sentinel") or, in older versions, null
 * ("invalid reply"); say what either means.
 */
function explainSentinelError(err: Error, name: string): string {
  if (!/No such master with that name|invalid reply: null$/.test(err.message)) return err.message;
  const sentinel = /sentinel (\S+)/.exec(err.message)?.[1] ?? '(unknown)';
  return `sentinel ${sentinel} does not know a master named "${name}" (check sentinelName)`;
}

function createClusterClient(
  nodes: readonly RedisNodeAddress[],
  url: string | undefined,
  login: RedisLogin,
  opts: CreateRedisClientOptions,
): Cluster {
  const report = opts.onError ?? (() => undefined);
  const { db: _db, ...credentials } = withLogin(credentialsOf(url), login);
  let connected = false;
  const options: ClusterOptions = {
    // ioredis gives node connections its own retryStrategy (none: a lost node is found again
    // through MOVED) and an offline queue, so a command waiting for a node to connect is bounded
    // by commandTimeout, and one whose node went away rejects with "Connection is closed".
    redisOptions: { ...failFastCommandOptions(opts), ...credentials },
    // Until the first connection, a failed attempt ends the client and rejects what waited (a
    // Cluster has no other way to bound that wait): startup fails, as with one server down.
    // Once connected, keep reconnecting in the background.
    clusterRetryStrategy: (attempt: number) => (connected ? reconnectDelay(attempt) : null),
    // A command that lost its node's connection, or met CLUSTERDOWN, rejects at once instead of
    // being sent again up to maxRedirections times: it may already have run. MOVED and ASK are
    // still followed (the command did not run), which is how the client finds a moved slot.
    retryDelayOnFailover: 0,
    retryDelayOnClusterDown: 0,
    slotsRefreshTimeout: opts.connectTimeoutMs ?? 2000,
    enableAutoPipelining: opts.autoPipelining === true,
  };
  const cluster = new Cluster(
    nodes.map(({ host, port }) => ({ host, port })),
    options,
  );
  // The Cluster reads this one flag for two things: whether a command waits in the Cluster's own
  // queue while no node is reachable (unbounded: no timeout applies there), and whether it may
  // wait for a node connection that is still being made (bounded by commandTimeout). So it is
  // on before the first connection (a startup ping waits for it) and, after that, exactly while
  // the Cluster is connected: during an outage commands reject at once, none is queued to run
  // after reconnecting, and a burst of commands to a node not connected yet is not refused.
  Object.defineProperty(cluster.options, 'enableOfflineQueue', {
    get: () => !connected || cluster.status === 'ready',
    configurable: true,
  });
  cluster.once('ready', () => {
    connected = true;
  });
  cluster.on('error', report);
  cluster.on('node error', (err: Error, node: string) => report(new Error(`${node}: ${err.message}`)));
  return cluster;
}

/** Before the first `ready` commands wait for the connection; after it they fail fast. */
function closeOfflineQueueWhenReady(redis: Redis): void {
  redis.once('ready', () => {
    redis.options.enableOfflineQueue = false;
  });
}

/** The credentials, db and TLS choice of a redis:// or rediss:// URL. */
function credentialsOf(url: string | undefined): Pick<RedisOptions, 'username' | 'password' | 'db' | 'tls'> {
  if (url === undefined) return {};
  const u = new URL(url);
  const db = u.pathname.replace(/^\//, '');
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** The URL's credentials win; the login fills what it leaves out, and a CA turns its TLS on. */
function withLogin(
  fromUrl: Pick<RedisOptions, 'username' | 'password' | 'db' | 'tls'>,
  login: RedisLogin,
): Pick<RedisOptions, 'username' | 'password' | 'db' | 'tls'> {
  return {
    ...login,
    ...fromUrl,
    ...(fromUrl.tls && login.tls ? { tls: login.tls } : {}),
  };
}

/** Redis URLs may carry a password. */
function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}
