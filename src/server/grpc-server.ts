/**
 * The gRPC server: TLS with the broker's rotating SVID, handlers that only translate proto <->
 * domain, one auth step, one error mapping, the standard health service.
 */
import {
  Server,
  experimental,
  type handleUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { Counter, Histogram } from 'prom-client';
import type { AuditSink } from '../audit/types.js';
import type { Broker } from '../broker/broker.js';
import { isBrokerError } from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { Task } from '../leases/types.js';
import type { Authenticator } from './authenticate.js';
import {
  loadBrokerProto,
  toTimestamp,
  type BeginTaskRequestMsg,
  type EndTaskRequestMsg,
  type EndTaskResponseMsg,
  type GetTaskRequestMsg,
  type IssueCredentialRequestMsg,
  type IssueCredentialResponseMsg,
  type TaskMsg,
} from './broker-proto.js';
import { toServiceError } from './status.js';
import type { SvidCertificateProvider } from './svid-certificate-provider.js';

export const BROKER_SERVICE = 'svidbroker.v1.CredentialBroker';

export interface GrpcServerDeps {
  broker: Broker;
  authenticator: Authenticator;
  certificates: SvidCertificateProvider;
  audit: AuditSink;
  logger: Logger;
  metrics?: { requests: Counter<'method' | 'code'>; latency: Histogram<'method'> };
}

export interface RunningGrpcServer {
  port: number;
  health: HealthImplementation;
  shutdown(graceMs?: number): Promise<void>;
}

export function taskToMsg(task: Task): TaskMsg {
  return {
    task_id: task.id,
    agent: task.agent,
    environment: task.environment,
    expires_at: toTimestamp(task.expiresAt),
    intent: task.intent,
    labels: task.labels,
    created_at: toTimestamp(task.createdAt),
    state: task.state,
  };
}

export async function startGrpcServer(deps: GrpcServerDeps, listen: string): Promise<RunningGrpcServer> {
  const { broker, logger } = deps;
  const { service } = loadBrokerProto();
  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 });

  const unary =
    <Req, Res>(method: string, fn: (caller: Caller, req: Req) => Promise<Res>): handleUnaryCall<Req, Res> =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const stop = deps.metrics?.latency.startTimer({ method });
      const done = (code: string): void => {
        stop?.();
        deps.metrics?.requests.inc({ method, code });
      };
      void (async () => {
        let caller: Caller;
        try {
          caller = await deps.authenticator.authenticate(call, call.metadata);
        } catch (err) {
          await auditAuthDenied(deps, err, method, call.getPeer());
          done('UNAUTHENTICATED');
          callback(toServiceError(err, logger, method) as ServiceError);
          return;
        }
        try {
          const res = await fn(caller, call.request);
          done('OK');
          callback(null, res);
        } catch (err) {
          done(isBrokerError(err) ? err.code : 'INTERNAL');
          callback(toServiceError(err, logger, method) as ServiceError);
        }
      })();
    };

  const impl: UntypedServiceImplementation = {
    BeginTask: unary<BeginTaskRequestMsg, TaskMsg>('BeginTask', async (caller, req) =>
      taskToMsg(
        await broker.beginTask(caller, {
          environment: req.environment,
          intent: req.intent,
          ttlSeconds: req.ttl_seconds,
          labels: req.labels ?? {},
        }),
      ),
    ),
    IssueCredential: unary<IssueCredentialRequestMsg, IssueCredentialResponseMsg>(
      'IssueCredential',
      async (caller, req) => {
        const issued = await broker.issueCredential(caller, {
          taskId: req.task_id,
          role: req.role,
          ttlSeconds: req.ttl_seconds,
          sensitivity: req.sensitivity,
          changeType: req.change_type,
          justification: req.justification,
          tool: req.tool,
        });
        return {
          lease_id: issued.leaseId,
          expires_at: toTimestamp(issued.expiresAt),
          credential: issued.credential,
          role: issued.role,
          task_id: issued.taskId,
          environment: issued.environment,
          policy_ids: issued.policyIds,
          ttl_seconds: issued.ttlSeconds,
        };
      },
    ),
    EndTask: unary<EndTaskRequestMsg, EndTaskResponseMsg>('EndTask', async (caller, req) => {
      const { task, revoked } = await broker.endTask(caller, { taskId: req.task_id, reason: req.reason });
      return {
        task: taskToMsg(task),
        revoked: revoked.map((r) => ({ lease_id: r.leaseId, role: r.role, state: r.state })),
      };
    }),
    GetTask: unary<GetTaskRequestMsg, TaskMsg>('GetTask', async (caller, req) =>
      taskToMsg(await broker.getTask(caller, req.task_id)),
    ),
  };
  server.addService(service, impl);

  const health = new HealthImplementation({ '': 'SERVING', [BROKER_SERVICE]: 'SERVING' });
  health.addToServer(server);

  // The one provider object serves both roles; grpc-js swaps its secure context on each update.
  const credentials = experimental.createCertificateProviderServerCredentials(
    deps.certificates,
    deps.certificates,
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, credentials, (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );

  return {
    port,
    health,
    async shutdown(graceMs = 10_000) {
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(BROKER_SERVICE, 'NOT_SERVING');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

async function auditAuthDenied(
  deps: GrpcServerDeps,
  err: unknown,
  method: string,
  peer: string,
): Promise<void> {
  try {
    await deps.audit.write({
      type: 'auth.denied',
      agent: '',
      method,
      peer,
      reason: isBrokerError(err) ? err.reason : 'internal',
      message: isBrokerError(err) ? err.message : 'authentication failed',
    });
  } catch (auditErr) {
    deps.logger.error(
      { err: { message: (auditErr as Error).message } },
      'audit write failed for auth.denied',
    );
  }
}
