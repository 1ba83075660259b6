/**
 * Signature Version 4 verification, from AWS's "Create a signed AWS API request": the emulator
 * recomputes the signature from the request and the secret of the access key it names, so a
 * request signed with the wrong secret or altered on the way is refused (SignatureDoesNotMatch).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { AwsError } from './query.js';

export interface SignedRequest {
  accessKeyId: string;
  service: string;
  /** Verifies the signature with the key's secret; throws SignatureDoesNotMatch. */
  verify(secret: string): void;
}

const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();

function header(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ');
}

/** Undefined when the request carries no SigV4 Authorization header. */
export function parseSigV4(
  method: string,
  url: URL,
  headers: IncomingHttpHeaders,
  body: Buffer,
): SignedRequest | undefined {
  const auth = header(headers, 'authorization');
  if (auth === '') return undefined;
  const m = AUTH.exec(auth);
  if (!m)
    throw new AwsError(
      400,
      'IncompleteSignature',
      'Authorization header requires Credential, SignedHeaders and Signature.',
    );
  const [, accessKeyId, date, region, service, signedHeaders, signature] = m as unknown as string[];
  const amzDate = header(headers, 'x-amz-date');
  if (!amzDate.startsWith(date as string))
    throw new AwsError(400, 'IncompleteSignature', 'Date in Credential scope does not match X-Amz-Date.');
  return {
    accessKeyId: accessKeyId as string,
    service: service as string,
    verify(secret: string) {
      const names = (signedHeaders as string).split(';');
      const query = [...url.searchParams]
        .map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)])
        .sort(([a], [b]) => ((a as string) < (b as string) ? -1 : 1))
        .map(([k, v]) => `${k}=${v}`)
        .join('&');
      const canonical = [
        method,
        url.pathname || '/',
        query,
        names.map((n) => `${n}:${header(headers, n)}\n`).join(''),
        signedHeaders,
        header(headers, 'x-amz-content-sha256') || sha256(body),
      ].join('\n');
      const scope = `${date}/${region}/${service}/aws4_request`;
      const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256(canonical)}`;
      const key = hmac(
        hmac(hmac(hmac(`AWS4${secret}`, date as string), region as string), service as string),
        'aws4_request',
      );
      const expected = Buffer.from(hmac(key, toSign).toString('hex'));
      const given = Buffer.from(signature as string);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
        throw new AwsError(
          403,
          'SignatureDoesNotMatch',
          'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
        );
      }
    },
  };
}
