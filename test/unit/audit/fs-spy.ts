/**
 * A ChainFileSystem over the real one that counts writes and syncs and can inject faults. A file
 * opened with O_DSYNC syncs in each write: such a write counts as a sync too, and a sync fault
 * fails it (after it landed, as an I/O error reported by the sync would).
 */
import { constants as fsConstants } from 'node:fs';
import {
  nodeChainFileSystem,
  type ChainFileHandle,
  type ChainFileSystem,
} from '../../../src/audit/file-chain-sink.js';

export interface FsSpy {
  fileSystem: ChainFileSystem;
  counts: { writes: number; datasyncs: number };
  /** Every open, with its flags. */
  opened: Array<{ path: string; flags: number }>;
  /**
   * Set to make every later write (or datasync, truncate) fail with this errno. With `writeAfter`
   * a write first lands that many bytes (a disk filling mid-batch), then fails.
   */
  faults: { write?: string; writeAfter?: number; datasync?: string; truncate?: string };
}

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault`), { code });
}

export function createFsSpy(): FsSpy {
  const counts = { writes: 0, datasyncs: 0 };
  const faults: FsSpy['faults'] = {};
  const opened: FsSpy['opened'] = [];
  const fileSystem: ChainFileSystem = {
    mkdir: (path, options) => nodeChainFileSystem.mkdir(path, options),
    freeBytes: async () => 0,
    async open(path, flags, mode) {
      const inner = await nodeChainFileSystem.open(path, flags, mode);
      opened.push({ path, flags: typeof flags === 'number' ? flags : -1 });
      const syncsOnWrite = typeof flags === 'number' && (flags & fsConstants.O_DSYNC) !== 0;
      const write = async (buffer: Uint8Array, offset: number, length: number) => {
        counts.writes += 1;
        if (faults.write === undefined) return inner.write(buffer, offset, length);
        const landed = Math.min(length, faults.writeAfter ?? 0);
        faults.writeAfter = 0;
        if (landed > 0) return inner.write(buffer, offset, landed);
        throw errno(faults.write);
      };
      const handle: ChainFileHandle = {
        read: (buffer, offset, length, position) => inner.read(buffer, offset, length, position),
        async write(buffer, offset, length) {
          const written = await write(buffer, offset, length);
          if (syncsOnWrite) {
            counts.datasyncs += 1;
            if (faults.datasync !== undefined) throw errno(faults.datasync);
          }
          return written;
        },
        async truncate(length) {
          if (faults.truncate !== undefined) throw errno(faults.truncate);
          return inner.truncate(length);
        },
        stat: () => inner.stat(),
        async datasync() {
          counts.datasyncs += 1;
          if (faults.datasync !== undefined) throw errno(faults.datasync);
          return inner.datasync();
        },
        sync: () => inner.sync(),
        close: () => inner.close(),
      };
      return handle;
    },
  };
  return { fileSystem, counts, faults, opened };
}
