/**
 * The Workload API sends certificate chains and bundles as plain concatenated DER (no length prefix,
 * no PEM armour). Each certificate is one ASN.1 SEQUENCE, so reading the outer tag and length of each
 * element is enough to split them without parsing the certificates themselves.
 */
import { BrokerError } from '../errors.js';

const SEQUENCE_TAG = 0x30;
// Four length octets cover 4 GiB: far beyond any certificate; more means the input is not a chain.
const MAX_LENGTH_OCTETS = 4;

function malformed(message: string): BrokerError {
  return new BrokerError('INVALID_ARGUMENT', `der: ${message}`, { reason: 'malformed_der' });
}

/**
 * Splits concatenated DER SEQUENCEs into one copy per element. Empty input yields an empty list.
 * Throws on anything that is not a run of complete definite-length SEQUENCEs.
 */
export function splitConcatenatedDer(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < data.length) {
    const start = offset;
    if (data[offset] !== SEQUENCE_TAG) {
      throw malformed(
        `expected SEQUENCE at offset ${offset}, found tag 0x${(data[offset] ?? 0).toString(16)}`,
      );
    }
    offset += 1;
    const first = data[offset];
    if (first === undefined) throw malformed(`truncated length at offset ${offset}`);
    offset += 1;
    let length: number;
    if (first < 0x80) {
      length = first;
    } else {
      const octets = first & 0x7f;
      // 0x80 is the BER indefinite form, which DER forbids.
      if (octets === 0 || octets > MAX_LENGTH_OCTETS) {
        throw malformed(`unsupported length form 0x${first.toString(16)} at offset ${offset - 1}`);
      }
      if (offset + octets > data.length) throw malformed(`truncated length at offset ${offset}`);
      length = 0;
      for (let i = 0; i < octets; i++) length = length * 256 + (data[offset + i] ?? 0);
      offset += octets;
    }
    if (offset + length > data.length) {
      throw malformed(`element at offset ${start} claims ${length} bytes, only ${data.length - offset} left`);
    }
    offset += length;
    // A copy, not a view: decoded gRPC buffers may be slices of a larger pooled allocation.
    out.push(new Uint8Array(data.subarray(start, offset)));
  }
  return out;
}

/** Concatenates DER elements, the inverse of splitConcatenatedDer. */
export function concatDer(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
