/**
 * `svid-broker approvals ...` and `svid-broker breakglass ...`: what approvers and security
 * engineers run, as their own identity (SPIFFE_ENDPOINT_SOCKET). Tables for people, --json for scripts.
 */
import type { ApprovalMsg, BreakGlassGrantMsg } from '../server/broker-proto.js';
import {
  CONNECTION_FLAGS,
  JSON_FLAG,
  bool,
  list,
  required,
  str,
  usageError,
  type Command,
  type Parsed,
} from './command.js';
import { parseDuration } from './duration.js';
import { printable } from './escape.js';
import { iso, printJson, table, withConnection } from './output.js';

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

const APPROVAL_HEADERS = [
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
];

async function listApprovals(p: Parsed): Promise<number> {
  const state = str(p, 'state') || 'pending';
  const limit = str(p, 'limit');
  if (limit && !/^[1-9][0-9]*$/.test(limit)) throw usageError('--limit must be a positive whole number');
  const { approvals, next_page_token: next } = await withConnection(p, (c) =>
    c.admin.listApprovals({ state, page_size: limit ? Number(limit) : 0, page_token: str(p, 'page-token') }),
  );
  // Stderr, so --json stays the array it always was.
  if (next) console.error(`more: svid-broker approvals list --page-token ${next}`);
  if (bool(p, 'json')) printJson(approvals.map(approvalJson));
  else if (approvals.length === 0)
    console.log(`no ${state === 'any' ? '' : `${state} `}approvals you may decide`);
  else
    console.log(
      table(
        APPROVAL_HEADERS,
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
  return 0;
}

function decide(approve: boolean): (p: Parsed) => Promise<number> {
  return async (p) => {
    const id = p.positionals[0] as string;
    const reason = required(p, 'reason', 'it is recorded and shown to the agent');
    const res = await withConnection(p, (c) => c.admin.decideApproval({ approval_id: id, approve, reason }));
    if (bool(p, 'json')) {
      printJson({ outcome: res.outcome, approval: res.approval && approvalJson(res.approval) });
      return 0;
    }
    const a = res.approval;
    const progress = a ? ` (${a.approvals.length}/${a.approvals_required} approvals)` : '';
    const what =
      res.outcome === 'approved'
        ? 'approved: the agent can now get its credential'
        : res.outcome === 'denied'
          ? 'denied: the agent is told your reason'
          : 'approval recorded: another approver is still needed';
    console.log(`${id}: ${what}${progress}`);
    return 0;
  };
}

async function grantBreakGlass(p: Parsed): Promise<number> {
  const agent = required(p, 'agent', 'the SPIFFE ID of the agent to let through');
  const roles = list(p, 'role');
  if (roles.length === 0) throw usageError('--role is required: name each role the grant covers');
  const reason = required(p, 'reason', 'say why the glass is broken');
  const ttl = parseDuration(required(p, 'ttl', 'how long the grant lasts, e.g. 30m'), '--ttl');
  if (ttl === 0) throw usageError('--ttl: must be more than 0');
  const grant = await withConnection(p, (c) =>
    c.admin.breakGlass({ agent, task_id: str(p, 'task'), roles, reason, ttl_seconds: ttl }),
  );
  if (bool(p, 'json')) printJson(grantJson(grant));
  else
    console.log(
      printable(
        `break-glass ${grant.grant_id} granted to ${grant.agent} for ${grant.roles.join(', ')} until ${iso(grant.expires_at)}; `,
      ) + 'it stays on `svid-broker breakglass list` until reviewed',
    );
  return 0;
}

async function listBreakGlass(p: Parsed): Promise<number> {
  const { grants } = await withConnection(p, (c) => c.admin.listBreakGlass());
  if (bool(p, 'json')) printJson(grants.map(grantJson));
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

async function reviewBreakGlass(p: Parsed): Promise<number> {
  const id = p.positionals[0] as string;
  const note = required(p, 'note', 'record what the review found');
  const grant = await withConnection(p, (c) => c.admin.reviewBreakGlass({ grant_id: id, note }));
  if (bool(p, 'json')) printJson(grantJson(grant));
  else console.log(`${id}: reviewed (${grant.uses} use(s))`);
  return 0;
}

const REASON = {
  type: 'string',
  value: 'TEXT',
  help: 'why (required; recorded and shown to the agent)',
} as const;

const decideCommand = (verb: 'approve' | 'deny'): Command => ({
  path: `approvals ${verb}`,
  args: 'APPROVAL_ID',
  positionals: [1, 1],
  summary: `${verb === 'approve' ? 'Approve' : 'Deny'} a pending request, as the approver's identity.`,
  flags: { reason: REASON, ...JSON_FLAG, ...CONNECTION_FLAGS },
  fields: { approval_id: 'APPROVAL_ID' },
  run: decide(verb === 'approve'),
});

export const APPROVAL_COMMANDS: Command[] = [
  {
    path: 'approvals list',
    summary: 'List the requests you may decide (default: pending ones).',
    flags: {
      state: {
        type: 'string',
        value: 'STATE',
        help: 'pending (default)|approved|denied|expired|consumed|any',
      },
      limit: {
        type: 'string',
        value: 'N',
        help: "at most N per page (newest first; default the broker's page size)",
      },
      'page-token': {
        type: 'string',
        value: 'TOKEN',
        help: 'the next page, as printed on stderr after a full page ("more: ...")',
      },
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    run: listApprovals,
  },
  decideCommand('approve'),
  decideCommand('deny'),
  {
    path: 'breakglass grant',
    summary: 'Grant an agent (or one of its tasks) a time-boxed, audited override for named roles.',
    flags: {
      agent: { type: 'string', value: 'SPIFFE_ID', help: 'the agent (required)' },
      role: { type: 'string', value: 'ROLE', multiple: true, help: 'a role the grant covers (required)' },
      task: { type: 'string', value: 'TASK_ID', help: 'only this task of the agent' },
      reason: { type: 'string', value: 'TEXT', help: 'why (required)' },
      ttl: {
        type: 'string',
        value: 'DURATION',
        help: 'how long: 90, 90s, 15m, 2h (required; capped by breakGlass.maxTtlSeconds)',
      },
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    fields: { roles: '--role', grant_id: 'GRANT_ID' },
    run: grantBreakGlass,
  },
  {
    path: 'breakglass list',
    summary: 'List break-glass grants not yet reviewed, with their use counts.',
    flags: { ...JSON_FLAG, ...CONNECTION_FLAGS },
    run: listBreakGlass,
  },
  {
    path: 'breakglass review',
    args: 'GRANT_ID',
    positionals: [1, 1],
    summary: 'Record the review of a grant: it leaves `breakglass list`.',
    flags: {
      note: { type: 'string', value: 'TEXT', help: 'what the review found (required)' },
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    fields: { grant_id: 'GRANT_ID' },
    run: reviewBreakGlass,
  },
];
