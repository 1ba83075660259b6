/**
 * Reads a policy directory into a validated bundle: every `*.cedar` file (sorted by name), each
 * policy under a stable id, checked against the schema in strict mode. Every problem is listed
 * with its file and line, so one run shows everything an operator has to fix.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  checkParseSchema,
  policySetTextToParts,
  policyToJson,
  validate,
  type DetailedError,
} from '@cedar-policy/cedar-wasm/nodejs';
import type { PolicyProblem } from './policy-load-error.js';

export const DEFAULT_SCHEMA_FILE = 'schema.cedarschema';

export interface PolicyBundle {
  /** sha256 hex over the schema and every policy file, names and contents. */
  readonly digest: string;
  readonly schemaText: string;
  /** Policy id -> policy text (annotations included), in file order. */
  readonly policies: Readonly<Record<string, string>>;
  /** Policy id -> its `@reason("...")` text, for the policies that have one. */
  readonly reasons: ReadonlyMap<string, string>;
  /** Policy id -> its `@approvals("N")` count (a positive integer), for the policies that have one. */
  readonly approvals: ReadonlyMap<string, number>;
  /** The policy files read, in the order they were read (relative names). */
  readonly files: readonly string[];
  /** The texts it was built from: enough to build the same bundle elsewhere (policySync). */
  readonly sources: PolicySources;
}

/** A policy set as text: the schema and every policy file, as read from a directory. */
export interface PolicySources {
  readonly schema: SourceFile;
  readonly files: readonly SourceFile[];
}

export interface PolicyBundleResult {
  /** Present only when `problems` is empty: an invalid set never takes effect. */
  bundle: PolicyBundle | undefined;
  problems: PolicyProblem[];
  /** Validator warnings (e.g. confusable identifiers); they do not block loading. */
  warnings: PolicyProblem[];
}

export interface SourceFile {
  name: string;
  text: string;
}

interface ParsedPolicy {
  id: string;
  file: SourceFile;
  text: string;
  /** Byte offset of the policy in its file (Cedar's source locations are byte offsets). */
  byteOffset: number | undefined;
  reason: string | undefined;
  approvals: number | undefined;
}

/** Reads and validates `policyDir`; never throws for problems in the files themselves. */
export function readPolicyBundle(
  policyDir: string,
  schemaPath = path.join(policyDir, DEFAULT_SCHEMA_FILE),
): PolicyBundleResult {
  const problems: PolicyProblem[] = [];
  const schemaFile = readSchemaFile(schemaPath, problems);
  const files = readPolicyFiles(policyDir, problems);
  return buildBundle(policyDir, schemaFile, files, problems);
}

/**
 * The same validation as readPolicyBundle over texts already read (a set another replica loaded);
 * the digest comes out the same for the same texts.
 */
export function policyBundleFromSources(label: string, sources: PolicySources): PolicyBundleResult {
  const problems: PolicyProblem[] = [];
  const parsed = checkParseSchema(sources.schema.text);
  if (parsed.type === 'failure') {
    for (const e of parsed.errors) problems.push(problemFrom(sources.schema, 0, e));
  }
  const schema = parsed.type === 'failure' ? undefined : { ...sources.schema };
  return buildBundle(
    label,
    schema,
    sources.files.map((f) => ({ ...f })),
    problems,
  );
}

function buildBundle(
  policyDir: string,
  schemaFile: SourceFile | undefined,
  files: SourceFile[],
  problems: PolicyProblem[],
): PolicyBundleResult {
  const warnings: PolicyProblem[] = [];
  const byId = new Map<string, ParsedPolicy>();
  for (const file of files) {
    for (const policy of parsePolicyFile(file, problems)) {
      const first = byId.get(policy.id);
      if (first === undefined) {
        byId.set(policy.id, policy);
        continue;
      }
      problems.push({
        ...locate(policy.file, policy.byteOffset),
        policyId: policy.id,
        message: `duplicate policy id "${policy.id}" (first used in ${describe(first)})`,
      });
    }
  }

  // Null prototype: an `@id("__proto__")` must be a key like any other.
  const policies: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [id, policy] of byId) policies[id] = policy.text;

  if (schemaFile !== undefined && byId.size > 0) {
    validatePolicies(schemaFile, policies, byId, problems, warnings);
  }
  if (byId.size === 0 && problems.length === 0) {
    problems.push({ file: policyDir, message: 'no policies: an empty policy set would deny every request' });
  }
  if (problems.length > 0 || schemaFile === undefined) {
    return { bundle: undefined, problems: inReadingOrder(problems), warnings: inReadingOrder(warnings) };
  }

  const reasons = new Map<string, string>();
  const approvals = new Map<string, number>();
  for (const [id, policy] of byId) {
    if (policy.reason !== undefined) reasons.set(id, policy.reason);
    if (policy.approvals !== undefined) approvals.set(id, policy.approvals);
  }
  return {
    bundle: {
      digest: digestOf(schemaFile, files),
      schemaText: schemaFile.text,
      policies,
      reasons,
      approvals,
      files: files.map((f) => f.name),
      sources: { schema: schemaFile, files },
    },
    problems,
    warnings: inReadingOrder(warnings),
  };
}

/** Cedar reports validation errors in no promised order; sort them as a reader would. */
function inReadingOrder(problems: PolicyProblem[]): PolicyProblem[] {
  return [...problems].sort(
    (a, b) =>
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) ||
      (a.line ?? 0) - (b.line ?? 0) ||
      (a.column ?? 0) - (b.column ?? 0),
  );
}

function readSchemaFile(schemaPath: string, problems: PolicyProblem[]): SourceFile | undefined {
  let file: SourceFile;
  try {
    file = { name: schemaPath, text: readFileSync(schemaPath, 'utf8') };
  } catch (err) {
    problems.push({ file: schemaPath, message: `cannot read schema: ${errorMessage(err)}` });
    return undefined;
  }
  const parsed = checkParseSchema(file.text);
  if (parsed.type === 'failure') {
    for (const e of parsed.errors) problems.push(problemFrom(file, 0, e));
    return undefined;
  }
  return file;
}

function readPolicyFiles(dir: string, problems: PolicyProblem[]): SourceFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    problems.push({ file: dir, message: `cannot read policy directory: ${errorMessage(err)}` });
    return [];
  }
  const files: SourceFile[] = [];
  // Dotfiles are skipped: editor lock files (`.#x.cedar`) and Kubernetes ConfigMap internals
  // (`..data`) live there. Sorting fixes the order, so the digest and the `<file>:<index>` ids
  // do not depend on the file system.
  for (const name of names.filter((n) => n.endsWith('.cedar') && !n.startsWith('.')).sort()) {
    const full = path.join(dir, name);
    try {
      // statSync follows symlinks: a ConfigMap volume presents every file as one.
      if (!statSync(full).isFile()) continue;
      files.push({ name, text: readFileSync(full, 'utf8') });
    } catch (err) {
      problems.push({ file: name, message: `cannot read: ${errorMessage(err)}` });
    }
  }
  if (files.length === 0 && problems.length === 0) {
    problems.push({ file: dir, message: 'no *.cedar files: an empty policy set would deny every request' });
  }
  return files;
}

function parsePolicyFile(file: SourceFile, problems: PolicyProblem[]): ParsedPolicy[] {
  const parts = policySetTextToParts(file.text);
  if (parts.type === 'failure') {
    for (const e of parts.errors) problems.push(problemFrom(file, 0, e));
    return [];
  }
  if (parts.policy_templates.length > 0) {
    problems.push({ file: file.name, message: 'policy templates are not supported; write static policies' });
  }

  const parsed: ParsedPolicy[] = [];
  let searchFrom = 0;
  inFileOrder(parts.policies).forEach((text, index) => {
    // The parts are verbatim slices of the file, so finding them gives line numbers for
    // validation errors. A miss (never seen) only costs the line number.
    const at = file.text.indexOf(text, searchFrom);
    if (at >= 0) searchFrom = at + text.length;
    const byteOffset = at >= 0 ? Buffer.byteLength(file.text.slice(0, at)) : undefined;
    const where = locate(file, byteOffset);

    const json = policyToJson(text);
    if (json.type === 'failure') {
      for (const e of json.errors) problems.push(problemFrom(file, byteOffset ?? 0, e));
      return;
    }
    // The d.ts says string, but a bare `@id` arrives as null.
    const annotations: Record<string, string | null> = json.json.annotations ?? {};
    const id = annotations['id'];
    const reason = annotations['reason'];
    if (id === null || id === '' || (reason !== undefined && (reason === null || reason === ''))) {
      const name = id === null || id === '' ? '@id' : '@reason';
      problems.push({ ...where, message: `${name} needs a non-empty value, e.g. ${name}("...")` });
      return;
    }
    const policyId = id ?? `${file.name}:${index}`;
    const approvals = parseApprovals(annotations['approvals']);
    if (typeof approvals === 'string') {
      problems.push({ ...where, policyId, message: approvals });
      return;
    }
    parsed.push({ id: policyId, file, text, byteOffset, reason: reason ?? undefined, approvals });
  });
  return parsed;
}

/** The largest `@approvals` count accepted: more approvers than any team has is a typo. */
export const MAX_APPROVALS = 100;

/**
 * `@approvals("N")`: the count of distinct approvers the policy needs, or a problem. Only a
 * plain positive integer is accepted: a gate configured with zero approvers must not become a
 * free pass, and "1.5", "-1", "0x2" or "two" are mistakes to report, not values to round.
 */
function parseApprovals(value: string | null | undefined): number | undefined | string {
  if (value === undefined) return undefined;
  const shown = value === null ? 'no value' : JSON.stringify(value);
  if (value === null || !/^[1-9][0-9]*$/.test(value)) {
    return `@approvals needs a positive integer, e.g. @approvals("2"), got ${shown}: zero or a non-number would make the approval meaningless`;
  }
  const n = Number(value);
  if (n > MAX_APPROVALS) return `@approvals(${shown}) is more than ${MAX_APPROVALS} approvers`;
  return n;
}

/**
 * policySetTextToParts returns the policies sorted by the ids the parser gave them (`policy0`,
 * `policy1`, ... compared as strings, so `policy10` sorts before `policy2`). Undoing that sort
 * recovers file order, which the `<file>:<index>` ids must follow to be stable.
 */
function inFileOrder(sortedById: string[]): string[] {
  const ids = sortedById.map((_, i) => `policy${i}`).sort();
  const ordered = new Array<string>(sortedById.length);
  ids.forEach((id, k) => {
    ordered[Number(id.slice('policy'.length))] = sortedById[k] ?? '';
  });
  return ordered;
}

function validatePolicies(
  schema: SourceFile,
  policies: Record<string, string>,
  byId: ReadonlyMap<string, ParsedPolicy>,
  problems: PolicyProblem[],
  warnings: PolicyProblem[],
): void {
  const answer = validate({
    schema: schema.text,
    policies: { staticPolicies: policies },
    validationSettings: { mode: 'strict' },
  });
  if (answer.type === 'failure') {
    for (const e of answer.errors) problems.push({ file: schema.name, message: detailOf(e) });
    return;
  }
  const toProblem = (policyId: string, error: DetailedError): PolicyProblem => {
    const policy = byId.get(policyId);
    if (policy === undefined) return { file: schema.name, policyId, message: detailOf(error) };
    const problem = problemFrom(policy.file, policy.byteOffset ?? 0, error);
    // The problem names the policy already; Cedar's prefix would say it twice.
    return { ...problem, policyId, message: problem.message.replace(`for policy \`${policyId}\`, `, '') };
  };
  for (const v of answer.validationErrors) problems.push(toProblem(v.policyId, v.error));
  for (const v of answer.validationWarnings) warnings.push(toProblem(v.policyId, v.error));
  for (const e of answer.otherWarnings) warnings.push({ file: schema.name, message: detailOf(e) });
}

/**
 * Length-prefixed so that moving text between files or renaming a file changes the digest. The
 * schema is included: it decides which requests are well-formed, so it is part of what decided.
 */
function digestOf(schema: SourceFile, files: readonly SourceFile[]): string {
  const hash = createHash('sha256').update('svid-broker/policy-bundle/v1\n');
  const add = (kind: string, name: string, text: string): void => {
    hash.update(`${kind} ${path.basename(name)} ${Buffer.byteLength(text)}\n`).update(text);
  };
  add('schema', schema.name, schema.text);
  for (const f of files) add('policy', f.name, f.text);
  return hash.digest('hex');
}

function problemFrom(file: SourceFile, baseByteOffset: number, error: DetailedError): PolicyProblem {
  const start = error.sourceLocations?.[0]?.start;
  const where = start === undefined ? { file: file.name } : locate(file, baseByteOffset + start);
  return { ...where, message: detailOf(error) };
}

/** Cedar's message, its source label, help and related errors, on one line. */
function detailOf(error: DetailedError): string {
  let text = error.message;
  const label = error.sourceLocations?.find((l) => l.label !== null)?.label;
  if (label !== undefined && label !== null) text += ` (${label})`;
  if (error.help !== null) text += `; help: ${error.help}`;
  for (const r of error.related ?? []) text += `; ${detailOf(r)}`;
  return text;
}

function locate(
  file: SourceFile,
  byteOffset: number | undefined,
): Pick<PolicyProblem, 'file' | 'line' | 'column'> {
  if (byteOffset === undefined) return { file: file.name };
  const before = Buffer.from(file.text).subarray(0, byteOffset).toString('utf8');
  const lines = before.split('\n');
  return { file: file.name, line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
}

function describe(policy: ParsedPolicy): string {
  const where = locate(policy.file, policy.byteOffset);
  return where.line === undefined ? where.file : `${where.file}:${where.line}`;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
