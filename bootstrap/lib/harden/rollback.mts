// The dead-man switch for changes that can lock the operator out (sshd, firewall) or grant an unproven login (operator).
// Before such a change: copy the files it may touch (and the runtime state they do not hold) into a snapshot
// directory, then schedule `<step> --rollback` with a transient systemd timer. A new login that works runs
// `--confirm` (timer stopped, snapshot dropped); a login that fails, or nobody confirming in time, runs
// `--rollback` (files restored, the account, sshd and the firewall made to follow them, snapshot dropped).
// An unconfirmed snapshot is never overwritten: a second change before the confirmation still rolls back to
// the last state somebody proved they could log in with.
import {
  mkdirSync,
  existsSync,
  readFileSync,
  writeFileSync,
  rmSync,
  renameSync,
  copyFileSync,
  statSync,
  chmodSync,
  chownSync,
} from 'node:fs';
import { join, dirname } from 'node:path';
import type { Logger } from '../log.mts';
import type { StepContext } from '../step.mts';
import { run } from '../exec.mts';
import { OperationError } from '../errors.mts';
import { REMOTE } from '../paths.mts';
import type { HostPart } from './part.mts';

export const ROLLBACK_ROOT = join(REMOTE.stateDir, 'rollback');
export const ROLLBACK_UNIT = 'codex-k8s-rollback';

interface SavedFile {
  path: string;
  existed: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  copy?: string;
}

export interface Manifest {
  version: 1;
  step: string;
  createdAt: string;
  parts: string[];
  files: SavedFile[];
}

export const snapshotDir = (step: string) => join(ROLLBACK_ROOT, step);

export const rollbackCommands = {
  /** A transient timer; `--rollback` of the step runs as codex-k8s-rollback.service when it fires. */
  schedule: (seconds: number, nodeBin: string, script: string) => [
    'systemd-run',
    `--unit=${ROLLBACK_UNIT}`,
    `--on-active=${seconds}s`,
    '--timer-property=AccuracySec=1s',
    '--description=codex-k8s bootstrap: undo an unconfirmed operator/sshd/firewall change',
    nodeBin,
    '--',
    script,
    '--rollback',
  ],
  cancel: () => ['systemctl', 'stop', `${ROLLBACK_UNIT}.timer`],
  /** A finished or failed transient service keeps its name until reset; a new schedule needs it free. */
  resetFailed: () => ['systemctl', 'reset-failed', `${ROLLBACK_UNIT}.service`, `${ROLLBACK_UNIT}.timer`],
  timerActive: () => ['systemctl', 'is-active', '--quiet', `${ROLLBACK_UNIT}.timer`],
};

export function readManifest(step: string): Manifest | undefined {
  const f = join(snapshotDir(step), 'manifest.json');
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as Manifest) : undefined;
}

/** Snapshots the guarded parts' files and state; returns false when an unconfirmed snapshot is kept instead (parts may add to it). */
export async function snapshot(step: string, parts: readonly HostPart[], ctx: StepContext): Promise<boolean> {
  const dir = snapshotDir(step);
  if (readManifest(step)) {
    for (const p of parts) await p.addState?.(dir, ctx);
    return false;
  }
  const tmp = `${dir}.new-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  const files: SavedFile[] = [];
  for (const path of parts.flatMap((p) => p.files ?? [])) {
    if (!existsSync(path)) {
      files.push({ path, existed: false });
      continue;
    }
    const st = statSync(path);
    const copy = `file-${files.length}`;
    copyFileSync(path, join(tmp, copy));
    files.push({ path, existed: true, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, copy });
  }
  for (const p of parts) await p.saveState?.(tmp, ctx);
  const manifest: Manifest = {
    version: 1,
    step,
    createdAt: new Date().toISOString(),
    parts: parts.map((p) => p.name),
    files,
  };
  writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return true;
}

export async function schedule(seconds: number, nodeBin: string, script: string, log: Logger): Promise<void> {
  await run(rollbackCommands.cancel(), { allowFail: true, log });
  await run(rollbackCommands.resetFailed(), { allowFail: true, log });
  const r = await run(rollbackCommands.schedule(seconds, nodeBin, script), { allowFail: true, log });
  if (r.exitCode !== 0) {
    throw new OperationError(
      'could not schedule the automatic rollback (systemd-run); nothing was changed in sshd or the firewall',
      { detail: r.stderr },
    );
  }
}

/** --confirm: the change stays. */
export async function confirm(step: string, log: Logger): Promise<string[]> {
  await run(rollbackCommands.cancel(), { allowFail: true, log });
  await run(rollbackCommands.resetFailed(), { allowFail: true, log });
  if (!readManifest(step)) return [];
  rmSync(snapshotDir(step), { recursive: true, force: true });
  return [`kept the change; stopped ${ROLLBACK_UNIT}.timer and dropped the snapshot`];
}

/** --rollback: files back as they were, then each part makes the running system follow them. */
export async function restore(step: string, parts: readonly HostPart[], log: Logger): Promise<string[]> {
  const m = readManifest(step);
  await run(rollbackCommands.cancel(), { allowFail: true, log });
  if (!m) return [];
  const dir = snapshotDir(step);
  const done: string[] = [];
  for (const f of m.files) {
    if (!f.existed) {
      if (existsSync(f.path)) {
        rmSync(f.path, { force: true });
        done.push(`removed ${f.path} (it did not exist before)`);
      }
      continue;
    }
    const src = join(dir, f.copy ?? '');
    const before = readFileSync(src);
    if (existsSync(f.path) && readFileSync(f.path).equals(before) && (statSync(f.path).mode & 0o7777) === f.mode)
      continue;
    mkdirSync(dirname(f.path), { recursive: true });
    const tmp = join(dirname(f.path), `.codex-k8s-restore-${process.pid}`);
    writeFileSync(tmp, before, { mode: f.mode });
    chmodSync(tmp, f.mode ?? 0o644);
    chownSync(tmp, f.uid ?? 0, f.gid ?? 0);
    renameSync(tmp, f.path);
    done.push(`restored ${f.path}`);
  }
  // Every part gets its turn even when one fails: an account that cannot be restored must not leave sshd or the
  // firewall unrestored. A failure keeps the snapshot, so the next --rollback can try again.
  const failed: string[] = [];
  for (const name of m.parts) {
    const part = parts.find((p) => p.name === name);
    if (!part?.afterRestore) continue;
    try {
      done.push(...(await part.afterRestore(dir, log)));
    } catch (e) {
      failed.push(`${name}: ${(e as Error).message}`);
    }
  }
  if (failed.length > 0) {
    for (const d of done) log.info(`  - ${d}`);
    throw new OperationError(
      `the rollback restored the files, but not everything followed them: ${failed.join('; ')}`,
      {
        hint: `the snapshot in ${dir} is kept; fix the cause and run --rollback again`,
      },
    );
  }
  rmSync(dir, { recursive: true, force: true });
  return done;
}
