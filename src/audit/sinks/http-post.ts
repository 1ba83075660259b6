/**
 * One HTTP POST to a receiver outside the broker (a webhook, an SSF receiver), bounded by one
 * deadline for the whole exchange. Redirects are never followed (node:http does not): a 3xx is an
 * answer like any other non-2xx, and the caller treats it as a failure. A private CA is trusted
 * for this receiver only.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface HttpReceiver {
  readonly url: URL;
  /** PEM bundle trusted for an https receiver (in place of the system roots). */
  readonly ca?: string;
}

export interface HttpAnswer {
  status: number;
  /** The start of the answer's body, for a log line (receivers' own words, never ours). */
  text: string;
}

/** Most of a receiver's answer kept, for logs: enough for `{"err":"invalid_key"}`. */
const ANSWER_LIMIT = 512;

/** Builds a receiver; `what` names it in errors (e.g. `audit.sinks[0]`). */
export function httpReceiver(url: string, caFile: string | undefined, what: string): HttpReceiver {
  if (caFile === undefined) return { url: new URL(url) };
  try {
    return { url: new URL(url), ca: readFileSync(caFile, 'utf8') };
  } catch (err) {
    throw new Error(`${what}: cannot read caFile ${caFile}: ${(err as Error).message}`);
  }
}

/**
 * POSTs `body`; resolves with the status (any), rejects on a network error, past `timeoutMs`, or
 * when `cancel` fires (the sink is closing).
 */
export function postBody(
  receiver: HttpReceiver,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
  cancel?: AbortSignal,
): Promise<HttpAnswer> {
  const deadline = AbortSignal.timeout(timeoutMs);
  const { url } = receiver;
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<HttpAnswer>((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': Buffer.byteLength(body) },
        signal: cancel ? AbortSignal.any([deadline, cancel]) : deadline,
        ...(receiver.ca !== undefined ? { ca: receiver.ca } : {}),
      },
      (res) => readAnswer(res).then(resolve, reject),
    );
    req.on('error', (err) => reject(describe(err, deadline.aborted ? timeoutMs : undefined)));
    req.end(body);
  });
}

async function readAnswer(res: IncomingMessage): Promise<HttpAnswer> {
  let text = '';
  for await (const chunk of res) {
    if (text.length < ANSWER_LIMIT) text += (chunk as Buffer).toString('utf8');
  }
  return { status: res.statusCode ?? 0, text: text.slice(0, ANSWER_LIMIT) };
}

function describe(err: Error, timedOutAfterMs: number | undefined): Error {
  if (err.name === 'AbortError' || err.name === 'TimeoutError') {
    return new Error(timedOutAfterMs !== undefined ? `no answer within ${timedOutAfterMs} ms` : 'cancelled');
  }
  const code = (err as NodeJS.ErrnoException).code;
  return new Error(code !== undefined ? `${code}: ${err.message}` : err.message);
}

/**
 * Runs a follower's close(), cancelling a POST still in flight once `afterMs` passed (a receiver
 * that never answers must not hold shutdown for its whole timeout).
 */
export async function closeWithin(
  afterMs: number,
  cancel: AbortController,
  close: () => Promise<void>,
): Promise<void> {
  const giveUp = setTimeout(() => cancel.abort(), afterMs);
  try {
    await close();
  } finally {
    clearTimeout(giveUp);
  }
}
