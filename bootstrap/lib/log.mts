// One logging contract for the launcher and the remote steps.
// Every line goes through mask() before it reaches the terminal or a log file.
import { appendFileSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { mask } from './redact.mts';

const useColor = Boolean(process.stdout.isTTY) && !process.env['NO_COLOR'];
const paint = (code: string) => (s: string) => (useColor ? `\u001b[${code}m${s}\u001b[0m` : s);
export const color = {
  bold: paint('1'),
  dim: paint('2'),
  red: paint('31'),
  green: paint('32'),
  yellow: paint('33'),
  cyan: paint('36'),
};

export interface StepOutcome {
  status: 'unchanged' | 'changed' | 'failed';
  changed: number;
  seconds: number;
}

export class Logger {
  private file: string | undefined;
  verbose: boolean;
  /** Everything to stderr: stdout is kept for one machine-readable document (--check --json). */
  stdoutForData = false;

  constructor(opts: { verbose?: boolean; file?: string } = {}) {
    this.verbose = opts.verbose ?? false;
    if (opts.file) this.setFile(opts.file);
  }

  /** Start writing every line to `path` too (created 0600: logs may name hosts and users). */
  setFile(path: string): void {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    closeSync(openSync(path, 'a', 0o600));
    this.file = path;
  }

  get filePath(): string | undefined {
    return this.file;
  }

  private emit(stream: 'out' | 'err', text: string, plain?: string): void {
    const masked = mask(text);
    for (const line of masked.split('\n')) {
      (stream === 'out' && !this.stdoutForData ? process.stdout : process.stderr).write(line + '\n');
    }
    if (this.file) {
      const clean = stripAnsi(mask(plain ?? text));
      const stamp = new Date().toISOString();
      appendFileSync(
        this.file,
        clean
          .split('\n')
          .map((l) => `${stamp} ${l}`)
          .join('\n') + '\n',
      );
    }
  }

  info(msg: string): void {
    this.emit('out', msg);
  }
  /** Only with --verbose on the terminal; always in the log file. */
  detail(msg: string): void {
    if (this.verbose) this.emit('out', color.dim(msg), msg);
    else if (this.file) this.fileOnly(msg);
  }
  warn(msg: string): void {
    this.emit('err', color.yellow(`warning: ${msg}`), `warning: ${msg}`);
  }
  error(msg: string): void {
    this.emit('err', color.red(`error: ${msg}`), `error: ${msg}`);
  }
  fileOnly(msg: string): void {
    if (!this.file) return;
    const stamp = new Date().toISOString();
    appendFileSync(
      this.file,
      mask(msg)
        .split('\n')
        .map((l) => `${stamp} ${l}`)
        .join('\n') + '\n',
    );
  }

  stepHeader(index: number, total: number, name: string): void {
    const w = String(total).length < 2 ? 2 : String(total).length;
    const n = (i: number) => String(i).padStart(w, '0');
    this.emit('out', color.bold(`==> [${n(index)}/${n(total)}] ${name}`), `==> [${n(index)}/${n(total)}] ${name}`);
  }

  stepFooter(o: StepOutcome): void {
    const t = `(${o.seconds.toFixed(1)}s)`;
    switch (o.status) {
      case 'unchanged':
        return this.emit('out', color.green(`= unchanged ${t}`), `= unchanged ${t}`);
      case 'changed':
        return this.emit('out', color.cyan(`+ changed ${o.changed} ${t}`), `+ changed ${o.changed} ${t}`);
      case 'failed':
        return this.emit('out', color.red(`x failed ${t}`), `x failed ${t}`);
    }
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${Math.round(s - m * 60)
    .toString()
    .padStart(2, '0')}s`;
}

/** How often a long command (RunOptions.progress) and a long wait (lib/poll.mts) say that they still wait. */
export const PROGRESS_SECONDS = 15;

/** The progress line of a wait that has lasted `elapsedSeconds` (bound: undefined when there is none). */
export function progressLine(
  what: string,
  elapsedSeconds: number,
  boundSeconds: number | undefined,
  detail?: string,
): string {
  const bound = boundSeconds === undefined ? '' : ` of at most ${Math.round(boundSeconds)}s`;
  return `  .. still waiting for ${what}: ${Math.round(elapsedSeconds)}s${bound}${detail ? ` (${detail})` : ''}`;
}

/** Text without terminal colour codes (log files, parsed step output). */
export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}
