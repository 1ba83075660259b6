/**
 * Just enough PKI for Workload API tests: a self-signed root per trust domain, leaves with a SPIFFE URI
 * SAN, and a JWT-SVID signing key with its JWKS. The dev stack's full CA lives in src/dev/local-ca.ts;
 * these tests stay independent of it so the Workload API can be tested on its own.
 */
import 'reflect-metadata';

import { webcrypto } from 'node:crypto';

import * as x509 from '@peculiar/x509';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey as JoseCryptoKey } from 'jose';

import type { X509Svid } from '../../src/identity/types.js';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const crypto = webcrypto;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export interface QuickCa {
  readonly trustDomain: string;
  /** DER of the self-signed root. */
  readonly cert: Uint8Array;
  readonly x509: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
}

async function generateEcKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
}

/** A self-signed root CA for `trustDomain`, valid from a minute ago for a day. */
export async function createQuickCa(trustDomain: string): Promise<QuickCa> {
  const keys = await generateEcKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: `CN=${trustDomain} test root, O=SPIFFE`,
      keys,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      signingAlgorithm: EC_P256,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { trustDomain, cert: new Uint8Array(cert.rawData), x509: cert, keys };
}

/** An X.509-SVID for `spiffeId` signed directly by the root: chain is [leaf]. */
export async function issueQuickSvid(ca: QuickCa, spiffeId: string, hint = ''): Promise<X509Svid> {
  const keys = await generateEcKeys();
  const leaf = await x509.X509CertificateGenerator.create(
    {
      subject: 'O=SPIFFE',
      issuer: ca.x509.subject,
      publicKey: keys.publicKey,
      signingKey: ca.keys.privateKey,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3_600_000),
      signingAlgorithm: EC_P256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
      ],
    },
    crypto,
  );
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    spiffeId,
    certChain: [new Uint8Array(leaf.rawData)],
    privateKey: new Uint8Array(pkcs8),
    hint,
  };
}

export interface QuickJwtAuthority {
  readonly trustDomain: string;
  readonly kid: string;
  /** The trust domain's JWT bundle: one ES256 key with use "jwt-svid". */
  readonly jwks: { keys: Array<Record<string, unknown>> };
  mint(spiffeId: string, audience: string[], ttlSeconds?: number): Promise<string>;
}

export async function createQuickJwtAuthority(trustDomain: string): Promise<QuickJwtAuthority> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `${trustDomain}-${Math.random().toString(36).slice(2, 10)}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' };
  return {
    trustDomain,
    kid,
    jwks: { keys: [jwk] },
    mint: (spiffeId, audience, ttlSeconds = 300) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setSubject(spiffeId)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
        .sign(privateKey as JoseCryptoKey),
  };
}
