/**
 * `auth.denied`, aggregated: a caller that fails authentication costs us an fsynced audit record,
 * so a flood of garbage bearers would grow the trail as fast as the attacker can send. The first
 * denial per peer address and reason in a window is recorded in full; the rest are counted and
 * written as one aggregate record when the window ends. Records per window are bounded by
 * `maxKeys` (past it, denials of new peers are counted under peer `*`).
 */
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';

export interface AuthDenial {
  /** As grpc-js gives it (`address:port`); aggregated by peerAddress(peer). */
  peer: string;
  method: string;
  reason: string;
  message: string;
}

export interface AuthDenialAuditOptions {
  audit: AuditSink;
  logger: Logger;
  windowMs: number;
  maxKeys: number;
  now: () => number;
}

interface Window {
  peer: string;
  reason: string;
  /** Denials after the first (which was recorded in full). */
  count: number;
  methods: Record<string, number>;
}

const OVERFLOW_PEER = '*';

export class AuthDenialAudit {
  private windows = new Map<string, Window>();
  private windowStart: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: AuthDenialAuditOptions) {
    this.windowStart = opts.now();
  }

  /** Records the denial in full if it is the first of its peer and reason in this window, else counts it. */
  async record(d: AuthDenial): Promise<void> {
    const address = peerAddress(d.peer);
    const known = this.windows.get(windowKey(address, d.reason));
    const full = this.windows.size >= this.opts.maxKeys;
    const counted = known ?? (full ? this.overflow(d.reason) : undefined);
    if (counted) {
      counted.count++;
      counted.methods[d.method] = (counted.methods[d.method] ?? 0) + 1;
      return;
    }
    this.windows.set(windowKey(address, d.reason), {
      peer: address,
      reason: d.reason,
      count: 0,
      methods: {},
    });
    await this.write({
      type: 'auth.denied',
      agent: '',
      method: d.method,
      peer: d.peer,
      reason: d.reason,
      message: d.message,
    });
  }

  /** Ends the window: one aggregate record per peer and reason that was denied more than once. */
  async flush(): Promise<void> {
    const ended = [...this.windows.values()];
    const start = this.windowStart;
    const end = this.opts.now();
    this.windows = new Map();
    this.windowStart = end;
    for (const w of ended) {
      if (w.count === 0) continue;
      await this.write({
        type: 'auth.denied',
        agent: '',
        aggregate: true,
        peer: w.peer,
        reason: w.reason,
        count: w.count,
        methods: w.methods,
        window_start: new Date(start).toISOString(),
        window_end: new Date(end).toISOString(),
      });
    }
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.opts.windowMs);
    this.timer.unref();
  }

  /** Stops the timer and writes what the current window counted. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private overflow(reason: string): Window {
    const key = windowKey(OVERFLOW_PEER, reason);
    let w = this.windows.get(key);
    if (!w) {
      w = { peer: OVERFLOW_PEER, reason, count: 0, methods: {} };
      this.windows.set(key, w);
    }
    return w;
  }

  private async write(event: Parameters<AuditSink['write']>[0]): Promise<void> {
    try {
      await this.opts.audit.write(event);
    } catch (err) {
      // The caller is refused either way; a failed sink is reported by every other path too.
      this.opts.logger.error(
        { err: { message: (err as Error).message } },
        'audit write failed for auth.denied',
      );
    }
  }
}

const windowKey = (address: string, reason: string): string => `${address}\n${reason}`;

/**
 * The address a limit or an aggregate is kept for: the peer without its port; an IPv6 peer by its
 * /64 (one host commonly holds a whole /64, so counting addresses in it would be no limit).
 */
export function peerAddress(peer: string): string {
  const cut = peer.lastIndexOf(':');
  const address = cut > 0 && /^\d+$/.test(peer.slice(cut + 1)) ? peer.slice(0, cut) : peer;
  const bare = address.replace(/^\[|\]$/g, '');
  if (!bare.includes(':') || /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(bare)) return bare.replace(/^::ffff:/i, '');
  const groups = expandIpv6(bare);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : bare;
}

/** Eight 16-bit groups (lowercase, no leading zeros) of an IPv6 address, or undefined. */
function expandIpv6(address: string): string[] | undefined {
  const halves = address.toLowerCase().split('::');
  if (halves.length > 2) return undefined;
  const parts = halves.map((h) => (h === '' ? [] : h.split(':')));
  const head = parts[0] ?? [];
  const tail = parts[1] ?? [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const groups = [...head, ...Array<string>(Math.max(fill, 0)).fill('0'), ...tail];
  if (groups.length !== 8 || !groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ''));
}
