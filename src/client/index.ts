/**
 * svid-broker's public client entry point (`svid-broker/client`): the typed agent SDK. Everything
 * exported here is documented in the README ("TypeScript SDK") and kept stable.
 */
export {
  BrokerClient,
  TaskHandle,
  type AgentContext,
  type ApprovalProgress,
  type AwaitOptions,
  type ConnectOptions,
  type Credential,
  type CredentialRequest,
  type EndedTask,
  type IssueResult,
  type IssuedCredential,
  type PendingApproval,
  type RoleOption,
  type TaskInfo,
} from './agent-client.js';
