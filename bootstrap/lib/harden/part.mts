// What every part of 10_harden_host shares: the part contract, file convergence, systemd command builders.
// A part is a slice of the host state with its own check (read-only drift lines) and apply (change lines);
// the step concatenates the parts' drift and applies only the parts that drift.
import { readIfExists, facts, writeFileAtomic, octal } from '../fsx.mts';
import { run } from '../exec.mts';
import type { StepContext } from '../step.mts';
import type { Logger } from '../log.mts';

export interface HostPart {
  readonly name: string;
  /** A change here can cut off SSH: snapshot and dead-man rollback first, a fresh login check after. */
  readonly guarded?: boolean;
  /** Files a rollback restores (guarded parts only). */
  readonly files?: readonly string[];
  /** Guarded parts: record state the files do not hold (a loaded ruleset, an account) into the snapshot dir. */
  saveState?(dir: string, ctx: StepContext): Promise<void>;
  /**
   * Guarded parts, when an earlier unconfirmed snapshot is kept: record what that snapshot does not know yet
   * (an operator account it did not cover), never overwriting what it holds.
   */
  addState?(dir: string, ctx: StepContext): Promise<void>;
  /** Guarded parts: after a rollback restored the files, make the running system follow them again. */
  afterRestore?(dir: string, log: Logger): Promise<string[]>;
  check(ctx: StepContext): Promise<string[]>;
  apply(ctx: StepContext): Promise<string[]>;
}

export interface ManagedFile {
  path: string;
  content: string;
  mode: number;
}

/** Drift of one managed file (root-owned): missing, different, or wrong mode. */
export function fileDrift(
  f: ManagedFile,
  current: string | undefined,
  mode: number | undefined,
  uid: number | undefined,
): string | undefined {
  if (current === undefined) return `${f.path} is missing`;
  if (current !== f.content) return `${f.path} differs from the managed content`;
  if (mode !== f.mode || uid !== 0)
    return `${f.path} is ${mode === undefined ? '?' : octal(mode)} uid ${uid}, want ${octal(f.mode)} uid 0`;
  return undefined;
}

export function checkFile(f: ManagedFile): string | undefined {
  const st = facts(f.path);
  return fileDrift(f, readIfExists(f.path), st?.mode, st?.uid);
}

/** Writes the file when it drifts (validated first when `validate` is given); true when it changed. */
export async function ensureFile(f: ManagedFile, validate?: (tmp: string) => Promise<void>): Promise<boolean> {
  if (checkFile(f) === undefined) return false;
  await writeFileAtomic(f.path, f.content, { mode: f.mode, uid: 0, gid: 0, validate });
  return true;
}

export const systemctl = {
  isActive: (unit: string) => ['systemctl', 'is-active', '--quiet', unit],
  isEnabled: (unit: string) => ['systemctl', 'is-enabled', '--quiet', unit],
  enable: (unit: string) => ['systemctl', 'enable', unit],
  enableNow: (unit: string) => ['systemctl', 'enable', '--now', unit],
  disableNow: (unit: string) => ['systemctl', 'disable', '--now', unit],
  start: (unit: string) => ['systemctl', 'start', unit],
  stop: (unit: string) => ['systemctl', 'stop', unit],
  reload: (unit: string) => ['systemctl', 'reload', unit],
  restart: (unit: string) => ['systemctl', 'restart', unit],
  daemonReload: () => ['systemctl', 'daemon-reload'],
};

export async function succeeds(argv: readonly string[], ctx?: StepContext): Promise<boolean> {
  return (await run(argv, { allowFail: true, log: ctx?.log })).exitCode === 0;
}

let containerCache: string | undefined;
/** The container technology ('systemd-nspawn', 'lxc', ...) or '' on a VM or bare metal. */
export async function container(): Promise<string> {
  if (containerCache === undefined) {
    const r = await run(['systemd-detect-virt', '--container'], { allowFail: true });
    containerCache = r.exitCode === 0 ? r.stdout.trim() : '';
  }
  return containerCache;
}

const noted = new Set<string>();
/** A check that cannot apply here (a container): said once per process, not drift. */
export function skipped(ctx: StepContext, what: string, why: string): void {
  if (noted.has(what)) return;
  noted.add(what);
  ctx.log.info(`  - ${what}: skipped (${why})`);
}
