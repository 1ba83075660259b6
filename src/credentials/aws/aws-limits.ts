/**
 * AWS STS limits (STS API reference: AssumeRole, Tag), enforced before any call so a request AWS
 * would refuse never leaves the broker, and the names the broker derives always fit:
 * - RoleSessionName and SourceIdentity: 2-64 characters of `[\w+=,.@-]`; SourceIdentity must not
 *   start with `aws:`.
 * - DurationSeconds: 900 up to the role's MaxSessionDuration (at most 43200), and at most 3600 when
 *   the caller is itself an assumed-role session (role chaining).
 * - Session tags: at most 50; keys 1-128 and values 0-256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`;
 *   keys unique ignoring case and never starting with `aws:`.
 * - Inline session policy: at most 2048 characters of plain text.
 */
import { createHash } from 'node:crypto';

export const MIN_SESSION_SECONDS = 900;
export const MAX_SESSION_SECONDS = 43_200;
export const ROLE_CHAINING_MAX_SECONDS = 3600;
export const MAX_SESSION_TAGS = 50;
export const MAX_TAG_KEY = 128;
export const MAX_TAG_VALUE = 256;
export const MAX_POLICY_CHARS = 2048;
export const MAX_POLICY_ARNS = 10;

const NAME_CHARS = /^[\w+=,.@-]*$/;
const TAG_CHARS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
const NOT_NAME_CHAR = /[^\w+=,.@-]/g;
const NOT_TAG_CHAR = /[^\p{L}\p{Z}\p{N}_.:/=+\-@]/gu;

export function isValidSessionName(name: string): boolean {
  return name.length >= 2 && name.length <= 64 && NAME_CHARS.test(name);
}

export function isValidTagKey(key: string): boolean {
  return key.length >= 1 && key.length <= MAX_TAG_KEY && TAG_CHARS.test(key) && !/^aws:/i.test(key);
}

export function isValidTagValue(value: string): boolean {
  return value.length <= MAX_TAG_VALUE && TAG_CHARS.test(value);
}

/** Keeps a name within `max` characters; a cut name ends in a hash of the whole, so it stays unique. */
function fit(text: string, max: number): string {
  if (text.length <= max) return text;
  const digest = createHash('sha256').update(text).digest('hex').slice(0, 12);
  return `${text.slice(0, max - 13)}-${digest}`;
}

/** `spiffe://td/a/b` -> `td.a.b` in the name charset. */
function spiffeAsName(spiffeId: string): string {
  return spiffeId
    .replace(/^spiffe:\/\//, '')
    .replace(/\//g, '.')
    .replace(NOT_NAME_CHAR, '-');
}

/**
 * RoleSessionName `<agent's last path segment>@<lease id>`: CloudTrail's assumed-role ARN then names
 * the agent and the broker lease (a UUID, 36 characters, so at most 27 characters of agent name).
 */
export function sessionNameFor(agent: string, leaseId: string): string {
  const last = agent.split('/').pop() ?? '';
  const short = last.replace(NOT_NAME_CHAR, '-').slice(0, 64 - leaseId.length - 1) || 'agent';
  return fit(`${short}@${leaseId}`.replace(NOT_NAME_CHAR, '-'), 64);
}

/** SourceIdentity: the agent's SPIFFE ID in the name charset, e.g. `example.org.agents.demo`. */
export function sourceIdentityFor(agent: string): string {
  const name = fit(spiffeAsName(agent), 64);
  return name.length >= 2 ? name : `${name}--`.slice(0, 2);
}

/** A tag value in AWS's charset and length: other characters become `_`; a long value is cut with a hash. */
export function sanitizeTagValue(value: string): string {
  return fit(value.replace(NOT_TAG_CHAR, '_'), MAX_TAG_VALUE);
}
