// Plumbing shared by the kubectl and helm doubles: a pflag-like argv parser, the error type that becomes
// "stderr + exit code", and runDouble(), the one main() that does fault injection, locking and call recording.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { appendCall, ensureStateDir, sha256, stateDir, takeFault, withLock } from './recorder.mts';
import type { CallRecord } from './recorder.mts';

/** A failure the double reports like the real tool: `message` goes to stderr as is, then exit `exitCode`. */
export class DoubleError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** What one invocation produced. */
export interface Outcome {
  stdout: string;
  stderr: string;
  exitCode: number;
  /** True only when state really changed (see recorder.mts). */
  mutating: boolean;
  changes: string[];
  /** Recorded as calls.jsonl `detail` (never stdin, never a secret): e.g. kubectl exec's pod, container, command. */
  detail?: Record<string, unknown>;
  /**
   * Work that runs after the state lock is released, before the call is recorded: a long-lived remote process
   * (kubectl exec psql, pg_dump, pg_restore) that streams, while other calls of the doubles (the pg_dump of a psql
   * session's snapshot) must be able to run. It writes its own stdout (the child's, inherited) and sets `exitCode`,
   * `stderr`, `mutating` and `changes` on the outcome; a DoubleError it throws is turned into stderr + exit code.
   */
  unlocked?: (out: Outcome) => Promise<void>;
}

export function emptyOutcome(): Outcome {
  return { stdout: '', stderr: '', exitCode: 0, mutating: false, changes: [] };
}

export interface ToolIO {
  /** The fakes state dir. */
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  /** Reads all of stdin once (recording its sha256 in the call record). */
  readStdin(): Buffer;
  /**
   * Streams stdin into `dest` chunk by chunk as it arrives (never all of it in memory, with back-pressure), ends
   * `dest` at EOF, and records the sha256 of everything forwarded. `done` resolves at EOF (or when stopped);
   * `stop()` ends the forwarding early, when the remote process is gone: what was forwarded until then is hashed,
   * and stdin is released so the process can exit (real kubectl ends with the remote process, not at EOF).
   */
  pipeStdin(dest: NodeJS.WritableStream): { done: Promise<void>; stop(): void };
}

// ---------------------------------------------------------------------------------------------------------------
// Flags

export type FlagType = 'string' | 'bool' | 'list';

export interface FlagSpec {
  readonly type: FlagType;
  /** One-letter alias, without the dash. */
  readonly short?: string;
  /** Accepted values (string/list flags). */
  readonly values?: readonly string[];
}

export type FlagTable = Readonly<Record<string, FlagSpec>>;

export type FlagValue = string | boolean | string[];

export interface ParsedArgs {
  readonly flags: Map<string, FlagValue>;
  readonly positionals: string[];
}

export interface ParseStyle {
  /** How to report an unknown flag, e.g. kubectl: "error: unknown flag: --x\nSee 'kubectl apply --help' for usage." */
  unknownFlag(flag: string): string;
  badValue(flag: string, value: string, allowed: readonly string[]): string;
  missingValue(flag: string): string;
}

/**
 * Parses `argv` with pflag rules: `--name value`, `--name=value`, `-n value`, `-nvalue`, `-n=value`,
 * `--bool`, `--bool=true|false`, `--` ends flags. Flags and positionals may be mixed.
 */
export function parseArgs(argv: readonly string[], table: FlagTable, style: ParseStyle): ParsedArgs {
  const flags = new Map<string, FlagValue>();
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(table)) if (spec.short !== undefined) byShort.set(spec.short, name);

  const set = (name: string, spec: FlagSpec, raw: string | undefined, shown: string): void => {
    if (spec.type === 'bool') {
      if (raw === undefined || raw === 'true') flags.set(name, true);
      else if (raw === 'false') flags.set(name, false);
      else throw new DoubleError(style.badValue(shown, raw, ['true', 'false']));
      return;
    }
    if (raw === undefined) throw new DoubleError(style.missingValue(shown));
    if (spec.values !== undefined && !spec.values.includes(raw))
      throw new DoubleError(style.badValue(shown, raw, spec.values));
    if (spec.type === 'list') {
      const prev = flags.get(name);
      flags.set(name, [...(Array.isArray(prev) ? prev : []), raw]);
    } else {
      flags.set(name, raw);
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const spec = table[name];
      if (spec === undefined) throw new DoubleError(style.unknownFlag(`--${name}`));
      let raw: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
      if (raw === undefined && spec.type !== 'bool') {
        raw = argv[i + 1];
        i++;
      }
      set(name, spec, raw, `--${name}`);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      const letter = arg.slice(1, 2);
      const name = byShort.get(letter);
      if (name === undefined) throw new DoubleError(style.unknownFlag(`-${letter}`));
      const spec = table[name] as FlagSpec;
      let rest = arg.slice(2);
      if (rest.startsWith('=')) rest = rest.slice(1);
      let raw: string | undefined = rest === '' ? undefined : rest;
      if (raw === undefined && spec.type !== 'bool') {
        raw = argv[i + 1];
        i++;
      }
      set(name, spec, raw, `-${letter}`);
      continue;
    }
    positionals.push(arg);
  }
  return { flags, positionals };
}

export function flagString(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function flagBool(p: ParsedArgs, name: string): boolean {
  return p.flags.get(name) === true;
}

export function flagList(p: ParsedArgs, name: string): string[] {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v : [];
}

/**
 * Removes the given global flags (and their values) from argv; used to match faults.json keys
 * independently of where `-n staging` or `--kubeconfig x` were placed.
 */
export function stripFlags(argv: readonly string[], table: FlagTable): string[] {
  const out: string[] = [];
  const shorts = new Map<string, FlagSpec>();
  for (const spec of Object.values(table)) if (spec.short !== undefined) shorts.set(spec.short, spec);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const spec = table[eq === -1 ? arg.slice(2) : arg.slice(2, eq)];
      if (spec !== undefined) {
        if (eq === -1 && spec.type !== 'bool') i++;
        continue;
      }
    } else if (arg.startsWith('-') && arg.length > 1) {
      const spec = shorts.get(arg.slice(1, 2));
      if (spec !== undefined) {
        if (arg.length === 2 && spec.type !== 'bool') i++;
        continue;
      }
    }
    out.push(arg);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Durations (Go's time.ParseDuration subset used by kubectl/helm flags: "90s", "5m", "1h30m", "0")

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    pos = re.lastIndex;
  }
  return pos === text.length && pos > 0 ? total : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

/** What a verb of a double gets: its name, flags, positionals, I/O, the outcome to fill, and the cluster. */
export interface VerbContext<S> {
  readonly verb: string;
  readonly args: ParsedArgs;
  /** Positionals after the verb (and sub-verb). */
  readonly pos: string[];
  readonly io: ToolIO;
  readonly out: Outcome;
  /** The cluster's store; fails with "connection refused" when there is no cluster or kubeconfig. */
  store(): S;
  /** -n value, or the tool's default namespace. */
  namespace(): string;
}

/** One entry of a double's verb table. */
export interface VerbSpec<C> {
  readonly usage: string;
  readonly flags: FlagTable;
  /** Sub-verbs (rollout status|undo ...); the first positional after the verb must be one of them. */
  readonly subverbs?: readonly string[];
  run(ctx: C): Promise<void>;
}

/**
 * Runs one verb and turns a DoubleError into the outcome's stderr and exit code, keeping what the verb printed
 * (and changed) before failing, as the real tools do. Any other error is a bug of the double and propagates.
 */
export async function runVerb(out: Outcome, verb: () => Promise<void>): Promise<Outcome> {
  try {
    await verb();
  } catch (err) {
    if (!(err instanceof DoubleError)) throw err;
    out.stderr += err.message;
    out.exitCode = err.exitCode;
  }
  return out;
}

export interface DoubleSpec {
  /** Name recorded in calls.jsonl and used in faults.json keys ("kubectl", "helm"). */
  readonly tool: string;
  /** Global flags, stripped from argv for the second fault-matching form. */
  readonly globalFlags: FlagTable;
  /** More argv forms for faults.json keys to match (kubectl exec: `exec` + the command words). */
  readonly faultForms?: (argv: readonly string[]) => string[][];
  run(argv: string[], io: ToolIO): Promise<Outcome>;
}

function readAllStdin(): Buffer {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        continue;
      }
      if (code === 'EOF') break;
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

/** Entry point of a double: never throws; sets process.exitCode and writes stdout/stderr once. */
export async function runDouble(spec: DoubleSpec, argv: string[] = process.argv.slice(2)): Promise<void> {
  const dir = stateDir();
  let stdinSha: string | undefined;
  let stdinCache: Buffer | undefined;
  const io: ToolIO = {
    dir,
    env: process.env,
    readStdin(): Buffer {
      if (stdinCache === undefined) {
        stdinCache = readAllStdin();
        stdinSha = sha256(stdinCache);
      }
      return stdinCache;
    },
    pipeStdin(dest) {
      if (stdinCache !== undefined || stdinSha !== undefined) throw new Error('stdin was already read');
      const hash = crypto.createHash('sha256');
      const input = process.stdin;
      let finish: () => void = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        let over = false;
        const onData = (chunk: Buffer): void => {
          hash.update(chunk);
          if (!dest.write(chunk)) {
            input.pause();
            dest.once('drain', () => input.resume());
          }
        };
        const end = (err?: Error): void => {
          if (over) return;
          over = true;
          stdinSha = hash.digest('hex');
          input.off('data', onData);
          if (err === undefined) resolve();
          else reject(err);
        };
        finish = () => {
          end();
          input.destroy();
        };
        input.on('data', onData);
        input.once('end', () => {
          dest.end();
          end();
        });
        input.once('error', (err) => {
          dest.end();
          end(err);
        });
      });
      return { done, stop: () => finish() };
    },
  };
  let outcome: Outcome;
  let faultKey: string | undefined;
  let internal = false;
  try {
    ensureStateDir(dir);
    outcome = await withLock(dir, async () => {
      const hit = takeFault(dir, spec.tool, [
        argv,
        stripFlags(argv, spec.globalFlags),
        ...(spec.faultForms?.(argv) ?? []),
      ]);
      let result: Outcome;
      if (hit !== undefined) {
        faultKey = hit.key;
        result = {
          ...emptyOutcome(),
          stdout: hit.fault.stdout ?? '',
          stderr: hit.fault.stderr ?? '',
          exitCode: hit.fault.exitCode,
        };
      } else {
        try {
          result = await spec.run(argv, io);
        } catch (err) {
          if (!(err instanceof DoubleError)) throw err;
          result = { ...emptyOutcome(), stderr: err.message, exitCode: err.exitCode };
        }
      }
      if (result.unlocked === undefined) record(dir, spec.tool, argv, result, stdinSha, faultKey, false);
      return result;
    });
    const { unlocked } = outcome;
    if (unlocked !== undefined) {
      delete outcome.unlocked;
      await runVerb(outcome, () => unlocked(outcome));
      record(dir, spec.tool, argv, outcome, stdinSha, faultKey, false);
    }
  } catch (err) {
    internal = true;
    outcome = {
      ...emptyOutcome(),
      stderr: `fake ${spec.tool}: internal error in the test double: ${(err as Error).stack ?? String(err)}`,
      exitCode: 1,
    };
    try {
      record(dir, spec.tool, argv, outcome, stdinSha, faultKey, internal);
    } catch {
      // Nothing more we can do: stderr says what happened.
    }
  }
  const withNewline = (s: string): string => (s === '' || s.endsWith('\n') ? s : s + '\n');
  // stdout exactly as produced (kubectl -o jsonpath prints no trailing newline); stderr always ends with one.
  if (outcome.stdout !== '') process.stdout.write(outcome.stdout);
  if (outcome.stderr !== '') process.stderr.write(withNewline(outcome.stderr));
  process.exitCode = outcome.exitCode;
}

function record(
  dir: string,
  tool: string,
  argv: string[],
  o: Outcome,
  stdinSha: string | undefined,
  fault: string | undefined,
  internal: boolean,
): void {
  const rec: CallRecord = { tool, argv, mutating: o.mutating, at: new Date().toISOString(), exitCode: o.exitCode };
  if (stdinSha !== undefined) rec.stdinSha256 = stdinSha;
  if (o.changes.length > 0) rec.changes = o.changes;
  if (o.detail !== undefined) rec.detail = o.detail;
  if (fault !== undefined) rec.fault = fault;
  if (internal) rec.internalError = true;
  appendCall(dir, rec);
}
