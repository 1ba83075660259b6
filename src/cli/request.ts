/**
 * `svid-broker request` and `svid-broker task end`: what an agent runs. Identity comes from the
 * Workload API at SPIFFE_ENDPOINT_SOCKET; the broker address from SVID_BROKER_ADDR.
 */
import { parseArgs } from 'node:util';
import { fromTimestamp, type IssueCredentialResponseMsg, type TaskMsg } from '../server/broker-proto.js';
import { connect } from './connect.js';
import { printable, safeJson } from './escape.js';

export const iso = (ts: Parameters<typeof fromTimestamp>[0]): string =>
  new Date(fromTimestamp(ts)).toISOString();

function taskJson(task: TaskMsg): Record<string, unknown> {
  return {
    task_id: task.task_id,
    agent: task.agent,
    environment: task.environment,
    state: task.state,
    expires_at: iso(task.expires_at),
  };
}

export async function runRequest(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      env: { type: 'string' },
      role: { type: 'string' },
      ttl: { type: 'string', default: '0' },
      'task-ttl': { type: 'string', default: '0' },
      intent: { type: 'string', default: '' },
      task: { type: 'string' },
      sensitivity: { type: 'string', default: '' },
      'change-type': { type: 'string', default: '' },
      justification: { type: 'string', default: '' },
      tool: { type: 'string', default: 'svid-broker-cli' },
      auth: { type: 'string', default: 'x509' },
      'broker-id': { type: 'string' },
      wait: { type: 'boolean', default: false },
    },
  });
  if (!values.role) throw new Error('--role is required (e.g. --role token/demo)');
  if (!values.task && !values.env) throw new Error('--env is required unless --task names an open task');
  const ttl = Number(values.ttl);
  const taskTtl = Number(values['task-ttl']);
  if (!Number.isInteger(ttl) || ttl < 0) throw new Error('--ttl must be a whole number of seconds');
  if (!Number.isInteger(taskTtl) || taskTtl < 0)
    throw new Error('--task-ttl must be a whole number of seconds');

  const conn = await connect({ auth: values.auth, brokerId: values['broker-id'] });
  try {
    const task = values.task
      ? await conn.client.getTask({ task_id: values.task })
      : await conn.client.beginTask({
          environment: values.env,
          intent: values.intent || `svid-broker request ${values.role}`,
          ttl_seconds: taskTtl,
        });
    let issued = await conn.client.issueCredential({
      task_id: task.task_id,
      role: values.role,
      ttl_seconds: ttl,
      sensitivity: values.sensitivity,
      change_type: values['change-type'],
      justification: values.justification,
      tool: values.tool,
    });
    if (issued.status === 'PENDING_APPROVAL') {
      const pending = {
        status: 'pending_approval',
        approval_id: issued.approval_id,
        approvals_required: issued.approvals_required,
        approvals_received: issued.approvals_received,
        approval_expires_at: iso(issued.approval_expires_at),
        policy_ids: issued.policy_ids,
        task: taskJson(task),
      };
      if (!values.wait) {
        // Exit 3: not an error, not a credential. Re-run with the same flags and --task once approved.
        console.log(safeJson(pending));
        console.error(
          `pending approval ${issued.approval_id}: needs ${issued.approvals_required} approval(s); ` +
            'an approver runs `svid-broker approvals approve ' +
            issued.approval_id +
            ' --reason TEXT`',
        );
        return 3;
      }
      console.error(
        `pending approval ${issued.approval_id}: waiting for ${issued.approvals_required} approval(s) ` +
          `(until ${pending.approval_expires_at})`,
      );
      issued = await conn.client.awaitApproval(issued.approval_id, (p) =>
        console.error(
          `approval ${issued.approval_id}: ${p.approvals_received}/${p.approvals_required} approvals`,
        ),
      );
    }
    const out = credentialJson(task, issued);
    console.log(safeJson(out));
    return 0;
  } finally {
    conn.close();
  }
}

function credentialJson(task: TaskMsg, issued: IssueCredentialResponseMsg): Record<string, unknown> {
  return {
    status: 'issued',
    task: taskJson(task),
    lease_id: issued.lease_id,
    role: issued.role,
    environment: issued.environment,
    expires_at: iso(issued.expires_at),
    ttl_seconds: issued.ttl_seconds,
    policy_ids: issued.policy_ids,
    ...(issued.break_glass ? { break_glass: true } : {}),
    credential: issued.credential,
  };
}

export async function runTaskEnd(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      reason: { type: 'string', default: '' },
      auth: { type: 'string', default: 'x509' },
      'broker-id': { type: 'string' },
    },
  });
  const taskId = positionals[0];
  if (!taskId) throw new Error('usage: svid-broker task end TASK_ID [--reason TEXT]');
  const conn = await connect({ auth: values.auth, brokerId: values['broker-id'] });
  try {
    const res = await conn.client.endTask({ task_id: taskId, reason: values.reason });
    console.log(
      safeJson({
        ...(res.task ? taskJson(res.task) : { task_id: taskId }),
        revoked: res.revoked,
      }),
    );
    console.error(`ended task ${printable(taskId)}: revoked ${res.revoked.length} lease(s)`);
    return 0;
  } finally {
    conn.close();
  }
}
