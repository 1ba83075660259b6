/** Policy seam. */
import type { RoleDefinition } from '../credentials/backend.js';

export type PolicyAction = 'BeginTask' | 'IssueCredential';

/** A Cedar context value: what we put in requests. */
export type ContextValue = string | number | boolean | ContextValue[] | { [k: string]: ContextValue };

export interface PolicyRequest {
  /** Caller SPIFFE ID; principal is Agent::"<id>". */
  principal: string;
  action: PolicyAction;
  /** For IssueCredential: the role; for BeginTask: the environment name. */
  resource: { type: 'Role'; role: RoleDefinition } | { type: 'Environment'; id: string };
  context: Record<string, ContextValue>;
}

export interface PolicyDecision {
  decision: 'allow' | 'deny';
  /** Ids of the policies that decided (permits for allow, forbids for deny; empty for default deny). */
  policyIds: string[];
  /** `@reason("...")` texts of the deciding policies, when present. */
  reasons: string[];
  /** Evaluation errors (a policy that errored is skipped by Cedar; we surface it). */
  errors: string[];
  /** Digest (sha256 hex) of the policy set that made the decision. */
  policyDigest: string;
}

/** Contract: pure and synchronous over a preparsed policy set; default deny. */
export interface PolicyEngine {
  readonly digest: string;
  authorize(req: PolicyRequest): PolicyDecision;
}
