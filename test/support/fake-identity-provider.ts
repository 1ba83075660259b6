/**
 * A WorkloadIdentityProvider whose state the test sets by hand; every set() notifies the server, which
 * pushes the new full state to open streams.
 */
import type { WorkloadIdentity, WorkloadIdentityProvider } from '../../src/dev/workload-api-server.js';
import type { QuickJwtAuthority } from './quick-svid.js';

export function emptyIdentity(): WorkloadIdentity {
  return { svids: [], bundle: [], federatedBundles: new Map(), jwtBundles: new Map() };
}

export class FakeIdentityProvider implements WorkloadIdentityProvider {
  private identity: WorkloadIdentity;
  private readonly listeners = new Set<() => void>();

  constructor(
    initial: Partial<WorkloadIdentity> = {},
    private readonly jwtAuthority?: QuickJwtAuthority,
  ) {
    this.identity = { ...emptyIdentity(), ...initial };
  }

  current(): WorkloadIdentity {
    return this.identity;
  }

  /** Replaces parts of the state and notifies listeners, like an agent receiving a new entry. */
  set(next: Partial<WorkloadIdentity>): void {
    this.identity = { ...this.identity, ...next };
    for (const listener of [...this.listeners]) listener();
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  async mintJwtSvid(audience: string[], spiffeId?: string): Promise<string> {
    const id = spiffeId ?? this.identity.svids[0]?.spiffeId;
    if (!this.jwtAuthority || id === undefined) throw new Error('fake provider: cannot mint');
    return this.jwtAuthority.mint(id, audience);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}
