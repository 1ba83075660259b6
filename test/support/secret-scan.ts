/**
 * The scan behind "no secret value ever appears in any sink": every secret a test handled,
 * searched for in every text a sink or the logs hold. Sinks are a list (`SinkContents`) so each
 * new one (Redis Stream, webhook receiver, SSF receiver) is one more entry.
 */
import type { IssueCredentialResponseMsg } from '../../src/server/broker-proto.js';

export interface Secret {
  /** What it is, for the failure message (never the value). */
  what: string;
  value: string;
}

/** What one sink (or the log) holds, read once the test is done. */
export interface SinkContents {
  sink: string;
  read(): Promise<string>;
}

export interface SecretFinding {
  sink: string;
  what: string;
  /** The form found: as issued, base64, base64url, hex, or a JWS signature. */
  form: string;
}

/** Values shorter than this are not searched for: they would match by chance. */
const MIN_SECRET_LENGTH = 8;

/** Every textual form a value could leak in: as is, encoded, and (for a compact JWS) its signature. */
function formsOf(value: string): Array<[string, string]> {
  const bytes = Buffer.from(value, 'utf8');
  const forms: Array<[string, string]> = [
    ['as issued', value],
    ['base64', bytes.toString('base64')],
    ['base64url', bytes.toString('base64url')],
    ['hex', bytes.toString('hex')],
  ];
  const jws = value.split('.');
  if (jws.length === 3 && (jws[2] ?? '').length >= MIN_SECRET_LENGTH)
    forms.push(['JWS signature', jws[2] as string]);
  return forms;
}

/** Where each secret appears, in any form, in any text; empty when none does. */
export function scanForSecrets(
  texts: ReadonlyArray<{ sink: string; text: string }>,
  secrets: readonly Secret[],
): SecretFinding[] {
  const findings: SecretFinding[] = [];
  for (const secret of secrets) {
    if (secret.value.length < MIN_SECRET_LENGTH) continue;
    for (const [form, needle] of formsOf(secret.value)) {
      for (const { sink, text } of texts) {
        if (text.includes(needle)) findings.push({ sink, what: secret.what, form });
      }
    }
  }
  return findings;
}

/** Reads every sink, then scans. */
export async function scanSinks(
  sinks: readonly SinkContents[],
  secrets: readonly Secret[],
): Promise<SecretFinding[]> {
  const texts = await Promise.all(sinks.map(async (s) => ({ sink: s.sink, text: await s.read() })));
  return scanForSecrets(texts, secrets);
}

/** The secret values of an issued credential: its token and every data value. */
export function credentialSecrets(role: string, issued: IssueCredentialResponseMsg): Secret[] {
  const c = issued.credential;
  if (!c) return [];
  return [
    ...(c.token ? [{ what: `${role} token`, value: c.token }] : []),
    ...Object.entries(c.data).map(([k, v]) => ({ what: `${role} data.${k}`, value: v })),
  ];
}
