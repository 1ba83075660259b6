/**
 * The OpenID Shared Signals (SSF 1.0) transmitter: when a lease is revoked or an agent
 * quarantined, a CAEP Security Event Token (RFC 8417) is pushed (RFC 8935) to every configured
 * receiver, so downstream services can cut off a credential the broker cannot revoke at its source.
 *
 * Each SET is a JWT signed with the broker's own token-signing key (ES256, header `typ`
 * `secevent+jwt`), verifiable with the JWKS at `<issuer>/.well-known/jwks.json`; it carries
 * `iss`, `aud` (the receiver's audience), `iat`, `jti`, `txn` (the audit record id, shared by the
 * SETs one record causes), `sub_id` and one event in `events`; never `sub` or `exp` (SSF 1.0 §4.1).
 * `jti` is derived from the record, the event and the audience, so a SET sent again after a
 * failure or a restart has the same `jti` and the receiver can drop the copy.
 *
 * Delivery: POST `application/secevent+jwt`; 202 (any 2xx) is the acknowledgement. Anything else
 * (a 400 with RFC 8935's `{"err": ...}`, a 5xx, a timeout) is retried with backoff, never dropped;
 * the receiver's `err` code is in the sink's health and log. Receivers are sent to in order, each
 * remembering how far it got, so a receiver that recovers does not resend to one that took it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT, type CryptoKey } from 'jose';
import type { AuditSinkConfig } from '../../config/audit-schema.js';
import { QueuedFollower, type FollowerLogger, type FollowerMetrics } from '../follower.js';
import type { AuditRecord } from '../types.js';
import { closeWithin, httpReceiver, postBody, type HttpAnswer, type HttpReceiver } from './http-post.js';
import { SSF_RECORD_TYPES, securityEventsFor, type SecurityEvent } from './ssf-events.js';

export type SsfSinkConfig = Extract<AuditSinkConfig, { type: 'ssf' }>;

/** The broker's current signing key (the token backend's ring; its public half is in the JWKS). */
export interface SetSigner {
  current(): { kid: string; alg: 'ES256'; privateKey: CryptoKey };
}

export interface SsfReceiver {
  receiver: HttpReceiver;
  audience: string;
  /** Sent as `Authorization: Bearer <token>`. */
  bearerToken?: string;
}

export interface SsfTransmitterOptions {
  name: string;
  mode: SsfSinkConfig['mode'];
  issuer: string;
  receivers: readonly SsfReceiver[];
  signer: SetSigner;
  timeoutMs: number;
  logger?: FollowerLogger;
  metrics?: FollowerMetrics;
  retry?: { baseDelayMs: number; maxDelayMs: number };
  /** How long close() keeps delivering (default 2 s). */
  closeTimeoutMs?: number;
}

export const SECEVENT_CONTENT_TYPE = 'application/secevent+jwt';

export class SsfTransmitter extends QueuedFollower {
  /** Per receiver: the highest seq whose SETs it accepted. */
  private readonly sentTo: number[];
  private readonly cancel = new AbortController();

  constructor(private readonly opts: SsfTransmitterOptions) {
    super({
      name: opts.name,
      mode: opts.mode,
      ...(opts.retry ? { retry: opts.retry } : {}),
      ...(opts.closeTimeoutMs !== undefined ? { closeTimeoutMs: opts.closeTimeoutMs } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    });
    this.sentTo = opts.receivers.map(() => 0);
  }

  get issuer(): string {
    return this.opts.issuer;
  }

  override close(): Promise<void> {
    return closeWithin(this.opts.closeTimeoutMs ?? 2000, this.cancel, () => super.close());
  }

  protected override accepts(record: AuditRecord): boolean {
    return SSF_RECORD_TYPES.has(record.type) && securityEventsFor(record).length > 0;
  }

  protected override async send(batch: readonly AuditRecord[]): Promise<void> {
    for (const [index, target] of this.opts.receivers.entries()) {
      for (const record of batch) {
        if (record.seq <= (this.sentTo[index] ?? 0)) continue;
        for (const event of securityEventsFor(record))
          await this.push(target, await this.sign(record, event, target));
        this.sentTo[index] = record.seq;
      }
    }
  }

  /** The SET for `event` of `record`, addressed to `target`. */
  private async sign(record: AuditRecord, event: SecurityEvent, target: SsfReceiver): Promise<string> {
    const key = this.opts.signer.current();
    return new SignJWT({
      txn: record.id,
      sub_id: event.subject,
      events: { [event.type]: event.claims },
    })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'secevent+jwt' })
      .setIssuer(this.opts.issuer)
      .setAudience(target.audience)
      .setIssuedAt(Math.floor(Date.parse(record.time) / 1000))
      .setJti(setId(record, event, target.audience))
      .sign(key.privateKey);
  }

  private async push(target: SsfReceiver, set: string): Promise<void> {
    const headers: Record<string, string> = {
      'content-type': SECEVENT_CONTENT_TYPE,
      accept: 'application/json',
      ...(target.bearerToken !== undefined ? { authorization: `Bearer ${target.bearerToken}` } : {}),
    };
    const answer = await postBody(target.receiver, set, headers, this.opts.timeoutMs, this.cancel.signal);
    if (answer.status >= 200 && answer.status < 300) return;
    throw new Error(`receiver ${target.receiver.url.host} answered HTTP ${answer.status}${setError(answer)}`);
  }
}

/** Stable per record, event and audience: a resent SET keeps its `jti`. */
function setId(record: AuditRecord, event: SecurityEvent, audience: string): string {
  return createHash('sha256').update(`${record.id}\n${event.type}\n${audience}`).digest('hex').slice(0, 32);
}

/** RFC 8935 §2.3: a 400 names its error (`err`, `description`); kept short and printable. */
function setError(answer: HttpAnswer): string {
  try {
    const body = JSON.parse(answer.text) as { err?: unknown; description?: unknown };
    if (typeof body.err !== 'string') return '';
    const description = typeof body.description === 'string' ? `: ${body.description}` : '';
    return ` (${`${body.err}${description}`.replace(/[^\x20-\x7e]/g, '?').slice(0, 200)})`;
  } catch {
    return '';
  }
}

/** The transmitter metadata (SSF 1.0 §7.1) for `issuer`, served at ssfConfigurationPath(issuer). */
export function ssfConfiguration(issuer: string): Record<string, unknown> {
  return {
    spec_version: '1_0',
    issuer,
    jwks_uri: new URL('/.well-known/jwks.json', issuer).href,
    delivery_methods_supported: ['urn:ietf:rfc:8935'],
  };
}

/** `/.well-known/ssf-configuration` inserted between the issuer's host and path (SSF 1.0 §7.2). */
export function ssfConfigurationPath(issuer: string): string {
  const path = new URL(issuer).pathname.replace(/\/+$/, '');
  return `/.well-known/ssf-configuration${path}`;
}

/** Builds the transmitter `audit.sinks[i]` describes; reads its receivers' token files now. */
export function createSsfTransmitter(
  config: SsfSinkConfig,
  name: string,
  deps: { signer: SetSigner; defaultIssuer: string; logger: FollowerLogger; metrics?: FollowerMetrics },
): SsfTransmitter {
  const what = `audit sink ${name}`;
  return new SsfTransmitter({
    name,
    mode: config.mode,
    issuer: config.issuer ?? deps.defaultIssuer,
    receivers: config.receivers.map((r, i) => ({
      receiver: httpReceiver(r.url, r.caFile, `${what}: receivers[${i}]`),
      audience: r.audience,
      ...(r.authorizationFile !== undefined
        ? { bearerToken: readToken(r.authorizationFile, `${what}: receivers[${i}].authorizationFile`) }
        : {}),
    })),
    signer: deps.signer,
    timeoutMs: config.timeoutMs,
    logger: deps.logger,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  });
}

function readToken(file: string, what: string): string {
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token === '') throw new Error('empty');
    return token;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`${what}: cannot read ${file}: ${code}`);
  }
}
