/**
 * Signed checkpoints over the chain head (audit.checkpoints): every `everyRecords` committed
 * records, every `intervalSeconds` when the head moved, at startup and at shutdown. Each is a C2SP
 * tlog-checkpoint note signed with the broker's Ed25519 key, appended (and synced) to
 * `<audit.file>.checkpoints`, kept as the latest (served on the ops listener) and handed to the
 * pipeline's followers. A note covers only what the keeper has made durable (its `head()`), so a
 * trail that ends before the last note was cut after the fact.
 */
import { open, readFile } from 'node:fs/promises';
import { loadCheckpointKey, type CheckpointKey } from './checkpoint-key.js';
import type { SinkLogger } from './file-chain-sink.js';
import { openNote, parseVkey, signNote, splitNotes } from './signed-note.js';
import {
  checkpointText,
  defaultOrigin,
  parseCheckpointText,
  type ChainCheckpoint,
} from './tlog-checkpoint.js';
import type { CommitListener } from './types.js';

/** What a checkpoint is taken of: the keeper's durable head and its commits. */
export interface CheckpointSource {
  head(): { seq: number; hash: string };
  subscribe(listener: CommitListener): () => void;
}

export interface CheckpointPublisherOptions {
  source: CheckpointSource;
  key: CheckpointKey;
  origin: string;
  /** `<audit.file>.checkpoints`: every note, one after another, each followed by an empty line. */
  notesFile: string;
  everyRecords: number;
  intervalMs: number;
  fsync: boolean;
  /** Hands each note on (AuditPipeline.publishCheckpoint). */
  publish: (note: string) => void;
  logger: SinkLogger;
}

export const checkpointsFile = (auditFile: string): string => `${auditFile}.checkpoints`;

/** The `audit` config keys checkpoints read. */
export interface CheckpointsConfig {
  file: string;
  fsync: boolean;
  checkpoints: {
    enabled: boolean;
    everyRecords: number;
    intervalSeconds: number;
    keyFile?: string | undefined;
    origin?: string | undefined;
  };
}

/** Starts signing checkpoints of `source` as configured (undefined when audit.checkpoints.enabled is false). */
export async function startCheckpoints(
  audit: CheckpointsConfig,
  source: CheckpointSource,
  pipeline: { publishCheckpoint(note: string): void },
  spiffeId: string,
  logger: SinkLogger,
): Promise<CheckpointPublisher | undefined> {
  const cfg = audit.checkpoints;
  if (!cfg.enabled) return undefined;
  const origin = cfg.origin ?? defaultOrigin(spiffeId);
  return CheckpointPublisher.start({
    source,
    key: await loadCheckpointKey(cfg.keyFile ?? `${audit.file}.checkpoint-key`, origin),
    origin,
    notesFile: checkpointsFile(audit.file),
    everyRecords: cfg.everyRecords,
    intervalMs: cfg.intervalSeconds * 1000,
    fsync: audit.fsync,
    publish: (note) => pipeline.publishCheckpoint(note),
    logger,
  });
}

export class CheckpointPublisher {
  private latestNote: string | undefined;
  private covered: { seq: number; hash: string } | undefined;
  private sinceLast = 0;
  private queue: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: () => void = () => undefined;

  private constructor(private readonly opts: CheckpointPublisherOptions) {}

  /** Loads the latest note written before, signs the head when it moved since, then keeps signing. */
  static async start(opts: CheckpointPublisherOptions): Promise<CheckpointPublisher> {
    const publisher = new CheckpointPublisher(opts);
    await publisher.loadLatest();
    await publisher.checkpoint();
    publisher.unsubscribe = opts.source.subscribe((records) => publisher.onCommit(records.length));
    publisher.timer = setInterval(() => void publisher.checkpoint(), opts.intervalMs);
    publisher.timer.unref();
    return publisher;
  }

  /** The latest signed note (text/plain on GET /v1/audit/checkpoint). */
  latest(): string | undefined {
    return this.latestNote;
  }

  /** The verifier key line (GET /v1/audit/checkpoint-key). */
  vkey(): string {
    return this.opts.key.vkey;
  }

  /** Signs the durable head unless the latest note covers it; one at a time, in order. */
  checkpoint(): Promise<void> {
    this.queue = this.queue.then(() => this.signHead());
    return this.queue;
  }

  /** Stops the schedule; `flush` closes the keeper (so every accepted record is in), then the last note. */
  async close(flush: () => Promise<void>): Promise<void> {
    clearInterval(this.timer);
    this.unsubscribe();
    await flush();
    await this.checkpoint();
  }

  private onCommit(count: number): void {
    this.sinceLast += count;
    if (this.sinceLast < this.opts.everyRecords) return;
    this.sinceLast = 0;
    void this.checkpoint();
  }

  /** Never rejects: a note that cannot be saved is logged and taken again at the next trigger. */
  private async signHead(): Promise<void> {
    const head = this.opts.source.head();
    if (this.covered?.seq === head.seq && this.covered.hash === head.hash) return;
    const note = signNote(
      checkpointText({ origin: this.opts.origin, size: head.seq, hash: head.hash }),
      this.opts.key,
    );
    try {
      await appendNote(this.opts.notesFile, note, this.opts.fsync);
    } catch (err) {
      this.opts.logger.warn(
        { path: this.opts.notesFile, err: (err as Error).message },
        'audit checkpoint not saved; the next one is taken at the next trigger',
      );
      return;
    }
    this.latestNote = note;
    this.covered = head;
    try {
      this.opts.publish(note);
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'audit checkpoint not handed to a sink');
    }
  }

  /** The last note in the notes file, when this key signed it (a new key starts afresh). */
  private async loadLatest(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.opts.notesFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const last = splitNotes(text).at(-1);
    if (last === undefined) return;
    const opened = openNote(last.note, parseVkey(this.opts.key.vkey));
    const cp = opened.ok ? safeParse(opened.text) : undefined;
    if (cp === undefined) return;
    const head = this.opts.source.head();
    if (cp.size > head.seq) {
      this.opts.logger.warn(
        { path: this.opts.notesFile, checkpoint_seq: cp.size, chain_seq: head.seq },
        'audit: the last signed checkpoint covers more records than the chain holds (a new trail, or a truncated one)',
      );
    }
    this.latestNote = last.note;
    this.covered = { seq: cp.size, hash: cp.hash };
  }
}

function safeParse(text: string): ChainCheckpoint | undefined {
  try {
    return parseCheckpointText(text);
  } catch {
    return undefined;
  }
}

/** Appends one note and the empty line after it, synced before the note is published. */
async function appendNote(file: string, note: string, fsync: boolean): Promise<void> {
  const handle = await open(file, 'a', 0o600);
  try {
    await handle.writeFile(`${note}\n`, 'utf8');
    if (fsync) await handle.datasync();
  } finally {
    await handle.close();
  }
}
