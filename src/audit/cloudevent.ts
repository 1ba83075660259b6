/**
 * The envelope every audit record travels in once it leaves the broker: a CloudEvents 1.0 event.
 * The file keeps the record as sealed (one JSON line); this is the documented, lossless mapping
 * between the two, so a record taken from any sink can be put back and its hash checked:
 *
 *   record.id         <-> id
 *   record.time       <-> time
 *   record.type       <-> type      `io.svid-broker.<type>`, e.g. io.svid-broker.credential.issued
 *   record.source     <-> source    the broker replica's SPIFFE ID
 *   record.agent      <-> subject   the agent's SPIFFE ID (absent when the record names none: agent "")
 *   record.seq        <-> chainseq  (extension) position in the replica's chain
 *   record.prev_hash  <-> prevhash  (extension)
 *   record.hash       <-> hash      (extension)
 *   record.traceparent<-> traceparent (extension, W3C trace context, when the caller sent one)
 *   every other field <-> data      (datacontenttype application/json)
 */
import { CloudEvent, type CloudEventV1 } from 'cloudevents';
import type { AuditRecord } from './types.js';

export const EVENT_TYPE_PREFIX = 'io.svid-broker.';

/** Record fields carried as envelope attributes rather than in `data`. */
const ENVELOPE_FIELDS = new Set([
  'id',
  'time',
  'type',
  'source',
  'agent',
  'seq',
  'prev_hash',
  'hash',
  'traceparent',
]);

export type AuditCloudEvent = CloudEvent<Record<string, unknown>>;

export function toCloudEvent(record: AuditRecord): AuditCloudEvent {
  const data: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (!ENVELOPE_FIELDS.has(key)) data[key] = value;
  }
  return new CloudEvent<Record<string, unknown>>({
    specversion: '1.0',
    id: record.id,
    time: record.time,
    type: `${EVENT_TYPE_PREFIX}${record.type}`,
    source: record.source,
    ...(record.agent === '' ? {} : { subject: record.agent }),
    datacontenttype: 'application/json',
    chainseq: record.seq,
    prevhash: record.prev_hash,
    hash: record.hash,
    ...(typeof record.traceparent === 'string' ? { traceparent: record.traceparent } : {}),
    data,
  });
}

/**
 * The record a CloudEvent carries (the inverse of toCloudEvent). Throws when the event is not one
 * of ours; whether the record is genuine is for the chain to say (checkRecordLine).
 */
export function fromCloudEvent(event: CloudEventV1<unknown> | Record<string, unknown>): AuditRecord {
  const e = event as Record<string, unknown>;
  if (typeof e.type !== 'string' || !e.type.startsWith(EVENT_TYPE_PREFIX)) {
    throw new Error(`not an svid-broker audit event: type ${String(e.type)}`);
  }
  const data = e.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new Error('audit event without a data object');
  }
  const seq = typeof e.chainseq === 'string' ? Number(e.chainseq) : e.chainseq;
  return {
    id: e.id as string,
    time: e.time as string,
    type: e.type.slice(EVENT_TYPE_PREFIX.length) as AuditRecord['type'],
    agent: typeof e.subject === 'string' ? e.subject : '',
    ...(data as Record<string, unknown>),
    ...(typeof e.traceparent === 'string' ? { traceparent: e.traceparent } : {}),
    source: e.source as string,
    seq: seq as number,
    prev_hash: e.prevhash as string,
    hash: e.hash as string,
  };
}
