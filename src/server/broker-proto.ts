/** Loads proto/svidbroker/v1/broker.proto and describes its messages for the handlers and the CLI. */
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type ServiceDefinition } from '@grpc/proto-loader';
import { join } from 'node:path';
import { protoDir } from '../package-root.js';

export interface TimestampMsg {
  seconds: string | number;
  nanos: number;
}
export interface BeginTaskRequestMsg {
  environment: string;
  intent: string;
  ttl_seconds: number;
  labels: Record<string, string>;
  context?: AgentContextMsg | null;
}
/** Empty fields are not given (proto3 strings). */
export interface AgentContextMsg {
  tool_name?: string;
  tool_call_id?: string;
  session_id?: string;
  model?: string;
  prompt_digest?: string;
  plan?: string;
}
export interface TaskMsg {
  task_id: string;
  agent: string;
  environment: string;
  expires_at: TimestampMsg | null;
  intent: string;
  labels: Record<string, string>;
  created_at: TimestampMsg | null;
  state: string;
  transaction_token: string;
  parent_task_id: string;
  delegation_chain: string[];
  delegation_depth: number;
  delegated_roles: string[];
  sensitivity_ceiling: string;
  change_type_ceiling: string;
  remaining_depth: number;
}
export interface DelegateTaskRequestMsg {
  parent_task_id: string;
  delegate: string;
  roles: string[];
  environment: string;
  ttl_seconds: number;
  /** proto3 optional: absent (null/undefined) when not sent. */
  max_depth?: number | null;
  sensitivity_ceiling: string;
  max_change_type: string;
  intent: string;
  labels: Record<string, string>;
}
export interface RevokeTaskTreeRequestMsg {
  task_id: string;
  reason: string;
}
export interface RevokeTaskTreeResponseMsg {
  tasks: { task: TaskMsg; revoked: { lease_id: string; role: string; state: string }[] }[];
}
export interface IssueCredentialRequestMsg {
  task_id: string;
  role: string;
  ttl_seconds: number;
  sensitivity: string;
  change_type: string;
  justification: string;
  tool: string;
  context?: AgentContextMsg | null;
  transaction_token: string;
}
export interface CredentialMsg {
  kind: string;
  token: string;
  data: Record<string, string>;
  metadata: Record<string, string>;
}
export interface IssueCredentialResponseMsg {
  lease_id: string;
  expires_at: TimestampMsg | null;
  credential: CredentialMsg | null;
  role: string;
  task_id: string;
  environment: string;
  policy_ids: string[];
  ttl_seconds: number;
  status: 'ISSUE_STATUS_UNSPECIFIED' | 'ISSUED' | 'PENDING_APPROVAL';
  approval_id: string;
  approvals_required: number;
  approvals_received: number;
  approval_expires_at: TimestampMsg | null;
  break_glass: boolean;
}
export interface AwaitApprovalRequestMsg {
  approval_id: string;
}
export interface AwaitApprovalResponseMsg {
  state: string;
  approvals_received: number;
  approvals_required: number;
  issued: IssueCredentialResponseMsg | null;
}
export interface ApprovalDecisionMsg {
  approver: string;
  reason: string;
  at: TimestampMsg | null;
}
export interface ApprovalMsg {
  approval_id: string;
  requester: string;
  task_id: string;
  role: string;
  environment: string;
  ttl_seconds: number;
  sensitivity: string;
  change_type: string;
  justification: string;
  tool: string;
  approvals_required: number;
  approvals: ApprovalDecisionMsg[];
  denial: ApprovalDecisionMsg | null;
  state: string;
  created_at: TimestampMsg | null;
  expires_at: TimestampMsg | null;
  policy_ids: string[];
  delegation_chain: string[];
}
export interface ListApprovalsRequestMsg {
  state: string;
  page_size: number;
  page_token: string;
}
export interface ListApprovalsResponseMsg {
  approvals: ApprovalMsg[];
  next_page_token: string;
}
export interface DecideApprovalRequestMsg {
  approval_id: string;
  approve: boolean;
  reason: string;
}
export interface DecideApprovalResponseMsg {
  approval: ApprovalMsg | null;
  outcome: string;
}
export interface BreakGlassRequestMsg {
  agent: string;
  task_id: string;
  roles: string[];
  reason: string;
  ttl_seconds: number;
}
export interface BreakGlassGrantMsg {
  grant_id: string;
  granted_by: string;
  agent: string;
  task_id: string;
  roles: string[];
  reason: string;
  created_at: TimestampMsg | null;
  expires_at: TimestampMsg | null;
  uses: number;
  reviewed: boolean;
  reviewed_by: string;
  reviewed_at: TimestampMsg | null;
  review_note: string;
}
export interface ListBreakGlassResponseMsg {
  grants: BreakGlassGrantMsg[];
}
export interface LeaseSelectorMsg {
  lease_id: string;
  agent: string;
  task_id: string;
  environment: string;
  role: string;
  backend: string;
  trust_domain: string;
  all: boolean;
  state: string;
}
export interface LeaseInfoMsg {
  lease_id: string;
  agent: string;
  task_id: string;
  environment: string;
  role: string;
  backend: string;
  state: string;
  issued_at: TimestampMsg | null;
  expires_at: TimestampMsg | null;
  revoke_reason: string;
}
export interface ListLeasesRequestMsg {
  selector: LeaseSelectorMsg | null;
  page_size: number;
  page_token: string;
}
export interface ListLeasesResponseMsg {
  leases: LeaseInfoMsg[];
  next_page_token: string;
}
export interface GetLeaseRequestMsg {
  lease_id: string;
}
export interface BackendRevokeCountMsg {
  revoked: number;
  pending_retry: number;
  not_revocable: number;
}
export interface QuarantineRequestMsg {
  agent: string;
  reason: string;
  ttl_seconds: number;
  revoke_active: boolean;
}
export interface QuarantineInfoMsg {
  pattern: string;
  reason: string;
  by: string;
  trigger: string;
  created_at: TimestampMsg | null;
  expires_at: TimestampMsg | null;
  evidence_json: string;
}
export interface QuarantineResponseMsg {
  quarantine: QuarantineInfoMsg | null;
  replaced: boolean;
  revocation: RevokeLeasesReportMsg | null;
}
export interface ReleaseQuarantineRequestMsg {
  agent: string;
  reason: string;
}
export interface ListQuarantinesResponseMsg {
  quarantines: QuarantineInfoMsg[];
}
export interface RevokeLeasesRequestMsg {
  selector: LeaseSelectorMsg | null;
  reason: string;
  dry_run: boolean;
  confirm_all: boolean;
  deny_older_sessions?: boolean;
}
export interface WatchAuditRequestMsg {
  from_id: string;
  types: string[];
  agent: string;
}

export interface AuditEventMsg {
  cloudevent_json: string;
  id: string;
  seq: string;
  type: string;
  agent: string;
  time: TimestampMsg | null;
}

export interface RevokeLeasesReportMsg {
  matched: number;
  revoked: number;
  pending_retry: number;
  not_revocable: number;
  by_backend: Record<string, BackendRevokeCountMsg>;
  dry_run: boolean;
  leases: LeaseInfoMsg[];
  scanned: number;
  to_scan: number;
  done: boolean;
  older_sessions_denied_before?: string;
}
export interface ReviewBreakGlassRequestMsg {
  grant_id: string;
  note: string;
}
export interface EndTaskRequestMsg {
  task_id: string;
  reason: string;
}
export interface EndTaskResponseMsg {
  task: TaskMsg | null;
  revoked: Array<{ lease_id: string; role: string; state: string }>;
}
export interface GetTaskRequestMsg {
  task_id: string;
}
export interface ListRolesRequestMsg {
  task_id: string;
}
export interface RoleOptionMsg {
  name: string;
  backend: string;
  description: string;
  sensitivity: string;
  max_ttl_seconds: number;
  decision: string;
  approvals_required: number;
  policy_ids: string[];
}
export interface ListRolesResponseMsg {
  roles: RoleOptionMsg[];
}

export const PROTO_LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

export interface BrokerProto {
  service: ServiceDefinition;
  Client: ServiceClientConstructor;
  adminService: ServiceDefinition;
  AdminClient: ServiceClientConstructor;
}

export function loadBrokerProto(): BrokerProto {
  const def = loadSync(join(protoDir(), 'svidbroker/v1/broker.proto'), {
    ...PROTO_LOADER_OPTIONS,
    includeDirs: [protoDir()],
  });
  const pkg = loadPackageDefinition(def) as GrpcObject;
  const ns = (pkg.svidbroker as GrpcObject).v1 as GrpcObject;
  const Client = ns.CredentialBroker as ServiceClientConstructor;
  const AdminClient = ns.BrokerAdmin as ServiceClientConstructor;
  return {
    service: Client.service as unknown as ServiceDefinition,
    Client,
    adminService: AdminClient.service as unknown as ServiceDefinition,
    AdminClient,
  };
}

export function toTimestamp(ms: number): TimestampMsg {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

export function fromTimestamp(ts: TimestampMsg | null | undefined): number {
  if (!ts) return 0;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}
