/**
 * Terminal-safe text for everything the CLI prints that came over the wire. Agents write
 * justifications, intents, reasons and tool names that approvers read in a table: a newline, an
 * escape sequence or a bidi override there would let an agent draw a fake row or recolour one. The
 * broker refuses such text, but the CLI does not rely on that (an older broker, a record written
 * before the check, a field it does not check).
 */

/** C0, DEL, C1, line/paragraph separators, bidi marks, embeddings, overrides and isolates. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;
const UNSAFE_OR_BACKSLASH = new RegExp(`\\\\|${UNSAFE.source}`, 'gu');

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

function escapeChar(c: string): string {
  return SHORT[c] ?? `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`;
}

/**
 * One line, shown as sent but with every unsafe character written as an escape (`\n`, `\u{202e}`);
 * a backslash doubles, so an escape the agent typed cannot pass for one the CLI wrote.
 */
export function printable(text: string): string {
  return text.replace(UNSAFE_OR_BACKSLASH, escapeChar);
}

/** What JSON.stringify leaves unescaped of UNSAFE: DEL, C1, separators and bidi characters. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

/**
 * JSON.stringify escapes C0 controls inside strings but passes C1 controls and bidi characters
 * through; this writes those as `\uXXXX` too. Outside strings JSON.stringify emits only ASCII (the
 * indentation's newlines are left alone), so the result is the same JSON value.
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    UNSAFE_IN_JSON,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`,
  );
}
