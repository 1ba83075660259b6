/**
 * Which of the SVIDs the Workload API hands out is the broker's own. A workload may be given
 * several (one per matching registration entry), in no promised order: the broker must never take
 * one by position, or a node where it also matches an agent's entry would bring it up as that
 * agent. It selects by SPIFFE ID (and the entry hint when set), or, with neither configured, only
 * when exactly one SVID is offered.
 */
import { BrokerError } from '../errors.js';
import type { X509Svid } from './types.js';

export interface OwnSvidSelector {
  /** The broker's SPIFFE ID (`workloadApi.expectedId`). */
  expectedId?: string | undefined;
  /** The SPIRE entry hint (`workloadApi.hint`). */
  hint?: string | undefined;
}

function describe(svids: readonly X509Svid[]): string {
  const list = svids.map((s) => (s.hint ? `${s.spiffeId} (hint "${s.hint}")` : s.spiffeId));
  return list.length === 0 ? 'none' : list.join(', ');
}

function wanted(selector: OwnSvidSelector): string {
  const parts = [selector.expectedId, selector.hint === undefined ? undefined : `hint "${selector.hint}"`];
  return parts.filter((p): p is string => p !== undefined).join(' with ');
}

/** The broker's SVID among `svids`; throws UNAVAILABLE (`svid_not_offered`) naming what was offered. */
export function selectOwnSvid(svids: readonly X509Svid[], selector: OwnSvidSelector): X509Svid {
  const { expectedId, hint } = selector;
  if (expectedId === undefined && hint === undefined) {
    const [only] = svids;
    if (svids.length === 1 && only !== undefined) return only;
    throw new BrokerError(
      'UNAVAILABLE',
      `workload api: ${svids.length} SVIDs offered (${describe(svids)}): set workloadApi.expectedId ` +
        "(SVID_BROKER_ID) to the broker's SPIFFE ID",
      { reason: 'svid_ambiguous' },
    );
  }
  const matches = svids.filter(
    (s) => (expectedId === undefined || s.spiffeId === expectedId) && (hint === undefined || s.hint === hint),
  );
  const [match] = matches;
  if (matches.length === 1 && match !== undefined) return match;
  const why = matches.length === 0 ? 'is not among' : 'matches more than one of';
  throw new BrokerError(
    'UNAVAILABLE',
    `workload api: the broker's identity ${wanted(selector)} ${why} the SVIDs offered (${describe(svids)})`,
    { reason: matches.length === 0 ? 'svid_not_offered' : 'svid_ambiguous' },
  );
}
