/**
 * `svid-broker approvals ...` and `svid-broker breakglass ...`: what approvers and security
 * engineers run, as their own identity (SPIFFE_ENDPOINT_SOCKET). Tables for people, --json for scripts.
 */
import { parseArgs } from 'node:util';
import type { ApprovalMsg, BreakGlassGrantMsg, LeaseInfoMsg } from '../server/broker-proto.js';
import { connect } from './connect.js';
import { iso } from './request.js';

const COMMON = {
  json: { type: 'boolean', default: false },
  auth: { type: 'string', default: 'x509' },
  'broker-id': { type: 'string' },
} as const;

/** Left-aligned columns, for a terminal. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function approvalJson(a: ApprovalMsg): Record<string, unknown> {
  return {
    approval_id: a.approval_id,
    state: a.state,
    requester: a.requester,
    task_id: a.task_id,
    role: a.role,
    environment: a.environment,
    ttl_seconds: a.ttl_seconds,
    sensitivity: a.sensitivity,
    change_type: a.change_type,
    justification: a.justification,
    tool: a.tool,
    approvals_required: a.approvals_required,
    approvals: a.approvals.map((d) => ({ approver: d.approver, reason: d.reason, at: iso(d.at) })),
    ...(a.denial
      ? { denial: { approver: a.denial.approver, reason: a.denial.reason, at: iso(a.denial.at) } }
      : {}),
    policy_ids: a.policy_ids,
    created_at: iso(a.created_at),
    expires_at: iso(a.expires_at),
  };
}

function grantJson(g: BreakGlassGrantMsg): Record<string, unknown> {
  return {
    grant_id: g.grant_id,
    agent: g.agent,
    ...(g.task_id ? { task_id: g.task_id } : {}),
    roles: g.roles,
    reason: g.reason,
    granted_by: g.granted_by,
    created_at: iso(g.created_at),
    expires_at: iso(g.expires_at),
    uses: g.uses,
    reviewed: g.reviewed,
    ...(g.reviewed
      ? { reviewed_by: g.reviewed_by, reviewed_at: iso(g.reviewed_at), review_note: g.review_note }
      : {}),
  };
}

export async function runApprovals(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      ...COMMON,
      state: { type: 'string', default: 'pending' },
      reason: { type: 'string', default: '' },
    },
  });
  if (sub !== 'list' && sub !== 'approve' && sub !== 'deny') {
    throw new Error(
      'usage: svid-broker approvals list [--state S] | approve ID --reason TEXT | deny ID --reason TEXT',
    );
  }
  const conn = await connect({ auth: values.auth, brokerId: values['broker-id'] });
  try {
    if (sub === 'list') {
      const { approvals } = await conn.admin.listApprovals({ state: values.state });
      if (values.json) {
        console.log(JSON.stringify(approvals.map(approvalJson), null, 2));
      } else if (approvals.length === 0) {
        console.log(`no ${values.state} approvals you may decide`);
      } else {
        console.log(
          table(
            [
              'APPROVAL',
              'STATE',
              'REQUESTER',
              'ROLE',
              'ENV',
              'CHANGE',
              'TTL',
              'APPROVALS',
              'EXPIRES',
              'JUSTIFICATION',
            ],
            approvals.map((a) => [
              a.approval_id,
              a.state,
              a.requester,
              a.role,
              a.environment,
              a.change_type,
              `${a.ttl_seconds}s`,
              `${a.approvals.length}/${a.approvals_required}`,
              iso(a.expires_at),
              a.justification,
            ]),
          ),
        );
      }
      return 0;
    }
    const id = positionals[0];
    if (!id) throw new Error(`usage: svid-broker approvals ${sub} APPROVAL_ID --reason TEXT`);
    if (!values.reason) throw new Error('--reason is required: it is recorded and shown to the agent');
    const res = await conn.admin.decideApproval({
      approval_id: id,
      approve: sub === 'approve',
      reason: values.reason,
    });
    if (values.json) {
      console.log(
        JSON.stringify(
          { outcome: res.outcome, approval: res.approval && approvalJson(res.approval) },
          null,
          2,
        ),
      );
    } else {
      const a = res.approval;
      const progress = a ? ` (${a.approvals.length}/${a.approvals_required} approvals)` : '';
      const what =
        res.outcome === 'approved'
          ? 'approved: the agent can now get its credential'
          : res.outcome === 'denied'
            ? 'denied: the agent is told your reason'
            : 'approval recorded: another approver is still needed';
      console.log(`${id}: ${what}${progress}`);
    }
    return 0;
  } finally {
    conn.close();
  }
}

export async function runBreakGlass(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      ...COMMON,
      agent: { type: 'string' },
      task: { type: 'string', default: '' },
      role: { type: 'string', multiple: true, default: [] },
      reason: { type: 'string', default: '' },
      ttl: { type: 'string', default: '' },
      note: { type: 'string', default: '' },
    },
  });
  if (sub !== 'grant' && sub !== 'list' && sub !== 'review') {
    throw new Error(
      'usage: svid-broker breakglass grant --agent ID --role R [--role R] [--task ID] --reason TEXT --ttl SECONDS | list | review GRANT_ID --note TEXT',
    );
  }
  const conn = await connect({ auth: values.auth, brokerId: values['broker-id'] });
  try {
    if (sub === 'grant') {
      if (!values.agent) throw new Error('--agent is required');
      if (!values.reason) throw new Error('--reason is required');
      const ttl = Number(values.ttl);
      if (!Number.isInteger(ttl) || ttl <= 0) throw new Error('--ttl is required, in seconds');
      const grant = await conn.admin.breakGlass({
        agent: values.agent,
        task_id: values.task,
        roles: values.role,
        reason: values.reason,
        ttl_seconds: ttl,
      });
      if (values.json) console.log(JSON.stringify(grantJson(grant), null, 2));
      else
        console.log(
          `break-glass ${grant.grant_id} granted to ${grant.agent} for ${grant.roles.join(', ')} until ${iso(grant.expires_at)}; ` +
            'it stays on `svid-broker breakglass list` until reviewed',
        );
      return 0;
    }
    if (sub === 'list') {
      const { grants } = await conn.admin.listBreakGlass();
      if (values.json) console.log(JSON.stringify(grants.map(grantJson), null, 2));
      else if (grants.length === 0) console.log('no break-glass grants awaiting review');
      else
        console.log(
          table(
            ['GRANT', 'AGENT', 'ROLES', 'USES', 'EXPIRES', 'GRANTED BY', 'REASON'],
            grants.map((g) => [
              g.grant_id,
              g.agent,
              g.roles.join(','),
              String(g.uses),
              iso(g.expires_at),
              g.granted_by,
              g.reason,
            ]),
          ),
        );
      return 0;
    }
    const id = positionals[0];
    if (!id) throw new Error('usage: svid-broker breakglass review GRANT_ID --note TEXT');
    if (!values.note) throw new Error('--note is required: record what the review found');
    const grant = await conn.admin.reviewBreakGlass({ grant_id: id, note: values.note });
    if (values.json) console.log(JSON.stringify(grantJson(grant), null, 2));
    else console.log(`${id}: reviewed (${grant.uses} use(s))`);
    return 0;
  } finally {
    conn.close();
  }
}

const SELECTOR_OPTIONS = {
  lease: { type: 'string', default: '' },
  agent: { type: 'string', default: '' },
  task: { type: 'string', default: '' },
  env: { type: 'string', default: '' },
  role: { type: 'string', default: '' },
  backend: { type: 'string', default: '' },
  'trust-domain': { type: 'string', default: '' },
  all: { type: 'boolean', default: false },
} as const;

function leaseRows(leases: LeaseInfoMsg[]): string {
  return table(
    ['LEASE', 'STATE', 'AGENT', 'ROLE', 'ENV', 'TASK', 'EXPIRES'],
    leases.map((l) => [l.lease_id, l.state, l.agent, l.role, l.environment, l.task_id, iso(l.expires_at)]),
  );
}

/**
 * `svid-broker admin leases [selector] [--state S]` and
 * `svid-broker admin revoke [selector] --reason TEXT [--dry-run] [--confirm-all]`.
 * Exit codes: 0 done, 1 error, 4 partly pending (the revocation queue keeps retrying those).
 */
export async function runAdmin(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      ...COMMON,
      ...SELECTOR_OPTIONS,
      state: { type: 'string', default: '' },
      reason: { type: 'string', default: '' },
      'dry-run': { type: 'boolean', default: false },
      'confirm-all': { type: 'boolean', default: false },
    },
  });
  if (sub !== 'leases' && sub !== 'revoke') {
    throw new Error(
      'usage: svid-broker admin leases [--agent ID|PATTERN] [--task ID] [--env E] [--role R] [--backend B] [--trust-domain TD] [--lease ID] [--all] [--state S] [--json]\n' +
        '       svid-broker admin revoke <same selectors> --reason TEXT [--dry-run] [--confirm-all] [--json]',
    );
  }
  const selector = {
    lease_id: values.lease,
    agent: values.agent,
    task_id: values.task,
    environment: values.env,
    role: values.role,
    backend: values.backend,
    trust_domain: values['trust-domain'],
    all: values.all,
  };
  const conn = await connect({ auth: values.auth, brokerId: values['broker-id'] });
  try {
    if (sub === 'leases') {
      const { leases } = await conn.admin.listLeases({ ...selector, state: values.state });
      if (values.json) console.log(JSON.stringify(leases, null, 2));
      else console.log(leases.length ? leaseRows(leases) : 'no leases match');
      return 0;
    }
    if (!values.reason) throw new Error('--reason is required: it is recorded on every lease');
    const report = await conn.admin.revokeLeases({
      selector: { ...selector, state: '' },
      reason: values.reason,
      dry_run: values['dry-run'],
      confirm_all: values['confirm-all'],
    });
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      if (report.leases.length) console.log(leaseRows(report.leases));
      const verb = report.dry_run ? 'would revoke' : 'revoked';
      console.log(
        report.dry_run
          ? `dry run: ${verb} ${report.matched} lease(s); nothing changed`
          : `matched ${report.matched}: revoked ${report.revoked} at the backend, ` +
              `${report.pending_retry} pending retry (queued), ${report.already_ended} already ended`,
      );
      for (const [backend, c] of Object.entries(report.by_backend)) {
        console.log(`  ${backend}: revoked ${c.revoked}, pending retry ${c.pending_retry}`);
      }
    }
    return report.pending_retry > 0 ? 4 : 0;
  } finally {
    conn.close();
  }
}
