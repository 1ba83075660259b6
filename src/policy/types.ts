/** Policy seam. */
import type { RoleDefinition } from '../credentials/backend.js';

export type PolicyAction =
  | 'BeginTask'
  | 'IssueCredential'
  | 'DecideApproval'
  | 'BreakGlass'
  | 'ListLeases'
  | 'RevokeLeases'
  | 'Quarantine'
  | 'ReleaseQuarantine'
  | 'ListQuarantines'
  | 'WatchAudit'
  | 'EvaluateAccess'
  | 'CallTool';

/** The admin actions, whose resource is the broker itself (`Broker::"svid-broker"`) unless noted. */
export const ADMIN_ACTIONS = [
  'ListLeases',
  'RevokeLeases',
  'Quarantine',
  'ReleaseQuarantine',
  'ListQuarantines',
  'WatchAudit',
] as const;

/** A Cedar context value: what we put in requests. */
export type ContextValue = string | number | boolean | ContextValue[] | { [k: string]: ContextValue };

/** A person signed in at the console: principal Human::"<sub>", in HumanGroup::"<g>" for each group. */
export interface HumanPrincipal {
  type: 'Human';
  sub: string;
  /** "" when the IdP sent none. */
  email: string;
  groups: readonly string[];
}

export interface PolicyRequest {
  /** Caller SPIFFE ID (principal Agent::"<id>"), or a signed-in person (admin actions only). */
  principal: string | HumanPrincipal;
  action: PolicyAction;
  /**
   * IssueCredential, DecideApproval, BreakGlass: the role; BeginTask: the environment;
   * ListLeases, RevokeLeases, Quarantine, WatchAudit: the broker.
   */
  resource:
    | { type: 'Role'; role: RoleDefinition }
    | { type: 'Environment'; id: string }
    | { type: 'Broker' }
    | { type: 'Tool'; id: string };
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
  /**
   * The `@approvals("N")` annotation of a policy (validated at load: a positive integer), or 1
   * when the policy has none or is unknown.
   */
  approvalsRequired(policyId: string): number;
  /**
   * The request with its entities and context built once, to be decided with context variants
   * (the approval gate's probes). Optional: without it, callers fall back to `authorize`.
   */
  prepare?(req: PolicyRequest): PreparedPolicyRequest;
}

/** One request's principal, action and resource, decided with context variants. */
export interface PreparedPolicyRequest {
  /** The decision with `overrides` replacing keys of the request's context. */
  authorize(overrides?: Readonly<Record<string, ContextValue>>): PolicyDecision;
  /**
   * Whether one of `policyIds` (default: every policy that can apply to the request) may read
   * `context.<key>`; true when unsure.
   */
  reads(contextKey: string, policyIds?: readonly string[]): boolean;
}

/**
 * The outcome of an IssueCredential check with the approval gate: allowed as is, denied, or
 * denied now but allowed once `approvalsRequired` distinct humans approve (derived from policy:
 * the same request is evaluated again with `approved == true`).
 */
export type GatedDecision =
  | { outcome: 'allow'; decision: PolicyDecision }
  | { outcome: 'deny'; decision: PolicyDecision }
  | { outcome: 'approval_required'; decision: PolicyDecision; approvalsRequired: number };
