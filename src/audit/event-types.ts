/**
 * Every audit record type the broker writes, with what it means: the one list the README's
 * audit section and AuditEventType are made from (test/unit/audit/event-types.test.ts keeps the
 * README, this list and the code that writes records in step).
 */
export const AUDIT_EVENT_TYPES = {
  'auth.denied': 'a call refused before the broker looked at it: no valid X.509-SVID or JWT-SVID',
  'task.begun': 'a task was opened: agent, environment, intent, TTL, deciding policies',
  'task.denied': 'BeginTask refused: bad input, policy, quarantine or budget',
  'task.failed': 'BeginTask failed on an outage (Redis, audit); nothing was opened',
  'task.roles_listed':
    'an agent asked which roles it may request in its task (ListRoles, MCP list_roles): a dry evaluation that grants nothing',
  'task.ended':
    'a task ended (by its agent, on expiry, with its parent or by an admin tree revoke), with the leases it revoked',
  'task.delegated':
    'a task was delegated to another agent (DelegateTask): parent task, delegate, roles, ceilings, depth, the whole delegation chain',
  'task.delegation_denied':
    'DelegateTask refused: not the parent task owner, a widened scope (roles, environment, TTL, sensitivity, change type), the depth limit, policy',
  'task.delegation_failed': 'DelegateTask failed on an outage (Redis, audit); no task was delegated',
  'credential.issued':
    'a credential left the broker: lease, role, environment, task, TTL, deciding policies, policy digest',
  'credential.denied':
    'IssueCredential refused: bad input (naming the field), policy, task state, quarantine',
  'credential.failed': 'IssueCredential failed on an outage or a backend error; no credential left',
  'lease.revoked': 'a lease was revoked at its backend',
  'lease.expired': 'a lease reached its expiry',
  'lease.revoke_queued': 'the backend refused a revocation for now; the revocation queue retries it',
  'lease.revoke_failed': 'the revocation queue gave up on a lease: a human must act',
  'lease.not_revocable':
    'a credential that cannot be revoked one by one (AWS STS, a wrapped Vault secret) was ended in the ledger; valid until it expires',
  'lease.orphaned':
    'a `pending` lease nobody activated (its broker died, or its write landed late) was revoked by the reaper: outcome, written_at',
  'approval.requested': 'a request needs approval: approval id, approvals required',
  'approval.approved': 'an approver approved a request (possibly one of several needed)',
  'approval.denied': 'an approver denied a request, with the reason',
  'approval.reminder':
    'a pending approval passed half its lifetime undecided: approvers are reminded (chat notifications)',
  'approval.expired': 'a pending approval expired undecided (seen by the approval watch; announced in chat)',
  'approval.decision_refused': 'a decision was refused: self-approval, no permission, a closed request',
  'human.signed_in':
    'a person signed in at the web console through the OpenID provider: actor, groups, auth_time, step_up',
  'human.signed_out': 'a person signed out of the web console (the session is deleted for every replica)',
  'human.sign_in_failed':
    'a console sign-in was refused: unknown or replayed state, another browser, or an IdP response that did not verify',
  'breakglass.granted': 'a break-glass grant was made (severity critical)',
  'breakglass.denied': 'a break-glass grant was refused',
  'breakglass.reviewed': 'a break-glass grant was reviewed, with the note and its use count',
  'access.evaluated':
    'a tool gateway asked the AuthZEN decision point whether an agent may call a tool: gateway, tool, task, decision',
  'budget.exceeded': 'a request was refused by a budget: scope and limit',
  'admin.revoke': 'a bulk revocation by selector: counts per outcome and backend, the leases',
  'admin.revoke_dry_run': 'a dry run of a bulk revocation: what would have been revoked',
  'admin.deny_older_sessions':
    'an incident revoke by AWS role wrote the deny policy for sessions issued before a time (IAM PutRolePolicy)',
  'admin.deny_older_sessions_failed':
    'the deny policy for older AWS sessions could not be written: the reason',
  'admin.denied':
    'an admin call refused by policy, a separation-of-duties rule or a quarantine: method, reason',
  'admin.read': 'a successful admin read (ListLeases, GetLease, ListApprovals, ...): method, what was read',
  'quarantine.set': 'an agent or pattern was quarantined, by hand or by a trigger (with its evidence)',
  'quarantine.released': 'a quarantine was lifted',
  'policy.reloaded': 'a new policy set was loaded (file change or SIGHUP), with its digest',
  'policy.reload_failed': 'a policy set was refused (errors listed); the previous one keeps serving',
  'policy.synced': 'this replica adopted the policy set another replica loaded',
  'policy.directory_differs':
    'at startup this replica adopted the shared policy set although its own directory holds another',
  'replica.entry_refused':
    'a JWKS key or policy set in Redis was ignored: not sealed by an allowed broker, or stale',
  'audit.recovered': 'the audit sink serves again after failing: down_ms, down_since, refused_writes, cause',
  'audit.repaired': "startup cut the sink's own torn last write: offset, removed_bytes, removed_sha256",
} as const satisfies Record<string, string>;

export type AuditEventType = keyof typeof AUDIT_EVENT_TYPES;
