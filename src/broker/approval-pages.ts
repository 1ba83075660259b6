/**
 * Pages of ListApprovals. The list is newest first; a page token names the last request handed out
 * (its createdAt and id), and the next page starts strictly after it in that order, so requests
 * created meanwhile (newer) never shift the pages still to come.
 */
import type { ApprovalRequest } from '../approvals/types.js';
import { invalidArgument } from '../errors.js';

export const DEFAULT_APPROVAL_PAGE = 100;
export const MAX_APPROVAL_PAGE = 1000;

export interface ApprovalPage {
  approvals: ApprovalRequest[];
  /** Empty when this is the last page. */
  nextPageToken: string;
}

const TOKEN = /^(\d{1,16})\.([A-Za-z0-9-]{1,128})$/;

/** `list` must be newest first (byNewest), as the approval stores return it. */
export function pageOfApprovals(
  list: readonly ApprovalRequest[],
  page: { pageSize?: number; pageToken?: string },
): ApprovalPage {
  const size = page.pageSize || DEFAULT_APPROVAL_PAGE;
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_APPROVAL_PAGE) {
    throw invalidArgument('page_size', `must be between 1 and ${MAX_APPROVAL_PAGE}`);
  }
  let start = 0;
  if (page.pageToken) {
    const m = TOKEN.exec(page.pageToken);
    if (!m) throw invalidArgument('page_token', 'is not a token this broker handed out');
    const [at, id] = [Number(m[1]), m[2] as string];
    const after = list.findIndex((a) => a.createdAt < at || (a.createdAt === at && a.id < id));
    start = after < 0 ? list.length : after;
  }
  const approvals = list.slice(start, start + size);
  const last = approvals[approvals.length - 1];
  const more = start + size < list.length && last !== undefined;
  return { approvals, nextPageToken: more ? `${last.createdAt}.${last.id}` : '' };
}
