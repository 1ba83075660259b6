/**
 * What a call must pass before the broker spends work on it, per peer address: a limit on failed
 * authentications (a peer that keeps presenting bad credentials is refused before its next ones
 * are verified), an optional limit on all calls, the aggregated `auth.denied` audit, and the cap
 * on AwaitApproval streams per caller. All of it is per replica.
 */
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import type { GrpcServerConfig } from '../config/grpc-server-config.js';
import { BrokerError, isBrokerError } from '../errors.js';
import { AuthDenialAudit, peerAddress } from './auth-denial-audit.js';
import { TokenBuckets } from './token-buckets.js';

export interface CallGateOptions {
  config: GrpcServerConfig;
  audit: AuditSink;
  logger: Logger;
  now?: () => number;
}

const rateLimited = (message: string): BrokerError =>
  new BrokerError('RESOURCE_EXHAUSTED', message, { reason: 'rate_limited' });

export class CallGate {
  private readonly authFailures: TokenBuckets;
  private readonly calls: TokenBuckets | undefined;
  private readonly denials: AuthDenialAudit;
  private readonly streams = new Map<string, number>();

  constructor(private readonly opts: CallGateOptions) {
    const c = opts.config;
    const now = opts.now ?? Date.now;
    this.authFailures = new TokenBuckets({
      ratePerSecond: c.authFailuresPerSecond,
      burst: c.authFailureBurst,
      maxKeys: c.maxTrackedPeers,
      now,
    });
    if (c.callsPerSecond > 0) {
      this.calls = new TokenBuckets({
        ratePerSecond: c.callsPerSecond,
        burst: c.callBurst,
        maxKeys: c.maxTrackedPeers,
        now,
      });
    }
    this.denials = new AuthDenialAudit({
      audit: opts.audit,
      logger: opts.logger,
      windowMs: c.authDeniedWindowSeconds * 1000,
      maxKeys: c.maxTrackedPeers,
      now,
    });
  }

  /** Before authentication, so a refused peer costs a map lookup: the refusal, or undefined. */
  admit(peer: string): BrokerError | undefined {
    const address = peerAddress(peer);
    if (!this.authFailures.has(address)) {
      return rateLimited('too many failed authentications from this address: slow down');
    }
    if (this.calls && !this.calls.take(address))
      return rateLimited('too many calls from this address: slow down');
    return undefined;
  }

  /**
   * A refused call (by admit or by authentication): audits it, and a failed authentication spends
   * the peer's failure budget (a call over the call limit is no failed authentication: it must not
   * hold the peer to the failure rate).
   */
  denied(peer: string, method: string, err: unknown): Promise<void> {
    if (!(isBrokerError(err) && err.reason === 'rate_limited')) this.authFailures.take(peerAddress(peer));
    return this.denials.record({
      peer,
      method,
      reason: isBrokerError(err) ? err.reason : 'internal',
      message: isBrokerError(err) ? err.message : 'authentication failed',
    });
  }

  /**
   * Claims one of the caller's AwaitApproval slots on this replica, or throws RESOURCE_EXHAUSTED;
   * the returned function gives it back (calling it again does nothing).
   */
  openStream(caller: string): () => void {
    const open = this.streams.get(caller) ?? 0;
    const max = this.opts.config.maxAwaitApprovalStreamsPerCaller;
    if (open >= max) {
      throw new BrokerError(
        'RESOURCE_EXHAUSTED',
        `at most ${max} AwaitApproval streams per caller: close one or wait on another replica`,
        { reason: 'too_many_streams' },
      );
    }
    this.streams.set(caller, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streams.get(caller) ?? 1) - 1;
      if (left > 0) this.streams.set(caller, left);
      else this.streams.delete(caller);
    };
  }

  start(): void {
    this.denials.start();
  }

  /** Writes the aggregates of the current window. */
  stop(): Promise<void> {
    return this.denials.stop();
  }
}
