/**
 * Where the MCP server puts credentials so that their values never enter the model's context: one
 * JSON file and one env file per lease, in a directory only the agent's user can open (0700, files
 * 0600), removed when the task ends.
 */
import { mkdirSync, rmSync, writeFileSync, chmodSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { IssuedCredential } from '../client/agent-client.js';

export interface WrittenCredential {
  path: string;
  envPath: string;
}

export class CredentialFiles {
  private readonly byTask = new Map<string, string[]>();

  constructor(readonly dir: string) {}

  /** Creates the directory (0700) and refuses one that is a symlink or readable by others. */
  prepare(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(this.dir);
    if (!st.isDirectory()) throw new Error(`${this.dir} is not a directory`);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid())
      throw new Error(`${this.dir} belongs to another user`);
    chmodSync(this.dir, 0o700);
  }

  write(issued: IssuedCredential): WrittenCredential {
    const base = join(this.dir, `${safeName(issued.leaseId)}`);
    const path = `${base}.json`;
    const envPath = `${base}.env`;
    const body = {
      lease_id: issued.leaseId,
      task_id: issued.taskId,
      role: issued.role,
      expires_at: issued.expiresAt.toISOString(),
      credential: issued.credential,
    };
    // 'wx': never follow or overwrite something placed there by someone else.
    writeFileSync(path, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    try {
      writeFileSync(envPath, envFile(issued), { mode: 0o600, flag: 'wx' });
    } catch (err) {
      // The JSON file holds the secret and is tracked nowhere yet: it must not outlive the error.
      rmSync(path, { force: true });
      throw err;
    }
    const files = this.byTask.get(issued.taskId) ?? [];
    files.push(path, envPath);
    this.byTask.set(issued.taskId, files);
    return { path, envPath };
  }

  /** Files written for a task (for task_status). */
  filesOf(taskId: string): readonly string[] {
    return this.byTask.get(taskId) ?? [];
  }

  /** Removes every file written for the task; returns how many. */
  removeTask(taskId: string): number {
    const files = this.byTask.get(taskId) ?? [];
    for (const f of files) rmSync(f, { force: true });
    this.byTask.delete(taskId);
    return files.length;
  }

  removeAll(): void {
    for (const taskId of [...this.byTask.keys()]) this.removeTask(taskId);
  }
}

function safeName(id: string): string {
  if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new Error('unexpected lease id from the broker');
  return id;
}

/** `SVID_BROKER_TOKEN`, `SVID_BROKER_LEASE_ID`, and each data field as `SVID_BROKER_<KEY>`. */
function envFile(issued: IssuedCredential): string {
  const lines = [
    ['SVID_BROKER_LEASE_ID', issued.leaseId],
    ['SVID_BROKER_CREDENTIAL_KIND', issued.credential.kind],
    ['SVID_BROKER_EXPIRES_AT', issued.expiresAt.toISOString()],
  ];
  if (issued.credential.token) lines.push(['SVID_BROKER_TOKEN', issued.credential.token]);
  for (const [k, v] of Object.entries(issued.credential.data)) {
    lines.push([`SVID_BROKER_${k.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`, v]);
  }
  return lines.map(([k, v]) => `${k}=${shellQuote(v ?? '')}`).join('\n') + '\n';
}

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}
