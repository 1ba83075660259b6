import assert from 'node:assert/strict';
import { createServer, get, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import { streamAudit } from '../../../src/console/audit-stream.js';
import { humanCaller } from '../../../src/identity/human.js';

const ALICE = humanCaller({
  sub: 'alice',
  email: 'alice@example.org',
  groups: ['security'],
  authTime: 0,
  acr: '',
});

describe('console live audit stream (Server-Sent Events)', () => {
  let server: Server;
  let sink: MemoryAuditSink;
  let signedIn: boolean;
  const reads: string[] = [];

  beforeEach(async () => {
    sink = new MemoryAuditSink();
    signedIn = true;
    const guard = {
      authorize: async () => undefined,
      recordRead: async (_caller: unknown, method: string) => {
        reads.push(method);
      },
    };
    server = createServer((_req, res) => {
      void streamAudit(res, ALICE, guard, sink, async () => signedIn, 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterEach(() => {
    server.closeAllConnections();
    server.close();
  });

  const open = (): Promise<IncomingMessage> =>
    new Promise((resolve) => get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, resolve));

  it('sends each committed record as an `audit` event with its seq as id, and records the read', async () => {
    const res = await open();
    assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
    let text = '';
    const got = new Promise<void>((resolve) =>
      res.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('task.begun')) resolve();
      }),
    );
    await sink.write({ type: 'task.begun', agent: 'spiffe://example.org/agents/demo', note: 'a\nb' });
    await got;
    const event = text.split('\n\n').find((e) => e.startsWith('event: audit')) as string;
    const [, id, data] = event.split('\n');
    assert.equal(id, 'id: 1');
    assert.equal(JSON.parse((data as string).slice('data: '.length)).note, 'a\nb');
    assert.ok(reads.includes('ConsoleAuditStream'));
  });

  it('ends when the session no longer stands', async () => {
    const res = await open();
    const ended = new Promise<void>((resolve) => res.on('end', resolve));
    res.resume();
    signedIn = false;
    await ended;
  });
});
