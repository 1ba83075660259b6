/** The HTTP(S) server every cloud emulator runs on: 127.0.0.1, port 0, the request body read first. */
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface RunningEmulatorServer {
  url: string;
  close(): Promise<void>;
}

export type EmulatorHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
) => Promise<void> | void;

export async function serveEmulator(
  handler: EmulatorHandler,
  tls?: { cert: string; key: string },
): Promise<RunningEmulatorServer> {
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      await handler(req, res, Buffer.concat(chunks));
    })();
  };
  const server = tls ? createHttps(tls, listener) : createHttp(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    // https: by name, so the certificate's DNS name matches.
    url: tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
