/**
 * `svid-broker approvals ...` and `svid-broker breakglass ...`: what approvers and security
 * engineers run, as their own identity (SPIFFE_ENDPOINT_SOCKET). Tables for people, --json for scripts.
 */
import { parseArgs } from 'node:util';
import type {
  ApprovalMsg,
  BreakGlassGrantMsg,
  LeaseInfoMsg,
  QuarantineInfoMsg,
  RevokeLeasesReportMsg,
} from '../server/broker-proto.js';
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

const ADMIN_USAGE =
  'usage: svid-broker admin leases [--agent ID|PATTERN] [--task ID] [--env E] [--role R] [--backend B] [--trust-domain TD] [--lease ID] [--all] [--state S] [--limit N] [--page-token T] [--json]\n' +
  '       svid-broker admin lease LEASE_ID [--json]\n' +
  '       svid-broker admin revoke <same selectors> --reason TEXT [--dry-run] [--confirm-all] [--deny-older-sessions] [--json]\n' +
  '       svid-broker admin quarantine --agent ID|PATTERN --reason TEXT [--ttl 2h] [--revoke] [--json]\n' +
  '       svid-broker admin release --agent ID|PATTERN --reason TEXT [--json]\n' +
  '       svid-broker admin quarantines [--json]';

/** `90`, `90s`, `30m`, `2h`, `1d` -> seconds; `0` = until released. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new Error(`${flag}: expected a duration like 90s, 30m, 2h or 1d`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

function quarantineRows(list: QuarantineInfoMsg[]): string {
  return table(
    ['PATTERN', 'TRIGGER', 'BY', 'SINCE', 'UNTIL', 'REASON'],
    list.map((q) => [
      q.pattern,
      q.trigger,
      q.by,
      iso(q.created_at),
      q.expires_at ? iso(q.expires_at) : 'released by hand',
      q.reason,
    ]),
  );
}

function quarantineJson(q: QuarantineInfoMsg): Record<string, unknown> {
  return {
    pattern: q.pattern,
    reason: q.reason,
    by: q.by,
    trigger: q.trigger,
    created_at: iso(q.created_at),
    expires_at: q.expires_at ? iso(q.expires_at) : null,
    ...(q.evidence_json ? { evidence: JSON.parse(q.evidence_json) as unknown } : {}),
  };
}

/** One line on stderr, redrawn in place on a terminal: `[#####.....] 52% 52000/100000 scanned, 51000 revoked`. */
function progressLine(r: RevokeLeasesReportMsg): string {
  const total = Math.max(r.to_scan, r.scanned, 1);
  const share = Math.min(1, r.scanned / total);
  const width = 30;
  const filled = Math.round(share * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const what = r.dry_run
    ? `${r.matched} would be revoked`
    : `${r.revoked} revoked, ${r.pending_retry} pending retry, ${r.not_revocable} not revocable`;
  return `${bar} ${Math.round(share * 100)}% ${r.scanned}/${total} scanned: ${what}`;
}

function revokeSummary(r: RevokeLeasesReportMsg): string[] {
  const lines = [
    r.dry_run
      ? `dry run: would revoke ${r.matched} lease(s); nothing changed`
      : `matched ${r.matched}: revoked ${r.revoked} at the backend, ${r.pending_retry} pending retry (queued), ` +
        `${r.not_revocable} not revocable (valid until they expire)`,
  ];
  for (const [backend, c] of Object.entries(r.by_backend)) {
    lines.push(
      `  ${backend}: revoked ${c.revoked}, pending retry ${c.pending_retry}, not revocable ${c.not_revocable}`,
    );
  }
  return lines;
}

/**
 * `svid-broker admin leases|lease|revoke|quarantine|release|quarantines`: the incident tools.
 * Exit codes: 0 done, 1 error, 4 partial: some leases are pending retry (the revocation queue
 * keeps trying) or their credentials cannot be revoked one by one (they live until they expire).
 */
export async function runAdmin(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      ...COMMON,
      ...SELECTOR_OPTIONS,
      state: { type: 'string', default: '' },
      reason: { type: 'string', default: '' },
      'dry-run': { type: 'boolean', default: false },
      'confirm-all': { type: 'boolean', default: false },
      'deny-older-sessions': { type: 'boolean', default: false },
      limit: { type: 'string', default: '100' },
      'page-token': { type: 'string', default: '' },
      ttl: { type: 'string', default: '0' },
      revoke: { type: 'boolean', default: false },
    },
  });
  const subs = ['leases', 'lease', 'revoke', 'quarantine', 'release', 'quarantines'];
  if (!sub || !subs.includes(sub)) throw new Error(ADMIN_USAGE);
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
  const out = (v: unknown): void => console.log(JSON.stringify(v, null, 2));
  try {
    switch (sub) {
      case 'leases': {
        const limit = Number(values.limit);
        if (!Number.isSafeInteger(limit) || limit < 0)
          throw new Error('--limit: a number, 0 for every lease');
        const leases: LeaseInfoMsg[] = [];
        let token = values['page-token'];
        do {
          const want = limit === 0 ? 1000 : Math.min(1000, limit - leases.length);
          const page = await conn.admin.listLeases({
            selector: { ...selector, state: values.state },
            page_size: want,
            page_token: token,
          });
          leases.push(...page.leases);
          token = page.next_page_token;
        } while (token && (limit === 0 || leases.length < limit));
        if (values.json) out({ leases, next_page_token: token });
        else {
          console.log(leases.length ? leaseRows(leases) : 'no leases match');
          if (token) console.log(`more: --page-token ${token}`);
        }
        return 0;
      }
      case 'lease': {
        const id = positionals[0] ?? values.lease;
        if (!id) throw new Error('usage: svid-broker admin lease LEASE_ID');
        const lease = await conn.admin.getLease(id);
        if (values.json) out(lease);
        else
          console.log(leaseRows([lease]) + (lease.revoke_reason ? `\nreason: ${lease.revoke_reason}` : ''));
        return 0;
      }
      case 'revoke': {
        if (!values.reason) throw new Error('--reason is required: it is recorded on every lease');
        const tty = process.stderr.isTTY === true;
        const report = await conn.admin.revokeLeases(
          {
            selector: { ...selector, state: '' },
            reason: values.reason,
            dry_run: values['dry-run'],
            confirm_all: values['confirm-all'],
            deny_older_sessions: values['deny-older-sessions'],
          },
          (p) => {
            if (values.json) return;
            if (tty) process.stderr.write(`\r${progressLine(p)}`);
            else process.stderr.write(`${progressLine(p)}\n`);
          },
        );
        if (tty && !values.json) process.stderr.write('\n');
        if (values.json) out(report);
        else {
          if (report.leases.length) console.log(leaseRows(report.leases));
          for (const line of revokeSummary(report)) console.log(line);
          if (report.older_sessions_denied_before) {
            console.log(
              `AWS sessions of ${values.role} issued before ${report.older_sessions_denied_before} are denied`,
            );
          }
        }
        return report.pending_retry > 0 || report.not_revocable > 0 ? 4 : 0;
      }
      case 'quarantine': {
        if (!values.agent)
          throw new Error('--agent is required: a SPIFFE ID or a pattern ending in /* or /**');
        if (!values.reason) throw new Error('--reason is required: it is recorded in the audit trail');
        const res = await conn.admin.quarantine({
          agent: values.agent,
          reason: values.reason,
          ttl_seconds: parseDuration(values.ttl, '--ttl'),
          revoke_active: values.revoke,
        });
        if (values.json) {
          out({
            quarantine: res.quarantine ? quarantineJson(res.quarantine) : null,
            replaced: res.replaced,
            revocation: res.revocation,
          });
        } else {
          const q = res.quarantine;
          console.log(
            `quarantined ${q?.pattern ?? values.agent}${res.replaced ? ' (replaced the previous quarantine)' : ''}` +
              (q?.expires_at ? ` until ${iso(q.expires_at)}` : ' until released'),
          );
          if (res.revocation) for (const line of revokeSummary(res.revocation)) console.log(line);
        }
        const r = res.revocation;
        return r && (r.pending_retry > 0 || r.not_revocable > 0) ? 4 : 0;
      }
      case 'release': {
        if (!values.agent) throw new Error('--agent is required: the pattern as it was quarantined');
        if (!values.reason) throw new Error('--reason is required: it is recorded in the audit trail');
        const q = await conn.admin.releaseQuarantine({ agent: values.agent, reason: values.reason });
        if (values.json) out(quarantineJson(q));
        else console.log(`released ${q.pattern} (quarantined by ${q.by}: ${q.reason})`);
        return 0;
      }
      default: {
        const { quarantines } = await conn.admin.listQuarantines();
        if (values.json) out(quarantines.map(quarantineJson));
        else console.log(quarantines.length ? quarantineRows(quarantines) : 'no quarantines in force');
        return 0;
      }
    }
  } finally {
    conn.close();
  }
}
