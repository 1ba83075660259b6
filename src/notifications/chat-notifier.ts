/**
 * Posts chat messages for the audit records people must act on (approval requests, reminders and
 * expiry, break-glass grants, automatic quarantines). It follows the audit chain like any sink
 * (best effort: a chat outage never delays or refuses a request), so every message matches a
 * record, in order, retried while the webhook is down.
 */
import { readFileSync } from 'node:fs';
import type { ChatWebhookConfig } from '../config/notifications-schema.js';
import { NOTIFIABLE_EVENTS } from '../config/notifications-schema.js';
import { QueuedFollower, type FollowerLogger, type FollowerMetrics } from '../audit/follower.js';
import type { AuditRecord } from '../audit/types.js';
import { jsonBody, slackBody } from './chat-message.js';

export interface ChatNotifierDeps {
  consoleUrl: string | undefined;
  logger: FollowerLogger;
  metrics?: FollowerMetrics;
  retry?: { baseDelayMs: number; maxDelayMs: number };
}

export class ChatNotifier extends QueuedFollower {
  private readonly events: ReadonlySet<string>;

  private constructor(
    private readonly config: ChatWebhookConfig,
    /** The URL is a secret for Slack: it is never logged or put in an error. */
    private readonly url: string,
    private readonly deps: ChatNotifierDeps,
  ) {
    super({
      name: `chat:${config.name}`,
      mode: 'best_effort',
      maxBatch: 20,
      logger: deps.logger,
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
      ...(deps.retry ? { retry: deps.retry } : {}),
    });
    this.events = new Set(config.events ?? NOTIFIABLE_EVENTS);
  }

  static create(config: ChatWebhookConfig, deps: ChatNotifierDeps): ChatNotifier {
    const url = config.url ?? readFileSync(config.urlFile as string, 'utf8').trim();
    if (!/^https?:\/\//.test(url))
      throw new Error(`notifications.webhooks ${config.name}: urlFile does not hold an http(s) URL`);
    return new ChatNotifier(config, url, deps);
  }

  protected override accepts(record: AuditRecord): boolean {
    if (!this.events.has(record.type)) return false;
    // People are told about quarantines a trigger set; one set by hand was set by one of them.
    return record.type !== 'quarantine.set' || record.trigger !== 'manual';
  }

  protected async send(batch: readonly AuditRecord[]): Promise<void> {
    for (const record of batch) await this.post(record);
  }

  private async post(record: AuditRecord): Promise<void> {
    const body =
      this.config.format === 'slack'
        ? slackBody(record, this.deps.consoleUrl)
        : jsonBody(record, this.deps.consoleUrl);
    let status: number;
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      status = res.status;
      await res.body?.cancel();
    } catch (err) {
      // fetch's own message may name the URL: only its kind and errno are kept.
      const code = (err as { cause?: { code?: unknown } }).cause?.code;
      const kind = typeof code === 'string' ? code : (err as Error).name;
      throw new Error(`webhook ${this.config.name} unreachable (${kind})`);
    }
    if (status < 200 || status > 299) throw new Error(`webhook ${this.config.name} answered ${status}`);
  }
}
