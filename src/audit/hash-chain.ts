/**
 * The audit hash chain: every record carries the hash of its predecessor, so deleting, reordering
 * or editing any record breaks verification at that point. Pure functions, shared by every sink
 * and by the verifier so that writing and checking can never drift apart.
 *
 *   hash = lowercase hex SHA-256( prev_hash || JCS(record without `hash`) )
 *
 * JCS is RFC 8785 canonical JSON; the record hashed includes `prev_hash` itself.
 */
import { createHash } from 'node:crypto';
import canonicalizeExport from 'canonicalize';
import { BrokerError } from '../errors.js';
import type { AuditEventInput, AuditRecord } from './types.js';

/** prev_hash of the first record of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** Fields a sink assigns; an event that carries them would forge or confuse the chain. */
const RESERVED_FIELDS = ['id', 'time', 'prev_hash', 'hash'] as const;

/** Fields every record must have, in the order they are checked. */
const REQUIRED_FIELDS = ['id', 'time', 'type', 'agent', 'prev_hash', 'hash'] as const;

const HEX_SHA256 = /^[0-9a-f]{64}$/;

type Canonicalize = (input: unknown) => string | undefined;
// The package is CommonJS with `export default` typings: under NodeNext TypeScript types the default
// import as the module object, while Node hands over module.exports, the function itself.
const canonicalize: Canonicalize =
  typeof canonicalizeExport === 'function' ? canonicalizeExport : canonicalizeExport.default;

/** RFC 8785 canonical JSON of a JSON value (throws on values JSON cannot represent). */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('canonicalJson: value has no JSON representation');
  return text;
}

/** `Omit<AuditRecord, 'hash'>` would collapse to the index signature, so spelled out. */
export type RecordWithoutHash = AuditEventInput & { id: string; time: string; prev_hash: string };

export function computeRecordHash(prevHash: string, recordWithoutHash: RecordWithoutHash): string {
  const canonical = canonicalize(recordWithoutHash);
  if (canonical === undefined) {
    throw new BrokerError('INTERNAL', 'audit: record is not canonicalisable JSON');
  }
  return createHash('sha256').update(prevHash, 'utf8').update(canonical, 'utf8').digest('hex');
}

/**
 * Builds the next record of a chain. The event is round-tripped through JSON first so the hash
 * covers exactly what a verifier will parse back from the line (undefined members dropped, Dates
 * as strings, NaN as null); hashing the live object instead could seal values the line never
 * shows. Throws (and the chain does not advance) for reserved fields or non-JSON values.
 */
export function sealRecord(prevHash: string, event: AuditEventInput, id: string, time: string): AuditRecord {
  for (const field of RESERVED_FIELDS) {
    if (Object.hasOwn(event, field)) {
      throw new BrokerError('INTERNAL', `audit: event must not set reserved field '${field}'`);
    }
  }
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
  } catch (err) {
    throw new BrokerError('INTERNAL', 'audit: event is not JSON-serialisable', { cause: err });
  }
  // id, time, type and agent lead the line so a human reading the file sees them first.
  const unsealed = {
    id,
    time,
    type: fields.type,
    agent: fields.agent,
    ...fields,
    prev_hash: prevHash,
  } as RecordWithoutHash;
  return { ...unsealed, hash: computeRecordHash(prevHash, unsealed) };
}

export type VerifyChainResult =
  | { ok: true; count: number; lastHash: string }
  | {
      ok: false;
      /** Valid records before the broken one. */
      count: number;
      /** 1-based line number of the broken record. */
      line: number;
      id?: string;
      error: string;
    };

/** The outcome of checking one parsed line against the expected prev_hash. */
export type LineCheck = { ok: true; hash: string } | { ok: false; id?: string; error: string };

/**
 * Checks one line: JSON object, required fields, linkage to `expectedPrevHash` (skipped when
 * undefined, e.g. for the tail record a sink resumes from) and its own hash.
 */
export function checkRecordLine(line: string, expectedPrevHash: string | undefined): LineCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { ok: false, error: 'unparseable json' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, error: 'not a json object' };
  }
  const record = parsed as Record<string, unknown>;
  const id = typeof record.id === 'string' ? record.id : undefined;
  const withId = (error: string): LineCheck =>
    id === undefined ? { ok: false, error } : { ok: false, id, error };
  for (const field of REQUIRED_FIELDS) {
    if (typeof record[field] !== 'string') return withId(`missing field ${field}`);
  }
  const { hash, ...rest } = record as unknown as AuditRecord;
  if (expectedPrevHash !== undefined && rest.prev_hash !== expectedPrevHash) {
    return withId('prev_hash mismatch');
  }
  if (!HEX_SHA256.test(hash) || computeRecordHash(rest.prev_hash, rest) !== hash) {
    return withId('hash mismatch');
  }
  return { ok: true, hash };
}

/**
 * Incremental verifier, so the same logic serves an in-memory array and a streamed file.
 * Empty lines are tolerated only at the very end (the empty string after a final newline when a
 * file is split on '\n'); anywhere else they are reported as the break.
 */
export class ChainVerifier {
  private count = 0;
  private lineNo = 0;
  private lastHash = GENESIS_HASH;
  private firstBlankLine: number | undefined;
  private broken: VerifyChainResult | undefined;

  push(line: string): void {
    if (this.broken !== undefined) return;
    this.lineNo += 1;
    if (line === '') {
      this.firstBlankLine ??= this.lineNo;
      return;
    }
    if (this.firstBlankLine !== undefined) {
      this.broken = { ok: false, count: this.count, line: this.firstBlankLine, error: 'unparseable json' };
      return;
    }
    const check = checkRecordLine(line, this.lastHash);
    if (!check.ok) {
      this.broken = { ...check, count: this.count, line: this.lineNo };
      return;
    }
    this.count += 1;
    this.lastHash = check.hash;
  }

  /** True once a break was found; later lines cannot change the result. */
  get done(): boolean {
    return this.broken !== undefined;
  }

  result(): VerifyChainResult {
    return this.broken ?? { ok: true, count: this.count, lastHash: this.lastHash };
  }
}

export function verifyChain(lines: Iterable<string>): VerifyChainResult {
  const verifier = new ChainVerifier();
  for (const line of lines) {
    verifier.push(line);
    if (verifier.done) break;
  }
  return verifier.result();
}
