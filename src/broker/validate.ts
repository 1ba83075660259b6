/** Request validation: every problem is INVALID_ARGUMENT naming the field. */
import { invalidArgument } from '../errors.js';
import { CHANGE_TYPES, SENSITIVITIES, type ChangeType, type Sensitivity } from '../config/schema.js';

const TASK_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ROLE = /^[a-z0-9][a-z0-9_-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_.\/-]{0,62}$/;

export const LIMITS = {
  intent: 1024,
  justification: 1024,
  tool: 128,
  reason: 512,
  labels: 32,
  labelValue: 256,
  ttlSeconds: 7 * 86_400,
} as const;

export function requireTaskId(value: string, field = 'task_id'): string {
  if (!value) throw invalidArgument(field, 'is required');
  if (!TASK_ID.test(value)) throw invalidArgument(field, 'must be a task id as returned by BeginTask');
  return value;
}

export function requireRoleName(value: string): string {
  if (!value) throw invalidArgument('role', 'is required');
  if (!ROLE.test(value)) throw invalidArgument('role', 'must be "<backend>/<name>", e.g. "token/demo"');
  return value;
}

export function optionalTtl(value: number, field = 'ttl_seconds'): number {
  if (!Number.isInteger(value) || value < 0) throw invalidArgument(field, 'must be a non-negative integer');
  if (value > LIMITS.ttlSeconds) throw invalidArgument(field, `must be at most ${LIMITS.ttlSeconds}`);
  return value;
}

/**
 * What free text may not contain: C0 controls (newline and tab included), DEL, C1 controls, the
 * line and paragraph separators, and the bidi marks, embeddings, overrides and isolates. Any of
 * them lets an agent draw something else than what it sent in an approver's terminal or a
 * human-read log: a fake table row, a reversed role name.
 */
export const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

export function boundedText(value: string, field: string, max: number): string {
  if (value.length > max) throw invalidArgument(field, `at most ${max} characters`);
  const unsafe = UNSAFE_TEXT.exec(value);
  if (unsafe) {
    const code = (unsafe[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
    throw invalidArgument(field, `must not contain control or bidi characters (found U+${code})`);
  }
  return value;
}

export function optionalSensitivity(value: string): Sensitivity | undefined {
  if (value === '') return undefined;
  if (!(SENSITIVITIES as readonly string[]).includes(value)) {
    throw invalidArgument('sensitivity', `must be one of ${SENSITIVITIES.join(', ')}`);
  }
  return value as Sensitivity;
}

export function changeTypeOrDefault(value: string): ChangeType {
  if (value === '') return 'read';
  if (!(CHANGE_TYPES as readonly string[]).includes(value)) {
    throw invalidArgument('change_type', `must be one of ${CHANGE_TYPES.join(', ')}`);
  }
  return value as ChangeType;
}

export function validLabels(labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > LIMITS.labels) throw invalidArgument('labels', `at most ${LIMITS.labels} labels`);
  for (const [k, v] of entries) {
    if (!LABEL_KEY.test(k)) throw invalidArgument(`labels.${k}`, 'keys are 1-63 of A-Z a-z 0-9 _ . / -');
    boundedText(v, `labels.${k}`, LIMITS.labelValue);
  }
  return Object.fromEntries(entries);
}

/** The higher of two sensitivities: an agent may declare more sensitive data, never less than the role's. */
export function maxSensitivity(a: Sensitivity, b: Sensitivity | undefined): Sensitivity {
  if (b === undefined) return a;
  return SENSITIVITIES.indexOf(b) > SENSITIVITIES.indexOf(a) ? b : a;
}
