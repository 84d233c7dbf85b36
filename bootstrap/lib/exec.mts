// The only module that starts processes (with lib/ssh.mts building on it).
// Commands are argv arrays; zx quotes every element (`$\`${argv}\``), so no shell string is ever built by hand.
// Secret values travel on stdin (`input`), never in argv.
import type { Readable } from 'node:stream';
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
