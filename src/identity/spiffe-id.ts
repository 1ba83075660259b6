/**
 * SPIFFE ID parsing and validation (spec section 2; SPIFFE-ID standard, go-spiffe `spiffeid`).
 *
 * Parsing is deliberately hand-written rather than delegated to WHATWG `URL`: `URL` lowercases
 * schemes and hosts, decodes percent-escapes and collapses `.`/`..` segments, and every one of
 * those normalisations would turn an invalid ID into a different, valid-looking one.
 */
import { BrokerError } from '../errors.js';

const SCHEME_PREFIX = 'spiffe://';
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN_LENGTH = 255;
const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_SEGMENT_CHAR = /^[a-zA-Z0-9._-]$/;
const QUOTE_LIMIT = 80;

/** A parsed, validated SPIFFE ID. Immutable; compare with `equals` or by `toString()`. */
export class SpiffeId {
  /** Lowercase trust domain name, e.g. `example.org`. */
  readonly trustDomain: string;
  /** Path including its leading `/`, or `''` for a trust domain ID. */
  readonly path: string;

  private constructor(trustDomain: string, path: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    Object.freeze(this);
  }

  /**
   * Parses and validates `spiffe://<trust-domain>[/<path>]`. The only way to create an instance,
   * so every SpiffeId is valid. Throws BrokerError INVALID_ARGUMENT, reason `invalid_spiffe_id`.
   */
  static parse(input: string, field = 'spiffe_id'): SpiffeId {
    if (typeof input !== 'string') throw invalidId(String(input), 'not a string', field);
    if (input === '') throw invalidId(input, 'it is empty', field);
    // Checked first so a huge input is rejected before any per-character work.
    if (Buffer.byteLength(input, 'utf8') > MAX_ID_BYTES) {
      throw invalidId(input, `it is longer than ${MAX_ID_BYTES} bytes`, field);
    }
    if (!input.startsWith(SCHEME_PREFIX)) {
      if (input.toLowerCase().startsWith(SCHEME_PREFIX)) {
        throw invalidId(input, 'the scheme must be lowercase "spiffe"', field);
      }
      throw invalidId(input, 'it must start with "spiffe://"', field);
    }
    const rest = input.slice(SCHEME_PREFIX.length);
    const slash = rest.indexOf('/');
    const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? '' : rest.slice(slash);

    const tdProblem = trustDomainProblem(trustDomain);
    if (tdProblem !== undefined) throw invalidId(input, tdProblem, field);
    const pProblem = pathProblem(path);
    if (pProblem !== undefined) throw invalidId(input, pProblem, field);
    return new SpiffeId(trustDomain, path);
  }

  /** True when the path is non-empty, i.e. the ID names a workload rather than a trust domain. */
  get isWorkloadId(): boolean {
    return this.path !== '';
  }

  isMemberOf(trustDomain: string): boolean {
    return this.trustDomain === trustDomain;
  }

  equals(other: SpiffeId): boolean {
    return this.trustDomain === other.trustDomain && this.path === other.path;
  }

  toString(): string {
    return `${SCHEME_PREFIX}${this.trustDomain}${this.path}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

function quote(s: string): string {
  const shown = s.length > QUOTE_LIMIT ? `${s.slice(0, QUOTE_LIMIT)}...` : s;
  return JSON.stringify(shown);
}

function invalidId(input: string, rule: string, field: string): BrokerError {
  return new BrokerError('INVALID_ARGUMENT', `${field}: invalid SPIFFE ID ${quote(input)}: ${rule}`, {
    reason: 'invalid_spiffe_id',
    field,
  });
}

/** Names the rule a disallowed character breaks, so messages point at the real mistake. */
function describeBadTrustDomainChar(ch: string): string {
  switch (ch) {
    case ':':
      return 'a port is not allowed';
    case '@':
      return 'userinfo is not allowed';
    case '?':
      return 'a query is not allowed';
    case '#':
      return 'a fragment is not allowed';
    case '%':
      return 'percent-encoding is not allowed';
    default:
      if (ch >= 'A' && ch <= 'Z') return 'the trust domain must be lowercase';
      return `the trust domain contains the disallowed character ${JSON.stringify(ch)} (allowed: a-z 0-9 . - _)`;
  }
}

function describeBadPathChar(ch: string): string {
  switch (ch) {
    case '?':
      return 'a query is not allowed';
    case '#':
      return 'a fragment is not allowed';
    case '%':
      return 'percent-encoding is not allowed';
    default:
      return `the path contains the disallowed character ${JSON.stringify(ch)} (allowed: a-z A-Z 0-9 . - _)`;
  }
}

/** Returns the rule the trust domain name breaks, or undefined when it is valid. */
function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0) return 'the trust domain is empty';
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) {
    return `the trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`;
  }
  for (const ch of td) {
    if (!TRUST_DOMAIN_CHAR.test(ch)) return describeBadTrustDomainChar(ch);
  }
  return undefined;
}

/** Returns the rule the path (with leading `/`, or empty) breaks, or undefined when it is valid. */
function pathProblem(path: string): string | undefined {
  if (path === '') return undefined;
  if (path.endsWith('/')) return 'a trailing slash is not allowed';
  // Split after the leading '/', so '/a//b' yields an empty segment.
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') return 'empty path segments (//) are not allowed';
    if (segment === '.' || segment === '..') return 'dot segments (/./ and /../) are not allowed';
    for (const ch of segment) {
      if (!PATH_SEGMENT_CHAR.test(ch)) return describeBadPathChar(ch);
    }
  }
  return undefined;
}

/**
 * Parses and validates a SPIFFE ID, `spiffe://<trust-domain>[/<path>]`.
 * Throws BrokerError INVALID_ARGUMENT, reason `invalid_spiffe_id`, naming the broken rule.
 */
export function parseSpiffeId(input: string, field = 'spiffe_id'): SpiffeId {
  return SpiffeId.parse(input, field);
}

/** True when `input` is a valid SPIFFE ID (trust domain IDs included). */
export function isValidSpiffeId(input: string): boolean {
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses a trust domain given either as a bare name (`example.org`) or as its ID
 * (`spiffe://example.org`), the form Workload API bundle maps use. Returns the bare name.
 */
export function parseTrustDomain(input: string, field = 'trust_domain'): string {
  if (typeof input === 'string' && input.includes('://')) {
    const id = parseSpiffeId(input, field);
    if (id.isWorkloadId) {
      throw new BrokerError('INVALID_ARGUMENT', `${field}: a trust domain ID must not have a path`, {
        reason: 'invalid_trust_domain',
        field,
      });
    }
    return id.trustDomain;
  }
  const problem = typeof input === 'string' ? trustDomainProblem(input) : 'not a string';
  if (problem !== undefined) {
    throw new BrokerError(
      'INVALID_ARGUMENT',
      `${field}: invalid trust domain ${quote(String(input))}: ${problem}`,
      {
        reason: 'invalid_trust_domain',
        field,
      },
    );
  }
  return input;
}

/** Parses a SPIFFE ID that must name a workload (non-empty path), as SVIDs must. */
export function requireWorkloadId(input: string | SpiffeId, field = 'spiffe_id'): SpiffeId {
  const id = typeof input === 'string' ? parseSpiffeId(input, field) : input;
  if (!id.isWorkloadId) {
    throw invalidId(id.toString(), 'a workload ID must have a non-empty path', field);
  }
  return id;
}

/**
 * A SPIFFE ID pattern: an exact ID, or an ID whose last segment is a wildcard.
 * `/*` matches exactly one more path segment (`spiffe://acme.io/agents/ci/*` matches
 * `.../ci/runner-1`, not `.../ci` nor `.../ci/a/b`); `/**` matches one or more segments.
 * One segment per wildcard keeps a catalog entry from silently covering deeper workloads.
 */
export class SpiffeIdPattern {
  private readonly base: SpiffeId;
  private readonly wildcard: 'none' | 'one' | 'many';

  private constructor(base: SpiffeId, wildcard: 'none' | 'one' | 'many') {
    this.base = base;
    this.wildcard = wildcard;
    Object.freeze(this);
  }

  static parse(pattern: string, field = 'spiffe_id_pattern'): SpiffeIdPattern {
    let wildcard: 'none' | 'one' | 'many' = 'none';
    let baseText = pattern;
    if (typeof pattern === 'string' && pattern.endsWith('/**')) {
      wildcard = 'many';
      baseText = pattern.slice(0, -3);
    } else if (typeof pattern === 'string' && pattern.endsWith('/*')) {
      wildcard = 'one';
      baseText = pattern.slice(0, -2);
    }
    if (typeof baseText === 'string' && baseText.includes('*')) {
      throw new BrokerError(
        'INVALID_ARGUMENT',
        `${field}: invalid SPIFFE ID pattern ${quote(pattern)}: '*' is only allowed as a whole trailing segment`,
        { reason: 'invalid_spiffe_id_pattern', field },
      );
    }
    return new SpiffeIdPattern(parseSpiffeId(baseText, field), wildcard);
  }

  /** True when `id` (a string or parsed ID) matches; an invalid ID string never matches. */
  matches(id: string | SpiffeId): boolean {
    let parsed: SpiffeId;
    if (typeof id === 'string') {
      try {
        parsed = parseSpiffeId(id);
      } catch {
        return false;
      }
    } else {
      parsed = id;
    }
    if (parsed.trustDomain !== this.base.trustDomain) return false;
    if (this.wildcard === 'none') return parsed.path === this.base.path;
    const prefix = `${this.base.path}/`;
    if (!parsed.path.startsWith(prefix)) return false;
    const remainder = parsed.path.slice(prefix.length);
    return this.wildcard === 'many' || !remainder.includes('/');
  }

  toString(): string {
    const suffix = this.wildcard === 'one' ? '/*' : this.wildcard === 'many' ? '/**' : '';
    return `${this.base.toString()}${suffix}`;
  }
}

/** One-shot form of `SpiffeIdPattern.parse(pattern).matches(id)`; throws on an invalid pattern. */
export function matchSpiffeIdPattern(pattern: string, id: string | SpiffeId): boolean {
  return SpiffeIdPattern.parse(pattern).matches(id);
}
