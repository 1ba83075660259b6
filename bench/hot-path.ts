/**
 * The hot path's figures for `npm run bench`: the stage breakdown of IssueCredential (from the
 * broker's StageClock), the Redis commands per issuance (MONITOR) and the issue's table
 * (today = the previous hot path, run beside the current one in the same rounds).
 */
import { Redis } from 'ioredis';
import type { StagesReply } from './broker-process.js';
import type { PolicyScaleFigures } from './policy-scale.js';

/** Redis commands per issuance: sent by the broker (round trips' worth) and run inside its scripts. */
export interface CommandCounts {
  issuances: number;
  client: Record<string, number>;
  inScripts: Record<string, number>;
}

/**
 * Counts the commands Redis runs while `during` issues credentials (it returns how many), with
 * MONITOR, which tells the broker's own commands from those its Lua scripts run. MONITOR slows
 * Redis down, so this window is separate from every timed one.
 */
export async function countRedisCommands(url: string, during: () => Promise<number>): Promise<CommandCounts> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const monitor = await redis.monitor();
  const client: Record<string, number> = {};
  const inScripts: Record<string, number> = {};
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const into = source === 'lua' ? inScripts : client;
    const name = (args[0] ?? '?').toLowerCase();
    into[name] = (into[name] ?? 0) + 1;
  });
  try {
    const issuances = await during();
    return { issuances, client, inScripts };
  } finally {
    monitor.disconnect();
    redis.disconnect();
  }
}

interface Breakdown {
  concurrency: number;
  requests: number;
  reply: StagesReply;
}

const fx = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

/** One row per stage: CPU and wall µs per request at each concurrency. */
export function stageRows(breakdowns: readonly Breakdown[]): string[] {
  if (breakdowns.length === 0) return [];
  const names: string[] = [];
  for (const b of breakdowns)
    for (const s of b.reply.stages) if (!names.includes(s.stage)) names.push(s.stage);
  const head = breakdowns.map((b) => `c=${b.concurrency} cpu µs  wall µs`.padStart(24)).join('');
  const lines = [
    '',
    "where one issuance goes (IssueCredential token/demo, stages are the code's step names, in order;",
    "CPU is the process's, shared among the stages open while it was spent; per request):",
    `  ${'stage'.padEnd(20)}${head}`,
  ];
  const per = (b: Breakdown, us: number): number => us / Math.max(1, b.requests);
  for (const name of names) {
    const cells = breakdowns.map((b) => {
      const s = b.reply.stages.find((x) => x.stage === name);
      return `${fx(per(b, s?.cpuUs ?? 0)).padStart(14)}${fx(per(b, s?.wallUs ?? 0)).padStart(10)}`;
    });
    lines.push(`  ${name.padEnd(20)}${cells.join('')}`);
  }
  const sum = (b: Breakdown, f: 'cpuUs' | 'wallUs'): number => b.reply.stages.reduce((n, s) => n + s[f], 0);
  lines.push(
    `  ${'(sum of stages)'.padEnd(20)}${breakdowns
      .map((b) => `${fx(per(b, sum(b, 'cpuUs'))).padStart(14)}${fx(per(b, sum(b, 'wallUs'))).padStart(10)}`)
      .join('')}`,
  );
  lines.push(
    `  ${'(outside stages)'.padEnd(20)}${breakdowns
      .map((b) => `${fx(per(b, b.reply.outsideCpuUs)).padStart(14)}${''.padStart(10)}`)
      .join('')}`,
  );
  lines.push('  outside stages: gRPC/HTTP2 framing, TLS, protobuf decoding, timers, GC between steps.');
  return lines;
}

/** The commands per issuance, most frequent first. */
export function commandRows(counts: CommandCounts | undefined): string[] {
  if (counts === undefined || counts.issuances === 0) return [];
  const per = (m: Record<string, number>): Array<[string, number]> =>
    Object.entries(m)
      .map(([cmd, n]): [string, number] => [cmd, n / counts.issuances])
      .filter(([, n]) => n >= 0.05)
      .sort((a, b) => b[1] - a[1]);
  const text = (rows: Array<[string, number]>): string =>
    `${fx(
      rows.reduce((n, [, c]) => n + c, 0),
      2,
    )} (${rows.map(([c, n]) => `${c} ${fx(n, 2)}`).join(', ')})`;
  return [
    `Redis commands per issuance at c=1 (MONITOR over ${counts.issuances} issuances, background jobs included):`,
    `  sent by the broker: ${text(per(counts.client))}`,
    `  run inside its scripts: ${text(per(counts.inScripts))}`,
  ];
}

export interface ScenarioFigures {
  scenario: string;
  concurrency: number;
  rps: number;
  p50: number;
  p99: number;
  brokerCpuUsPerReq: number;
}

/** The policy-scale section's Cedar p50s (bench/policy-scale.ts). */
export type CedarFigures = PolicyScaleFigures;

/** The Cedar rows: per policy set, each kind of request, before beside now. */
const CEDAR_ROWS: ReadonlyArray<{ set: string; of: keyof CedarFigures; target: string }> = [
  { set: 'shipped policies', of: 'shippedP50Us', target: '<= 50' },
  { set: '1,000 policies', of: 'thousandP50Us', target: '<= 150' },
];
const CEDAR_KINDS: ReadonlyArray<{ kind: string; now: 'after' | 'afterNewTtl' | 'afterNew' }> = [
  { kind: 'a repeated request', now: 'after' },
  { kind: 'a new TTL each', now: 'afterNewTtl' },
  { kind: 'never remembered', now: 'afterNew' },
];

function cedarRows(cedar: CedarFigures | undefined): Array<[string, string, string, string]> {
  return CEDAR_ROWS.flatMap(({ set, of, target }) =>
    CEDAR_KINDS.map(({ kind, now }): [string, string, string, string] => [
      `Cedar p50 µs, ${set}, ${kind}`,
      fx(cedar?.[of].before ?? NaN, 1),
      fx(cedar?.[of][now] ?? NaN, 1),
      target,
    ]),
  );
}

/** The issue's table: today (the previous hot path, same run) and now, with the targets. */
export function hotPathRows(results: readonly ScenarioFigures[], cedar: CedarFigures | undefined): string[] {
  const get = (scenario: string, c: number): ScenarioFigures | undefined =>
    results.find((r) => r.scenario === scenario && r.concurrency === c);
  const ratio = (a: ScenarioFigures | undefined, b: ScenarioFigures | undefined, f: 'rps' | 'p99'): string =>
    a && b ? `${fx(a[f] / b[f], 2)}x` : 'n/a';
  const b64 = get('baseline', 64);
  const rows: Array<[string, string, string, string]> = [
    [
      'IssueCredential c=64 throughput / baseline',
      ratio(get('issue-prev', 64), b64, 'rps'),
      ratio(get('issuance', 64), b64, 'rps'),
      '>= 0.5x',
    ],
    [
      'IssueCredential c=64 p99 / baseline',
      ratio(get('issue-prev', 64), b64, 'p99'),
      ratio(get('issuance', 64), b64, 'p99'),
      '<= 2x',
    ],
    [
      `IssueCredential c=1 p50 ms (baseline ${fx(get('baseline', 1)?.p50 ?? NaN, 2)})`,
      fx(get('issue-prev', 1)?.p50 ?? NaN, 2),
      fx(get('issuance', 1)?.p50 ?? NaN, 2),
      '<= 1.0',
    ],
    [
      'BeginTask c=64 throughput / baseline',
      ratio(get('begin-prev', 64), b64, 'rps'),
      ratio(get('begin', 64), b64, 'rps'),
      '>= 0.6x',
    ],
    [
      'broker CPU µs per issuance (c=64)',
      fx(get('issue-prev', 64)?.brokerCpuUsPerReq ?? NaN),
      fx(get('issuance', 64)?.brokerCpuUsPerReq ?? NaN),
      '<= 350',
    ],
    ...cedarRows(cedar),
  ];
  return [
    '',
    'hot path (issue 16): today = the previous hot path (whole-set Cedar, three-evaluation approval gate,',
    'jose/WebCrypto signing) in its own broker process, measured in the same interleaved rounds:',
    `  ${'what'.padEnd(52)}${'today'.padStart(10)}${'now'.padStart(10)}${'target'.padStart(10)}`,
    ...rows.map(([w, t, n, g]) => `  ${w.padEnd(52)}${t.padStart(10)}${n.padStart(10)}${g.padStart(10)}`),
  ];
}
