import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { COMMANDS } from '../../../src/cli/cli.js';
import { commandHelp } from '../../../src/cli/command.js';
import { packageRoot } from '../../../src/package-root.js';

/** The README's "CLI reference" section. */
function reference(): string {
  const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
  const start = readme.indexOf('## CLI reference');
  assert.ok(start >= 0, 'README has a "CLI reference" section');
  return readme.slice(start, readme.indexOf('\n## ', start + 1));
}

describe('cli: the README documents every command and flag', () => {
  const text = reference();

  for (const c of COMMANDS) {
    it(`svid-broker ${c.path}`, () => {
      const synopsis = ['svid-broker', c.path, c.args].filter(Boolean).join(' ');
      assert.ok(
        text.includes(`#### \`${synopsis}\``),
        `README CLI reference: add a "#### \`${synopsis}\`" heading`,
      );
      const section = (text.slice(text.indexOf(`#### \`${synopsis}\``)).split('\n#### ')[0] ?? '').replace(
        /\\\|/g,
        '|',
      );
      for (const [name, f] of Object.entries(c.flags)) {
        if (name === 'auth' || name === 'broker-id') continue; // documented once for all commands
        const shown = `--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
        assert.ok(section.includes(`\`${shown}\``), `README: ${synopsis} lacks ${shown}`);
      }
      // The help text lists the same flags.
      for (const name of Object.keys(c.flags)) assert.ok(commandHelp(c).includes(`--${name}`), name);
    });
  }

  it('the flags every broker command shares, and the exit codes', () => {
    for (const s of [
      '`--auth x509|jwt`',
      '`--broker-id SPIFFE_ID`',
      '| 2         | usage',
      '`--state any`',
    ]) {
      assert.ok(text.includes(s), s);
    }
  });
});
