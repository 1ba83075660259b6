/**
 * Brokers that seal shared-state entries (SvidSeal) for tests: one LocalCa, SVIDs issued on
 * demand, a clock the test moves; and an attacker's planted JWKS key.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
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

/** An attacker's key, planted as a JWKS entry, and an access token it signed. */
export interface PlantedKey {
  kid: string;
  /** The public JWK as the attacker writes it into `{svb}:jwks`. */
  jwk: JWK & { kid: string };
  /** The unsealed hash value the attacker writes: `{jwk, until}`. */
  entry: string;
  /** A well-formed access token (every claim the reference verifier wants) signed by the key. */
  token: string;
}

export async function plantedKey(issuer = BROKER_ID, audience = 'demo-api'): Promise<PlantedKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  const jwk = { ...pub, kid, alg: 'ES256', use: 'sig' };
  const token = await new SignJWT({
    scope: 'demo:read',
    task: 't',
    env: 'dev',
    role: 'token/demo',
    client_id: AGENT_ID,
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
    .setIssuer(issuer)
    .setAudience(audience)
    .setSubject(AGENT_ID)
    .setJti('forged-lease')
    .setIssuedAt()
    .setNotBefore('0s')
    .setExpirationTime('5m')
    .sign(privateKey);
  return { kid, jwk, entry: JSON.stringify({ jwk, until: Date.now() + 3600_000 }), token };
}
