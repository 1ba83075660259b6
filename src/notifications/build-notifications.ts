/**
 * Wires chat notifications when `notifications.webhooks` lists any: one ChatNotifier per webhook
 * following the audit pipeline, and the approval watch that writes reminders and expiry records.
 */
import type { ApprovalStore } from '../approvals/types.js';
import type { FollowerLogger } from '../audit/follower.js';
import type { AuditPipeline } from '../audit/pipeline.js';
import type { AuditSink } from '../audit/types.js';
import type { NotificationsConfig } from '../config/notifications-schema.js';
import type { RedisClient } from '../redis/connect.js';
import { ApprovalWatch, MemoryNotificationClaims, RedisNotificationClaims } from './approval-watch.js';
import { ChatNotifier } from './chat-notifier.js';

export interface NotificationDeps {
  config: NotificationsConfig;
  /** Undefined when a test injected its own audit sink: there is nothing to follow. */
  pipeline: AuditPipeline | undefined;
  audit: Pick<AuditSink, 'write'>;
  approvals: Pick<ApprovalStore, 'list' | 'get'>;
  redis: RedisClient | undefined;
  redisPrefix: string;
  logger: FollowerLogger;
  now?: () => number;
}

/** Starts what the config asks for; returns the stop to run at shutdown (undefined: nothing started). */
export function startNotifications(deps: NotificationDeps): (() => Promise<void>) | undefined {
  const { config, pipeline } = deps;
  if (config.webhooks.length === 0) return undefined;
  if (pipeline === undefined)
    throw new Error('notifications need the audit pipeline (an injected audit sink has none)');
  for (const webhook of config.webhooks) {
    pipeline.addFollower(
      ChatNotifier.create(webhook, { consoleUrl: config.consoleUrl, logger: deps.logger }),
    );
  }
  const now = deps.now ?? Date.now;
  const watch = new ApprovalWatch({
    approvals: deps.approvals,
    audit: deps.audit,
    claims: deps.redis
      ? new RedisNotificationClaims(deps.redis, deps.redisPrefix)
      : new MemoryNotificationClaims(now),
    now,
    intervalMs: config.scanIntervalSeconds * 1000,
    logger: deps.logger,
  });
  watch.start();
  return () => watch.stop();
}
