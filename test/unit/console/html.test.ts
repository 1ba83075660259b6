import assert from 'node:assert/strict';
import { escapeHtml, html, table } from '../../../src/console/html.js';

describe('console html: every value is text', () => {
  it('escapes the characters that open markup or leave an attribute', () => {
    assert.equal(
      escapeHtml(`<a href="x" onclick='y'>&\``),
      '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;',
    );
  });

  it('interpolated strings, numbers and array items are escaped; fragments built by html are not escaped twice', () => {
    const evil = '"><script>alert(1)</script>';
    const out = html`<p title="${evil}">${evil}${[evil, html`<b>${evil}</b>`]}${7}</p>`.text;
    assert.ok(!out.includes('<script>'));
    assert.equal(out.split('&lt;script&gt;').length - 1, 4);
    assert.ok(out.includes('<b>&quot;&gt;&lt;script&gt;'));
    assert.ok(out.endsWith('7</p>'));
  });

  it('a table cell is text unless built with html', () => {
    const out = table(['a'], [['<i>x</i>'], [html`<i>y</i>`]]).text;
    assert.ok(out.includes('<td>&lt;i&gt;x&lt;/i&gt;</td>'));
    assert.ok(out.includes('<td><i>y</i></td>'));
  });
});
