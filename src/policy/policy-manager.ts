/**
 * Hot reload of the policy set. A new set is read, validated and preparsed beside the one in
 * service and replaces it only when all of that succeeded: a bad set keeps the old one serving.
 *
 * `reload()` is synchronous from reading the files to the swap, so two reloads (a SIGHUP and a
 * file change, say) can never interleave, and every request sees either the old engine or the
 * new one. Callers read `current` per request and keep what they got for that request.
 *
 * The set in service may have come from another replica (adopt()) and differ from this replica's
 * directory. A reload therefore acts only when the directory's content changed since it was last
 * read: a SIGHUP to a replica whose directory is older than the shared set does not roll it back.
 * With `pinDigest`, only the set with that digest is ever served: loading, reloading or adopting
 * another is refused.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { CedarPolicyEngine, type CedarEngineOptions } from './cedar-engine.js';
import {
  DEFAULT_SCHEMA_FILE,
  policyBundleFromSources,
  readPolicyBundle,
  type PolicySources,
} from './policy-bundle.js';
import { PolicyLoadError, type PolicyProblem } from './policy-load-error.js';

/** Quiet period after the last file event before reloading: an editor or a ConfigMap update
 * writes several files, and reloading halfway would report a transient failure (or a set that
 * is valid but incomplete). */
export const DEFAULT_WATCH_DEBOUNCE_MS = 200;

export interface PolicyManagerOptions extends CedarEngineOptions {
  /** A new set took effect. Not called when a reload found the same content. */
  onReloaded?: (digest: string, previousDigest: string) => void;
  /** A reload was refused; the set in service is unchanged. */
  onReloadFailed?: (problems: PolicyProblem[]) => void;
  /**
   * The file watcher stopped (e.g. the directory was removed; reload() still works), or a
   * reload it started threw from one of the callbacks above.
   */
  onWatchError?: (err: Error) => void;
  /** Reload when a file in the policy directory (or the schema file) changes. */
  watch?: boolean;
  debounceMs?: number;
  /** Serve only the set with this digest (`policy.pinDigest`). */
  pinDigest?: string;
}

export interface PolicyReloadResult {
  ok: boolean;
  /** The digest in service after the reload (unchanged when it failed or found the same content). */
  digest: string;
  /** True when a new set took effect. */
  changed: boolean;
  /** Why the reload was refused (only when ok is false). */
  problems?: PolicyProblem[];
}

export class PolicyManager {
  private engine: CedarPolicyEngine;
  /** The digest of the directory's content when it was last read successfully. */
  private dirDigest: string;
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly options: PolicyManagerOptions,
    initial: CedarPolicyEngine,
  ) {
    this.engine = initial;
    this.dirDigest = initial.digest;
  }

  /** Loads the initial set (throws PolicyLoadError when it is invalid) and starts watching. */
  static load(options: PolicyManagerOptions): PolicyManager {
    const engine = CedarPolicyEngine.load(options);
    const unpinned = pinProblem(options.pinDigest, engine.digest, options.policyDir);
    if (unpinned) throw new PolicyLoadError(options.policyDir, [unpinned]);
    const manager = new PolicyManager(options, engine);
    if (options.watch === true) manager.startWatching();
    return manager;
  }

  /**
   * The engine in service. Still answers after close(), so requests draining during shutdown
   * are decided by the last good set.
   */
  get current(): CedarPolicyEngine {
    return this.engine;
  }

  /** The digest of this replica's policy directory as last read (may differ from `current`). */
  get directoryDigest(): string {
    return this.dirDigest;
  }

  /**
   * Reads the directory again; swaps in its set only if the directory changed since it was last
   * read, and the new set is valid and differs from the one in service.
   */
  reload(): PolicyReloadResult {
    if (this.closed) throw new Error('policy: reload after the policy manager was closed');
    const previous = this.engine;
    let next: CedarPolicyEngine;
    try {
      const read = readPolicyBundle(this.options.policyDir, this.options.schemaPath);
      const digest = read.bundle?.digest;
      // The directory did not change, or now holds the set in service: nothing to do or announce.
      if (digest === this.dirDigest || digest === previous.digest) {
        if (digest !== undefined) this.dirDigest = digest;
        return { ok: true, digest: previous.digest, changed: false };
      }
      const unpinned = pinProblem(this.options.pinDigest, digest, this.options.policyDir);
      if (unpinned) throw new PolicyLoadError(this.options.policyDir, [unpinned]);
      next = CedarPolicyEngine.fromBundle(this.options, read);
    } catch (err) {
      const problems = problemsOf(err, this.options.policyDir);
      this.options.onReloadFailed?.(problems);
      return { ok: false, digest: previous.digest, changed: false, problems };
    }
    this.engine = next;
    this.dirDigest = next.digest;
    this.options.onReloaded?.(next.digest, previous.digest);
    return { ok: true, digest: next.digest, changed: true };
  }

  /**
   * Swaps in a set another replica loaded (sent as texts through Redis), if its texts hash to
   * `digest` (the one announced with them), it is valid and different; the same all-or-nothing
   * rule as reload(). Does not call onReloaded: the caller (PolicySync) records it as a sync, and
   * must not announce it again.
   */
  adopt(sources: PolicySources, origin: string, digest: string): PolicyReloadResult {
    if (this.closed) throw new Error('policy: adopt after the policy manager was closed');
    const previous = this.engine;
    let next: CedarPolicyEngine;
    try {
      const read = policyBundleFromSources(origin, sources);
      const actual = read.bundle?.digest;
      if (actual !== undefined && actual !== digest) {
        const message = `the texts hash to ${actual}, not to the announced digest ${digest}`;
        throw new PolicyLoadError(origin, [{ file: origin, message }]);
      }
      const unpinned = pinProblem(this.options.pinDigest, digest, origin);
      if (unpinned) throw new PolicyLoadError(origin, [unpinned]);
      if (actual === previous.digest) {
        return { ok: true, digest: previous.digest, changed: false };
      }
      next = CedarPolicyEngine.fromBundle(this.options, read);
    } catch (err) {
      return { ok: false, digest: previous.digest, changed: false, problems: problemsOf(err, origin) };
    }
    this.engine = next;
    return { ok: true, digest: next.digest, changed: true };
  }

  /** Stops watching. Idempotent; reload() fails afterwards, `current` keeps answering. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.watchers.splice(0)) w.close();
  }

  private startWatching(): void {
    const dir = path.resolve(this.options.policyDir);
    const schema = path.resolve(this.options.schemaPath ?? path.join(dir, DEFAULT_SCHEMA_FILE));
    // Any change in the directory may matter: a ConfigMap update swaps a `..data` symlink rather
    // than touching the *.cedar names, and an editor saves through a temporary file and rename.
    this.watchDir(dir, () => true);
    const schemaDir = path.dirname(schema);
    if (schemaDir !== dir) {
      // The directory, not the file: a watch on a file follows its inode, which an atomic
      // replace (rename over it) leaves behind.
      const name = path.basename(schema);
      this.watchDir(schemaDir, (f) => f === null || f === name || f.startsWith('..'));
    }
  }

  private watchDir(dir: string, relevant: (filename: string | null) => boolean): void {
    let watcher: FSWatcher;
    try {
      // Not persistent: the server keeps the process alive, a watcher alone should not.
      watcher = watch(dir, { persistent: false }, (_event, filename) => {
        if (relevant(filename === null ? null : filename.toString())) this.scheduleReload();
      });
    } catch (err) {
      // Out of inotify watches, say: reload on SIGHUP still works, so say so rather than not start.
      if (this.options.onWatchError === undefined) throw err;
      this.options.onWatchError(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    watcher.on('error', (err: Error) => {
      watcher.close();
      this.options.onWatchError?.(err);
    });
    this.watchers.push(watcher);
  }

  private scheduleReload(): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closed) return;
      try {
        this.reload();
      } catch (err) {
        // Only a throwing callback gets here; from a timer it would take the process down.
        this.options.onWatchError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }, this.options.debounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS);
    this.timer.unref();
  }
}

/** Why a set with `digest` may not serve under `pin`, or undefined when it may. */
function pinProblem(
  pin: string | undefined,
  digest: string | undefined,
  file: string,
): PolicyProblem | undefined {
  if (pin === undefined || digest === undefined || digest === pin) return undefined;
  return { file, message: `the set's digest ${digest} is not policy.pinDigest ${pin}` };
}

function problemsOf(err: unknown, dir: string): PolicyProblem[] {
  if (err instanceof PolicyLoadError) return [...err.problems];
  // Not a problem in the files (a cedar-wasm failure while preparsing): still refused, and said.
  return [{ file: dir, message: err instanceof Error ? err.message : String(err) }];
}
