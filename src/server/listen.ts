/** Starts an HTTP(S) server on `host:port` (port 0 picks one) and closes it with its connections. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RunningListener {
  port: number;
  close(): Promise<void>;
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const idx = listen.lastIndexOf(':');
  const host = listen.slice(0, idx).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(listen.slice(idx + 1)) };
}

export async function listenOn(server: Server, listen: string): Promise<RunningListener> {
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
