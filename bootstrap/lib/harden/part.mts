// What every part of 10_harden_host shares: the part contract, file convergence, systemd command builders.
// A part is a slice of the host state with its own check (read-only drift lines) and apply (change lines);
// the step concatenates the parts' drift and applies only the parts that drift.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readIfExists, facts, writeFileAtomic, octal } from '../fsx.mts';
import { REMOTE } from '../paths.mts';
import { run } from '../exec.mts';
import type { StepContext, Teardown } from '../step.mts';
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
  /** --uninstall: what of this part is still there, and its removal (the step runs them last part first). */
  teardown?: Teardown;
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

/**
 * Units this tool enabled because they were disabled (a distribution enables fail2ban and the apt timers itself;
 * an image may not). --uninstall disables exactly these again; one enabled before us stays enabled.
 */
export const ENABLED_UNITS_FILE = join(REMOTE.stateDir, 'enabled-units.json');

export function unitsEnabledByUs(file: string = ENABLED_UNITS_FILE): string[] {
  if (!existsSync(file)) return [];
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return Array.isArray(v) ? v.filter((u): u is string => typeof u === 'string') : [];
  } catch {
    return []; // unreadable: nothing is disabled that might have been enabled before us
  }
}

function saveUnits(units: readonly string[], file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify([...new Set(units)].sort()) + '\n', { mode: 0o600 });
}

/** `systemctl enable` (with --now when asked) of a disabled unit, recorded for the teardown. */
export async function enableRecorded(
  unit: string,
  now: boolean,
  log: Logger,
  file = ENABLED_UNITS_FILE,
): Promise<void> {
  await run(now ? systemctl.enableNow(unit) : systemctl.enable(unit), { log });
  saveUnits([...unitsEnabledByUs(file), unit], file);
}

/** The teardown's side: disable (and stop) a unit this tool enabled; its emptied .wants directory goes too. */
export async function disableRecorded(unit: string, log: Logger, file = ENABLED_UNITS_FILE): Promise<string> {
  const r = await run(['systemctl', 'show', '--property=WantedBy', '--value', unit], { allowFail: true, log });
  await run(systemctl.disableNow(unit), { log });
  for (const target of r.stdout.trim().split(/\s+/).filter(Boolean)) {
    const wants = `/etc/systemd/system/${target}.wants`;
    try {
      if (readdirSync(wants).length === 0) rmdirSync(wants);
    } catch {
      // not there: nothing to tidy
    }
  }
  saveUnits(
    unitsEnabledByUs(file).filter((u) => u !== unit),
    file,
  );
  return `${unit} disabled and stopped (it was disabled before this tool enabled it)`;
}
