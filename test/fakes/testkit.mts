// Host-side helpers for tests that drive the doubles as real processes, on the server's Node.js (the pinned version,
// unpacked once from the sandbox cache), as in the sandbox. Not copied to the sandbox.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Fault } from './lib/recorder.mts';
import { serverNodeBinary } from '../sandbox/sandbox.mts';

/** The pinned server Node.js: runs the .mts doubles natively (type stripping), like /opt/codex-k8s-bootstrap/node. */
export const SERVER_NODE_BIN = await serverNodeBinary();

/**
 * Node's compile cache for the doubles and the app started from the tests, as test/fakes/bin/* sets it in the
 * sandbox: a double starts in about 0.25 s of CPU instead of 0.6 s, and unit files start it hundreds of times.
 * Only speed. Children that inherit this process's environment get it too.
 */
export const COMPILE_CACHE_ENV = {
  NODE_COMPILE_CACHE:
    process.env['NODE_COMPILE_CACHE'] ??
    path.join(os.tmpdir(), `codex-k8s-fakes-compile-cache-${process.getuid?.() ?? 0}`),
};
process.env['NODE_COMPILE_CACHE'] = COMPILE_CACHE_ENV.NODE_COMPILE_CACHE;

export const FAKES_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(FAKES_DIR, '..', '..');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** The state dir (CODEXK8S_FAKES_DIR). */
  dir: string;
  /** A Buffer for binary input (a tar). */
  stdin?: string | Buffer;
  env?: Record<string, string>;
}

/** A fresh, empty state dir. */
export function newStateDir(prefix = 'codex-k8s-fakes-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A clean environment: no KUBECONFIG or ~/.kube/config from the machine running the tests. */
export function baseEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: dir,
    CODEXK8S_FAKES_DIR: dir,
    ...COMPILE_CACHE_ENV,
    ...extra,
  };
}

export function runProcess(cmd: string, args: string[], opts: RunOptions): RunResult {
  const r = spawnSync(cmd, args, {
    cwd: REPO_ROOT,
    env: baseEnv(opts.dir, opts.env),
    input: opts.stdin ?? '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error !== undefined) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs test/fakes/<tool>.mts on the server's Node.js, as a separate process. */
export function runDouble(tool: 'kubectl' | 'helm', args: string[], opts: RunOptions): RunResult {
  return runProcess(SERVER_NODE_BIN, [path.join(FAKES_DIR, `${tool}.mts`), ...args], opts);
}

/**
 * Makes the fake cluster "up" as the k3s install double would: cluster.json + a kubeconfig (returned; pass it with
 * --kubeconfig or KUBECONFIG).
 */
export function seedCluster(
  dir: string,
  cluster: { version?: string; nodeName?: string; disabled?: string[] } = {},
): string {
  fs.writeFileSync(
    path.join(dir, 'cluster.json'),
    JSON.stringify({ version: 'v1.31.4+k3s1', nodeName: 'sandbox', disabled: [], ...cluster }) + '\n',
  );
  const kubeconfig = path.join(dir, 'kubeconfig.yaml');
  fs.writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n', { mode: 0o600 });
  return kubeconfig;
}

/** A fresh state dir with the cluster up, and helm and kubectl bound to it: `h(args, stdin?)`, `k(args, stdin?)`. */
export function seededDoubles(): {
  dir: string;
  h: (args: string[], stdin?: string) => RunResult;
  k: (args: string[], stdin?: string) => RunResult;
} {
  const dir = newStateDir();
  const kubeconfig = seedCluster(dir);
  const opts = (stdin: string | undefined): RunOptions => (stdin === undefined ? { dir } : { dir, stdin });
  return {
    dir,
    h: (args, stdin) => runDouble('helm', ['--kubeconfig', kubeconfig, ...args], opts(stdin)),
    k: (args, stdin) => runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], opts(stdin)),
  };
}

export function writeFaults(dir: string, faults: Record<string, Partial<Fault>>): void {
  fs.writeFileSync(path.join(dir, 'faults.json'), JSON.stringify(faults, null, 2) + '\n');
}

/** Writes a file under the state dir and returns its path (for -f arguments). */
export function writeFile(dir: string, name: string, content: string): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}
