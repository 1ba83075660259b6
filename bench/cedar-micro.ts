/**
 * Cedar micro-benchmark: the same IssueCredential request decided against a preparsed policy set
 * (what CedarPolicyEngine does) and against the policy text handed over per call. Run with
 * `npx tsx bench/cedar-micro.ts [N]`; it prints ops/s side by side.
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  isAuthorized,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  type AuthorizationAnswer,
} from '@cedar-policy/cedar-wasm/nodejs';
import type { RoleDefinition } from '../src/credentials/backend.js';
import { CedarPolicyEngine } from '../src/policy/cedar-engine.js';
import { readPolicyBundle } from '../src/policy/policy-bundle.js';
import {
  agentEntities,
  agentUid,
  roleEntities,
  roleUid,
  toCedarContext,
} from '../src/policy/request-entities.js';
import type { PolicyRequest } from '../src/policy/types.js';

const N = Number(process.argv[2] ?? 5000);
const WARMUP = Math.min(500, N);
const policyDir = fileURLToPath(new URL('../policies/', import.meta.url));

const { bundle, problems } = readPolicyBundle(policyDir);
if (bundle === undefined) throw new Error(problems.map((p) => p.message).join('\n'));

const demoRole: RoleDefinition = {
  name: 'token/demo',
  backend: 'token',
  maxTtlSeconds: 3600,
  sensitivity: 'internal',
  environments: ['dev'],
  description: 'demo',
  settings: {},
};
const agent = 'spiffe://example.org/agents/demo';
// The shipped policies name AgentGroups; the dev catalog puts the demo agent in these.
const DEMO_GROUPS = ['agents', 'demo'];
const request: PolicyRequest = {
  principal: agent,
  action: 'IssueCredential',
  resource: { type: 'Role', role: demoRole },
  context: {
    environment: 'dev',
    ttlSeconds: 900,
    sensitivity: 'internal',
    changeType: 'read',
    tool: 'curl',
    justification: 'benchmark',
    authMethod: 'x509',
    taskAgeSeconds: 10,
    taskRoles: [],
    taskBackends: [],
    taskCredentialCount: 0,
    delegationChain: [],
    delegationDepth: 0,
    intent: 'bench',
    approved: false,
    approvalCount: 0,
    breakGlass: false,
  },
};

// The request as Cedar sees it, built once so the raw rows measure only the wasm call.
const base = {
  principal: agentUid(agent),
  action: { type: 'Action', id: 'IssueCredential' },
  resource: roleUid(demoRole),
  context: toCedarContext(request.context),
  entities: [...agentEntities(agent, DEMO_GROUPS), ...roleEntities(demoRole)],
};
const psetId = 'bench/pset';
const schemaName = 'bench/schema';
preparsePolicySet(psetId, { staticPolicies: { ...bundle.policies } });
preparseSchema(schemaName, bundle.schemaText);
const engine = CedarPolicyEngine.load({ policyDir, agentGroups: () => DEMO_GROUPS });

const allowed = (answer: AuthorizationAnswer): boolean =>
  answer.type === 'success' && answer.response.decision === 'allow';

// Each case returns whether it allowed (a negligible check), so all can be verified alike.
const cases: Array<[string, () => boolean]> = [
  [
    'statefulIsAuthorized  preparsed set + schema, validated',
    () =>
      allowed(
        statefulIsAuthorized({
          ...base,
          preparsedPolicySetId: psetId,
          preparsedSchemaName: schemaName,
          validateRequest: true,
        }),
      ),
  ],
  [
    'isAuthorized          policy + schema text, validated',
    () =>
      allowed(
        isAuthorized({
          ...base,
          policies: { staticPolicies: { ...bundle.policies } },
          schema: bundle.schemaText,
          validateRequest: true,
        }),
      ),
  ],
  [
    'statefulIsAuthorized  preparsed set, no schema',
    () => allowed(statefulIsAuthorized({ ...base, preparsedPolicySetId: psetId })),
  ],
  [
    'isAuthorized          policy text, no schema',
    () => allowed(isAuthorized({ ...base, policies: { staticPolicies: { ...bundle.policies } } })),
  ],
  [
    'CedarPolicyEngine.authorize (entities built per call)',
    () => engine.authorize(request).decision === 'allow',
  ],
];

// Every case must decide the same way, or the comparison means nothing.
for (const [name, run] of cases) if (!run()) throw new Error(`${name.trim()}: expected allow`);

// Rounds interleave the cases so a noisy neighbour hits them all alike; the median round counts.
const ROUNDS = 3;
console.log(`cedar-wasm micro-benchmark, N=${N} per case, median of ${ROUNDS} interleaved rounds`);
const samples = cases.map(() => [] as number[]);
for (const [, run] of cases) for (let i = 0; i < WARMUP; i++) run();
for (let round = 0; round < ROUNDS; round++) {
  cases.forEach(([, run], c) => {
    const start = performance.now();
    for (let i = 0; i < N; i++) run();
    samples[c]?.push((N / (performance.now() - start)) * 1000);
  });
}
const results = cases.map(([name], c): [string, number] => {
  const sorted = [...(samples[c] ?? [])].sort((a, b) => a - b);
  return [name, sorted[Math.floor(sorted.length / 2)] ?? Number.NaN];
});
for (const [name, opsPerSec] of results) {
  const micros = 1e6 / opsPerSec;
  console.log(
    `  ${name.padEnd(56)} ${opsPerSec.toFixed(0).padStart(8)} ops/s ${micros.toFixed(1).padStart(7)} µs/op`,
  );
}
const rate = (i: number): number => results[i]?.[1] ?? Number.NaN;
console.log(`  preparsed vs text, validated: ${(rate(0) / rate(1)).toFixed(1)}x`);
console.log(`  preparsed vs text, no schema: ${(rate(2) / rate(3)).toFixed(1)}x`);
