/**
 * The tree of tasks delegated from one task: walked breadth first from the store's child links
 * (LeaseStore.listChildTasks), so ending a task can end everything delegated from it, however deep.
 * A child ended earlier is still walked: a walk cut short (a replica died mid-way) is finished by
 * the next one.
 */
import type { LeaseStore } from '../leases/types.js';

/** Calls `visit` once for every task below `rootId` (not the root itself), parents before children. */
export async function walkSubtree(
  store: Pick<LeaseStore, 'listChildTasks'>,
  rootId: string,
  visit: (childId: string, parentId: string) => Promise<void>,
): Promise<void> {
  const seen = new Set<string>([rootId]);
  let level = [rootId];
  while (level.length > 0) {
    const next: string[] = [];
    for (const parentId of level) {
      for (const childId of await store.listChildTasks(parentId)) {
        // A tree by construction; the guard only keeps a corrupt link from looping forever.
        if (seen.has(childId)) continue;
        seen.add(childId);
        await visit(childId, parentId);
        next.push(childId);
      }
    }
    level = next;
  }
}
