/**
 * Mounts and routes. Each namespace has its own mount table (as in Vault), each mount a backend
 * whose routes are patterns relative to the mount: `creds/:name` captures one segment, `*rest` the
 * remainder including slashes.
 */
import type { Fields, FieldSchema } from './params.js';
import type { TokenEntry } from './token-store.js';
import type { AuthBlock, NamespaceEntry, Operation } from './types.js';

export interface RequestContext {
  readonly requestId: string;
  readonly namespace: NamespaceEntry;
  /** Namespace-relative request path, e.g. `database/creds/readonly`. */
  readonly path: string;
  readonly mountPath: string;
  readonly operation: Operation;
  readonly method: string;
  readonly params: Readonly<Record<string, string>>;
  readonly fields: Fields;
  /** The authenticated caller; undefined on unauthenticated routes. */
  readonly token: TokenEntry | undefined;
  /** The token the request presented, for routes that check it themselves (unwrap). Never logged. */
  readonly rawToken: string | undefined;
  readonly now: number;
}

/** A normal answer: the envelope is built from it (status 200 unless set). */
export interface JsonReply {
  readonly kind: 'json';
  readonly data?: Record<string, unknown> | null;
  readonly auth?: AuthBlock | null;
  readonly lease?: { readonly id: string; readonly duration: number; readonly renewable: boolean };
  readonly warnings?: readonly string[];
}

/** No body: 204, or 202 for asynchronous revocation. */
export interface EmptyReply {
  readonly kind: 'empty';
  readonly status: 202 | 204;
}

/** A body that is not an envelope (sys/health, an unwrapped response); never wrapped. */
export interface RawReply {
  readonly kind: 'raw';
  readonly status: number;
  readonly body: unknown;
}

export type Reply = JsonReply | EmptyReply | RawReply;
export type Handler = (ctx: RequestContext) => Reply | Promise<Reply>;

export interface RouteDef {
  readonly pattern: string;
  readonly operations: Partial<Record<Operation, Handler>>;
  readonly fields?: FieldSchema;
  /** Login and health paths: no token needed, and a presented one is ignored (as Vault does). */
  readonly unauthenticated?: boolean;
  /** Root-protected path: the caller needs `sudo` besides the operation's capability. */
  readonly sudo?: boolean;
  /** Decides create vs update for writes, as Vault's ExistenceCheck does. */
  readonly exists?: (ctx: { namespace: NamespaceEntry; params: Readonly<Record<string, string>> }) => boolean;
  /** sys/wrapping/unwrap: the presented token may be the wrapping token itself. */
  readonly unwrap?: boolean;
}

export interface Backend {
  readonly type: string;
  readonly routes: readonly RouteDef[];
}

export interface RouteMatch {
  readonly mountPath: string;
  readonly backend: Backend;
  readonly route: RouteDef;
  readonly params: Readonly<Record<string, string>>;
}

function matchPattern(pattern: string, rest: string): Record<string, string> | undefined {
  const pSegs = pattern === '' ? [] : pattern.split('/');
  const rSegs = rest === '' ? [] : rest.split('/');
  const params: Record<string, string> = {};
  for (let i = 0; i < pSegs.length; i++) {
    const p = pSegs[i] as string;
    if (p.startsWith('*')) {
      const remainder = rSegs.slice(i).join('/');
      if (remainder === '') return undefined;
      params[p.slice(1)] = remainder;
      return params;
    }
    const r = rSegs[i];
    if (r === undefined) return undefined;
    if (p.startsWith(':')) {
      if (r === '') return undefined;
      params[p.slice(1)] = r;
    } else if (p !== r) {
      return undefined;
    }
  }
  return rSegs.length === pSegs.length ? params : undefined;
}

export class MountTable {
  /** namespace path -> mount path (with trailing slash) -> backend. */
  private readonly mounts = new Map<string, Map<string, Backend>>();

  mount(ns: NamespaceEntry, mountPath: string, backend: Backend): void {
    let table = this.mounts.get(ns.path);
    if (table === undefined) {
      table = new Map();
      this.mounts.set(ns.path, table);
    }
    table.set(mountPath, backend);
  }

  get(ns: NamespaceEntry, mountPath: string): Backend | undefined {
    return this.mounts.get(ns.path)?.get(mountPath);
  }

  match(ns: NamespaceEntry, path: string): RouteMatch | undefined {
    const table = this.mounts.get(ns.path);
    if (table === undefined) return undefined;
    let mountPath: string | undefined;
    for (const candidate of table.keys()) {
      if (path.startsWith(candidate) && (mountPath === undefined || candidate.length > mountPath.length)) {
        mountPath = candidate;
      }
    }
    if (mountPath === undefined) return undefined;
    const backend = table.get(mountPath) as Backend;
    const rest = path.slice(mountPath.length);
    for (const route of backend.routes) {
      const params = matchPattern(route.pattern, rest);
      if (params !== undefined) return { mountPath, backend, route, params };
    }
    return undefined;
  }
}

/** Normalises a mount option ('database', '/database/') to Vault's `database/` form. */
export function normalizeMount(mount: string): string {
  const trimmed = mount.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') throw new Error('vault-emulator: empty mount path');
  return `${trimmed}/`;
}
