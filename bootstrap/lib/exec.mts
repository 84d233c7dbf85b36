// The only module that starts processes (with lib/ssh.mts building on it): run() for commands whose output fits in
// memory (zx), spawnStream() for the few whose stdout is a stream of any size (a database dump).
// Commands are argv arrays; zx quotes every element (`$\`${argv}\``), so no shell string is ever built by hand.
// Secret values travel on stdin (`input`), never in argv.
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { OperationError } from './errors.mts';
import { mask } from './redact.mts';
import type { Logger } from './log.mts';
import { PROGRESS_SECONDS, progressLine } from './log.mts';

// zx is loaded on first use: a step that starts no process (00_preflight) does not pay for it.
let zx: typeof import('zx') | undefined;
async function dollar(): Promise<(typeof import('zx'))['$']> {
  if (!zx) {
    zx = await import('zx');
    zx.$.verbose = false;
    zx.$.quiet = true;
  }
  return zx.$;
}

export interface RunOptions {
  /** Bytes for the process's stdin. Use this for every secret. */
  input?: string | Buffer | Readable;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Return non-zero exit codes instead of throwing. */
  allowFail?: boolean;
  /** Kill the process after this long; a timeout is a failure. */
  timeoutSeconds?: number;
  /**
   * A long command: what it is, for a progress line through `log` every PROGRESS_SECONDS while it runs
   * ("  .. still waiting for helm upgrade cert-manager: 45s of at most 330s"), so a 5-minute wait is not silence.
   */
  progress?: string;
  /** The interval of those lines (default PROGRESS_SECONDS; tests use less). */
  progressSeconds?: number;
  /** Called for each complete stdout / stderr line as it arrives (live streaming). */
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
  log?: Logger;
}

export interface RunResult {
  argv: readonly string[];
  stdout: string;
  stderr: string;
  exitCode: number;
  seconds: number;
}

export class CommandError extends OperationError {
  readonly result: RunResult;
  constructor(result: RunResult, what?: string) {
    const cmd = mask(result.argv.join(' '));
    const tail = mask(result.stderr.trim().split('\n').slice(-15).join('\n'));
    super(`${what ?? 'command failed'}: ${cmd} (exit ${result.exitCode})`, { detail: tail || undefined });
    this.result = result;
  }
}

function lineSplitter(cb: (line: string) => void): { push(chunk: Buffer | string): void; end(): void } {
  let buf = '';
  return {
    push(chunk) {
      buf += chunk.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        cb(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    },
    end() {
      if (buf.length > 0) cb(buf);
      buf = '';
    },
  };
}

export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (argv.length === 0) throw new Error('run(): empty argv');
  const started = performance.now();
  opts.log?.detail(`$ ${argv.join(' ')}`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) env[k] = v;
  const $ = await dollar();
  const p = $({
    input: opts.input,
    env,
    cwd: opts.cwd,
    nothrow: true,
    quiet: true,
    verbose: false,
    timeout: opts.timeoutSeconds ? `${opts.timeoutSeconds}s` : undefined,
  })`${argv}`;
  const outLines = opts.onStdoutLine ? lineSplitter(opts.onStdoutLine) : undefined;
  const errLines = opts.onStderrLine ? lineSplitter(opts.onStderrLine) : undefined;
  if (outLines) p.stdout.on('data', (c: Buffer) => outLines.push(c));
  if (errLines) p.stderr.on('data', (c: Buffer) => errLines.push(c));
  const heartbeat =
    opts.progress && opts.log
      ? setInterval(
          () => {
            opts.log?.info(
              progressLine(opts.progress as string, (performance.now() - started) / 1000, opts.timeoutSeconds),
            );
          },
          (opts.progressSeconds ?? PROGRESS_SECONDS) * 1000,
        )
      : undefined;
  const out = await p.finally(() => clearInterval(heartbeat));
  outLines?.end();
  errLines?.end();
  const result: RunResult = {
    argv,
    stdout: out.stdout,
    stderr: out.stderr,
    exitCode: out.exitCode ?? (out.signal ? 128 : 1),
    seconds: (performance.now() - started) / 1000,
  };
  if (out.signal && opts.timeoutSeconds) {
    throw new CommandError(result, `timed out after ${opts.timeoutSeconds}s`);
  }
  if (result.exitCode !== 0 && !opts.allowFail) throw new CommandError(result);
  return result;
}

/** A process whose stdin and stdout are streams: a database dump in or out, or a session answered line by line. */
export interface StreamingProcess {
  /** null unless `stdin: 'pipe'` was asked for. */
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  /** Resolves when the process has exited: stdout is not in it (it was streamed), stderr is (its last 64 KiB). */
  readonly done: Promise<RunResult>;
  kill(): void;
}

export interface StreamOptions {
  /** 'pipe': the caller writes stdin (and ends it); a Readable: piped in; default: no stdin. */
  stdin?: 'pipe' | Readable;
  env?: Record<string, string | undefined>;
  /** Called for each complete stderr line as it arrives (the remote side's log lines). */
  onStderrLine?: (line: string) => void;
  log?: Logger;
}

const STDERR_KEEP = 64 * 1024;

/**
 * Starts `argv` with its stdout as a stream. zx keeps everything a process prints in memory, which a dump of a
 * database must not do, so this is child_process.spawn itself (no shell: argv as is). Secrets still go on stdin.
 * `done` never rejects: check its exitCode (and use CommandError to report it).
 */
export function spawnStream(argv: readonly string[], opts: StreamOptions = {}): StreamingProcess {
  if (argv.length === 0) throw new Error('spawnStream(): empty argv');
  const started = performance.now();
  opts.log?.detail(`$ ${argv.join(' ')}`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) env[k] = v;
  const child = spawn(argv[0] as string, argv.slice(1), {
    env,
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  const errLines = opts.onStderrLine ? lineSplitter(opts.onStderrLine) : undefined;
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-STDERR_KEEP);
    errLines?.push(c);
  });
  child.stderr?.on('end', () => errLines?.end());
  if (opts.stdin !== undefined && opts.stdin !== 'pipe') {
    opts.stdin.pipe(child.stdin as Writable);
    // The process may exit before it read everything (a refused restore): that is its answer, not a crash here.
    child.stdin?.on('error', () => undefined);
  }
  const done = new Promise<RunResult>((resolve) => {
    const finish = (exitCode: number) =>
      resolve({ argv, stdout: '', stderr, exitCode, seconds: (performance.now() - started) / 1000 });
    child.once('error', (e) => {
      stderr += `${(e as Error).message}\n`;
      finish(127);
    });
    child.once('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
  return {
    stdin: opts.stdin === 'pipe' ? child.stdin : null,
    stdout: child.stdout as Readable,
    done,
    kill: () => child.kill('SIGTERM'),
  };
}
