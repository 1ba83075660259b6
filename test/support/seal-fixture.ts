/**
 * Brokers that seal shared-state entries (SvidSeal) for unit tests: one LocalCa, SVIDs issued on
 * demand, a clock the test moves.
 */
import { LocalCa } from '../../src/dev/local-ca.js';
import { SvidSeal } from '../../src/identity/svid-seal.js';
import type { X509Svid } from '../../src/identity/types.js';

export const BROKER_ID = 'spiffe://example.org/broker';
export const AGENT_ID = 'spiffe://example.org/agents/demo';

export interface SealFixture {
  readonly ca: LocalCa;
  /** Epoch ms the seals read; move it to age certificates. */
  clock: number;
  allowedIds: string[];
  /** A seal signing with a fresh SVID for `spiffeId` (default the broker) of `ttlSeconds` (default 1 h). */
  sealFor(spiffeId?: string, ttlSeconds?: number): Promise<SvidSeal>;
  /** A seal signing with `svid`. */
  sealWith(svid: X509Svid): SvidSeal;
}

export async function sealFixture(): Promise<SealFixture> {
  const ca = await LocalCa.create('example.org');
  const fixture: SealFixture = {
    ca,
    clock: Date.now(),
    allowedIds: [BROKER_ID],
    async sealFor(spiffeId = BROKER_ID, ttlSeconds = 3600) {
      return fixture.sealWith(await ca.issueX509Svid(spiffeId, { ttlSeconds }));
    },
    sealWith(svid) {
      return new SvidSeal({
        svid: { getX509Svid: () => svid },
        bundles: {
          getX509BundleForTrustDomain: (td) => (td === ca.trustDomain ? ca.x509Bundle() : undefined),
        },
        allowedIds: () => fixture.allowedIds,
        now: () => fixture.clock,
      });
    },
  };
  return fixture;
}
