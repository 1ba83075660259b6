/**
 * The README's catalogue of audit record types, rendered from the code's own lists
 * (event-types.ts and event-examples.ts): a table of every type with its meaning, then one JSON
 * example each. `npx tsx test/support/write-audit-catalogue.ts` writes it into the README;
 * test/unit/audit/event-types.test.ts fails when the README lags.
 */
import { AUDIT_EVENT_EXAMPLES } from './event-examples.js';
import { AUDIT_EVENT_TYPES, type AuditEventType } from './event-types.js';

export const CATALOGUE_BEGIN = '<!-- audit-catalogue:begin (generated from src/audit/event-*.ts) -->';
export const CATALOGUE_END = '<!-- audit-catalogue:end -->';

const TYPES = Object.keys(AUDIT_EVENT_TYPES) as AuditEventType[];

function table(): string[] {
  return [
    '| type | when |',
    '| --- | --- |',
    ...TYPES.map((t) => `| \`${t}\` | ${AUDIT_EVENT_TYPES[t].replace(/\|/g, '\\|')} |`),
  ];
}

function exampleOf(type: AuditEventType): string[] {
  const { example, also } = AUDIT_EVENT_EXAMPLES[type];
  const lines = [
    `#### \`${type}\``,
    '',
    `${AUDIT_EVENT_TYPES[type]}.`,
    '',
    '```json',
    JSON.stringify({ type, ...example }, null, 2),
    '```',
  ];
  if (also?.length) lines.push('', `Some records also carry: ${also.map((f) => `\`${f}\``).join(', ')}.`);
  return lines;
}

/** The generated block, markers included (unformatted: the README holds it as prettier formats it). */
export function renderAuditCatalogue(): string {
  return [
    CATALOGUE_BEGIN,
    '',
    ...table(),
    '',
    'One example of each (every record also has `id`, `time`, `source`, `seq`, `prev_hash` and `hash`,',
    'and, when it was written for a call, `traceparent` and `context` as described below):',
    '',
    ...TYPES.flatMap((t) => [...exampleOf(t), '']),
    CATALOGUE_END,
  ].join('\n');
}
