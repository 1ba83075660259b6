/**
 * What an approval is bound to: a digest of the exact request. A changed TTL, role, task or
 * justification is a different request and needs its own approval.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../audit/hash-chain.js';

export interface ApprovalSubject {
  agent: string;
  taskId: string;
  role: string;
  environment: string;
  ttlSeconds: number;
  sensitivity: string;
  changeType: string;
  justification: string;
}

export function approvalDigest(subject: ApprovalSubject): string {
  const canonical = canonicalJson({
    v: 1,
    agent: subject.agent,
    task: subject.taskId,
    role: subject.role,
    environment: subject.environment,
    ttl_seconds: subject.ttlSeconds,
    sensitivity: subject.sensitivity,
    change_type: subject.changeType,
    justification: subject.justification,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
