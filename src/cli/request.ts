/**
 * `svid-broker request` and `svid-broker task end`: what an agent runs. Identity comes from the
 * Workload API at SPIFFE_ENDPOINT_SOCKET; the broker address from SVID_BROKER_ADDR.
 */
import { parseArgs } from 'node:util';
import { BrokerClient } from '../client/broker-client.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import { X509Source, fetchJwtSvid, parseEndpointSocket } from '../identity/workload-api.js';
import { fromTimestamp, type TaskMsg } from '../server/broker-proto.js';

const DEFAULT_ADDR = 'localhost:8443';

interface Connection {
  client: BrokerClient;
  close(): void;
}

async function connect(opts: { auth: string; brokerId: string | undefined }): Promise<Connection> {
  const endpoint = parseEndpointSocket(process.env.SPIFFE_ENDPOINT_SOCKET);
  const source = await X509Source.create({ endpoint, timeoutMs: 10_000 });
  try {
    const svid = source.getX509Svid();
    const ownTd = parseSpiffeId(svid.spiffeId).trustDomain;
    const brokerId = opts.brokerId ?? process.env.SVID_BROKER_ID;
    const brokerTd = brokerId ? parseSpiffeId(brokerId).trustDomain : ownTd;
    const serverBundle = source.getX509BundleForTrustDomain(brokerTd);
    if (!serverBundle) throw new Error(`no trust bundle for the broker's trust domain "${brokerTd}"`);
    if (opts.auth !== 'x509' && opts.auth !== 'jwt') throw new Error('--auth must be x509 or jwt');
    // The expected broker and the JWT audience are one ID, defaulted together: a JWT-SVID minted for
    // the broker must only go to a server proving it is the broker, or any workload of the trust
    // domain answering at SVID_BROKER_ADDR could replay it to the real one.
    const audience = brokerId ?? `spiffe://${ownTd}/broker`;
    const client = new BrokerClient({
      address: process.env.SVID_BROKER_ADDR || DEFAULT_ADDR,
      svid,
      serverBundle,
      brokerId: audience,
      auth:
        opts.auth === 'jwt'
          ? { kind: 'jwt', token: async () => (await fetchJwtSvid(endpoint, [audience])).token }
          : { kind: 'x509' },
    });
    return {
      client,
      close: () => {
        client.close();
        source.close();
      },
    };
  } catch (err) {
    source.close();
    throw err;
  }
}

const iso = (ts: Parameters<typeof fromTimestamp>[0]): string => new Date(fromTimestamp(ts)).toISOString();

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
    const issued = await conn.client.issueCredential({
      task_id: task.task_id,
      role: values.role,
      ttl_seconds: ttl,
      sensitivity: values.sensitivity,
      change_type: values['change-type'],
      justification: values.justification,
      tool: values.tool,
    });
    const out = {
      task: taskJson(task),
      lease_id: issued.lease_id,
      role: issued.role,
      environment: issued.environment,
      expires_at: iso(issued.expires_at),
      ttl_seconds: issued.ttl_seconds,
      policy_ids: issued.policy_ids,
      credential: issued.credential,
    };
    console.log(JSON.stringify(out, null, 2));
    return 0;
  } finally {
    conn.close();
  }
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
      JSON.stringify(
        {
          ...(res.task ? taskJson(res.task) : { task_id: taskId }),
          revoked: res.revoked,
        },
        null,
        2,
      ),
    );
    console.error(`ended task ${taskId}: revoked ${res.revoked.length} lease(s)`);
    return 0;
  } finally {
    conn.close();
  }
}
