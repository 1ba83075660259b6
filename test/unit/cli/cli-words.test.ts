import { strict as assert } from 'node:assert';
import { Metadata, status } from '@grpc/grpc-js';
import { main } from '../../../src/cli/cli.js';
import { checkSvidValidity } from '../../../src/cli/connect.js';
import { parseDuration } from '../../../src/cli/duration.js';
import { explainError, renameFields } from '../../../src/cli/explain-error.js';
import { LocalCa } from '../../../src/dev/local-ca.js';

const ADDRESS = 'localhost:8443';

function grpcError(code: status, details: string, md: Record<string, string> = {}): Error {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(md)) metadata.set(k, v);
  return Object.assign(new Error(details), { code, details, metadata });
}

describe('cli: one vocabulary and plain errors', () => {
  it('durations: 90, 90s, 15m, 2h, 1d; negative and unknown units are usage errors', () => {
    assert.deepEqual(
      ['90', '90s', '15m', '2h', '1d', '0'].map((t) => parseDuration(t, '--ttl')),
      [90, 90, 900, 7200, 86_400, 0],
    );
    assert.throws(() => parseDuration('-5', '--ttl'), {
      name: 'UsageError',
      message: '--ttl: must not be negative (got -5)',
    });
    assert.throws(() => parseDuration('5w', '--ttl'), {
      name: 'UsageError',
      message: /expected a duration like 90, 90s, 15m, 2h or 1d/,
    });
  });

  it('wire fields become flags, in the prefix and in the text', () => {
    assert.equal(
      renameFields('ttl_seconds: must be at most 604800', { ttl_seconds: '--ttl' }),
      '--ttl: must be at most 604800',
    );
    assert.equal(
      explainError(
        grpcError(status.INVALID_ARGUMENT, 'confirm_all: revoking every lease needs confirm_all'),
        { address: ADDRESS },
      ),
      '--confirm-all: revoking every lease needs --confirm-all',
    );
    assert.equal(
      explainError(grpcError(status.INVALID_ARGUMENT, 'approval_id: is required'), {
        address: ADDRESS,
        fields: { approval_id: 'APPROVAL_ID' },
      }),
      'APPROVAL_ID: is required',
    );
  });

  it('transport failures get their own sentence', () => {
    const unavailable = (text: string): string =>
      explainError(
        grpcError(status.UNAVAILABLE, `No connection established. Last error: ${text}. Resolution note: `),
        {
          address: ADDRESS,
        },
      );
    assert.equal(
      unavailable('Error: connect ECONNREFUSED 127.0.0.1:8443'),
      'no broker at localhost:8443: is it running? (set SVID_BROKER_ADDR)',
    );
    assert.match(
      unavailable('Error: 80:error:0A00010B:SSL routines::wrong version number'),
      /^localhost:8443 does not speak TLS/,
    );
    assert.match(
      unavailable('Error: broker is spiffe://example.org/agents/x, expected spiffe://example.org/broker'),
      /^the server at localhost:8443 is spiffe:\/\/example\.org\/agents\/x, not the broker spiffe:\/\/example\.org\/broker:/,
    );
    assert.match(
      explainError(
        grpcError(status.UNAUTHENTICATED, 'X.509-SVID expired at 2026-01-01T00:00:00.000Z', {
          'x-svid-broker-reason': 'svid_expired',
        }),
        {
          address: ADDRESS,
        },
      ),
      /your SVID expired before the broker saw it; check the SPIRE agent and this host's clock/,
    );
    assert.match(
      explainError(
        new Error(
          'No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:8443]',
        ),
        { address: ADDRESS },
      ),
      /^cannot listen on 127\.0\.0\.1:8443: the address is in use/,
    );
  });

  it('an SVID already expired is refused before any call, naming when it expired', async () => {
    const ca = await LocalCa.create('example.org');
    const now = Date.now();
    const expired = await ca.issueX509Svid('spiffe://example.org/agents/demo', {
      notBefore: new Date(now - 7_200_000),
      notAfter: new Date(now - 3_600_000),
    });
    assert.throws(
      () => checkSvidValidity(expired),
      /your SVID \(spiffe:\/\/example\.org\/agents\/demo\) expired at .*: the Workload API did not renew it/,
    );
    const fresh = await ca.issueX509Svid('spiffe://example.org/agents/demo');
    assert.doesNotThrow(() => checkSvidValidity(fresh));
  });

  it('mcp --auth other than x509|jwt is a usage mistake (exit 2), before anything is dialled', async () => {
    const { error } = console;
    let err = '';
    console.error = (...a: unknown[]) => void (err += `${a.map(String).join(' ')}\n`);
    try {
      assert.equal(await main(['mcp', '--auth', 'spiffe']), 2);
    } finally {
      console.error = error;
    }
    assert.match(err, /^svid-broker mcp: --auth must be x509 or jwt\n/);
  });

  it('help names a command or a group; an unknown one is a usage mistake (it printed an empty group, exit 0)', async () => {
    const { log, error } = console;
    let out = '';
    let err = '';
    console.log = (...a: unknown[]) => void (out += `${a.map(String).join(' ')}\n`);
    console.error = (...a: unknown[]) => void (err += `${a.map(String).join(' ')}\n`);
    try {
      assert.deepEqual(
        [
          await main(['help']),
          await main(['help', 'admin']),
          await main(['help', 'admin', 'revoke']),
          await main(['help', 'bogus']),
          await main(['help', 'admin', 'bogus']),
        ],
        [0, 0, 0, 2, 2],
      );
    } finally {
      console.log = log;
      console.error = error;
    }
    assert.match(out, /usage: svid-broker admin revoke \[flags\]/);
    assert.match(err, /svid-broker bogus: unknown command/);
    assert.match(err, /svid-broker admin: unknown command 'admin bogus'/);
  });
});
