// Call recorder and fault table shared by every test double (kubectl, helm, k3s-install.sh, k3s-uninstall.sh).
//
// State dir: ${CODEXK8S_FAKES_DIR:-/var/lib/codex-k8s-fakes}. Files this module owns:
//   calls.jsonl        one JSON line per invocation, appended when the invocation ends:
//                      {"tool","argv","mutating","at","exitCode", "stdinSha256"?, "changes"?, "fault"?, "internalError"?,
//                       "detail"?}
//                      - argv is exactly what the double received (so a test can scan it for secret values);
//                      - stdin is never stored, only its sha256 (and only when the double read stdin);
//                      - mutating is true only when cluster/host state actually changed
//                        (an "unchanged" apply, a get, a dry run, a failed call: false).
//                        "The second run changed nothing" == no record with mutating:true in the second run.
//                      - changes lists what changed, in the double's own words (e.g. "deployment.apps/web configured").
//   faults.json        written by a test: { "<tool> <argv prefix>": {"exitCode":1,"stderr":"...","stdout":"...","times":N} }
//                      A key matches a call when it equals the joined argv, or is a prefix of it that ends at a
//                      word boundary, either of the raw argv or of the argv without global flags
//                      (so "kubectl rollout status deployment/web" matches "kubectl -n staging rollout status
//                      deployment/web --timeout=60s"). The longest matching key wins. A faulted call prints the
//                      fault's stdout/stderr, exits with its exitCode and changes nothing.
//   faults-used.json   how many times each fault key fired (to honour "times").
//   .lock/             a mkdir lock that serialises the doubles (they are short-lived processes).
//
// This file must stay dependency-free (node: modules only): the sandbox runs it with plain Node 24.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

export const DEFAULT_STATE_DIR = '/var/lib/codex-k8s-fakes';

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env['CODEXK8S_FAKES_DIR'];
  return dir !== undefined && dir !== '' ? dir : DEFAULT_STATE_DIR;
}

export interface CallRecord {
  tool: string;
  argv: string[];
  mutating: boolean;
  /** ISO 8601 time at which the call ended. */
  at: string;
  exitCode: number;
  stdinSha256?: string;
  changes?: string[];
  /** The faults.json key that made this call fail. */
  fault?: string;
  internalError?: boolean;
  /** Extra, tool-specific facts (e.g. the k3s installer records the env it saw). */
  detail?: Record<string, unknown>;
}

export function sha256(data: string | Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export function ensureStateDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new Error(
      `cannot create the fakes state dir ${dir} (${(err as NodeJS.ErrnoException).code ?? String(err)}): ` +
        'run as root or set CODEXK8S_FAKES_DIR',
    );
  }
}

export function appendCall(dir: string, record: CallRecord): void {
  ensureStateDir(dir);
  // One write per line: appends of a few KiB with O_APPEND do not interleave between processes.
  fs.appendFileSync(path.join(dir, 'calls.jsonl'), JSON.stringify(record) + '\n');
}

/** All recorded calls, oldest first. A missing calls.jsonl is an empty list. */
export function readCalls(dir: string = stateDir()): CallRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'calls.jsonl'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: CallRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === undefined || line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as CallRecord);
    } catch {
      throw new Error(`${path.join(dir, 'calls.jsonl')}:${i + 1}: not JSON: ${line.slice(0, 200)}`);
    }
  }
  return out;
}

/** Calls recorded with mutating: true (optionally only those after the first `since` records). */
export function mutatingCalls(dir: string = stateDir(), since = 0): CallRecord[] {
  return readCalls(dir)
    .slice(since)
    .filter((c) => c.mutating);
}

// ---------------------------------------------------------------------------------------------------------------
// Faults

export interface Fault {
  exitCode: number;
  stdout?: string;
  stderr?: string;
  /** Fire only this many times, then the call runs normally. Omitted: every time. */
  times?: number;
}

const FAULT_FIELDS = new Set(['exitCode', 'stdout', 'stderr', 'times']);

function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${file}: not valid JSON: ${(err as Error).message}`);
  }
}

/** Reads and checks faults.json (a typo in a test's fault table must fail loudly, not be ignored). */
export function readFaults(dir: string): Map<string, Fault> {
  const file = path.join(dir, 'faults.json');
  const raw = readJsonFile(file);
  const out = new Map<string, Fault>();
  if (raw === undefined) return out;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: must be a JSON object`);
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw new Error(`${file}: "${key}" must be an object`);
    const v = value as Record<string, unknown>;
    for (const field of Object.keys(v)) {
      if (!FAULT_FIELDS.has(field))
        throw new Error(`${file}: "${key}".${field}: unknown field (known: ${[...FAULT_FIELDS].join(', ')})`);
    }
    const exitCode = v['exitCode'] ?? 1;
    if (typeof exitCode !== 'number' || !Number.isInteger(exitCode) || exitCode < 0 || exitCode > 255) {
      throw new Error(`${file}: "${key}".exitCode must be an integer 0..255`);
    }
    const fault: Fault = { exitCode };
    for (const f of ['stdout', 'stderr'] as const) {
      const s = v[f];
      if (s === undefined) continue;
      if (typeof s !== 'string') throw new Error(`${file}: "${key}".${f} must be a string`);
      fault[f] = s;
    }
    if (v['times'] !== undefined) {
      const times = v['times'];
      if (typeof times !== 'number' || !Number.isInteger(times) || times < 1)
        throw new Error(`${file}: "${key}".times must be an integer >= 1`);
      fault.times = times;
    }
    out.set(key, fault);
  }
  return out;
}

function keyMatches(key: string, joined: string): boolean {
  return joined === key || joined.startsWith(key + ' ');
}

/**
 * The fault that applies to this call, if any; consumes one use of it.
 * `argvVariants` are the argv forms to match (raw, and without global flags); the tool name is prepended.
 */
export function takeFault(
  dir: string,
  tool: string,
  argvVariants: readonly (readonly string[])[],
): { key: string; fault: Fault } | undefined {
  const faults = readFaults(dir);
  if (faults.size === 0) return undefined;
  const joined = argvVariants.map((argv) => [tool, ...argv].join(' '));
  const usedFile = path.join(dir, 'faults-used.json');
  const used = (readJsonFile(usedFile) ?? {}) as Record<string, number>;
  let best: { key: string; fault: Fault } | undefined;
  for (const [key, fault] of faults) {
    if (!joined.some((j) => keyMatches(key, j))) continue;
    if (fault.times !== undefined && (used[key] ?? 0) >= fault.times) continue;
    if (best === undefined || key.length > best.key.length) best = { key, fault };
  }
  if (best !== undefined) {
    used[best.key] = (used[best.key] ?? 0) + 1;
    fs.writeFileSync(usedFile, JSON.stringify(used, null, 2) + '\n');
  }
  return best;
}

// ---------------------------------------------------------------------------------------------------------------
// Lock: the doubles are separate processes that read-modify-write JSON files.

const LOCK_WAIT_MS = 20_000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs fn while holding ${dir}/.lock; a lock left by a dead process is taken over. */
export async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  ensureStateDir(dir);
  const lock = path.join(dir, '.lock');
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
      } catch {
        // The owner has created the dir but not yet written its pid: wait.
      }
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`timed out after ${LOCK_WAIT_MS} ms waiting for ${lock} (held by pid ${owner})`);
      sleepSync(25);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}
