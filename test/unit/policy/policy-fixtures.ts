/** Shared builders for the policy tests: temp policy dirs and well-formed requests. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RoleDefinition } from '../../../src/credentials/backend.js';
import { AgentCatalog } from '../../../src/policy/agent-catalog.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import type { ADMIN_ACTIONS, ContextValue, PolicyRequest } from '../../../src/policy/types.js';

export const SHIPPED_POLICY_DIR = fileURLToPath(new URL('../../../policies/', import.meta.url));
export const SHIPPED_SCHEMA = path.join(SHIPPED_POLICY_DIR, 'schema.cedarschema');
export const DEMO_AGENT = 'spiffe://example.org/agents/demo';
export const SECURITY_ONCALL = 'spiffe://example.org/security/oncall';
export const OTHER_AGENT = 'spiffe://example.org/agents/builder';
export const SHIPPED_CASES = path.join(SHIPPED_POLICY_DIR, 'cases.yaml');

/** Small policies for sets that differ: demo BeginTask in dev, in prod, or anything at all. */
export const ALLOW_DEV =
  '@id("dev") permit (principal, action == Action::"BeginTask", resource == Environment::"dev");\n';
export const ALLOW_PROD =
  '@id("prod") permit (principal, action == Action::"BeginTask", resource == Environment::"prod");\n';

/** The agent catalog of the dev stack. */
export const DEV_CATALOG = [
  { pattern: 'spiffe://example.org/agents/*', groups: ['agents'] },
  { pattern: 'spiffe://example.org/agents/demo', groups: ['demo'] },
  { pattern: 'spiffe://example.org/security/*', groups: ['security'] },
  { pattern: 'spiffe://example.org/gateways/*', groups: ['gateways'] },
];

/** The shipped policies as the dev stack runs them: groups from the dev catalog. */
export function loadShippedPolicies(): CedarPolicyEngine {
  const catalog = new AgentCatalog(DEV_CATALOG);
  return CedarPolicyEngine.load({ policyDir: SHIPPED_POLICY_DIR, agentGroups: (id) => catalog.groupsOf(id) });
}

/** Temp dirs made by `policyDir`, removed by `removePolicyDirs` (call it from `after`). */
const made: string[] = [];

/** Writes `files` into a fresh temp dir. Tests pair it with SHIPPED_SCHEMA unless they write a schema. */
export function policyDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'svid-broker-policy-'));
  made.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

/** The shipped schema's text, for policy dirs that carry their own copy. */
export const SHIPPED_SCHEMA_TEXT = readFileSync(SHIPPED_SCHEMA, 'utf8');

/** A policy dir with its own schema, so watching it involves nothing outside the temp dir. */
export function selfContainedPolicyDir(policies: string): string {
  return policyDir({ 'schema.cedarschema': SHIPPED_SCHEMA_TEXT, 'main.cedar': policies });
}

export function removePolicyDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function role(name: string, overrides: Partial<RoleDefinition> = {}): RoleDefinition {
  return {
    name,
    backend: name.split('/')[0] ?? name,
    maxTtlSeconds: 3600,
    sensitivity: 'internal',
    environments: [],
    description: 'test role',
    settings: {},
    ...overrides,
  };
}

export function issueContext(overrides: Record<string, ContextValue> = {}): Record<string, ContextValue> {
  return {
    environment: 'dev',
    ttlSeconds: 900,
    sensitivity: 'internal',
    changeType: 'read',
    tool: 'curl',
    justification: 'unit test',
    authMethod: 'x509',
    taskAgeSeconds: 10,
    taskRoles: [],
    taskBackends: [],
    taskCredentialCount: 0,
    delegationChain: [],
    delegationDepth: 0,
    intent: 'unit test',
    approved: false,
    approvalCount: 0,
    breakGlass: false,
    ...overrides,
  };
}

export function issueRequest(
  principal: string,
  forRole: RoleDefinition,
  context: Record<string, ContextValue> = {},
): PolicyRequest {
  return {
    principal,
    action: 'IssueCredential',
    resource: { type: 'Role', role: forRole },
    context: issueContext(context),
  };
}

export function decideApprovalRequest(
  principal: PolicyRequest['principal'],
  forRole: RoleDefinition,
  context: Record<string, ContextValue> = {},
): PolicyRequest {
  return {
    principal,
    action: 'DecideApproval',
    resource: { type: 'Role', role: forRole },
    context: {
      environment: 'prod',
      requester: DEMO_AGENT,
      changeType: 'destructive',
      sensitivity: forRole.sensitivity,
      ttlSeconds: 900,
      ...context,
    },
  };
}

export function breakGlassRequest(
  principal: PolicyRequest['principal'],
  forRole: RoleDefinition,
  context: Record<string, ContextValue> = {},
): PolicyRequest {
  return {
    principal,
    action: 'BreakGlass',
    resource: { type: 'Role', role: forRole },
    context: { target: DEMO_AGENT, ttlSeconds: 3600, reason: 'INC-1: prod is down', ...context },
  };
}

export function adminRequest(
  principal: PolicyRequest['principal'],
  action: (typeof ADMIN_ACTIONS)[number],
): PolicyRequest {
  return { principal, action, resource: { type: 'Broker' }, context: {} };
}

export function beginTaskRequest(principal: string, environment: string): PolicyRequest {
  return {
    principal,
    action: 'BeginTask',
    resource: { type: 'Environment', id: environment },
    context: {
      environment,
      ttlSeconds: 1800,
      intent: 'unit test',
      authMethod: 'x509',
      delegationChain: [principal],
      delegationDepth: 0,
    },
  };
}
