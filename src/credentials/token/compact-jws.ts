/**
 * A JWS in compact serialisation (RFC 7515 §7.1), signed by a caller-held signer: the header and
 * payload as JSON, base64url-encoded, joined by dots, and the signature over those two parts.
 * Plain JSON and node's crypto, so an ES256 signature costs one synchronous `crypto.sign` with a
 * cached KeyObject (about a third of WebCrypto through jose: bench/signing.ts).
 */
export type JwsSigner = (signingInput: Buffer) => Buffer;

export function signCompactJws(
  header: Readonly<Record<string, unknown>>,
  payload: Readonly<Record<string, unknown>>,
  sign: JwsSigner,
): string {
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  return `${signingInput}.${sign(Buffer.from(signingInput, 'ascii')).toString('base64url')}`;
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
