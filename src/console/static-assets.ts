/**
 * The console's stylesheet and its only script (the live audit view), served as files from
 * /static/ so the Content-Security-Policy can forbid inline script. Kept here as text so the build
 * needs no copy step.
 */

export const CONSOLE_JS = `// The console's only script: the live audit view. Values are set as text, never as HTML.
'use strict';
(function () {
  const list = document.getElementById('audit-events');
  const status = document.getElementById('audit-status');
  if (!list || !status) return;
  const source = new EventSource('/audit/events');
  source.onopen = () => {
    status.textContent = 'Live: new audit records appear at the top.';
  };
  source.onerror = () => {
    status.textContent = 'Disconnected from the audit stream; retrying…';
  };
  source.addEventListener('audit', (event) => {
    const record = JSON.parse(event.data);
    const item = document.createElement('li');
    const head = document.createElement('strong');
    const who = record.actor ? \`\${record.actor.email || record.actor.sub} (human)\` : record.agent;
    head.textContent = \`\${record.time} \${record.type} \${who}\`;
    const body = document.createElement('code');
    body.textContent = JSON.stringify(record);
    item.append(head, document.createElement('br'), body);
    list.prepend(item);
  });
})();
`;

export const CONSOLE_CSS = `body { font-family: system-ui, sans-serif; margin: 0; color: #1b1f24; }
header { background: #1b1f24; color: #fff; padding: 0.6rem 1rem; display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
header a { color: #cfe3ff; margin-right: 0.6rem; }
header .who { margin-left: 1rem; color: #ddd; }
main { padding: 1rem 1.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccd; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; font-size: 0.9rem; }
dl.request { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dt { font-weight: bold; }
pre.justification { white-space: pre-wrap; background: #f4f6f8; padding: 0.6rem; border: 1px solid #ccd; }
form { margin: 0.4rem 0; }
form.inline { display: inline; }
label { display: inline-block; margin: 0.2rem 0.8rem 0.2rem 0; }
.error { color: #9b1c1c; }
.empty { color: #666; }
#audit-events code { font-size: 0.8rem; word-break: break-all; }
`;
