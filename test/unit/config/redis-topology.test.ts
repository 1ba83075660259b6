/**
 * The `redis:` topologies in the config (one server, Sentinel, Cluster), from the file and from
 * the env overrides, the problems that name their field, and how a startup error names each.
 */
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, parseConfig } from '../../../src/config/load-config.js';
import { describeRedisTarget } from '../../../src/redis/connect.js';

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('config: redis topologies', () => {
  it('is one server by default, with neither sentinels nor cluster', () => {
    const { redis } = parseConfig({});
    assert.equal(redis.url, 'redis://127.0.0.1:6379');
    assert.equal(redis.sentinels, undefined);
    assert.equal(redis.cluster, undefined);
  });

  it('reads a Cluster and a Sentinel setup from the file', () => {
    const nodes = [
      { host: 'redis-0.internal', port: 6379 },
      { host: 'redis-1.internal', port: 6380 },
    ];
    assert.deepEqual(parseConfig({ redis: { cluster: nodes } }).redis.cluster, nodes);
    const sentinel = parseConfig({
      redis: {
        url: 'redis://:secret@ignored/2',
        sentinels: nodes,
        sentinelName: 'svb-master',
        sentinelPassword: 'sentinel-secret',
      },
    }).redis;
    assert.deepEqual(sentinel.sentinels, nodes);
    assert.equal(sentinel.sentinelName, 'svb-master');
    assert.equal(sentinel.sentinelPassword, 'sentinel-secret');
  });

  it('reads host:port lists from REDIS_CLUSTER_NODES and REDIS_SENTINELS', () => {
    const cluster = loadConfig({ env: { REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002' } });
    assert.deepEqual(cluster.redis.cluster, [
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
    const sentinel = loadConfig({
      env: {
        REDIS_URL: 'redis://:secret@master/1',
        REDIS_SENTINELS: 'sentinel-a:26379,sentinel-b:26379',
        REDIS_SENTINEL_NAME: 'svb-master',
        REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
      },
    });
    assert.deepEqual(sentinel.redis.sentinels, [
      { host: 'sentinel-a', port: 26379 },
      { host: 'sentinel-b', port: 26379 },
    ]);
    assert.equal(sentinel.redis.sentinelName, 'svb-master');
    assert.equal(sentinel.redis.sentinelPassword, 'sentinel-secret');
    assert.equal(sentinel.redis.url, 'redis://:secret@master/1');
  });

  it('takes one topology only, naming the field of every problem', () => {
    const nodes = [{ host: 'a', port: 1 }];
    assert.deepEqual(problemsOf({ redis: { sentinels: nodes, sentinelName: 'm', cluster: nodes } }), [
      'redis.cluster: set either redis.sentinels or redis.cluster, not both',
    ]);
    assert.deepEqual(problemsOf({ redis: { sentinels: nodes } }), [
      'redis.sentinelName: required with redis.sentinels: the name of the master they monitor',
    ]);
    assert.deepEqual(problemsOf({ redis: { sentinelName: 'm', sentinelPassword: 'p' } }), [
      'redis.sentinels: required with redis.sentinelName',
      'redis.sentinelPassword: only used with redis.sentinels',
    ]);
    assert.deepEqual(problemsOf({ redis: { url: 'redis://:pw@x/2', cluster: nodes } }), [
      'redis.url: names a database, but a Redis Cluster has only db 0',
    ]);
    assert.equal(
      parseConfig({ redis: { url: 'redis://:pw@x/0', cluster: nodes } }).redis.url,
      'redis://:pw@x/0',
    );
  });

  it('refuses malformed nodes, naming the entry', () => {
    assert.throws(
      () => loadConfig({ env: { REDIS_CLUSTER_NODES: 'a:7000,b' } }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.join('\n') === 'redis.cluster: "b" is not host:port',
    );
    assert.deepEqual(problemsOf({ redis: { cluster: [] } }), [
      'redis.cluster: Too small: expected array to have >=1 items',
    ]);
    const [port] = problemsOf({ redis: { sentinels: [{ host: 'a', port: 70_000 }], sentinelName: 'm' } });
    assert.match(port ?? '', /^redis\.sentinels\.0\.port: /);
    const [extra] = problemsOf({ redis: { cluster: [{ host: 'a', port: 1, tls: true }] } });
    assert.match(extra ?? '', /^redis\.cluster\.0: /);
  });

  it('names each topology for a startup error, without the password', () => {
    assert.equal(
      describeRedisTarget({ url: 'redis://:secret@db.internal:6380/2' }),
      'Redis at redis://:***@db.internal:6380/2',
    );
    assert.equal(
      describeRedisTarget({
        url: 'redis://:secret@x',
        sentinels: [
          { host: 's1', port: 26379 },
          { host: 's2', port: 26379 },
        ],
        sentinelName: 'svb-master',
      }),
      'Redis master "svb-master" through Sentinel (s1:26379, s2:26379)',
    );
    assert.equal(
      describeRedisTarget({ url: 'redis://:secret@x', cluster: [{ host: 'c1', port: 7000 }] }),
      'Redis Cluster (c1:7000)',
    );
  });
});
