import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { LOG_REDACT_PATHS, REDACTED, redactForLog } from '../../../src/audit/redact.js';

describe('audit/redact', () => {
  it('redacts sensitive keys deep, keeps allow-listed identifiers, never mutates', () => {
    const input = {
      lease_id: 'l1',
      kid: 'k1',
      key_id: 'k2',
      token_type: 'Bearer',
      credential: { kind: 'jwt', token: 'eyJ...' },
      nested: [
        { apiKey: 'a', Authorization: 'Bearer x', ok: 1 },
        { client_secret: 's', password: 'p' },
      ],
      headers: { authorization: 'Bearer y', 'x-request-id': 'r' },
      privateKey: new Uint8Array([1, 2, 3]),
      when: new Date(Date.UTC(2025, 0, 1)),
    };
    const copy = structuredClone(input);
    assert.deepEqual(redactForLog(input), {
      lease_id: 'l1',
      kid: 'k1',
      key_id: 'k2',
      token_type: 'Bearer',
      credential: REDACTED,
      nested: [
        { apiKey: REDACTED, Authorization: REDACTED, ok: 1 },
        { client_secret: REDACTED, password: REDACTED },
      ],
      headers: { authorization: REDACTED, 'x-request-id': 'r' },
      privateKey: REDACTED,
      when: '2025-01-01T00:00:00.000Z',
    });
    assert.deepEqual(input, copy);
  });

  it('survives cycles, maps, errors and binary data', () => {
    const cyclic: Record<string, unknown> = { name: 'a' };
    cyclic.self = cyclic;
    const err = Object.assign(new Error('boom'), { secretValue: 's', status: 500 });
    assert.deepEqual(
      redactForLog({ cyclic, map: new Map([['token', 't']]), err, blob: Buffer.from('abcd'), n: 10n }),
      {
        cyclic: { name: 'a', self: '[Circular]' },
        map: { token: REDACTED },
        err: { type: 'Error', message: 'boom', secretValue: REDACTED, status: 500 },
        blob: '[4 bytes]',
        n: '10',
      },
    );
    const shared = { a: 1 };
    assert.deepEqual(redactForLog({ x: shared, y: shared }), { x: { a: 1 }, y: { a: 1 } });
  });

  it('LOG_REDACT_PATHS is accepted by pino and censors tokens and headers', () => {
    const lines: string[] = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = pino({ redact: { paths: [...LOG_REDACT_PATHS], censor: REDACTED } }, out);
    log.info(
      {
        token: 't0',
        credential: { token: 't1', metadata: { kid: 'k' } },
        result: { token: 't2', access_token: 't3', lease_id: 'l1' },
        req: { headers: { authorization: 'Bearer t4', 'x-request-id': 'r' } },
      },
      'issued',
    );
    const line = lines.join('');
    for (const secret of ['t0', 't1', 't2', 't3', 't4']) assert.doesNotMatch(line, new RegExp(`"${secret}"`));
    assert.match(line, /"lease_id":"l1"/);
    assert.match(line, /"x-request-id":"r"/);
  });
});
