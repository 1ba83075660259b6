/**
 * One example record of every audit record type, with the fields the code that writes it puts
 * there (the README's audit section is generated from these and event-types.ts; a test drives the
 * broker through each path and checks every record it writes against its example:
 * test/integration/audit-events.test.ts). `also` names the fields some records of the type carry
 * that the example does not show (another variant, or a field present only sometimes).
 */
import type { AuditEventType } from './event-types.js';

export interface AuditEventExample {
  /** The record's own fields (the envelope, ENVELOPE_FIELDS, is added when shown). */
  example: { agent: string } & Record<string, unknown>;
  also?: readonly string[];
}

/** Every record has these (the chain's and the CloudEvent envelope's). */
export const ENVELOPE_FIELDS: readonly string[] = [
  'id',
  'time',
  'type',
  'source',
  'seq',
  'prev_hash',
  'hash',
];

/** Any record of a call may carry these: the caller's traceparent, the agent's context (README). */
export const CALL_FIELDS: readonly string[] = ['traceparent', 'context'];

const DEMO = 'spiffe://example.org/agents/demo';
const OTHER = 'spiffe://example.org/agents/other';
const SECURITY = 'spiffe://example.org/security/oncall';
const SECURITY_2 = 'spiffe://example.org/security/second';
const GATEWAY = 'spiffe://example.org/gateways/mcp';
const TASK = '0193a5b2-7c41-7d3e-9f10-4b2c8e6a1d01';
const LEASE = '0193a5b2-7c9a-7f20-8a31-5c6d7e8f9a02';
const APPROVAL = '0193a5b2-7d10-7a44-b2c3-6d7e8f9a0b03';
const GRANT = '0193a5b2-7e55-7b66-83d4-7e8f9a0b1c04';
const DIGEST = '10a5e4797d7e8451a30c1a40a3dfe3af63aa2ee709fde99472beb31a20ba91d9';
const NEW_DIGEST = '687606c273fdfc979e4e07f5be2f27b2d0cb3c404a3f094fd2a6c060f5423cb3';
const ACCESSOR_HMAC = 'hmac-sha256:6b59cdceddca8266470f69a4e4bbcf6703b20957ce0145bba83817342b6a5269';

/** The fields every record of one IssueCredential request carries. */
const ISSUE_REQUEST = {
  agent: DEMO,
  task: TASK,
  role: 'vault/ci-token',
  environment: 'dev',
  ttl_seconds: 600,
  sensitivity: 'confidential',
  change_type: 'read',
  tool: 'gh',
  justification: 'read the CI secrets for the release job',
  auth_method: 'x509',
};
const ISSUE_ALSO = ['break_glass', 'severity', 'context'];
const ALLOWED = {
  decision: 'allow',
  policy_ids: ['test-demo-vault-dev'],
  policy_digest: DIGEST,
  policy_reasons: ['the demo agent may use vault roles in dev'],
};
const DECISION_ALSO = ['policy_reasons', 'policy_errors'];
const REFUSAL_ALSO = ['field', 'context'];
const LEASE_FIELDS = {
  agent: DEMO,
  lease: LEASE,
  task: TASK,
  role: 'vault/ci-token',
  backend: 'vault',
  environment: 'dev',
};
const APPROVAL_BASE = {
  agent: SECURITY,
  approval: APPROVAL,
  requester: DEMO,
  task: TASK,
  role: 'token/deploy',
  environment: 'prod',
};

/** The decision that let the approver decide. */
const MAY_DECIDE = {
  decision: 'allow',
  policy_ids: ['security-may-decide-approvals'],
  policy_digest: DIGEST,
  policy_reasons: ['the security group decides approvals'],
};
/** A bulk revocation's summary, by selector (the dry run's counts what it would have revoked). */
const REVOKE_SUMMARY = { agent: SECURITY, selector: { agent: DEMO }, reason: 'INC-42', matched: 1 };

export const AUDIT_EVENT_EXAMPLES: { readonly [T in AuditEventType]: AuditEventExample } = {
  'auth.denied': {
    example: {
      agent: '',
      method: 'BeginTask',
      peer: '203.0.113.7:43678',
      reason: 'malformed_jwt',
      message: 'token is not a compact JWS (header.payload.signature)',
    },
    also: ['aggregate', 'count', 'methods', 'window_start', 'window_end'],
  },
  'task.begun': {
    example: {
      agent: DEMO,
      task: TASK,
      environment: 'dev',
      intent: 'release v2.3',
      labels: { ticket: 'REL-42' },
      ttl_seconds: 900,
      expires_at: '2026-12-04T10:15:00.000Z',
      auth_method: 'x509',
      context: {
        tool_name: 'github.create_release',
        session_id: 'conv-7f3a',
        plan: 'tag v2.3, read CI secrets, publish',
        asserted_by: 'agent',
      },
      decision: 'allow',
      policy_ids: ['begin-task-known-envs'],
      policy_digest: DIGEST,
      policy_reasons: ['agents of the catalog may work in dev and staging'],
    },
    also: DECISION_ALSO,
  },
  'task.denied': {
    example: {
      agent: DEMO,
      environment: 'qa',
      code: 'INVALID_ARGUMENT',
      reason: 'invalid_argument',
      field: 'environment',
    },
    also: [
      ...REFUSAL_ALSO,
      'intent',
      'ttl_seconds',
      'decision',
      'policy_ids',
      'policy_digest',
      ...DECISION_ALSO,
    ],
  },
  'task.failed': {
    example: { agent: DEMO, environment: 'dev', code: 'UNAVAILABLE', reason: 'lease_store_unavailable' },
    also: REFUSAL_ALSO,
  },
  'task.roles_listed': {
    example: {
      agent: DEMO,
      task: TASK,
      environment: 'dev',
      allowed: ['token/demo', 'token/logs-read', 'vault/ci-token'],
    },
  },
  'task.ended': {
    example: { agent: DEMO, task: TASK, environment: 'dev', reason: 'done', revoked_leases: [LEASE] },
  },
  'task.delegated': {
    example: {
      agent: DEMO,
      task: '0193a5b2-7c55-7e01-8a2b-3c4d5e6f7a80',
      parent_task: TASK,
      delegate: OTHER,
      environment: 'staging',
      roles: ['token/logs-read'],
      sensitivity_ceiling: 'internal',
      change_type_ceiling: 'read',
      remaining_depth: 2,
      delegation_chain: [DEMO, OTHER],
      delegation_depth: 1,
      intent: 'ship feature',
      expires_at: '2026-12-04T10:15:00.000Z',
      decision: 'allow',
      policy_ids: ['begin-task-known-envs'],
      policy_digest: DIGEST,
      policy_reasons: ['agents of the catalog may work in dev and staging'],
    },
    also: DECISION_ALSO,
  },
  'task.delegation_denied': {
    example: {
      agent: DEMO,
      parent_task: TASK,
      delegate: OTHER,
      code: 'PERMISSION_DENIED',
      reason: 'roles_exceed_parent',
      field: 'roles',
    },
    also: [
      'task',
      'environment',
      'roles',
      'sensitivity_ceiling',
      'change_type_ceiling',
      'remaining_depth',
      'delegation_chain',
      'delegation_depth',
      'decision',
      'policy_ids',
      'policy_digest',
      ...DECISION_ALSO,
    ],
  },
  'task.delegation_failed': {
    example: {
      agent: DEMO,
      parent_task: TASK,
      delegate: OTHER,
      code: 'UNAVAILABLE',
      reason: 'lease_store_unavailable',
    },
  },
  'credential.issued': {
    example: {
      ...ISSUE_REQUEST,
      context: { tool_name: 'gh', tool_call_id: 'toolu_01ABC', asserted_by: 'agent' },
      lease: LEASE,
      backend: 'vault',
      backend_ids: { accessor: ACCESSOR_HMAC },
      expires_at: '2026-12-04T10:10:00.000Z',
      ...ALLOWED,
    },
    also: [
      ...ISSUE_ALSO,
      ...DECISION_ALSO,
      'approval',
      'approvers',
      'outlives_task',
      'credential_expires_at',
    ],
  },
  'credential.denied': {
    example: {
      agent: DEMO,
      task: TASK,
      role: 'token/nope',
      code: 'INVALID_ARGUMENT',
      reason: 'invalid_argument',
      field: 'role',
    },
    also: [
      ...REFUSAL_ALSO,
      ...Object.keys(ISSUE_REQUEST),
      ...ISSUE_ALSO,
      'decision',
      'policy_ids',
      'policy_digest',
      ...DECISION_ALSO,
      'lease',
      'stage',
    ],
  },
  'credential.failed': {
    example: { ...ISSUE_REQUEST, lease: LEASE, stage: 'backend', error: 'vault_unavailable' },
    also: [...ISSUE_ALSO, ...REFUSAL_ALSO, 'code', 'reason'],
  },
  'lease.revoked': { example: { ...LEASE_FIELDS, reason: 'task_ended' }, also: ['error'] },
  'lease.expired': {
    example: {
      agent: DEMO,
      lease: LEASE,
      task: TASK,
      role: 'vault/ci-token',
      environment: 'dev',
      reason: 'expired',
    },
    also: ['backend'],
  },
  'lease.revoke_queued': {
    example: { ...LEASE_FIELDS, reason: 'task_ended', error: 'vault_unavailable' },
  },
  'lease.revoke_failed': {
    example: { ...LEASE_FIELDS, reason: 'task_ended', attempts: 8, error: 'vault_unavailable' },
  },
  'lease.not_revocable': {
    example: {
      ...LEASE_FIELDS,
      role: 'aws/deploy',
      backend: 'aws',
      valid_until: '2026-12-04T10:15:00.000Z',
      reason: 'admin: leaked deploy session',
    },
    also: ['error'],
  },
  'lease.orphaned': {
    example: {
      ...LEASE_FIELDS,
      reason: 'orphaned',
      outcome: 'revoked',
      written_at: '2026-12-04T10:00:00.000Z',
    },
    also: ['valid_until', 'error'],
  },
  'approval.requested': {
    example: {
      ...ISSUE_REQUEST,
      role: 'token/deploy',
      environment: 'prod',
      change_type: 'destructive',
      approval: APPROVAL,
      approvals_required: 1,
      approval_expires_at: '2026-12-04T10:15:00.000Z',
      decision: 'deny',
      policy_ids: ['prod-destructive-needs-approval'],
      policy_digest: DIGEST,
      policy_reasons: ['destructive and admin changes in prod need an approval'],
    },
    also: [...ISSUE_ALSO, ...DECISION_ALSO, 'supersedes'],
  },
  'approval.approved': {
    example: {
      ...APPROVAL_BASE,
      approve: true,
      reason: 'release window, checked the diff',
      outcome: 'approved',
      approvals_received: 1,
      approvals_required: 1,
      ...MAY_DECIDE,
    },
    also: DECISION_ALSO,
  },
  'approval.denied': {
    example: {
      ...APPROVAL_BASE,
      approve: false,
      reason: 'not during the freeze',
      outcome: 'denied',
      approvals_received: 0,
      approvals_required: 1,
      ...MAY_DECIDE,
    },
    also: DECISION_ALSO,
  },
  'approval.reminder': {
    example: {
      agent: DEMO,
      approval: APPROVAL,
      task: TASK,
      role: 'token/deploy',
      environment: 'prod',
      change_type: 'destructive',
      approvals_required: 1,
      approvals_received: 0,
      expires_at: '2026-12-04T10:15:00.000Z',
    },
  },
  'approval.expired': {
    example: {
      agent: DEMO,
      approval: APPROVAL,
      task: TASK,
      role: 'token/deploy',
      environment: 'prod',
      change_type: 'destructive',
      approvals_required: 1,
      approvals_received: 0,
      expired_at: '2026-12-04T10:15:00.000Z',
    },
  },
  'approval.decision_refused': {
    example: { ...APPROVAL_BASE, agent: DEMO, approve: true, reason: 'looks fine', refusal: 'self_approval' },
    also: ['decision', 'policy_ids', 'policy_digest', ...DECISION_ALSO, 'state'],
  },
  'human.signed_in': {
    example: {
      agent: 'human:00u1a2b3c4d5e6f7',
      actor: { type: 'human', sub: '00u1a2b3c4d5e6f7', email: 'ana@example.org' },
      groups: ['security'],
      auth_time: 1796380000,
      step_up: false,
    },
  },
  'human.signed_out': {
    example: {
      agent: 'human:00u1a2b3c4d5e6f7',
      actor: { type: 'human', sub: '00u1a2b3c4d5e6f7', email: 'ana@example.org' },
    },
  },
  'human.sign_in_failed': {
    example: { agent: '', reason: 'unknown_state' },
  },
  'breakglass.granted': {
    example: {
      agent: SECURITY,
      target: OTHER,
      roles: ['token/logs-read'],
      reason: 'INC-42: logs needed now',
      ttl_seconds: 600,
      severity: 'critical',
      grant: GRANT,
      expires_at: '2026-12-04T10:10:00.000Z',
    },
    also: ['task', 'decision', 'policy_ids', 'policy_digest', ...DECISION_ALSO],
  },
  'breakglass.denied': {
    example: {
      agent: SECURITY,
      target: OTHER,
      roles: ['token/customer-data'],
      reason: 'customer escalation',
      ttl_seconds: 600,
      severity: 'critical',
      role: 'token/customer-data',
      decision: 'deny',
      policy_ids: [],
      policy_digest: DIGEST,
      policy_reasons: ['no policy permits this request'],
    },
    also: ['task', ...DECISION_ALSO],
  },
  'breakglass.reviewed': {
    example: {
      agent: SECURITY_2,
      grant: GRANT,
      target: OTHER,
      uses: 1,
      note: 'INC-42 closed; one logs token used',
    },
  },
  'access.evaluated': {
    example: {
      agent: DEMO,
      gateway: GATEWAY,
      tool: 'github.merge_pull_request',
      task: TASK,
      change_type: 'write',
      sensitivity: 'internal',
      decision: false,
      reason: 'approval_required',
      approval_required: 1,
      policy_ids: ['tool-writes-need-approval'],
      reasons: ["a tool call that changes something needs a human's approval"],
    },
  },
  'budget.exceeded': {
    example: {
      ...ISSUE_REQUEST,
      budget_scope: `agent:${DEMO}`,
      budget_limit: 'credentialsPerMinute',
      budget_current: 30,
      budget_max: 30,
    },
    also: [...ISSUE_ALSO, 'expires_at', 'approval'],
  },
  'admin.revoke': {
    example: {
      ...REVOKE_SUMMARY,
      revoked: 1,
      pending_retry: 0,
      not_revocable: 0,
      by_backend: { vault: { revoked: 1, pendingRetry: 0, notRevocable: 0 } },
      duration_ms: 25,
      leases: [LEASE],
    },
    also: ['leases_truncated'],
  },
  'admin.revoke_dry_run': {
    example: {
      ...REVOKE_SUMMARY,
      revoked: 0,
      pending_retry: 0,
      not_revocable: 0,
      by_backend: {},
      duration_ms: 16,
      leases: [LEASE],
    },
    also: ['leases_truncated'],
  },
  'admin.deny_older_sessions': {
    example: {
      agent: SECURITY,
      role: 'aws/deploy',
      role_arn: 'arn:aws:iam::111122223333:role/agents/deploy',
      policy_name: 'svid-broker-revoke-older-sessions',
      issued_before: '2026-12-04T10:00:00.000Z',
      reason: 'leaked deploy session',
    },
  },
  'admin.deny_older_sessions_failed': {
    example: {
      agent: SECURITY,
      role: 'github/repo-writer',
      reason: 'leaked token',
      error: 'invalid_argument',
    },
  },
  'admin.denied': {
    example: {
      agent: DEMO,
      method: 'ListLeases',
      reason: 'default_deny',
      action: 'ListLeases',
      decision: 'deny',
      policy_ids: [],
      policy_digest: DIGEST,
      policy_reasons: ['no policy permits this request'],
    },
    also: [...DECISION_ALSO, 'refusal', 'target', 'grant', 'granted_by'],
  },
  'admin.read': {
    example: { agent: SECURITY, method: 'ListLeases', selector: { agent: DEMO }, state: 'active', count: 1 },
    also: ['page_token', 'lease', 'found'],
  },
  'quarantine.set': {
    example: {
      agent: SECURITY,
      pattern: OTHER,
      reason: 'INC-42 odd behaviour',
      trigger: 'manual',
      ttl_seconds: 0,
      expires_at: null,
      revoke_active: false,
      replaced: false,
    },
    also: ['evidence'],
  },
  'quarantine.released': {
    example: {
      agent: SECURITY,
      pattern: OTHER,
      reason: 'cleared',
      quarantined_by: SECURITY,
      quarantined_at: '2026-12-04T10:00:00.000Z',
      trigger: 'manual',
    },
  },
  'policy.reloaded': { example: { agent: '', digest: NEW_DIGEST, previous_digest: DIGEST } },
  'policy.reload_failed': {
    example: {
      agent: '',
      errors: ['tools.cedar: policy "x": unexpected token'],
      kept_digest: DIGEST,
    },
    also: ['offered_digest'],
  },
  'policy.synced': {
    example: {
      agent: '',
      digest: NEW_DIGEST,
      previous_digest: DIGEST,
      from: 'spiffe://example.org/broker#4242',
      generation: 7,
    },
  },
  'policy.directory_differs': {
    example: { agent: '', directory_digest: DIGEST, digest: NEW_DIGEST, generation: 7 },
  },
  'replica.entry_refused': {
    example: {
      agent: '',
      kind: 'policy',
      key: 'svid-broker:{shared}:policy:record',
      reason: 'signer_not_allowed',
      signer: 'spiffe://example.org/agents/demo',
      message: 'sealed by spiffe://example.org/agents/demo, not an allowed broker',
    },
  },
  'audit.recovered': {
    example: {
      agent: '',
      down_ms: 4200,
      down_since: '2026-12-04T10:00:00.000Z',
      refused_writes: 3,
      cause: 'ENOSPC: no space left on device',
    },
  },
  'audit.repaired': {
    example: {
      agent: '',
      repair: 'cut_partial_record',
      offset: 1048576,
      file_size: 1048700,
      removed_bytes: 124,
      removed_sha256: '9b1d5c0e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e',
    },
  },
};
