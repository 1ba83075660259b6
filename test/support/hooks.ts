/**
 * Mocha root hooks for the whole run (listed under `require` in .mocharc.json): stops the one
 * redis-server that sharedRedis() started, so the run exits without leaving it behind.
 */
import { stopSharedRedis } from './redis-server.js';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopSharedRedis();
  },
};
