/**
 * Debian's python3 with grpcio, protobuf and the stub compiler, for the Python client's tests:
 * installed with apt-get when running as root (as CI does), else a one-line instruction.
 */
import { spawnSync } from 'node:child_process';

export const PYTHON = '/usr/bin/python3';
const PACKAGES = ['python3-grpcio', 'python3-protobuf', 'protobuf-compiler', 'protobuf-compiler-grpc'];
const MISSING = `python3-grpcio not found: install it (Debian: apt-get install -y ${PACKAGES.join(' ')}) and rerun npm test`;

function ready(): boolean {
  const py = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' });
  const plugin = spawnSync('sh', ['-c', 'command -v protoc && command -v grpc_python_plugin'], {
    stdio: 'ignore',
  });
  return py.status === 0 && plugin.status === 0;
}

export function findOrInstallPythonGrpc(): string {
  if (ready()) return PYTHON;
  if (process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get']).status === 0) {
    console.log(`installing ${PACKAGES.join(' ')} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', ...PACKAGES]]) {
      const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
      if (run.status !== 0) throw new Error(`${MISSING} (apt-get ${args.join(' ')} failed)`);
    }
    if (ready()) return PYTHON;
  }
  throw new Error(MISSING);
}
