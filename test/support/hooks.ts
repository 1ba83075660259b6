/**
 * Mocha root hooks for the whole run (listed under `require` in .mocharc.json): stops the shared
 * redis-server, Redis Cluster and Sentinel that sharedRedis(), sharedRedisCluster() and
 * sharedRedisSentinel() started, so the run exits without leaving them behind.
 */
import { stopSharedRedisTopologies } from './redis-cluster.js';
import { stopSharedRedis } from './redis-server.js';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await Promise.all([stopSharedRedis(), stopSharedRedisTopologies()]);
  },
};
