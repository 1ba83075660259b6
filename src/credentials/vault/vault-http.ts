/**
 * The HTTP layer under node-vault (its `request-promise` seam), with redirects switched off.
 *
 * node-vault's own layer is an axios instance with axios' defaults: it follows up to 21 redirects
 * and, on a hop to another origin, strips only `Authorization` and `Cookie`, so `X-Vault-Token`
 * goes along, and the other origin's answer comes back as if Vault had given it (spec §9). Here a
 * 3xx is returned as an answer like any other, never followed; VaultClient refuses it.
 *
 * It keeps node-vault's contract: `defaults()` returns the request function, which resolves with
 * `{statusCode, body, request: {path}}` for every status and rejects only without an answer.
 */
import { Agent } from 'node:https';
import type { AxiosStatic } from 'axios';

/** What node-vault hands its request function (the fields VaultClient sets). */
export interface VaultHttpRequest {
  method: string;
  uri: string;
  headers?: Record<string, string>;
  json?: unknown;
  timeout?: number;
  /** A TLS client certificate for this call (cert auth login), PEM. */
  cert?: string;
  key?: string;
}

export interface VaultHttpResponse {
  statusCode: number;
  body: unknown;
  request: { path: string };
}

export type VaultHttpFunction = (request: VaultHttpRequest) => Promise<VaultHttpResponse>;

/** node-vault's `request-promise` option: an object whose `defaults()` gives the request function. */
export interface VaultHttpLayer {
  defaults(): VaultHttpFunction;
}

/** `axios` is passed in: VaultClient loads it (and node-vault) only when a Vault backend is built. */
export function vaultHttpLayer(axios: AxiosStatic, opts: { ca?: string }): VaultHttpLayer {
  // Always verify Vault's certificate, whatever VAULT_SKIP_VERIFY says.
  const tls = { rejectUnauthorized: true, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) };
  const agent = new Agent(tls);
  const http = axios.create({
    maxRedirects: 0,
    // Every status is an answer for node-vault to judge (it rejects all but 200 and 204).
    validateStatus: () => true,
    httpsAgent: agent,
  });
  const request: VaultHttpFunction = async (req) => {
    const response = await http.request({
      method: req.method,
      url: req.uri,
      headers: { ...req.headers },
      ...(req.json !== undefined && typeof req.json === 'object' ? { data: req.json } : {}),
      ...(req.timeout !== undefined ? { timeout: req.timeout } : {}),
      ...(req.cert !== undefined && req.key !== undefined
        ? { httpsAgent: new Agent({ ...tls, cert: req.cert, key: req.key }) }
        : {}),
    });
    return { statusCode: response.status, body: response.data, request: { path: new URL(req.uri).pathname } };
  };
  return { defaults: () => request };
}
