/** Shared builders for the policy tests: temp policy dirs and well-formed requests. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RoleDefinition } from '../../../src/credentials/backend.js';
import type { ContextValue, PolicyRequest } from '../../../src/policy/types.js';

export const SHIPPED_POLICY_DIR = fileURLToPath(new URL('../../../policies/', import.meta.url));
export const SHIPPED_SCHEMA = path.join(SHIPPED_POLICY_DIR, 'schema.cedarschema');
export const DEMO_AGENT = 'spiffe://example.org/agents/demo';

/** Temp dirs made by `policyDir`, removed by `removePolicyDirs` (call it from `after`). */
const made: string[] = [];

/** Writes `files` into a fresh temp dir. Tests pair it with SHIPPED_SCHEMA unless they write a schema. */
export function policyDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'svid-broker-policy-'));
  made.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
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
    taskCredentialCount: 0,
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

export function beginTaskRequest(principal: string, environment: string): PolicyRequest {
  return {
    principal,
    action: 'BeginTask',
    resource: { type: 'Environment', id: environment },
    context: { environment, ttlSeconds: 1800, intent: 'unit test', authMethod: 'x509' },
  };
}
