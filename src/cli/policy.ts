/**
 * `svid-broker policy validate DIR` and `svid-broker policy test DIR CASES.yaml`: the checks an
 * operator (or CI) runs on a policy set before it reaches a broker. Both decide with the same
 * modules the broker uses, so a passing case means the broker would decide the same way.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { str, type Command, type Parsed } from './command.js';
import { CHANGE_TYPES, SENSITIVITIES } from '../config/schema.js';
import type { RoleDefinition } from '../credentials/backend.js';
import { isValidSpiffeId } from '../identity/spiffe-id.js';
import { AgentCatalog } from '../policy/agent-catalog.js';
import { decideWithApprovalGate } from '../policy/approval-gate.js';
import { CedarPolicyEngine } from '../policy/cedar-engine.js';
import { readPolicyBundle } from '../policy/policy-bundle.js';
import { formatPolicyProblem, PolicyLoadError, type PolicyProblem } from '../policy/policy-load-error.js';
import {
  ADMIN_ACTIONS,
  type ContextValue,
  type GatedDecision,
  type PolicyAction,
  type PolicyRequest,
} from '../policy/types.js';

export interface PolicyCliOptions {
  /** Defaults to `<dir>/schema.cedarschema`. */
  schema?: string;
}

/** Prints every problem (file:line:col) and warning; exit 0 with a one-line summary when valid. */
export async function runPolicyValidate(dir: string, opts: PolicyCliOptions = {}): Promise<number> {
  const { bundle, problems, warnings } = readPolicyBundle(dir, opts.schema);
  for (const p of problems) console.error(formatProblem(dir, p));
  for (const w of warnings) console.error(`warning: ${formatProblem(dir, w)}`);
  if (bundle === undefined) {
    console.error(`${problems.length} problem(s): the policy set would not load`);
    return 1;
  }
  console.log(`ok: ${Object.keys(bundle.policies).length} policies, digest ${bundle.digest}`);
  return 0;
}

/** Runs every case in `casesFile` against the set in `dir`; exit 1 on any failure or an invalid file. */
export async function runPolicyTest(
  dir: string,
  casesFile: string,
  opts: PolicyCliOptions = {},
): Promise<number> {
  let file: CasesFile;
  try {
    file = readCasesFile(casesFile);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 1;
  }

  // The engine asks for the principal's groups during authorize(); each case sets them just
  // before deciding, so one engine serves cases that give the same agent different groups.
  let groupsOfCase: readonly string[] = [];
  let engine: CedarPolicyEngine;
  try {
    engine = CedarPolicyEngine.load({
      policyDir: dir,
      ...(opts.schema === undefined ? {} : { schemaPath: opts.schema }),
      agentGroups: () => groupsOfCase,
    });
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err;
    for (const p of err.problems) console.error(formatProblem(dir, p));
    console.error(`${err.problems.length} problem(s): the policy set would not load`);
    return 1;
  }

  console.log(
    `policy set ${engine.digest} (${engine.policyIds.length} policies), ${file.cases.length} cases`,
  );
  let passed = 0;
  let failed = 0;
  for (const c of file.cases) {
    groupsOfCase = c.groups ?? file.catalog.groupsOf(c.principal);
    const differences = compare(c, decide(engine, c, file.roles));
    if (differences.length === 0) {
      passed++;
      console.log(`PASS  ${c.name}`);
    } else {
      failed++;
      console.log(`FAIL  ${c.name}: ${differences.join('; ')}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

/** The requests of a cases file with the groups of each principal (to compare engines on them). */
export function readPolicyCaseRequests(
  casesFile: string,
): Array<{ name: string; request: PolicyRequest; groups: readonly string[] }> {
  const file = readCasesFile(casesFile);
  return file.cases.map((c) => ({
    name: c.name,
    request: toRequest(c, file.roles),
    groups: c.groups ?? file.catalog.groupsOf(c.principal),
  }));
}

/** Problems in policy files are relative to the directory; show paths an editor can open. */
function formatProblem(dir: string, p: PolicyProblem): string {
  const inDir = !path.isAbsolute(p.file) && p.file !== dir;
  return formatPolicyProblem(inDir ? { ...p, file: path.join(dir, p.file) } : p);
}

// ---------------------------------------------------------------------------------------------
// The cases file
// ---------------------------------------------------------------------------------------------

const ACTIONS = [
  'BeginTask',
  'IssueCredential',
  'DecideApproval',
  'BreakGlass',
  ...ADMIN_ACTIONS,
] as const satisfies readonly PolicyAction[];

const ROLE_ACTIONS: readonly PolicyAction[] = ['IssueCredential', 'DecideApproval', 'BreakGlass'];

const contextValue: z.ZodType<ContextValue> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.array(contextValue), z.record(z.string(), contextValue)]),
);

const roleFields = {
  sensitivity: z.enum(SENSITIVITIES).optional(),
  environments: z.array(z.string().min(1)).optional(),
  maxTtlSeconds: z.number().int().positive().optional(),
  description: z.string().optional(),
};

const roleName = z.string().regex(/^[^/\s]+\/[^/\s]+$/, 'role names are "<backend>/<name>"');

const resourceSchema = z.union([
  z.object({ role: roleName, ...roleFields }).strict(),
  z.object({ environment: z.string().min(1) }).strict(),
  z.object({ broker: z.literal(true) }).strict(),
]);

const caseSchema = z
  .object({
    name: z.string().min(1),
    principal: z.string().refine(isValidSpiffeId, 'must be a SPIFFE ID'),
    groups: z.array(z.string().min(1)).optional(),
    action: z.enum(ACTIONS),
    resource: resourceSchema.optional(),
    context: z.record(z.string(), contextValue).default({}),
    expect: z.enum(['allow', 'deny', 'approval']),
    approvals: z.number().int().positive().optional(),
    policies: z.array(z.string()).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const problem = (message: string, field: string): void => {
      ctx.addIssue({ code: 'custom', message, path: [field] });
    };
    const r = c.resource;
    if (ROLE_ACTIONS.includes(c.action)) {
      if (r === undefined || !('role' in r)) problem(`${c.action} needs resource: { role: ... }`, 'resource');
    } else if (c.action === 'BeginTask') {
      if (r === undefined || !('environment' in r)) {
        problem('BeginTask needs resource: { environment: ... }', 'resource');
      }
    } else if (r !== undefined && !('broker' in r)) {
      problem(`${c.action} acts on the broker: resource: { broker: true } or none`, 'resource');
    }
    if (c.expect === 'approval' && c.action !== 'IssueCredential') {
      problem('only IssueCredential can need approval', 'expect');
    }
    if (c.approvals !== undefined && c.expect !== 'approval') {
      problem('approvals is only checked with expect: approval', 'approvals');
    }
    // A misspelt value would be denied, and a case expecting deny would pass for the wrong reason.
    checkEnum(c.context, 'sensitivity', SENSITIVITIES, problem);
    checkEnum(c.context, 'changeType', CHANGE_TYPES, problem);
    checkEnum(c.context, 'authMethod', ['x509', 'jwt'], problem);
  });

type TestCase = z.infer<typeof caseSchema>;

const fileSchema = z
  .object({
    /** The agent catalog, as in the broker's configuration: principals get their groups from it. */
    agents: z.array(z.object({ pattern: z.string(), groups: z.array(z.string()) }).strict()).default([]),
    /** Role attributes by name, so cases need not repeat them; a case's resource overrides them. */
    roles: z.record(roleName, z.object(roleFields).strict()).default({}),
    cases: z.array(z.unknown()).min(1, 'a cases file needs at least one case'),
  })
  .strict();

type RoleCatalog = Readonly<Record<string, RoleFields>>;

interface CasesFile {
  catalog: AgentCatalog;
  roles: RoleCatalog;
  cases: TestCase[];
}

function checkEnum(
  context: Record<string, ContextValue>,
  key: string,
  allowed: readonly string[],
  problem: (message: string, field: string) => void,
): void {
  const value = context[key];
  if (value !== undefined && (typeof value !== 'string' || !allowed.includes(value))) {
    problem(`context.${key} must be one of ${allowed.join(' | ')}, got ${JSON.stringify(value)}`, 'context');
  }
}

/** A list of cases, or `{ agents?, roles?, cases }`. Throws one Error listing every problem. */
function readCasesFile(file: string): CasesFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Every problem in one run: the file's own keys, then each case, even when the first fail.
  const input = Array.isArray(raw) ? { cases: raw } : raw;
  const top = fileSchema.safeParse(input);
  const problems: string[] = top.success ? [] : [issuesText(file, top.error.issues, '')];

  let catalog: AgentCatalog | undefined;
  if (top.success) {
    try {
      catalog = new AgentCatalog(top.data.agents);
    } catch (err) {
      problems.push(`${file}: agents: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  const rawCases: unknown[] = isRecord(input) && Array.isArray(input['cases']) ? input['cases'] : [];
  const cases: TestCase[] = [];
  const names = new Set<string>();
  rawCases.forEach((rawCase, i) => {
    const parsed = caseSchema.safeParse(rawCase);
    const label = caseLabel(rawCase, i);
    if (!parsed.success) {
      problems.push(issuesText(file, parsed.error.issues, label));
      return;
    }
    // Names are how a failure is found again: two alike would send a reader to the wrong case.
    if (names.has(parsed.data.name)) problems.push(`${file}: ${label}: duplicate case name`);
    names.add(parsed.data.name);
    cases.push(parsed.data);
  });
  if (problems.length > 0 || !top.success || catalog === undefined) throw new Error(problems.join('\n'));
  return { catalog, roles: top.data.roles, cases };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function caseLabel(rawCase: unknown, index: number): string {
  const name =
    rawCase !== null && typeof rawCase === 'object' && 'name' in rawCase && typeof rawCase.name === 'string'
      ? ` (${JSON.stringify(rawCase.name)})`
      : '';
  return `cases[${index}]${name}`;
}

function issuesText(file: string, issues: readonly z.core.$ZodIssue[], label: string): string {
  return issues
    .map((i) => {
      const field = [label, i.path.map(String).join('.')].filter((s) => s !== '').join(': ');
      return `${file}: ${field === '' ? '(root)' : field}: ${i.message}`;
    })
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// Deciding and comparing
// ---------------------------------------------------------------------------------------------

function decide(engine: CedarPolicyEngine, c: TestCase, roles: RoleCatalog): GatedDecision {
  const request = toRequest(c, roles);
  // IssueCredential goes through the approval gate, as in the broker; other actions have none.
  if (c.action === 'IssueCredential') return decideWithApprovalGate(engine, request);
  const decision = engine.authorize(request);
  return decision.decision === 'allow' ? { outcome: 'allow', decision } : { outcome: 'deny', decision };
}

function toRequest(c: TestCase, roles: RoleCatalog): PolicyRequest {
  const r = c.resource;
  if (r !== undefined && 'role' in r) {
    const role = toRole(r, roles[r.role]);
    return {
      principal: c.principal,
      action: c.action,
      resource: { type: 'Role', role },
      context: {
        ...defaultContext(c.action, role.sensitivity),
        ...(c.action === 'IssueCredential' ? rootChain(c) : {}),
        ...c.context,
      },
    };
  }
  if (r !== undefined && 'environment' in r) {
    const context = {
      environment: r.environment,
      ttlSeconds: 900,
      intent: '',
      authMethod: 'x509',
      ...rootChain(c),
    };
    return {
      principal: c.principal,
      action: c.action,
      resource: { type: 'Environment', id: r.environment },
      context: { ...context, ...c.context },
    };
  }
  return { principal: c.principal, action: c.action, resource: { type: 'Broker' }, context: c.context };
}

type RoleFields = z.infer<z.ZodObject<typeof roleFields>>;

/** The case's fields win over the file's role catalog, which wins over the defaults. */
function toRole(r: { role: string } & RoleFields, fromCatalog: RoleFields = {}): RoleDefinition {
  return {
    name: r.role,
    backend: r.role.slice(0, r.role.indexOf('/')),
    sensitivity: r.sensitivity ?? fromCatalog.sensitivity ?? 'internal',
    environments: r.environments ?? fromCatalog.environments ?? [],
    maxTtlSeconds: r.maxTtlSeconds ?? fromCatalog.maxTtlSeconds ?? 3600,
    description: r.description ?? fromCatalog.description ?? '',
    settings: {},
  };
}

/** A case's task is one its principal began itself unless the case says otherwise. */
function rootChain(c: { principal: string }): { delegationChain: string[]; delegationDepth: number } {
  return { delegationChain: [c.principal], delegationDepth: 0 };
}

/** What the broker would fill in, for the fields a case leaves out. */
function defaultContext(action: PolicyAction, sensitivity: string): Record<string, ContextValue> {
  switch (action) {
    case 'IssueCredential':
      return {
        environment: 'dev',
        ttlSeconds: 900,
        sensitivity,
        changeType: 'read',
        tool: 'policy-test',
        justification: '',
        intent: '',
        authMethod: 'x509',
        taskAgeSeconds: 0,
        taskRoles: [],
        taskBackends: [],
        taskCredentialCount: 0,
        approved: false,
        approvalCount: 0,
        breakGlass: false,
      };
    case 'DecideApproval':
      return { environment: 'dev', requester: '', changeType: 'read', sensitivity, ttlSeconds: 900 };
    case 'BreakGlass':
      return { target: '', ttlSeconds: 900, reason: 'policy test' };
    default:
      return {};
  }
}

/** Every way the decision differs from what the case expects; empty when it passes. */
function compare(c: TestCase, got: GatedDecision): string[] {
  const differences: string[] = [];
  const expected = c.expect === 'approval' ? 'approval_required' : c.expect;
  if (got.outcome !== expected) differences.push(`expected ${c.expect}, got ${describeDecision(got)}`);
  if (
    c.approvals !== undefined &&
    got.outcome === 'approval_required' &&
    got.approvalsRequired !== c.approvals
  ) {
    differences.push(`expected ${c.approvals} approval(s), got ${got.approvalsRequired}`);
  }
  if (c.policies !== undefined && !sameSet(c.policies, got.decision.policyIds)) {
    differences.push(
      `expected policies [${c.policies.join(', ')}], got [${got.decision.policyIds.join(', ')}]`,
    );
  }
  // An invalid request is denied, and a case expecting deny must not pass on a malformed context.
  if (got.decision.errors.length > 0) differences.push(`errors: ${got.decision.errors.join(' | ')}`);
  return differences;
}

function describeDecision(got: GatedDecision): string {
  const ids = got.decision.policyIds.length > 0 ? ` [${got.decision.policyIds.join(', ')}]` : ' (no policy)';
  if (got.outcome === 'approval_required') return `approval (${got.approvalsRequired})${ids}`;
  return `${got.outcome}${ids}`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  return sa.size === new Set(b).size && b.every((x) => sa.has(x));
}

const SCHEMA_FLAG = {
  schema: { type: 'string', value: 'FILE', help: 'the Cedar schema (default DIR/schema.cedarschema)' },
} as const;

const schemaOf = (p: Parsed): PolicyCliOptions => {
  const schema = str(p, 'schema');
  return schema ? { schema } : {};
};

export const POLICY_COMMANDS: Command[] = [
  {
    path: 'policy validate',
    args: 'DIR',
    positionals: [1, 1],
    summary: 'Check a policy directory as the broker would load it: every problem with file:line:col.',
    flags: { ...SCHEMA_FLAG },
    notes: 'exit codes: 0 valid, 1 the set would not load, 2 usage',
    run: (p) => runPolicyValidate(p.positionals[0] as string, schemaOf(p)),
  },
  {
    path: 'policy test',
    args: 'DIR CASES.yaml',
    positionals: [2, 2],
    summary: 'Run a cases file against a policy directory: "N passed, M failed".',
    flags: { ...SCHEMA_FLAG },
    notes: 'exit codes: 0 every case passed, 1 a case failed or a file is invalid, 2 usage',
    run: (p) => runPolicyTest(p.positionals[0] as string, p.positionals[1] as string, schemaOf(p)),
  },
];
