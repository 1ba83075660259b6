/**
 * The settings of an `aws/...` role in the catalog, checked at startup (every problem listed):
 *
 * ```yaml
 * aws/deploy:
 *   maxTtlSeconds: 3600
 *   roleArn: arn:aws:iam::123456789012:role/agent-deploy
 *   externalId: svid-broker            # optional, 2-1224 characters
 *   sessionPolicy:                     # optional inline session policy, templated
 *     Version: "2012-10-17"
 *     Statement:
 *       - Effect: Allow
 *         Action: s3:PutObject
 *         Resource: arn:aws:s3:::deploy-{{environment}}/{{task_id}}/*
 *   policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]   # optional managed session policies
 *   tags: { team: platform }           # optional extra session tags, values templated
 *   outlivesTask: allow                # allow (default) | refuse
 * ```
 */
import type { SettingsRead } from '../cloud/role-settings.js';
import { jsonStrings, unknownPlaceholders } from '../cloud/template.js';
import {
  MAX_POLICY_ARNS,
  MAX_POLICY_CHARS,
  MAX_SESSION_TAGS,
  isValidTagKey,
  isValidTagValue,
} from './aws-limits.js';

/** The tags every session carries (lowercase keys; the values come from the request). */
export const BROKER_TAG_KEYS = ['spiffe-id', 'task-id', 'environment', 'lease-id'] as const;

export interface AwsRoleSettings {
  roleArn: string;
  roleName: string;
  externalId?: string;
  sessionPolicy?: unknown;
  policyArns: string[];
  tags: Record<string, string>;
  outlivesTask: 'allow' | 'refuse';
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const POLICY_ARN = /^arn:aws[a-z-]*:iam::(?:\d{12}|aws):policy\/[\w+=,.@/-]+$/;
const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;
const KNOWN = new Set(['roleArn', 'externalId', 'sessionPolicy', 'policyArns', 'tags', 'outlivesTask']);

type Read = SettingsRead<AwsRoleSettings>;

export function readAwsRoleSettings(s: Record<string, unknown>): Read {
  const problems: string[] = [];
  for (const key of Object.keys(s)) if (!KNOWN.has(key)) problems.push(`unknown setting "${key}"`);
  const roleArn = typeof s.roleArn === 'string' ? s.roleArn : '';
  const roleName = ROLE_ARN.exec(roleArn)?.[1];
  if (!roleName) problems.push('roleArn: must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)');
  if (s.externalId !== undefined && (typeof s.externalId !== 'string' || !EXTERNAL_ID.test(s.externalId))) {
    problems.push('externalId: 2-1224 characters of [\\w+=,.@:/-]');
  }
  problems.push(...policyProblems(s.sessionPolicy));
  const policyArns = stringList(s.policyArns, 'policyArns', problems);
  if (policyArns.length > MAX_POLICY_ARNS) problems.push(`policyArns: at most ${MAX_POLICY_ARNS}`);
  for (const arn of policyArns)
    if (!POLICY_ARN.test(arn)) problems.push(`policyArns: "${arn}" is not a policy ARN`);
  const tags = tagMap(s.tags, problems);
  const outlivesTask = s.outlivesTask ?? 'allow';
  if (outlivesTask !== 'allow' && outlivesTask !== 'refuse') problems.push('outlivesTask: allow or refuse');
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    settings: {
      roleArn,
      roleName: roleName as string,
      ...(typeof s.externalId === 'string' ? { externalId: s.externalId } : {}),
      ...(s.sessionPolicy !== undefined ? { sessionPolicy: s.sessionPolicy } : {}),
      policyArns,
      tags,
      outlivesTask: outlivesTask as 'allow' | 'refuse',
    },
  };
}

function policyProblems(policy: unknown): string[] {
  if (policy === undefined) return [];
  if (!policy || typeof policy !== 'object' || Array.isArray(policy)) {
    return ['sessionPolicy: must be an IAM policy document (an object with Version and Statement)'];
  }
  const problems: string[] = [];
  if (!('Statement' in policy)) problems.push('sessionPolicy: has no Statement');
  for (const text of jsonStrings(policy)) {
    for (const name of unknownPlaceholders(text))
      problems.push(`sessionPolicy: unknown placeholder {{${name}}}`);
  }
  // The rendered policy is checked again per request; a template already too long never fits.
  if (JSON.stringify(policy).length > MAX_POLICY_CHARS) {
    problems.push(`sessionPolicy: longer than AWS's ${MAX_POLICY_CHARS} characters`);
  }
  return problems;
}

function stringList(value: unknown, field: string, problems: string[]): string[] {
  if (value === undefined) return [];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  problems.push(`${field}: must be a list of strings`);
  return [];
}

function tagMap(value: unknown, problems: string[]): Record<string, string> {
  if (value === undefined) return {};
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    problems.push('tags: must be a map of tag key to value');
    return {};
  }
  const tags: Record<string, string> = {};
  const seen = new Set<string>(BROKER_TAG_KEYS);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') problems.push(`tags.${key}: must be a string`);
    else if (!isValidTagValue(v.replace(/\{\{[^}]*\}\}/g, '')))
      problems.push(`tags.${key}: value outside AWS's tag characters`);
    else
      for (const name of unknownPlaceholders(v))
        problems.push(`tags.${key}: unknown placeholder {{${name}}}`);
    if (!isValidTagKey(key))
      problems.push(`tags.${key}: not a valid AWS tag key (1-128 characters, not aws:)`);
    if (seen.has(key.toLowerCase())) problems.push(`tags.${key}: duplicates a tag key (keys ignore case)`);
    seen.add(key.toLowerCase());
    if (typeof v === 'string') tags[key] = v;
  }
  if (seen.size > MAX_SESSION_TAGS)
    problems.push(`tags: at most ${MAX_SESSION_TAGS - BROKER_TAG_KEYS.length} besides the broker's`);
  return tags;
}
