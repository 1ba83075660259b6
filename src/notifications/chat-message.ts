/**
 * What a chat message says about an audit record: one plain summary, a link into the console, and
 * the two shapes it is sent in (a Slack-compatible `{"text"}` and a generic JSON document). Every
 * value that came from an agent or a person (a justification, a reason) is text: Slack's control
 * characters `& < >` are escaped, so `<!channel>` or a disguised link cannot ride in a request.
 */
import { toCloudEvent } from '../audit/cloudevent.js';
import type { AuditRecord } from '../audit/types.js';

export interface ChatMessage {
  event: string;
  /** One line for a person: plain text, values as given. */
  summary: string;
  /** Where to act: the console page (undefined without notifications.consoleUrl). */
  link: string | undefined;
}

type Fields = Record<string, unknown>;
type Part = string | { value: unknown };

const str = (value: unknown): string => (Array.isArray(value) ? value.join(', ') : String(value ?? ''));

/** `approval <id> for <agent> (<role> in <environment>)` */
function approvalFor(v: (key: string) => Part): Part[] {
  return ['approval ', v('approval'), ' for ', v('agent'), ' (', v('role'), ' in ', v('environment'), ')'];
}

/** The summary as parts: literal text, and values that came from the record. */
function summaryParts(r: Fields): Part[] {
  const v = (key: string): Part => ({ value: r[key] });
  switch (r.type) {
    case 'approval.requested':
      return [
        'Approval needed: ',
        v('agent'),
        ' asks for ',
        v('role'),
        ' in ',
        v('environment'),
        ' (change ',
        v('change_type'),
        ', sensitivity ',
        v('sensitivity'),
        ') for task ',
        v('task'),
        '. Justification: "',
        v('justification'),
        '". Approvals needed: ',
        v('approvals_required'),
        '; expires ',
        v('approval_expires_at'),
        '.',
      ];
    case 'approval.reminder':
      return [
        'Still pending, half its time gone: ',
        ...approvalFor(v),
        ', ',
        v('approvals_received'),
        ' of ',
        v('approvals_required'),
        ' approvals; expires ',
        v('expires_at'),
        '.',
      ];
    case 'approval.expired':
      return ['Expired undecided: ', ...approvalFor(v), '. The agent must ask again.'];
    case 'breakglass.granted':
      return [
        'Break-glass granted by ',
        v('agent'),
        ' to ',
        v('target'),
        ' for ',
        v('roles'),
        ' (',
        v('ttl_seconds'),
        ' s): "',
        v('reason'),
        '". It needs a review.',
      ];
    case 'quarantine.set':
      return [
        'Quarantined automatically (',
        v('trigger'),
        '): ',
        v('pattern'),
        '. Reason: "',
        v('reason'),
        '".',
      ];
    default:
      return [v('type'), ' by ', v('agent')];
  }
}

function consolePath(r: Fields): string {
  switch (r.type) {
    case 'approval.requested':
    case 'approval.reminder':
    case 'approval.expired':
      return `/approvals/${encodeURIComponent(str(r.approval))}`;
    case 'breakglass.granted':
      return '/break-glass';
    default:
      return '/quarantines';
  }
}

function render(parts: Part[], escape: (s: string) => string): string {
  return parts.map((p) => (typeof p === 'string' ? p : escape(str(p.value)))).join('');
}

export function chatMessage(record: AuditRecord, consoleUrl: string | undefined): ChatMessage {
  const link =
    consoleUrl === undefined ? undefined : `${consoleUrl.replace(/\/+$/, '')}${consolePath(record)}`;
  return { event: record.type, summary: render(summaryParts(record), (s) => s), link };
}

/** Slack's mrkdwn control characters. */
export function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A Slack-compatible incoming-webhook body. */
export function slackBody(record: AuditRecord, consoleUrl: string | undefined): string {
  const { link } = chatMessage(record, consoleUrl);
  const text = render(summaryParts(record), slackEscape);
  return JSON.stringify({ text: link === undefined ? text : `${text}\n<${link}|Open in the console>` });
}

/** The generic JSON body: the message, and the record itself as its CloudEvent. */
export function jsonBody(record: AuditRecord, consoleUrl: string | undefined): string {
  const message = chatMessage(record, consoleUrl);
  return JSON.stringify({ ...message, link: message.link ?? null, record: toCloudEvent(record) });
}
