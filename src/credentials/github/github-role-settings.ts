/**
 * The settings of a `github/...` role, checked at startup:
 *
 * ```yaml
 * github/repo-writer:
 *   maxTtlSeconds: 3600
 *   installationId: 4242           # optional; default backends.github.installationId
 *   repositories: [svid-broker]    # names within the installation's account (at least one)
 *   permissions: { contents: write, pull_requests: write }
 * ```
 * GitHub itself refuses a token wider than the installation (422), which the broker reports as
 * FAILED_PRECONDITION: a role can narrow, never widen.
 */
import type { SettingsRead } from '../cloud/role-settings.js';
const KNOWN = new Set(['installationId', 'repositories', 'permissions']);
const LEVELS = new Set(['read', 'write', 'admin']);
const PERMISSION = /^[a-z][a-z_]*$/;
const REPO = /^[A-Za-z0-9._-]{1,100}$/;

export interface GithubRoleSettings {
  installationId?: number;
  repositories: string[];
  permissions: Record<string, string>;
}

type Read = SettingsRead<GithubRoleSettings>;

export function readGithubRoleSettings(s: Record<string, unknown>): Read {
  const problems: string[] = [];
  for (const key of Object.keys(s)) if (!KNOWN.has(key)) problems.push(`unknown setting "${key}"`);
  const id = s.installationId;
  if (id !== undefined && !(Number.isSafeInteger(id) && (id as number) > 0)) {
    problems.push('installationId: a positive integer');
  }
  const repos = s.repositories;
  if (!Array.isArray(repos) || repos.length === 0 || repos.length > 500) {
    problems.push(
      'repositories: a list of 1-500 repository names (a token for every repository is never minted)',
    );
  } else {
    for (const r of repos)
      if (typeof r !== 'string' || !REPO.test(r))
        problems.push(`repositories: "${String(r)}" is not a repository name`);
  }
  const perms = s.permissions;
  if (!perms || typeof perms !== 'object' || Array.isArray(perms) || Object.keys(perms).length === 0) {
    problems.push('permissions: a map such as { contents: read, pull_requests: write }');
  } else {
    for (const [name, level] of Object.entries(perms)) {
      if (!PERMISSION.test(name)) problems.push(`permissions.${name}: not a GitHub permission name`);
      if (typeof level !== 'string' || !LEVELS.has(level))
        problems.push(`permissions.${name}: read, write or admin`);
    }
  }
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    settings: {
      ...(id !== undefined ? { installationId: id as number } : {}),
      repositories: repos as string[],
      permissions: perms as Record<string, string>,
    },
  };
}
