/**
 * The settings of an `azure/...` role, checked at startup:
 *
 * ```yaml
 * azure/storage-reader:
 *   maxTtlSeconds: 900
 *   tenantId: 11111111-2222-3333-4444-555555555555
 *   clientId: 66666666-7777-8888-9999-000000000000   # the app registration trusting the broker
 *   scope: https://storage.azure.com/.default
 * ```
 */
import type { SettingsRead } from '../cloud/role-settings.js';
const KNOWN = new Set(['tenantId', 'clientId', 'scope']);
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TENANT =
  /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-z0-9-]+(\.[a-z0-9-]+)+)$/i;

export interface AzureRoleSettings {
  tenantId: string;
  clientId: string;
  scope: string;
}

type Read = SettingsRead<AzureRoleSettings>;

export function readAzureRoleSettings(s: Record<string, unknown>): Read {
  const problems: string[] = [];
  for (const key of Object.keys(s)) if (!KNOWN.has(key)) problems.push(`unknown setting "${key}"`);
  if (typeof s.tenantId !== 'string' || !TENANT.test(s.tenantId))
    problems.push('tenantId: a tenant GUID or domain');
  if (typeof s.clientId !== 'string' || !GUID.test(s.clientId))
    problems.push('clientId: an application (client) GUID');
  // The client-credentials grant only takes `<resource>/.default`.
  if (typeof s.scope !== 'string' || !/^\S+\/\.default$/.test(s.scope))
    problems.push('scope: a resource scope ending in /.default');
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    settings: { tenantId: s.tenantId as string, clientId: s.clientId as string, scope: s.scope as string },
  };
}
