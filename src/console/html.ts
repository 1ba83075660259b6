/**
 * Server-rendered HTML where every value is text: `html` escapes each interpolated value unless it
 * is itself a fragment built by `html` (or a list of them). There is no other way to put markup
 * into a page, so a justification, a reason or an agent id can never become HTML.
 */

/** Markup built by `html`; the only thing interpolated unescaped. */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => ESCAPES[c] as string);
}

type Interpolated = SafeHtml | string | number | boolean | undefined | null | readonly Interpolated[];

function render(value: Interpolated): string {
  if (value instanceof SafeHtml) return value.text;
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Interpolated[]): SafeHtml {
  let out = strings[0] as string;
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] as string);
  });
  return new SafeHtml(out);
}

/** An epoch-ms time as RFC 3339, "" for 0, and the number itself when no date can hold it. */
export function isoTime(ms: number | undefined): string {
  if (!ms) return '';
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

export interface PageFrame {
  title: string;
  /** The signed-in person, for the header; absent on sign-in pages. */
  who?: { email: string; sub: string };
  csrf?: string;
  body: SafeHtml;
}

const NAV: Array<[string, string]> = [
  ['/approvals', 'Approvals'],
  ['/leases', 'Leases'],
  ['/tasks', 'Tasks'],
  ['/quarantines', 'Quarantines'],
  ['/revoke', 'Revoke'],
  ['/break-glass', 'Break-glass'],
  ['/audit', 'Audit'],
];

export function page(frame: PageFrame): string {
  const nav = frame.who
    ? html`<nav>
        ${NAV.map(([href, label]) => html`<a href="${href}">${label}</a> `)}
        <span class="who">${frame.who.email || frame.who.sub}</span>
        <form method="post" action="/auth/logout" class="inline">
          <input type="hidden" name="_csrf" value="${frame.csrf}" /><button type="submit">Sign out</button>
        </form>
      </nav>`
    : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <title>${frame.title} · svid-broker</title>
        <link rel="stylesheet" href="/static/console.css" />
      </head>
      <body>
        <header><strong>svid-broker</strong> ${nav}</header>
        <main>
          <h1>${frame.title}</h1>
          ${frame.body}
        </main>
        <script src="/static/console.js"></script>
      </body>
    </html>`.text;
}

/** A POST form with the CSRF token; `fields` are its inputs. */
export function postForm(action: string, csrf: string, fields: SafeHtml, submit: string): SafeHtml {
  return html`<form method="post" action="${action}">
    <input type="hidden" name="_csrf" value="${csrf}" />${fields} <button type="submit">${submit}</button>
  </form>`;
}

/** A table of rows; every cell is escaped text unless built with `html`. */
export function table(head: readonly string[], rows: ReadonlyArray<readonly Interpolated[]>): SafeHtml {
  if (rows.length === 0) return html`<p class="empty">Nothing here.</p>`;
  return html`<table>
    <thead>
      <tr>
        ${head.map((h) => html`<th>${h}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (r) =>
          html`<tr>
            ${r.map((c) => html`<td>${c}</td>`)}
          </tr>`,
      )}
    </tbody>
  </table>`;
}
