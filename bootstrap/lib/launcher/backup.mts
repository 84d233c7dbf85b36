// --backup DIR: one encrypted bundle of staging on the laptop. The server writes the bundle unencrypted into the
// SSH channel (40_postgres --backup-stream: the dump streams from pg_dump, nothing lands on the server's disk); here
// it is read as it arrives (every part's sha256 checked against the manifest) and encrypted on its way to
// DIR/<name>.age.partial, which becomes DIR/<name>.age only when the bundle was complete and checked.
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  fsyncSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../config.mts';
import { OperationError, UsageError } from '../errors.mts';
import { PROGRESS_SECONDS, color, formatBytes } from '../log.mts';
import { canPrompt, readHidden } from '../prompt.mts';
import { BundleReader, PART, checkedOnTheWay } from '../backup/bundle.mts';
import type { Manifest } from '../backup/bundle.mts';
import { encryptStream, toWeb } from '../backup/crypt.mts';
import type { BundleKey } from '../backup/crypt.mts';
import { remoteStepArgv } from './context.mts';
import type { Ctx } from './context.mts';

/** The directory the bundle goes to: made (0700) when missing; a file there is a usage error. */
export function backupDir(dir: string): string {
  const abs = resolve(dir);
  if (existsSync(abs) && !statSync(abs).isDirectory())
    throw new UsageError(`--backup ${dir}: exists and is not a directory; expected a directory for the bundle`);
  return abs;
}

/** What the bundle is encrypted to: the recipient setting, or a passphrase typed twice. Asked before connecting. */
export async function backupKey(cfg: Config, yes: boolean): Promise<BundleKey> {
  const recipient = cfg.maybe('CODEXK8S_BACKUP_AGE_RECIPIENT');
  if (recipient !== undefined) {
    try {
      await encryptStream(toWeb((async function* () {})()), { recipient });
    } catch (e) {
      throw new UsageError(
        `CODEXK8S_BACKUP_AGE_RECIPIENT: not a valid age recipient (${(e as Error).message}); expected the age1... line of age-keygen -y`,
      );
    }
    return { recipient };
  }
  if (yes || !canPrompt())
    throw new UsageError(
      '--backup: no CODEXK8S_BACKUP_AGE_RECIPIENT set and no terminal to ask for a passphrase; set the recipient (age-keygen -y KEYFILE)',
    );
  const passphrase = await readHidden('Passphrase for the backup bundle: ');
  if (passphrase.length < 12)
    throw new UsageError('the passphrase is shorter than 12 characters; nothing was contacted');
  if ((await readHidden('The same passphrase again: ')) !== passphrase)
    throw new UsageError('the two passphrases differ; nothing was contacted');
  return { passphrase };
}

/** The bundle's file name: which server, when (UTC, sortable). */
export function bundleName(host: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `codex-k8s-staging-${host.replace(/[^A-Za-z0-9.-]+/g, '_')}-${stamp}.age`;
}

/** Streams the bundle down, checks it, encrypts it to DIR. Returns the file written. */
export async function takeBackup(
  ctx: Ctx,
  dir: string,
  settingsFile: string,
  key: BundleKey,
): Promise<{ file: string; manifest: Manifest; bytes: number }> {
  const { log } = ctx;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, bundleName(ctx.cfg.get('TARGET_HOST'), new Date()));
  const partial = `${file}.partial`;
  log.info(color.bold(`==> backup: ${ctx.cfg.get('CODEXK8S_STAGING_NAMESPACE')} on the server -> ${file}`));
  const t0 = performance.now();
  const p = ctx.ssh.stream(
    remoteStepArgv(ctx, '40_postgres', [
      '--backup-stream',
      '--env-file',
      settingsFile,
      ...(log.verbose ? ['--verbose'] : []),
    ]),
    { onStderrLine: (line) => log.info(`    ${line}`) },
  );
  const reader = new BundleReader();
  let received = 0;
  const progress = setInterval(() => {
    const s = (performance.now() - t0) / 1000;
    log.progress(`  .. backup: ${formatBytes(received)} received in ${s.toFixed(0)}s, ${formatBytes(received / s)}/s`);
  }, PROGRESS_SECONDS * 1000);
  // Opened exclusively and 0600 before the first byte: no one else's file is overwritten, no one reads along.
  const fd = openSync(partial, 'wx', 0o600);
  let bytes = 0;
  try {
    const sealed = await encryptStream(toWeb(checkedOnTheWay(p.stdout, reader, (n) => (received += n))), key);
    for await (const chunk of sealed as unknown as AsyncIterable<Uint8Array>) {
      writeSync(fd, chunk);
      bytes += chunk.length;
    }
    fsyncSync(fd);
    const res = await p.done;
    if (res.exitCode !== 0)
      throw new OperationError(`the server could not write the backup (exit ${res.exitCode})`, {
        detail: res.stderr.trim().split('\n').slice(-15).join('\n'),
        hint: 'nothing was changed on the server; fix the cause above, then run --backup again',
      });
    const { manifest } = reader.end();
    closeSync(fd);
    renameSync(partial, file);
    const rows = Object.values(manifest.postgres.rows).reduce((a, b) => a + b, 0);
    const seconds = (performance.now() - t0) / 1000;
    log.info(
      `  + ${file}: ${formatBytes(bytes)} (0600), ${Object.keys(manifest.postgres.rows).length} tables, ${rows} rows, dump ${formatBytes(manifest.parts[PART.dump]?.bytes ?? 0)}; every part checked against the manifest; ${seconds.toFixed(1)}s`,
    );
    return { file, manifest, bytes };
  } catch (e) {
    p.kill();
    await p.done;
    throw e;
  } finally {
    clearInterval(progress);
    log.liveLine(undefined);
    try {
      closeSync(fd);
    } catch {
      // closed on success
    }
    rmSync(partial, { force: true });
  }
}
