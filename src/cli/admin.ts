/**
 * `svid-broker admin leases|lease|revoke|quarantine|release|quarantines`: the incident tools, run
 * as a security identity (SPIFFE_ENDPOINT_SOCKET). Tables for people, --json for scripts.
 * Exit codes: 0 done, 1 error, 2 usage, 4 partial: some leases are pending retry (the revocation
 * queue keeps trying) or their credentials cannot be revoked one by one (they live until they expire).
 */
import type {
  LeaseInfoMsg,
  LeaseSelectorMsg,
  QuarantineInfoMsg,
  RevokeLeasesReportMsg,
} from '../server/broker-proto.js';
import {
  CONNECTION_FLAGS,
  JSON_FLAG,
  bool,
  required,
  str,
  usageError,
  type Command,
  type Flag,
  type Parsed,
} from './command.js';
import { parseDuration } from './duration.js';
import { revokeTree } from './revoke-tree.js';
import { printable } from './escape.js';
import { iso, isoOrNull, printJson, table, withConnection } from './output.js';

const SELECTOR_FLAGS: Record<string, Flag> = {
  lease: { type: 'string', value: 'LEASE_ID', help: 'one lease' },
  agent: {
    type: 'string',
    value: 'ID|PATTERN',
    help: 'an agent, or a pattern ending in /* (one level) or /** (subtree)',
  },
  task: { type: 'string', value: 'TASK_ID', help: 'the leases of one task' },
  env: { type: 'string', value: 'ENV', help: 'one environment' },
  role: { type: 'string', value: 'ROLE', help: 'one role, e.g. vault/db-admin' },
  backend: { type: 'string', value: 'BACKEND', help: 'one backend, e.g. vault' },
  'trust-domain': { type: 'string', value: 'TD', help: 'agents of one trust domain' },
  all: { type: 'boolean', help: 'every lease' },
};

function selectorOf(p: Parsed): Partial<LeaseSelectorMsg> {
  return {
    lease_id: str(p, 'lease'),
    agent: str(p, 'agent'),
    task_id: str(p, 'task'),
    environment: str(p, 'env'),
    role: str(p, 'role'),
    backend: str(p, 'backend'),
    trust_domain: str(p, 'trust-domain'),
    all: bool(p, 'all'),
  };
}

const hasSelector = (s: Partial<LeaseSelectorMsg>): boolean =>
  Object.values(s).some((v) => v !== '' && v !== false);

/** One lease in `--json`: times as ISO-8601, like every other command. */
function leaseJson(l: LeaseInfoMsg): Record<string, unknown> {
  return {
    lease_id: l.lease_id,
    state: l.state,
    agent: l.agent,
    task_id: l.task_id,
    environment: l.environment,
    role: l.role,
    backend: l.backend,
    issued_at: isoOrNull(l.issued_at),
    expires_at: isoOrNull(l.expires_at),
    ...(l.revoke_reason ? { revoke_reason: l.revoke_reason } : {}),
  };
}

function revokeReportJson(r: RevokeLeasesReportMsg): Record<string, unknown> {
  return {
    dry_run: r.dry_run,
    matched: r.matched,
    revoked: r.revoked,
    pending_retry: r.pending_retry,
    not_revocable: r.not_revocable,
    by_backend: r.by_backend,
    ...(r.older_sessions_denied_before
      ? { older_sessions_denied_before: r.older_sessions_denied_before }
      : {}),
    leases: r.leases.map(leaseJson),
  };
}

function leaseRows(leases: LeaseInfoMsg[]): string {
  return table(
    ['LEASE', 'STATE', 'AGENT', 'ROLE', 'ENV', 'TASK', 'EXPIRES'],
    leases.map((l) => [l.lease_id, l.state, l.agent, l.role, l.environment, l.task_id, iso(l.expires_at)]),
  );
}

function quarantineRows(quarantines: QuarantineInfoMsg[]): string {
  return table(
    ['PATTERN', 'TRIGGER', 'BY', 'SINCE', 'UNTIL', 'REASON'],
    quarantines.map((q) => [
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
    expires_at: isoOrNull(q.expires_at),
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

/** The counts, in the words of the table's STATE column (revoked, revoking = queued, revoke_failed). */
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
  if (!r.dry_run && r.pending_retry > 0) {
    lines.push(
      'revocation queued for the "revoking" ones: the queue keeps retrying; `admin leases --state revoking` shows them',
    );
  }
  return lines;
}

const partial = (r: RevokeLeasesReportMsg | null | undefined): boolean =>
  r !== null && r !== undefined && (r.pending_retry > 0 || r.not_revocable > 0);

async function listLeases(p: Parsed): Promise<number> {
  const limit = Number(str(p, 'limit') || '100');
  if (!Number.isSafeInteger(limit) || limit < 0)
    throw usageError('--limit: a whole number, 0 for every lease');
  const given = selectorOf(p);
  // No selector means every lease (in --state, default active): what a bare `admin leases` asks.
  const selector = { ...given, all: given.all || !hasSelector(given), state: str(p, 'state') };
  const { leases, token } = await withConnection(p, async (conn) => {
    const found: LeaseInfoMsg[] = [];
    let next = str(p, 'page-token');
    do {
      const want = limit === 0 ? 1000 : Math.min(1000, limit - found.length);
      const page = await conn.admin.listLeases({ selector, page_size: want, page_token: next });
      found.push(...page.leases);
      next = page.next_page_token;
    } while (next && (limit === 0 || found.length < limit));
    return { leases: found, token: next };
  });
  if (bool(p, 'json')) printJson({ leases: leases.map(leaseJson), next_page_token: token });
  else {
    console.log(leases.length ? leaseRows(leases) : 'no leases match');
    if (token) console.log(`more: --page-token ${token}`);
  }
  return 0;
}

async function showLease(p: Parsed): Promise<number> {
  const id = p.positionals[0] ?? str(p, 'lease');
  if (!id) throw usageError('missing LEASE_ID');
  const lease = await withConnection(p, (c) => c.admin.getLease(id));
  if (bool(p, 'json')) printJson(leaseJson(lease));
  else
    console.log(
      leaseRows([lease]) + (lease.revoke_reason ? `\nreason: ${printable(lease.revoke_reason)}` : ''),
    );
  return 0;
}

async function revoke(p: Parsed): Promise<number> {
  if (bool(p, 'tree')) return revokeTree(p);
  const reason = required(p, 'reason', 'it is recorded on every lease');
  const selector = selectorOf(p);
  if (!hasSelector(selector)) {
    throw usageError(
      'name at least one selector: --lease, --agent, --task, --env, --role, --backend, --trust-domain, or --all --confirm-all',
    );
  }
  if (selector.all && !bool(p, 'confirm-all'))
    throw usageError('--all revokes every lease: add --confirm-all');
  const json = bool(p, 'json');
  const tty = process.stderr.isTTY === true;
  const report = await withConnection(p, (c) =>
    c.admin.revokeLeases(
      {
        selector: { ...selector, state: '' },
        reason,
        dry_run: bool(p, 'dry-run'),
        confirm_all: bool(p, 'confirm-all'),
        deny_older_sessions: bool(p, 'deny-older-sessions'),
      },
      (r) => {
        if (!json) process.stderr.write(tty ? `\r${progressLine(r)}` : `${progressLine(r)}\n`);
      },
    ),
  );
  if (tty && !json) process.stderr.write('\n');
  if (json) printJson(revokeReportJson(report));
  else {
    if (report.leases.length) console.log(leaseRows(report.leases));
    for (const line of revokeSummary(report)) console.log(line);
    if (report.older_sessions_denied_before) {
      console.log(
        `AWS sessions of ${str(p, 'role')} issued before ${report.older_sessions_denied_before} are denied`,
      );
    }
  }
  return partial(report) ? 4 : 0;
}

async function quarantine(p: Parsed): Promise<number> {
  const agent = required(p, 'agent', 'a SPIFFE ID or a pattern ending in /* or /**');
  const reason = required(p, 'reason', 'it is recorded in the audit trail');
  const ttl = parseDuration(str(p, 'ttl') || '0', '--ttl');
  const res = await withConnection(p, (c) =>
    c.admin.quarantine({ agent, reason, ttl_seconds: ttl, revoke_active: bool(p, 'revoke') }),
  );
  if (bool(p, 'json')) {
    printJson({
      quarantine: res.quarantine ? quarantineJson(res.quarantine) : null,
      replaced: res.replaced,
      revocation: res.revocation ? revokeReportJson(res.revocation) : null,
    });
  } else {
    const q = res.quarantine;
    console.log(
      `quarantined ${printable(q?.pattern ?? agent)}${res.replaced ? ' (replaced the previous quarantine)' : ''}` +
        (q?.expires_at ? ` until ${iso(q.expires_at)}` : ' until released'),
    );
    if (res.revocation) for (const line of revokeSummary(res.revocation)) console.log(line);
  }
  return partial(res.revocation) ? 4 : 0;
}

async function release(p: Parsed): Promise<number> {
  const agent = required(p, 'agent', 'the pattern as it was quarantined');
  const reason = required(p, 'reason', 'it is recorded in the audit trail');
  const q = await withConnection(p, (c) => c.admin.releaseQuarantine({ agent, reason }));
  if (bool(p, 'json')) printJson(quarantineJson(q));
  else console.log(printable(`released ${q.pattern} (quarantined by ${q.by}: ${q.reason})`));
  return 0;
}

async function listQuarantines(p: Parsed): Promise<number> {
  const { quarantines } = await withConnection(p, (c) => c.admin.listQuarantines());
  if (bool(p, 'json')) printJson(quarantines.map(quarantineJson));
  else console.log(quarantines.length ? quarantineRows(quarantines) : 'no quarantines in force');
  return 0;
}

const PARTIAL_NOTE =
  'exit codes: 0 everything revoked, 1 error, 2 usage, 4 some leases pending retry (queued) or not revocable';
const REASON_FLAG: Flag = {
  type: 'string',
  value: 'TEXT',
  help: 'why (required; recorded in the audit trail)',
};

export const ADMIN_COMMANDS: Command[] = [
  {
    path: 'admin leases',
    summary: 'List leases by selector; with no selector, every lease (active ones unless --state).',
    flags: {
      ...SELECTOR_FLAGS,
      state: {
        type: 'string',
        value: 'STATE',
        help: 'active (default)|revoking|revoked|expired|revoke_failed|any',
      },
      limit: { type: 'string', value: 'N', help: 'at most N leases (default 100; 0 = all)' },
      'page-token': {
        type: 'string',
        value: 'TOKEN',
        help: 'continue where a previous listing stopped ("more: ...")',
      },
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    run: listLeases,
  },
  {
    path: 'admin lease',
    args: 'LEASE_ID',
    positionals: [0, 1],
    summary: 'Show one lease, with its revoke reason.',
    flags: { lease: SELECTOR_FLAGS.lease as Flag, ...JSON_FLAG, ...CONNECTION_FLAGS },
    fields: { lease_id: 'LEASE_ID' },
    run: showLease,
  },
  {
    path: 'admin revoke',
    summary: 'Revoke every active lease matching the selectors, with a progress bar on stderr.',
    flags: {
      ...SELECTOR_FLAGS,
      reason: REASON_FLAG,
      'dry-run': { type: 'boolean', help: 'say what would be revoked; change nothing' },
      'confirm-all': { type: 'boolean', help: 'required with --all' },
      tree: {
        type: 'boolean',
        help: 'with --task: end the task and every task delegated from it, revoking their leases',
      },
      'deny-older-sessions': {
        type: 'boolean',
        help: 'with an aws --role: also deny every session of that AWS role issued before now (IAM inline deny policy)',
      },
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    notes: PARTIAL_NOTE,
    run: revoke,
  },
  {
    path: 'admin quarantine',
    summary: 'Refuse every call of matching agents, in flight too; --revoke also revokes what they hold.',
    flags: {
      agent: {
        type: 'string',
        value: 'ID|PATTERN',
        help: 'an agent, or a pattern ending in /* or /** (required)',
      },
      reason: REASON_FLAG,
      ttl: {
        type: 'string',
        value: 'DURATION',
        help: 'ends by itself after 90, 90s, 15m, 2h, 1d (default: until released)',
      },
      revoke: { type: 'boolean', help: 'also revoke every active lease of the matching agents' },
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    fields: { revoke_active: '--revoke' },
    notes: PARTIAL_NOTE,
    run: quarantine,
  },
  {
    path: 'admin release',
    summary: 'Lift a quarantine.',
    flags: {
      agent: { type: 'string', value: 'ID|PATTERN', help: 'the pattern as it was quarantined (required)' },
      reason: REASON_FLAG,
      ...JSON_FLAG,
      ...CONNECTION_FLAGS,
    },
    run: release,
  },
  {
    path: 'admin quarantines',
    summary: 'List the quarantines in force: pattern, trigger, by whom, until when, why.',
    flags: { ...JSON_FLAG, ...CONNECTION_FLAGS },
    run: listQuarantines,
  },
];
