/**
 * A real local HTTP server standing in for a webhook or SSF receiver: it records every POST it
 * answers, and a test decides each answer (a status, or `hang`: never answer until released).
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedPost {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export type Answer = number | 'hang' | { status: number; headers?: Record<string, string>; body?: string };

export class HttpReceiverStub {
  /** Every POST answered 2xx, in arrival order. */
  readonly accepted: ReceivedPost[] = [];
  /** Every POST that arrived, whatever the answer. */
  readonly received: ReceivedPost[] = [];
  /** Decides each answer; default 200. */
  answer: (post: ReceivedPost) => Answer = () => 200;
  private server: Server | undefined;
  private hanging: Array<{ post: ReceivedPost; res: ServerResponse }> = [];

  private constructor(private portNumber: number) {}

  /** Starts on `port` (0: any free port). */
  static async start(port = 0): Promise<HttpReceiverStub> {
    const stub = new HttpReceiverStub(port);
    await stub.listen();
    return stub;
  }

  /** A free port with nothing listening on it (a receiver that is down). */
  static async freePort(): Promise<number> {
    const stub = await HttpReceiverStub.start();
    const port = stub.port;
    await stub.stop();
    return port;
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portNumber}/hook`;
  }

  async listen(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const post = {
          path: req.url ?? '/',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        };
        this.received.push(post);
        this.reply(post, res);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.portNumber, '127.0.0.1', () => resolve());
    });
    this.portNumber = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Answers every hanging request with `status`. */
  release(status = 200): void {
    for (const { post, res } of this.hanging.splice(0)) {
      if (res.destroyed) continue;
      if (status >= 200 && status < 300) this.accepted.push(post);
      res.writeHead(status).end();
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    for (const { res } of this.hanging.splice(0)) res.destroy();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private reply(post: ReceivedPost, res: ServerResponse): void {
    const answer = this.answer(post);
    if (answer === 'hang') {
      this.hanging.push({ post, res });
      return;
    }
    const { status, headers, body } = typeof answer === 'number' ? { status: answer } : answer;
    if (status >= 200 && status < 300) this.accepted.push(post);
    res.writeHead(status, headers ?? {}).end(body ?? '');
  }
}
