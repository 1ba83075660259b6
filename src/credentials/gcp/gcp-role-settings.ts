/**
 * The settings of a `gcp/...` role, checked at startup:
 *
 * ```yaml
 * gcp/bucket-reader:
 *   maxTtlSeconds: 900
 *   serviceAccount: reader@my-project.iam.gserviceaccount.com
 *   scopes: [https://www.googleapis.com/auth/devstorage.read_only]   # default cloud-platform
 *   delegates: [hop@my-project.iam.gserviceaccount.com]              # optional delegation chain
 * ```
 */
import type { SettingsRead } from '../cloud/role-settings.js';
const KNOWN = new Set(['serviceAccount', 'scopes', 'delegates']);
const SA_EMAIL = /^[a-z][a-z0-9-]{4,61}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$|^[\w.+-]+@[\w.-]+$/;
const SCOPE = /^https:\/\/www\.googleapis\.com\/auth\/[\w.-]+$/;
export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
/** generateAccessToken's default ceiling (an organisation policy may raise it to 12 h). */
export const GCP_MAX_LIFETIME_SECONDS = 3600;

export interface GcpRoleSettings {
  serviceAccount: string;
  scopes: string[];
  delegates: string[];
}

type Read = SettingsRead<GcpRoleSettings>;

function emails(value: unknown, field: string, problems: string[]): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && SA_EMAIL.test(v))) {
    problems.push(`${field}: a list of service account emails`);
    return [];
  }
  return value;
}

export function readGcpRoleSettings(s: Record<string, unknown>): Read {
  const problems: string[] = [];
  for (const key of Object.keys(s)) if (!KNOWN.has(key)) problems.push(`unknown setting "${key}"`);
  const sa = s.serviceAccount;
  if (typeof sa !== 'string' || !SA_EMAIL.test(sa)) problems.push('serviceAccount: a service account email');
  let scopes = [CLOUD_PLATFORM_SCOPE];
  if (s.scopes !== undefined) {
    if (
      !Array.isArray(s.scopes) ||
      s.scopes.length === 0 ||
      !s.scopes.every((x) => typeof x === 'string' && SCOPE.test(x))
    ) {
      problems.push('scopes: a non-empty list of https://www.googleapis.com/auth/... scopes');
    } else scopes = s.scopes as string[];
  }
  const delegates = emails(s.delegates, 'delegates', problems);
  if (problems.length) return { ok: false, problems };
  return { ok: true, settings: { serviceAccount: sa as string, scopes, delegates } };
}
