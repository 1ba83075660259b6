/**
 * Console sessions in Redis, shared by every replica: `{svb}:console:session:<sha256(id)>` and
 * `{svb}:console:signin:<sha256(state)>` (the prefix's hash tag, as every key), JSON strings with a TTL. Each write is one command
 * (SET PX, DEL, GETDEL), atomic on its own, so there is no script.
 */
import { invalidArgument } from '../errors.js';
import type { RedisClient } from '../redis/connect.js';
import { hashTag } from '../redis/lua-scripts.js';
import { type ConsoleSession, type PendingSignIn, type SessionStore, storeKey } from './session-store.js';

export class RedisSessionStore implements SessionStore {
  private readonly tag: string;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.tag = hashTag(prefix, (message) => invalidArgument('redis.prefix', message));
  }

  async putSession(id: string, session: ConsoleSession, ttlMs: number): Promise<void> {
    await this.redis.set(this.key('session', id), JSON.stringify(session), 'PX', Math.max(1, ttlMs));
  }

  async getSession(id: string): Promise<ConsoleSession | undefined> {
    const raw = await this.redis.get(this.key('session', id));
    return raw === null ? undefined : (JSON.parse(raw) as ConsoleSession);
  }

  async deleteSession(id: string): Promise<void> {
    await this.redis.del(this.key('session', id));
  }

  async putSignIn(state: string, pending: PendingSignIn, ttlMs: number): Promise<void> {
    await this.redis.set(this.key('signin', state), JSON.stringify(pending), 'PX', Math.max(1, ttlMs));
  }

  async takeSignIn(state: string): Promise<PendingSignIn | undefined> {
    const raw = await this.redis.getdel(this.key('signin', state));
    return raw === null ? undefined : (JSON.parse(raw) as PendingSignIn);
  }

  private key(kind: 'session' | 'signin', token: string): string {
    return `${this.tag}:console:${kind}:${storeKey(token)}`;
  }
}
