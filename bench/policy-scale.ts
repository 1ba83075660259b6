/**
 * Policy decision latency as the policy set grows: CedarPolicyEngine.authorize on one allowed
 * IssueCredential request at 10, 100 and 1000 policies, beside the shipped example set (plain,
 * and through the approval gate on a request that goes pending). Each set is decided twice in the
 * same rounds: over the whole set (`slicing: false`, before) and sliced (after); the gate rows
 * compare the gate through `authorize` alone (before: probe and confirm every time) with the gate
 * reading the first answer (after).
 *
 * The generated sets validate against the shipped schema and look like a real catalog: one permit
 * per agent and role, plus the shipped kinds of forbid (environments, approvals, chaining,
 * break-glass). Cedar evaluates every policy whose scope could match, so cost grows with the set.
 *
 * `npx tsx bench/policy-scale.ts`, or through `npm run bench`. Figures are printed, never asserted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { RoleDefinition } from '../src/credentials/backend.js';
import { authorizeOnly, decideWithApprovalGate } from '../src/policy/approval-gate.js';
import { devAgents } from '../src/dev/dev-stack.js';
import { AgentCatalog } from '../src/policy/agent-catalog.js';
import { CedarPolicyEngine } from '../src/policy/cedar-engine.js';
import type { ContextValue, PolicyRequest } from '../src/policy/types.js';

const SHIPPED_DIR = fileURLToPath(new URL('../policies/', import.meta.url));
const SHIPPED_SCHEMA = path.join(SHIPPED_DIR, 'schema.cedarschema');
const SIZES = [10, 100, 1000] as const;
/** Measuring time per scenario, split over interleaved rounds so a noisy neighbour hits all alike. */
const BUDGET_MS = process.env.BENCH_QUICK === '1' ? 450 : 1200;
const ROUNDS = 3;
const WARMUP_DECISIONS = 300;
/** Distinct requests cycled through, spread over the set (cache effects would otherwise flatter). */
const REQUESTS_PER_SET = 16;

interface Scenario {
  name: string;
  policies: number;
  loadMs: number;
  /** One decision; returns whether it came out as expected, so a broken set cannot look fast. */
  decide: (i: number) => boolean;
}

/**
 * The p50 of a decision over the shipped set and over 1,000 policies, whole set and sliced (µs);
 * `after` is a request decided before (its answer remembered), `afterNewTtl` one with a TTL not
 * among the last calls' (remembered by value class when its class was seen), `afterNew` one that
 * can never be remembered (a value the policies read whole, never seen).
 */
interface CedarP50 {
  before: number;
  after: number;
  afterNewTtl: number;
  afterNew: number;
}
export interface PolicyScaleFigures {
  shippedP50Us: CedarP50;
  thousandP50Us: CedarP50;
}

export async function runPolicyScaleBench(): Promise<{ lines: string[]; figures: PolicyScaleFigures }> {
  const dirs: string[] = [];
  try {
    const scenarios = allScenarios(dirs);
    warmUp(scenarios);
    const measured = measure(scenarios);
    return { lines: reportLines(measured), figures: figuresOf(measured) };
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** A scenario's decisions: each one's time (ms, sorted) and the time its rounds took. */
interface Measured {
  scenario: Scenario;
  sortedMs: number[];
  elapsedMs: number;
}

function allScenarios(dirs: string[]): Scenario[] {
  return [
    ...shippedScenarios(false),
    ...shippedScenarios(true),
    shippedNewScenario('ttl'),
    shippedNewScenario('never'),
    ...SIZES.flatMap((n) => [
      generatedScenario(n, dirs, false),
      generatedScenario(n, dirs, true),
      generatedScenario(n, dirs, true, 'ttl'),
      generatedScenario(n, dirs, true, 'never'),
    ]),
  ];
}

function warmUp(scenarios: readonly Scenario[]): void {
  for (const s of scenarios) {
    for (let i = 0; i < WARMUP_DECISIONS; i++) {
      if (!s.decide(i)) throw new Error(`policy-scale: ${s.name} decided unexpectedly`);
    }
  }
}

/** ROUNDS rounds, each scenario deciding for its share of BUDGET_MS in turn. */
function measure(scenarios: readonly Scenario[]): Measured[] {
  const measured = scenarios.map((scenario) => ({ scenario, sortedMs: [] as number[], elapsedMs: 0 }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const m of measured) {
      const roundStart = performance.now();
      const until = roundStart + BUDGET_MS / ROUNDS;
      for (let i = 0; performance.now() < until; i++) {
        const t0 = performance.now();
        m.scenario.decide(i);
        m.sortedMs.push(performance.now() - t0);
      }
      m.elapsedMs += performance.now() - roundStart;
    }
  }
  for (const m of measured) m.sortedMs.sort((x, y) => x - y);
  return measured;
}

function figuresOf(measured: readonly Measured[]): PolicyScaleFigures {
  const p50 = (name: string, policies?: number): number => {
    const m = measured.find(
      (x) => x.scenario.name === name && (policies === undefined || x.scenario.policies === policies),
    );
    return percentile(m?.sortedMs ?? [], 0.5) * 1000;
  };
  return {
    shippedP50Us: {
      before: p50('shipped, whole set'),
      after: p50('shipped, sliced'),
      afterNewTtl: p50(SHIPPED_NEW.ttl),
      afterNew: p50(SHIPPED_NEW.never),
    },
    thousandP50Us: {
      before: p50('generated, whole set', 1000),
      after: p50('generated, sliced', 1000),
      afterNewTtl: p50(GENERATED_NEW.ttl, 1000),
      afterNew: p50(GENERATED_NEW.never, 1000),
    },
  };
}

function reportLines(measured: readonly Measured[]): string[] {
  const lines = [
    'policy decision latency: CedarPolicyEngine.authorize, an allowed IssueCredential request, schema-validated',
    '  (whole set: every policy, every call checked against the schema; sliced: the policies that can apply,',
    '  projected to what they read, a repeated request answered from memory; "new TTL": a ttlSeconds not among',
    "  the last 1,024 calls', answered from memory when its value class (the side of every limit the policies",
    '  compare it with) was seen; "never remembered": a taskRoles value never seen, which the policies read',
    '  with containsAny, so every decision crosses into Cedar)',
    `  ${'set'.padEnd(34)} ${'policies'.padStart(8)} ${'load ms'.padStart(8)} ${'p50 µs'.padStart(8)} ${'p99 µs'.padStart(8)} ${'decisions/s'.padStart(12)}`,
  ];
  for (const { scenario: s, sortedMs, elapsedMs } of measured) {
    const rate = (sortedMs.length / (elapsedMs || 1)) * 1000;
    lines.push(
      `  ${s.name.padEnd(34)} ${String(s.policies).padStart(8)} ${s.loadMs.toFixed(0).padStart(8)} ` +
        `${micros(percentile(sortedMs, 0.5)).padStart(8)} ${micros(percentile(sortedMs, 0.99)).padStart(8)} ` +
        `${rate.toFixed(0).padStart(12)}`,
    );
  }
  return lines;
}

function shippedScenarios(sliced: boolean): Scenario[] {
  const t0 = performance.now();
  // The shipped policies name AgentGroups: the dev catalog puts the demo agent in `demo`.
  const catalog = new AgentCatalog(devAgents());
  const engine = CedarPolicyEngine.load({
    policyDir: SHIPPED_DIR,
    slicing: sliced,
    agentGroups: (id) => catalog.groupsOf(id),
  });
  const loadMs = performance.now() - t0;
  // Before: the gate saw the engine through authorize alone (probe and confirm every time).
  const gated = sliced ? engine : authorizeOnly(engine);
  const demo = 'spiffe://example.org/agents/demo';
  const allowed = issue(demo, role('token/demo', ['dev']), { environment: 'dev' });
  const pending = issue(demo, role('token/deploy', ['staging', 'prod']), {
    environment: 'prod',
    changeType: 'destructive',
  });
  const denied = issue(demo, role('token/deploy', ['staging', 'prod']), { environment: 'dev' });
  const how = sliced ? 'sliced' : 'whole set';
  const gate = sliced ? 'reads answer' : 'authorize only';
  return [
    {
      name: `shipped, ${how}`,
      policies: engine.policyIds.length,
      loadMs,
      decide: () => engine.authorize(allowed).decision === 'allow',
    },
    {
      name: `shipped gate (pending), ${gate}`,
      policies: engine.policyIds.length,
      loadMs,
      decide: () => decideWithApprovalGate(gated, pending).outcome === 'approval_required',
    },
    {
      name: `shipped gate (forbid), ${gate}`,
      policies: engine.policyIds.length,
      loadMs,
      decide: () => decideWithApprovalGate(gated, denied).outcome === 'deny',
    },
  ];
}

/** What changes from one call to the next: the TTL, or a value the policies read whole. */
type Fresh = 'ttl' | 'never';
const SHIPPED_NEW: Record<Fresh, string> = {
  ttl: 'shipped, sliced, new TTL',
  never: 'shipped, sliced, never remembered',
};
const GENERATED_NEW: Record<Fresh, string> = {
  ttl: 'generated, sliced, new TTL',
  never: 'generated, never remembered',
};
/** More distinct values than the engine remembers answers (MAX_ANSWERS = 1,024). */
const NEW_VALUES = 3001;

/** Call i's fresh context: a new ttlSeconds, or a taskRoles entry never seen lately. */
function freshContext(fresh: Fresh, i: number, maxTtl: number): Record<string, ContextValue> {
  return fresh === 'ttl'
    ? { ttlSeconds: 1 + (i % Math.min(NEW_VALUES, maxTtl)) }
    : { taskRoles: [`token/seen-${i % NEW_VALUES}`] };
}

/** The allowed shipped request, with a new TTL or a never-seen task role each call. */
function shippedNewScenario(fresh: Fresh): Scenario {
  const t0 = performance.now();
  const catalog = new AgentCatalog(devAgents());
  const engine = CedarPolicyEngine.load({
    policyDir: SHIPPED_DIR,
    agentGroups: (id) => catalog.groupsOf(id),
  });
  const loadMs = performance.now() - t0;
  const demo = role('token/demo', ['dev']);
  return {
    name: SHIPPED_NEW[fresh],
    policies: engine.policyIds.length,
    loadMs,
    decide: (i) =>
      engine.authorize(
        issue('spiffe://example.org/agents/demo', demo, {
          environment: 'dev',
          ...freshContext(fresh, i, 900),
        }),
      ).decision === 'allow',
  };
}

/** The shipped kinds of forbid; the rest of the set is permits, one per agent and role. */
const FORBIDS = [
  `@id("bench-forbid-environments")
forbid (principal, action == Action::"IssueCredential", resource is Role)
when { !resource.environments.isEmpty() && !resource.environments.contains(context.environment) };`,
  `@id("bench-forbid-destructive") @approvals("2")
forbid (principal, action == Action::"IssueCredential", resource is Role)
when { context.environment == "prod" && ["destructive", "admin"].contains(context.changeType) }
unless { context.approved };`,
  `@id("bench-forbid-chaining")
forbid (principal, action == Action::"IssueCredential", resource is Role)
when { context.environment == "prod" && resource in Backend::"vault" && context.taskRoles.containsAny(["token/logs-read"]) };`,
  `@id("bench-forbid-restricted-break-glass")
forbid (principal, action == Action::"IssueCredential", resource is Role)
when { context.breakGlass && resource.sensitivity == "restricted" };`,
];

function generatedScenario(size: number, dirs: string[], sliced: boolean, fresh?: Fresh): Scenario {
  const permits = size - FORBIDS.length;
  const dir = mkdtempSync(path.join(tmpdir(), 'svb-policy-scale-'));
  dirs.push(dir);
  const text = Array.from(
    { length: permits },
    (_, i) => `@id("bench-permit-${i}")
@reason("agent ${i} may use role ${i} for up to 15 minutes")
permit (
  principal == Agent::"${agentOf(i)}",
  action == Action::"IssueCredential",
  resource == Role::"token/r${i}"
)
when { context.environment == "prod" && context.ttlSeconds <= 900 && context.authMethod == "x509" };`,
  );
  writeFileSync(path.join(dir, 'permits.cedar'), `${text.join('\n\n')}\n`);
  writeFileSync(path.join(dir, 'forbids.cedar'), `${FORBIDS.join('\n\n')}\n`);

  const t0 = performance.now();
  const engine = CedarPolicyEngine.load({ policyDir: dir, schemaPath: SHIPPED_SCHEMA, slicing: sliced });
  const loadMs = performance.now() - t0;
  const subjects = Array.from({ length: REQUESTS_PER_SET }, (_, k) => {
    const i = Math.floor(((k + 0.5) * permits) / REQUESTS_PER_SET);
    return { agent: agentOf(i), role: role(`token/r${i}`, ['prod']) };
  });
  const requests = subjects.map((x) => issue(x.agent, x.role, { environment: 'prod' }));
  // A new TTL (the permits allow up to 900) or task role each call, for each of the 16 subjects.
  const freshRequest = (i: number, how: Fresh): PolicyRequest => {
    const x = subjects[i % subjects.length] as (typeof subjects)[number];
    return issue(x.agent, x.role, { environment: 'prod', ...freshContext(how, i, 900) });
  };
  return {
    name: fresh ? GENERATED_NEW[fresh] : `generated, ${sliced ? 'sliced' : 'whole set'}`,
    policies: engine.policyIds.length,
    loadMs,
    decide: (i) =>
      engine.authorize(fresh ? freshRequest(i, fresh) : (requests[i % requests.length] as PolicyRequest))
        .decision === 'allow',
  };
}

function agentOf(i: number): string {
  return `spiffe://bench.example/agents/a${i}`;
}

/** Frozen, as the config layer freezes roles, so the engine's role entity cache applies. */
function role(name: string, environments: string[]): RoleDefinition {
  Object.freeze(environments);
  return Object.freeze({
    name,
    backend: name.slice(0, name.indexOf('/')),
    maxTtlSeconds: 900,
    sensitivity: 'internal',
    environments,
    description: 'bench role',
    settings: {},
  });
}

function issue(
  principal: string,
  forRole: RoleDefinition,
  context: Record<string, ContextValue>,
): PolicyRequest {
  return {
    principal,
    action: 'IssueCredential',
    resource: { type: 'Role', role: forRole },
    context: {
      environment: 'dev',
      ttlSeconds: 900,
      sensitivity: 'internal',
      changeType: 'write',
      tool: 'bench',
      justification: 'policy-scale bench',
      intent: 'bench',
      authMethod: 'x509',
      taskAgeSeconds: 10,
      taskRoles: [],
      taskBackends: [],
      taskCredentialCount: 0,
      delegationChain: [],
      delegationDepth: 0,
      approved: false,
      approvalCount: 0,
      breakGlass: false,
      ...context,
    },
  };
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

function micros(ms: number): string {
  return (ms * 1000).toFixed(1);
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  for (const line of (await runPolicyScaleBench()).lines) console.log(line);
}
