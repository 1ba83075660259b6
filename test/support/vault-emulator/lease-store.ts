/** Leases of dynamic secrets: who created them, when they expire, and how the engine revokes them. */
import type { NamespaceEntry } from './types.js';

export type LeaseKind = 'database' | 'aws-iam' | 'aws-sts';

export interface LeaseEntry {
  /** `<request path>/<random>`, with `.<namespace id>` inside a child namespace. */
  readonly id: string;
  readonly path: string;
  readonly namespace: NamespaceEntry;
  readonly kind: LeaseKind;
  /** The token whose revocation takes this lease with it; undefined for none (orphan batch tokens). */
  readonly owner: string | undefined;
  readonly issueTime: number;
  expireAt: number;
  lastRenewal: number | null;
  readonly renewable: boolean;
  /** Renewals never go past this (issue time + the role's or mount's max TTL). */
  readonly maxExpireAt: number;
  /** The TTL a renewal without `increment` asks for (the role default, as Vault's engines do). */
  readonly defaultTtl: number;
  readonly data: Readonly<Record<string, unknown>>;
  /** Undoes the credential in the emulated backend (drops the DB user, deletes the IAM user, ...). */
  readonly revokeBackend: () => void;
}

export class LeaseStore {
  private readonly byId = new Map<string, LeaseEntry>();

  add(lease: LeaseEntry): void {
    this.byId.set(lease.id, lease);
  }

  get(id: string): LeaseEntry | undefined {
    return this.byId.get(id);
  }

  remove(id: string): void {
    this.byId.delete(id);
  }

  ownedBy(tokenId: string): LeaseEntry[] {
    return [...this.byId.values()].filter((l) => l.owner === tokenId);
  }

  entries(): LeaseEntry[] {
    return [...this.byId.values()];
  }
}

/** The TTL the lease was issued (or last renewed) with, in seconds. */
export function leaseDuration(lease: LeaseEntry): number {
  return Math.round((lease.expireAt - (lease.lastRenewal ?? lease.issueTime)) / 1000);
}
