/** What every console route handler gets: the person's call context and the use cases. */
import type { BrokerAdmin } from '../broker/admin.js';
import type { LeaseAdmin, LeaseSelectorInput } from '../broker/lease-admin.js';
import type { QuarantineAdmin } from '../broker/quarantine-admin.js';
import type { Caller } from '../identity/types.js';
import type { SafeHtml } from './html.js';

export interface UseCases {
  admin: BrokerAdmin;
  leaseAdmin: LeaseAdmin;
  quarantineAdmin: QuarantineAdmin;
}

export interface RouteContext {
  caller: Caller;
  csrf: string;
  url: URL;
  /** The posted form (empty for GET). */
  form: Map<string, string>;
  /** Path parameters from the route's pattern. */
  params: string[];
  use: UseCases;
}

/** A rendered page, or a redirect after a POST. */
export type RouteResult = { title: string; body: SafeHtml } | { redirect: string };

/** A lease selector from query or form fields (`agent`, `task`, `environment`, `role`, `backend`, `state`). */
export function selectorFrom(get: (name: string) => string): LeaseSelectorInput {
  return {
    leaseId: '',
    agent: get('agent').trim(),
    taskId: get('task').trim(),
    environment: get('environment').trim(),
    role: get('role').trim(),
    backend: get('backend').trim(),
    trustDomain: '',
    all: false,
    state: get('state').trim(),
  };
}

export function queryField(url: URL): (name: string) => string {
  return (name) => url.searchParams.get(name) ?? '';
}

export function formField(form: Map<string, string>): (name: string) => string {
  return (name) => form.get(name) ?? '';
}
