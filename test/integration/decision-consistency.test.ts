/**
 * A decision holds at the moment its lease is written (tool chaining): concurrent requests of one
 * prod task are each decided on what the task holds when the lease is written, so no set of
 * leases ever ends up in a task that the policy would refuse in every sequential order.
 */
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { AgentCatalog } from '../../src/policy/agent-catalog.js';
import { CedarPolicyEngine } from '../../src/policy/cedar-engine.js';
import { DEMO_AGENT, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { DEV_CATALOG, SHIPPED_POLICY_DIR, issueRequest, role } from '../unit/policy/policy-fixtures.js';

const ROLES = {
  'token/logs-read': role('token/logs-read'),
  'token/secrets-read': role('token/secrets-read', { sensitivity: 'confidential' }),
  'token/deploy': role('token/deploy', { environments: ['staging', 'prod'], sensitivity: 'confidential' }),
} as const;
type RoleName = keyof typeof ROLES;

const catalog = new AgentCatalog(DEV_CATALOG);
const engine = CedarPolicyEngine.load({
  policyDir: SHIPPED_POLICY_DIR,
  agentGroups: (id) => catalog.groupsOf(id),
});

/** Whether the shipped policy allows `next` in a prod task that already holds `held`. */
function allowedAfter(next: RoleName, held: readonly string[]): boolean {
  const roles = [...new Set(held)].sort();
  const decision = engine.authorize(
    issueRequest(DEMO_AGENT, ROLES[next], {
      environment: 'prod',
      taskRoles: roles,
      taskBackends: [...new Set(roles.map((r) => r.split('/')[0] ?? r))],
      taskCredentialCount: held.length,
    }),
  );
  return decision.decision === 'allow';
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

/** Some sequential order in which the policy allows every one of them. */
function allowedInSomeOrder(roles: readonly RoleName[]): boolean {
  return permutations(roles).some((order) => order.every((r, i) => allowedAfter(r, order.slice(0, i))));
}

describe('integration: a decision holds when its lease is written', function () {
  this.timeout(120_000);
  let h: Harness;
  let demo: BrokerClient;

  before(async () => {
    h = await startHarness();
    demo = await h.client('demo');
  });
  after(() => h?.close());

  const prodTask = async (): Promise<string> =>
    (await demo.beginTask({ environment: 'prod', intent: 'incident triage', ttl_seconds: 600 })).task_id;
  const issue = (taskId: string, r: RoleName): ReturnType<BrokerClient['issueCredential']> =>
    demo.issueCredential({ task_id: taskId, role: r, justification: 'triage', tool: 'shell' });

  it('of a secrets and a logs request sent together in one prod task, exactly one is issued', async () => {
    for (let i = 0; i < 5; i++) {
      const taskId = await prodTask();
      const results = await Promise.allSettled([
        issue(taskId, 'token/secrets-read'),
        issue(taskId, 'token/logs-read'),
      ]);
      const issued = results.filter((r) => r.status === 'fulfilled');
      assert.equal(issued.length, 1, `round ${i}: both were issued`);
      const refused = results.find((r) => r.status === 'rejected');
      const err = await grpcError(Promise.reject(refused?.reason));
      assert.equal(err.code, status.PERMISSION_DENIED, err.details);
      const leases = await h.broker.store.listLeases({ taskId });
      assert.equal(leases.length, 1);
      assert.equal(leases[0]?.state, 'active');
    }
    const audit = await readAudit(h.auditFile);
    const denied = audit.filter((r) => r.type === 'credential.denied');
    assert.ok(
      denied.every((r) =>
        ['prod-no-secrets-after-logs', 'prod-no-logs-after-secrets'].includes(
          (r.policy_ids as string[] | undefined)?.[0] ?? '',
        ),
      ),
      JSON.stringify(denied.map((r) => r.policy_ids)),
    );
  });

  it('N concurrent mixed requests never leave a set of leases no sequential order allows', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom<RoleName>('token/logs-read', 'token/secrets-read', 'token/deploy'), {
          minLength: 2,
          maxLength: 5,
        }),
        async (asked) => {
          const taskId = await prodTask();
          const results = await Promise.allSettled(asked.map((r) => issue(taskId, r)));
          for (const r of results) {
            if (r.status === 'fulfilled') continue;
            const err = await grpcError(Promise.reject(r.reason));
            // Refused by policy, or (bounded retries spent) told to retry: never anything else.
            assert.ok(
              err.code === status.PERMISSION_DENIED ||
                (err.code === status.UNAVAILABLE && err.metadata['x-svid-broker-reason'] === 'task_changed'),
              `${status[err.code]}: ${err.details}`,
            );
          }
          const leases = await h.broker.store.listLeases({ taskId });
          assert.equal(leases.length, results.filter((r) => r.status === 'fulfilled').length);
          const held = leases.map((l) => l.role as RoleName);
          assert.ok(allowedInSomeOrder(held), `no sequential order allows ${held.join(', ')}`);
        },
      ),
      { numRuns: 25 },
    );
  });
});
