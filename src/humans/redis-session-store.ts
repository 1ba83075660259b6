/**
 * Console sessions in Redis, shared by every replica: `{prefix}:console:session:<sha256(id)>` and
 * `{prefix}:console:signin:<sha256(state)>`, JSON strings with a TTL. Each write is one command
 * (SET PX, DEL, GETDEL), atomic on its own, so there is no script.
 */
import type { RedisClient } from '../redis/connect.js';
import { type ConsoleSession, type PendingSignIn, type SessionStore, storeKey } from './session-store.js';

export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

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
    return `${this.prefix}:console:${kind}:${storeKey(token)}`;
  }
}
