/** The shape every cloud backend's role-settings reader returns, and the one way a backend reads it at issue time. */
import type { RoleDefinition } from '../backend.js';
import { BrokerError } from '../../errors.js';

export type SettingsRead<T> = { ok: true; settings: T } | { ok: false; problems: string[] };

/**
 * The role's settings; validateRole ran at startup, so a failure here is a wiring bug: INTERNAL,
 * with the detail for the log only.
 */
export function settingsOrThrow<T>(
  backend: string,
  role: RoleDefinition,
  read: (settings: Record<string, unknown>) => SettingsRead<T>,
): T {
  const result = read(role.settings);
  if (!result.ok) {
    throw new BrokerError('INTERNAL', `${backend} backend misconfigured`, {
      cause: new Error(`${backend}: role ${role.name}: ${result.problems.join('; ')}`),
    });
  }
  return result.settings;
}
