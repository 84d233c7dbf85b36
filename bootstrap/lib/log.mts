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

/** Where a Logger writes: process.stdout / process.stderr, or a stand-in in tests. */
export interface Sink {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Erases the terminal line the cursor is on (the live line), leaving the cursor at its start. */
const ERASE_LINE = '\r\u001b[K';

export class Logger {
  private file: string | undefined;
  private readonly out: Sink;
  private readonly err: Sink;
  /** The live line drawn at the bottom of the terminal now (undefined: none). */
  private live: string | undefined;
  private eraseOnExit = false;
  verbose: boolean;
  /** Everything to stderr: stdout is kept for one machine-readable document (--check --json). */
  stdoutForData = false;

  constructor(opts: { verbose?: boolean; file?: string; out?: Sink; err?: Sink } = {}) {
    this.verbose = opts.verbose ?? false;
    this.out = opts.out ?? process.stdout;
    this.err = opts.err ?? process.stderr;
    if (opts.file) this.setFile(opts.file);
  }

  /** The terminal the live line goes to, when the human output goes to one; undefined otherwise (CI, pipes, logs). */
  private get terminal(): Sink | undefined {
    const human = this.stdoutForData ? this.err : this.out;
    return human.isTTY ? human : undefined;
  }

  /** Whether progress shows as a live line (a terminal) rather than as lines of their own. */
  get isLive(): boolean {
    return this.terminal !== undefined;
  }

  /**
   * The live line: one line at the bottom of a terminal, redrawn in place (what is being waited for, how long, the
   * bound). Other output scrolls above it. Never written to the log file, never shown on a non-terminal;
   * `undefined` removes it.
   */
  liveLine(text: string | undefined): void {
    const t = this.terminal;
    if (!t) return;
    if (this.live !== undefined) t.write(ERASE_LINE);
    else if (text !== undefined && !this.eraseOnExit) {
      // Ctrl-C or an error exit must not leave a stale spinner in front of the shell prompt.
      this.eraseOnExit = true;
      process.once('exit', () => {
        if (this.live !== undefined) t.write(ERASE_LINE);
      });
    }
    this.live = text;
    this.drawLive();
  }

  /**
   * A progress report of long work (a wait, a transfer): the live line on a terminal (and the log file), a line of
   * its own everywhere else, so CI logs keep one line per report.
   */
  progress(msg: string): void {
    if (!this.isLive) return this.info(msg);
    this.fileOnly(msg);
    this.liveLine(msg.trim());
  }

  private drawLive(): void {
    const t = this.terminal;
    if (!t || this.live === undefined) return;
    const width = Math.max(20, (t.columns ?? 80) - 1);
    const text = mask(this.live);
    t.write(text.length > width ? `${text.slice(0, width - 1)}…` : text);
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
    // A line scrolls above the live line: erase it, write the line, draw it again below.
    const live = this.live !== undefined ? this.terminal : undefined;
    live?.write(ERASE_LINE);
    for (const line of masked.split('\n')) {
      (stream === 'out' && !this.stdoutForData ? this.out : this.err).write(line + '\n');
    }
    if (live) this.drawLive();
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

/** 1536 -> "1.5 KiB": sizes and rates in progress lines. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
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

/** Whether a line is a progress report (`  .. ...`: progressLine, transfers): a terminal shows it as the live line. */
export function isProgressLine(line: string): boolean {
  return /^\s*\.\. /.test(line);
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Pure: the live line of a running step: a spinner frame, the step, its time so far, the last progress report. */
export function stepLiveLine(name: string, seconds: number, tick: number, latest?: string): string {
  const report = latest === undefined ? '' : ` · ${latest.trim().replace(/^\.\. /, '')}`;
  return `${SPINNER[tick % SPINNER.length]} ${name} ${formatSeconds(seconds)}${report}`;
}

/** Text without terminal colour codes (log files, parsed step output). */
export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

/**
 * Pure: the one journal line of a component that moved from one version (or image) to another,
 * `<what> <from> -> <to> (<detail>)`, so every upgrade reads and greps the same way.
 */
export function moved(what: string, from: string, to: string, detail?: string): string {
  return `${what} ${from} -> ${to}${detail ? ` (${detail})` : ''}`;
}
