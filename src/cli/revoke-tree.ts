/**
 * `svid-broker admin revoke --task T --tree`: ends task T and every task delegated from it,
 * recursively, revoking their leases (RevokeTaskTree). Prints one row per task ended.
 */
import { bool, required, str, usageError, type Parsed } from './command.js';
import { printJson, table, withConnection } from './output.js';

/** Exit 0 when every lease was revoked, 4 when some are pending retry or not revocable. */
export async function revokeTree(p: Parsed): Promise<number> {
  const reason = required(p, 'reason', 'it is recorded on every task ended');
  const taskId = str(p, 'task');
  if (!taskId) throw usageError('--tree needs --task: the root of the tree to revoke');
  const others = ['lease', 'agent', 'env', 'role', 'backend', 'trust-domain'].filter((f) => str(p, f));
  if (others.length > 0 || bool(p, 'all') || bool(p, 'dry-run')) {
    throw usageError('--tree takes only --task (and --reason): no other selector, --all or --dry-run');
  }
  const res = await withConnection(p, (c) => c.admin.revokeTaskTree({ task_id: taskId, reason }));
  const leases = res.tasks.flatMap((t) => t.revoked);
  if (bool(p, 'json')) printJson(res);
  else {
    const rows = res.tasks.map((t) => [
      t.task.task_id,
      t.task.agent,
      String(t.task.delegation_depth),
      t.task.parent_task_id || '-',
      String(t.revoked.length),
    ]);
    console.log(table(['TASK', 'AGENT', 'DEPTH', 'PARENT', 'LEASES REVOKED'], rows));
    console.log(`ended ${res.tasks.length} task(s), ${leases.length} lease(s)`);
  }
  return leases.some((l) => l.state !== 'revoked') ? 4 : 0;
}
