/**
 * Incident levers over delegation trees: RevokeTaskTree (an admin ends a task and everything
 * delegated from it, `admin revoke --task T --tree`) and, when `quarantine.revokeDelegates` is
 * on, the tasks delegated from a quarantined agent's tasks (their delegates' credentials are
 * revoked with the agent's own).
 */
import type { Logger } from 'pino';
import { notFound } from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { LeaseStore, Task } from '../leases/types.js';
import type { Broker, EndedTask } from './broker.js';
import type { LeaseAdmin } from './lease-admin.js';
import { LIMITS, boundedText, requireTaskId } from './validate.js';
import { invalidArgument } from '../errors.js';

export interface TaskTreeAdminDeps {
  store: Pick<LeaseStore, 'getTask' | 'endTask' | 'listActiveTasks'>;
  broker: Pick<Broker, 'endDelegatedTasks' | 'finishEndedTask'>;
  leases: Pick<LeaseAdmin, 'authorize'>;
  logger: Logger;
  now?: () => number;
}

export class TaskTreeAdmin {
  private readonly now: () => number;

  constructor(private readonly deps: TaskTreeAdminDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Ends task `taskId` (if still active) and every task delegated from it, revoking their leases:
   * one `task.ended` record per task ended, each naming the admin. Authorized as RevokeLeases.
   */
  async revokeTaskTree(caller: Caller, input: { taskId: string; reason: string }): Promise<EndedTask[]> {
    await this.deps.leases.authorize(caller, 'RevokeLeases', 'RevokeTaskTree');
    const taskId = requireTaskId(input.taskId);
    const reason = boundedText(input.reason.trim(), 'reason', LIMITS.reason);
    if (!reason) throw invalidArgument('reason', 'is required: it is recorded in the audit trail');
    const task = await this.deps.store.getTask(taskId);
    if (!task) throw notFound('task_not_found', 'task not found');
    const ended: EndedTask[] = [];
    const root = await this.deps.store.endTask(taskId, 'ended', reason, this.now());
    if (root) {
      const fields = { reason, ended_by: caller.spiffeId };
      ended.push({
        task: root,
        revoked: await this.deps.broker.finishEndedTask(root, 'admin_revoke', fields),
      });
    }
    ended.push(...(await this.deps.broker.endDelegatedTasks(root ?? task, reason, caller.spiffeId)));
    return ended;
  }

  /**
   * Quarantine: ends every task delegated from the active tasks of `agent` (an exact SPIFFE ID or
   * a `/*`, `/**` pattern), revoking what the delegates hold. The agent's own tasks stay for the
   * quarantine's revoke_active to decide. Never throws: a quarantine is in force either way.
   */
  async revokeDelegatesOf(agent: string, by: string, reason: string): Promise<EndedTask[]> {
    try {
      const tasks: Task[] = await this.deps.store.listActiveTasks(agent);
      const ended: EndedTask[] = [];
      for (const task of tasks) {
        ended.push(...(await this.deps.broker.endDelegatedTasks(task, `quarantine: ${reason}`, by)));
      }
      return ended;
    } catch (err) {
      this.deps.logger.error(
        { err: { message: (err as Error).message }, agent },
        'revoking delegates failed',
      );
      return [];
    }
  }
}
