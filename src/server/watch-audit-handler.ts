/**
 * The gRPC side of BrokerAdmin.WatchAudit: authenticates the caller, runs the watch (domain:
 * broker/audit-watch.ts) and writes each record as an AuditEvent, waiting for 'drain' whenever
 * `call.write()` says the client's buffer is full. Shutdown and a client hanging up end it.
 */
import type { ServerWritableStream, ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toCloudEvent } from '../audit/cloudevent.js';
import type { AuditRecord } from '../audit/types.js';
import type { AuditWatch } from '../broker/audit-watch.js';
import { failedPrecondition, isBrokerError, unavailable } from '../errors.js';
import type { Caller } from '../identity/types.js';
import { toTimestamp, type AuditEventMsg, type WatchAuditRequestMsg } from './broker-proto.js';
import { toServiceError } from './status.js';

export interface WatchAuditHandlerDeps {
  watch: AuditWatch | undefined;
  authenticate(
    call: ServerWritableStream<WatchAuditRequestMsg, AuditEventMsg>,
    method: string,
  ): Promise<{ caller: Caller } | { refusal: Partial<ServiceError>; code: string }>;
  checkQuarantine(caller: Caller, method: string): Promise<void>;
  observe(method: string): (code: string) => void;
  /** Shutdown calls every registered function: open watches end UNAVAILABLE. */
  onShutdown: Set<() => void>;
  logger: Logger;
}

const METHOD = 'WatchAudit';

export function auditEventMsg(record: AuditRecord): AuditEventMsg {
  return {
    cloudevent_json: JSON.stringify(toCloudEvent(record)),
    id: record.id,
    seq: String(record.seq),
    type: record.type,
    agent: record.agent,
    time: toTimestamp(Date.parse(record.time)),
  };
}

export function watchAuditHandler(
  deps: WatchAuditHandlerDeps,
): (call: ServerWritableStream<WatchAuditRequestMsg, AuditEventMsg>) => void {
  return (call) => {
    const done = deps.observe(METHOD);
    const abort = new AbortController();
    const fail = (err: unknown): void => {
      if (abort.signal.aborted) return;
      abort.abort();
      done(isBrokerError(err) ? err.code : 'INTERNAL');
      // grpc-js sends a stream's status from its 'error' event.
      call.emit('error', toServiceError(err, deps.logger, METHOD));
    };
    const onShutdown = (): void =>
      fail(unavailable('shutting_down', 'broker shutting down: call WatchAudit again with from_id'));
    deps.onShutdown.add(onShutdown);
    call.on('cancelled', () => abort.abort());
    call.on('close', () => {
      deps.onShutdown.delete(onShutdown);
      abort.abort();
    });
    void run(deps, call, abort.signal).then(() => {
      if (!abort.signal.aborted) done('OK');
    }, fail);
  };
}

async function run(
  deps: WatchAuditHandlerDeps,
  call: ServerWritableStream<WatchAuditRequestMsg, AuditEventMsg>,
  signal: AbortSignal,
): Promise<void> {
  const auth = await deps.authenticate(call, METHOD);
  if ('refusal' in auth) {
    call.emit('error', auth.refusal);
    return;
  }
  await deps.checkQuarantine(auth.caller, METHOD);
  if (deps.watch === undefined) {
    throw failedPrecondition('audit_watch_unavailable', 'this broker has no audit trail to watch');
  }
  const req = call.request;
  await deps.watch.watch(
    auth.caller,
    { fromId: req.from_id ?? '', types: req.types ?? [], agent: req.agent ?? '' },
    (record) => write(call, auditEventMsg(record), signal),
    signal,
  );
}

/** Writes one message; when the client's buffer is full, waits for 'drain' (or the end). */
function write(
  call: ServerWritableStream<WatchAuditRequestMsg, AuditEventMsg>,
  msg: AuditEventMsg,
  signal: AbortSignal,
): Promise<void> {
  if (signal.aborted || call.write(msg)) return Promise.resolve();
  return new Promise<void>((resume) => {
    const done = (): void => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resume();
    };
    call.on('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
