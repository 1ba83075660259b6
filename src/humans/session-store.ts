/**
 * Console sessions and sign-ins in flight. A session id is a 256-bit random value that lives only
 * in the person's cookie; the store keys it by its SHA-256, so a copy of the store (a Redis dump)
 * holds no usable cookie. Sessions expire on their own (TTL), and deleting one signs its holder
 * out on every replica at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { HumanIdentity } from '../identity/types.js';

export interface ConsoleSession {
  human: HumanIdentity;
  /** The synchronizer token every state-changing request must carry (`_csrf`). */
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

/** A sign-in in flight: what the callback must find again (PKCE verifier, nonce, where to return). */
export interface PendingSignIn {
  codeVerifier: string;
  nonce: string;
  returnTo: string;
  /** The max_age sent, when the sign-in was a step-up. */
  maxAge?: number;
  /** Binds the sign-in to the browser that started it (a cookie), against login CSRF. */
  browserKey: string;
}

/** Contract: entries vanish at their TTL; `takeSignIn` returns a sign-in at most once. */
export interface SessionStore {
  putSession(id: string, session: ConsoleSession, ttlMs: number): Promise<void>;
  getSession(id: string): Promise<ConsoleSession | undefined>;
  deleteSession(id: string): Promise<void>;
  putSignIn(state: string, pending: PendingSignIn, ttlMs: number): Promise<void>;
  takeSignIn(state: string): Promise<PendingSignIn | undefined>;
}

/** A fresh random token (session id, CSRF token, browser key), base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What the store keys a session or sign-in by: never the token itself. */
export function storeKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** In-process sessions for the dev stack and single-replica setups: lost on restart, never shared. */
export class MemorySessionStore implements SessionStore {
  private readonly entries = new Map<string, { value: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  putSession(id: string, session: ConsoleSession, ttlMs: number): Promise<void> {
    return this.put(`session:${storeKey(id)}`, session, ttlMs);
  }

  async getSession(id: string): Promise<ConsoleSession | undefined> {
    return this.read<ConsoleSession>(`session:${storeKey(id)}`);
  }

  async deleteSession(id: string): Promise<void> {
    this.entries.delete(`session:${storeKey(id)}`);
  }

  putSignIn(state: string, pending: PendingSignIn, ttlMs: number): Promise<void> {
    return this.put(`signin:${storeKey(state)}`, pending, ttlMs);
  }

  async takeSignIn(state: string): Promise<PendingSignIn | undefined> {
    const key = `signin:${storeKey(state)}`;
    const value = this.read<PendingSignIn>(key);
    this.entries.delete(key);
    return value;
  }

  private async put(key: string, value: unknown, ttlMs: number): Promise<void> {
    this.entries.set(key, { value: JSON.stringify(value), expiresAt: this.now() + ttlMs });
  }

  private read<T>(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return JSON.parse(entry.value) as T;
  }
}
