/** What every command prints with: times as ISO-8601, tables for people, JSON for scripts. */
import { fromTimestamp, type TimestampMsg } from '../server/broker-proto.js';
import { connect, type Connection } from './connect.js';
import { str, type Parsed } from './command.js';
import { printable, safeJson } from './escape.js';

/** A protobuf Timestamp as ISO-8601 (every `--json` time); null when unset. */
export const iso = (ts: TimestampMsg | null | undefined): string => new Date(fromTimestamp(ts)).toISOString();
export const isoOrNull = (ts: TimestampMsg | null | undefined): string | null =>
  ts && (Number(ts.seconds) !== 0 || ts.nanos !== 0) ? iso(ts) : null;

/** Left-aligned columns, for a terminal; every cell is escaped (see printable), so none can add a row. */
export function table(headers: string[], cells: string[][]): string {
  const rows = cells.map((r) => r.map(printable));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** JSON for scripts; C1 and bidi characters written as \uXXXX (see safeJson). */
export const printJson = (v: unknown): void => console.log(safeJson(v));

/** Connects with the command's --auth/--broker-id, runs `fn`, always closes. */
export async function withConnection<T>(p: Parsed, fn: (conn: Connection) => Promise<T>): Promise<T> {
  const conn = await connect({ auth: str(p, 'auth') || 'x509', brokerId: str(p, 'broker-id') });
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}
