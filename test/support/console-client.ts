/**
 * A cookie-keeping HTTP client that walks the console's sign-in as a browser would: redirects
 * followed (303 -> GET), a `refresh` page followed, cookies kept per origin. It trusts the
 * console's test CA and nothing else.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface Response {
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export class ConsoleClient {
  private readonly jars = new Map<string, Map<string, string>>();

  constructor(private readonly caPem: string) {}

  /** One request, no redirects followed. */
  async send(url: string, opts: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    const target = new URL(url);
    const jar = this.jar(target.origin);
    const body = opts.form ? new URLSearchParams(opts.form).toString() : undefined;
    const headers: Record<string, string> = {};
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const res = await new Promise<Response>((resolve, reject) => {
      const req = send(
        target,
        {
          method: opts.method ?? 'GET',
          headers,
          ...(target.protocol === 'https:' ? { ca: this.caPem } : {}),
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () =>
            resolve({
              url,
              status: r.statusCode ?? 0,
              headers: r.headers,
              body: Buffer.concat(chunks).toString(),
            }),
          );
          r.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    this.keep(target.origin, res.headers['set-cookie']);
    return res;
  }

  /** A request, then every redirect and refresh page, as a browser navigates. */
  async navigate(
    url: string,
    opts: { method?: string; form?: Record<string, string> } = {},
  ): Promise<Response> {
    let res = await this.send(url, opts);
    for (let hops = 0; hops < 20; hops++) {
      const location = res.headers.location;
      const refresh = /^0;url=(.*)$/.exec(String(res.headers.refresh ?? ''))?.[1];
      const next = typeof location === 'string' ? location : res.status === 200 ? refresh : undefined;
      if (!next) return res;
      res = await this.send(new URL(next, res.url).href);
    }
    throw new Error('too many redirects');
  }

  /** Signs in at the test IdP as `login`, starting from a console page; returns the page reached. */
  async signIn(
    consoleBase: string,
    login: string,
    opts: { path?: string; age?: number } = {},
  ): Promise<Response> {
    const start = `${consoleBase}/auth/login?return_to=${encodeURIComponent(opts.path ?? '/approvals')}`;
    return this.logIn(await this.navigate(start), login, opts.age ?? 0);
  }

  /** Fills in the test IdP's login form (`age`: seconds since the person authenticated). */
  async logIn(form: Response, login: string, age = 0): Promise<Response> {
    const action = /action="([^"]+)"/.exec(form.body)?.[1];
    if (!action)
      throw new Error(`no IdP login form at ${form.url}: ${form.status} ${form.body.slice(0, 200)}`);
    return this.navigate(new URL(action, form.url).href, {
      method: 'POST',
      form: { login, age: String(age) },
    });
  }

  cookie(origin: string, name: string): string | undefined {
    return this.jar(origin).get(name);
  }

  setCookie(origin: string, name: string, value: string): void {
    this.jar(origin).set(name, value);
  }

  private jar(origin: string): Map<string, string> {
    let jar = this.jars.get(origin);
    if (!jar) this.jars.set(origin, (jar = new Map()));
    return jar;
  }

  private keep(origin: string, setCookie: string | string[] | undefined): void {
    const jar = this.jar(origin);
    for (const line of setCookie ?? []) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }
}

/** The CSRF token of the first form on a page. */
export function csrfOf(page: string): string {
  const token = /name="_csrf" value="([^"]+)"/.exec(page)?.[1];
  if (!token) throw new Error('no CSRF token on the page');
  return token;
}
