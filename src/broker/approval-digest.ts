/**
 * What an approval is bound to: a digest of the exact request. A changed TTL, role, task, tool or
 * justification is a different request and needs its own approval: approvers see the tool, and an
 * approval given for one tool must not hand the credential to another. (Version 2 added the tool:
 * approvals given before it no longer match, and the request asks again.)
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../util/canonical-json.js';

export interface ApprovalSubject {
  agent: string;
  taskId: string;
  role: string;
  environment: string;
  ttlSeconds: number;
  sensitivity: string;
  changeType: string;
  justification: string;
  tool: string;
}

export function approvalDigest(subject: ApprovalSubject): string {
  const canonical = canonicalJson({
    v: 2,
    agent: subject.agent,
    task: subject.taskId,
    role: subject.role,
    environment: subject.environment,
    ttl_seconds: subject.ttlSeconds,
    sensitivity: subject.sensitivity,
    change_type: subject.changeType,
    justification: subject.justification,
    tool: subject.tool,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
