/**
 * `notifications`: chat webhooks told about approval requests, reminders and expiry, break-glass
 * grants and automatic quarantines, with a link into the console. Nothing is ever decided from a
 * message: the link opens the console, where the person signs in.
 */
import { z } from 'zod';

export const NOTIFIABLE_EVENTS = [
  'approval.requested',
  'approval.reminder',
  'approval.expired',
  'breakglass.granted',
  'quarantine.set',
] as const;

const chatWebhook = z
  .object({
    /** For logs and metrics. */
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/),
    /** `slack`: a Slack-compatible incoming webhook (`{"text": ...}`); `json`: a generic JSON document. */
    format: z.enum(['slack', 'json']).default('slack'),
    /** The webhook URL. A Slack webhook URL is a secret: prefer urlFile. */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** File holding the webhook URL (read at startup; never logged). */
    urlFile: z.string().optional(),
    /** Which events this webhook gets (default: all). quarantine.set means automatic quarantines only. */
    events: z.array(z.enum(NOTIFIABLE_EVENTS)).min(1).optional(),
    timeoutMs: z.number().int().positive().default(5000),
  })
  .strict()
  .refine((w) => (w.url === undefined) !== (w.urlFile === undefined), 'set exactly one of url and urlFile');

export const notificationsConfigSchema = z
  .object({
    /** Base URL of the web console; messages link to `<consoleUrl>/approvals/<id>` and the like. */
    consoleUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** How often pending approvals are checked for half-life reminders and expiry. */
    scanIntervalSeconds: z.number().int().positive().max(3600).default(30),
    webhooks: z.array(chatWebhook).default([]),
  })
  .strict();

export type NotificationsConfig = z.infer<typeof notificationsConfigSchema>;
export type ChatWebhookConfig = NotificationsConfig['webhooks'][number];
