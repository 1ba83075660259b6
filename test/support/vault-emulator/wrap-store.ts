/**
 * Response wrapping: the real response sits behind a single-use wrapping token. The token itself is
 * an ordinary entry in the TokenStore (so TTL expiry and revoke-accessor apply); this keeps the body.
 */
import type { Envelope } from './types.js';

export interface WrappedResponse {
  readonly tokenId: string;
  readonly body: Envelope;
  readonly creationPath: string;
  readonly creationTime: number;
  readonly ttl: number;
  /** Accessor of the token the wrapped response created, '' when it created none. */
  readonly wrappedAccessor: string;
}

export class WrapStore {
  private readonly byToken = new Map<string, WrappedResponse>();
  private readonly unwraps = new Map<string, number>();

  add(entry: WrappedResponse): void {
    this.byToken.set(entry.tokenId, entry);
  }

  get(tokenId: string): WrappedResponse | undefined {
    return this.byToken.get(tokenId);
  }

  delete(tokenId: string): void {
    this.byToken.delete(tokenId);
  }

  recordUnwrap(tokenId: string): void {
    this.unwraps.set(tokenId, (this.unwraps.get(tokenId) ?? 0) + 1);
  }

  /** Successful unwraps of that wrapping token (0 or 1 unless the emulator is broken). */
  unwrapCount(tokenId: string): number {
    return this.unwraps.get(tokenId) ?? 0;
  }
}
