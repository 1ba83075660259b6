/**
 * W3C Trace Context on the audit trail: a call that carries a valid `traceparent` has it recorded
 * on every audit record the call writes (the CloudEvent `traceparent` extension, cloudevent.ts),
 * so a trace in the agent's observability stack leads to the broker's decisions and back. An
 * invalid value is ignored: it is the caller's header, not ours to repair or to record.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AuditEventInput, AuditRecord, AuditSink, AuditSinkHealth } from './types.js';

/** version-traceid-parentid-flags (W3C Trace Context §3.2), lowercase hex. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$/;
/** Longest value kept: version 00 is 55 characters; later versions may append fields. */
const MAX_TRACEPARENT = 512;

/**
 * The value when it is a valid traceparent, else undefined. Version ff, an all-zero trace id or
 * parent id, and anything after the flags in version 00 are invalid (the spec says to ignore them);
 * a later version's extra fields are kept as sent.
 */
export function validTraceparent(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > MAX_TRACEPARENT) return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m) return undefined;
  const [, version, traceId, parentId, , rest] = m;
  if (version === 'ff') return undefined;
  if (version === '00' && rest !== undefined) return undefined;
  if (/^0+$/.test(traceId as string) || /^0+$/.test(parentId as string)) return undefined;
  return value;
}

/** The traceparent of the call being served, carried through its async work (built in main.ts). */
export class CallTrace {
  private readonly storage = new AsyncLocalStorage<string | undefined>();

  /** Runs `fn` as the call whose (unchecked) header is `header`: only a valid value is kept. */
  run<T>(header: unknown, fn: () => T): T {
    return this.storage.run(validTraceparent(header), fn);
  }

  current(): string | undefined {
    return this.storage.getStore();
  }
}

/** Adds the current call's traceparent to each record written through it. */
export class TracedAuditSink implements AuditSink {
  constructor(
    private readonly inner: AuditSink,
    private readonly trace: CallTrace,
  ) {}

  write(event: AuditEventInput): Promise<AuditRecord> {
    const traceparent = this.trace.current();
    return this.inner.write(traceparent === undefined ? event : { ...event, traceparent });
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  health(): AuditSinkHealth {
    return this.inner.health?.() ?? { ok: true };
  }
}
