/**
 * What a webhook POST carries, per `format`, and the signature over it:
 *
 *   batch       application/cloudevents-batch+json  a JSON array of CloudEvents, one POST per batch
 *   structured  application/cloudevents+json        one CloudEvent per POST
 *   splunk_hec  application/json                    Splunk HEC event objects, concatenated
 *
 * Every body is signed: `X-Svid-Broker-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
 */
import { createHmac } from 'node:crypto';
import { hostname } from 'node:os';
import { toCloudEvent } from '../cloudevent.js';
import type { AuditRecord } from '../types.js';

export type WebhookFormat = 'structured' | 'batch' | 'splunk_hec';

export const SIGNATURE_HEADER = 'x-svid-broker-signature';
export const SPLUNK_SOURCETYPE = 'svid-broker:audit';

export interface WebhookBody {
  body: string;
  contentType: string;
}

/** The bodies that carry `records` in this format, in the order they must be sent. */
export function webhookBodies(format: WebhookFormat, records: readonly AuditRecord[]): WebhookBody[] {
  switch (format) {
    case 'structured':
      return records.map((r) => ({
        body: JSON.stringify(toCloudEvent(r)),
        contentType: 'application/cloudevents+json; charset=utf-8',
      }));
    case 'batch':
      return [
        {
          body: JSON.stringify(records.map((r) => toCloudEvent(r))),
          contentType: 'application/cloudevents-batch+json; charset=utf-8',
        },
      ];
    case 'splunk_hec':
      return [{ body: records.map(splunkEvent).join('\n'), contentType: 'application/json' }];
  }
}

/** One HEC event: the CloudEvent as `event`, its time in epoch seconds (millisecond precision). */
function splunkEvent(record: AuditRecord): string {
  return JSON.stringify({
    time: Date.parse(record.time) / 1000,
    host: hostname(),
    source: record.source,
    sourcetype: SPLUNK_SOURCETYPE,
    event: toCloudEvent(record),
  });
}

/** The signature header's value for `body` sent at `unixSeconds`. */
export function signBody(key: Buffer, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', key).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}
