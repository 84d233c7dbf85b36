// File helpers for the steps: validate-then-swap writes, owner/mode checks.
import { writeFileSync, renameSync, chmodSync, chownSync, statSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

export interface WriteOptions {
  mode: number;
  uid?: number;
  gid?: number;
  /** Called with the temp file before it replaces the target; throw to refuse (e.g. visudo -cf). */
  validate?: (tmpPath: string) => Promise<void>;
}

/**
 * Writes `content` to a temp file next to `path` (a dot-name, so sudoers.d and sshd_config.d ignore it),
 * sets mode and owner before the content lands, validates it, then renames it over `path`.
 * On any failure the temp file is removed and `path` is untouched.
 */
export async function writeFileAtomic(path: string, content: string, opts: WriteOptions): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.codex-k8s-tmp`);
  try {
    writeFileSync(tmp, '', { mode: opts.mode });
    chmodSync(tmp, opts.mode);
    if (opts.uid !== undefined) chownSync(tmp, opts.uid, opts.gid ?? opts.uid);
    writeFileSync(tmp, content);
    if (opts.validate) await opts.validate(tmp);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

export interface FileFacts {
  mode: number;
  uid: number;
  gid: number;
  isDir: boolean;
}

export function facts(path: string): FileFacts | undefined {
  try {
    const st = statSync(path);
    return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, isDir: st.isDirectory() };
  } catch {
    return undefined;
  }
}

export function octal(mode: number): string {
  return '0' + mode.toString(8).padStart(3, '0');
}
