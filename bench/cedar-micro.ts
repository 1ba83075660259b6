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
    taskCredentialCount: 0,
  },
};

// The request as Cedar sees it, built once so the raw rows measure only the wasm call.
const base = {
  principal: agentUid(agent),
  action: { type: 'Action', id: 'IssueCredential' },
  resource: roleUid(demoRole),
  context: toCedarContext(request.context),
  entities: [...agentEntities(agent, []), ...roleEntities(demoRole)],
};
const psetId = 'bench/pset';
const schemaName = 'bench/schema';
preparsePolicySet(psetId, { staticPolicies: { ...bundle.policies } });
preparseSchema(schemaName, bundle.schemaText);
const engine = CedarPolicyEngine.load({ policyDir });

const cases: Array<[string, () => AuthorizationAnswer | unknown]> = [
  [
    'statefulIsAuthorized  preparsed set + schema, validated',
    () =>
      statefulIsAuthorized({
        ...base,
        preparsedPolicySetId: psetId,
        preparsedSchemaName: schemaName,
        validateRequest: true,
      }),
  ],
  [
    'isAuthorized          policy + schema text, validated',
    () =>
      isAuthorized({
        ...base,
        policies: { staticPolicies: { ...bundle.policies } },
        schema: bundle.schemaText,
        validateRequest: true,
      }),
  ],
  [
    'statefulIsAuthorized  preparsed set, no schema',
    () => statefulIsAuthorized({ ...base, preparsedPolicySetId: psetId }),
  ],
  [
    'isAuthorized          policy text, no schema',
    () => isAuthorized({ ...base, policies: { staticPolicies: { ...bundle.policies } } }),
  ],
  ['CedarPolicyEngine.authorize (entities built per call)', () => engine.authorize(request)],
];

// Every case must decide the same way, or the comparison means nothing.
for (const [name, run] of cases) {
  const answer = run();
  const allowed =
    typeof answer === 'object' && answer !== null && 'decision' in answer
      ? answer.decision === 'allow'
      : (answer as AuthorizationAnswer).type === 'success' &&
        (answer as Extract<AuthorizationAnswer, { type: 'success' }>).response.decision === 'allow';
  if (!allowed) throw new Error(`${name.trim()}: expected allow, got ${JSON.stringify(answer)}`);
}

console.log(`cedar-wasm micro-benchmark, N=${N} per case (after ${WARMUP} warm-up calls)`);
const results: Array<[string, number]> = [];
for (const [name, run] of cases) {
  for (let i = 0; i < WARMUP; i++) run();
  const start = performance.now();
  for (let i = 0; i < N; i++) run();
  const ms = performance.now() - start;
  const opsPerSec = (N / ms) * 1000;
  results.push([name, opsPerSec]);
  console.log(
    `  ${name.padEnd(56)} ${opsPerSec.toFixed(0).padStart(8)} ops/s ${((ms * 1000) / N).toFixed(1).padStart(7)} µs/op`,
  );
}
const rate = (i: number): number => results[i]?.[1] ?? Number.NaN;
console.log(`  preparsed vs text, validated: ${(rate(0) / rate(1)).toFixed(1)}x`);
console.log(`  preparsed vs text, no schema: ${(rate(2) / rate(3)).toFixed(1)}x`);
