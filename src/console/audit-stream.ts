/**
 * The live audit view: every record the chain commits from now on, as Server-Sent Events, to a
 * person the WatchAudit admin action allows. Records hold no secrets (the audit contract); the
 * page's script shows them with textContent, never as HTML.
 */
import type { ServerResponse } from 'node:http';
import type { AuditRecord, CommitListener } from '../audit/types.js';
import type { LeaseAdmin } from '../broker/lease-admin.js';
import type { Caller } from '../identity/types.js';
import { SECURITY_HEADERS } from './http-kit.js';
import { html } from './html.js';

/** What the audit pipeline offers followers (AuditPipeline.subscribe). */
export interface AuditFeed {
  subscribe(listener: CommitListener): () => void;
}

export function auditPage(): { title: string; body: ReturnType<typeof html> } {
  return {
    title: 'Audit events',
    body: html`<p id="audit-status">Connecting to the live audit stream…</p>
      <ol id="audit-events" reversed></ol>`,
  };
}

/** How often an open stream checks that its session still stands (sign-out, expiry). */
export const SESSION_RECHECK_MS = 15_000;

export async function streamAudit(
  res: ServerResponse,
  caller: Caller,
  leaseAdmin: Pick<LeaseAdmin, 'authorize' | 'recordRead'>,
  feed: AuditFeed,
  stillSignedIn: () => Promise<boolean>,
  recheckMs = SESSION_RECHECK_MS,
): Promise<void> {
  await leaseAdmin.authorize(caller, 'WatchAudit', 'ConsoleAuditStream');
  await leaseAdmin.recordRead(caller, 'ConsoleAuditStream', {});
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': 'text/event-stream; charset=utf-8',
    connection: 'keep-alive',
  });
  res.write(': connected\n\n');
  const send = (record: AuditRecord): void => {
    res.write(`event: audit\nid: ${record.seq}\ndata: ${JSON.stringify(record)}\n\n`);
  };
  const unsubscribe = feed.subscribe((records) => records.forEach(send));
  // A stream outlives its page: it ends when the session does (signed out anywhere, or expired).
  const recheck = setInterval(() => {
    stillSignedIn().then(
      (ok) => ok || res.end(),
      () => res.end(),
    );
  }, recheckMs);
  recheck.unref();
  res.on('close', () => {
    clearInterval(recheck);
    unsubscribe();
  });
}
