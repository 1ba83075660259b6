/**
 * Matching a SPIFFE ID against a pattern written as text (an exact ID, or a base ending in `/*` for
 * one more segment or `/**` for any deeper one), without parsing either: the hot path of quarantine
 * and lease selection, which hold patterns already validated by SpiffeIdPattern.parse.
 */

/** A pattern matches a SPIFFE ID exactly as the lease store's Lua does (includes/quarantine-match.lua). */
export function patternMatches(pattern: string, id: string): boolean {
  if (pattern.endsWith('/**')) {
    const base = pattern.slice(0, -2);
    return id.length > base.length && id.startsWith(base);
  }
  if (pattern.endsWith('/*')) {
    const base = pattern.slice(0, -1);
    return id.length > base.length && id.startsWith(base) && !id.includes('/', base.length);
  }
  return id === pattern;
}
