// --restore-from FILE | github:latest | github:RUN_ID: the bundle (downloaded first when it is a nightly backup
// artifact: lib/backup/from-github.mts) is opened and checked whole on the laptop before anything is contacted (a wrong
// key, a flipped byte, a truncated file or a manifest that does not match stop here, exit 2). After prepare, its
// parts go to REMOTE.restoreDir on the server (0600, manifest.json last); 40_postgres restores from there. A refusal
// by 40_postgres (exit 2: the server holds other secrets or a database with rows) removes them again.
import { createReadStream, createWriteStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { Transform } from 'node:stream';
import { basename, join } from 'node:path';
import type { Config } from '../config.mts';
import { OperationError, UsageError } from '../errors.mts';
import { PROGRESS_SECONDS, color, formatBytes } from '../log.mts';
import type { Logger } from '../log.mts';
import { REMOTE } from '../paths.mts';
import { canPrompt, readHidden } from '../prompt.mts';
import { registerSecret } from '../redact.mts';
import { BundleReader, PART, parseSecrets } from '../backup/bundle.mts';
import type { Manifest } from '../backup/bundle.mts';
import { decryptStream, explainDecryptError, readIdentityFile, toWeb } from '../backup/crypt.mts';
import type { BundleIdentity } from '../backup/crypt.mts';
import { downloadBackup, parseGitHubSource } from '../backup/from-github.mts';
import { RESTORE_OPTIONS_FILE } from '../backup/server.mts';
import { clientFromConfig, repoRef } from '../github/client.mts';
import type { RestoreOptions } from '../backup/server.mts';
import { helper } from './context.mts';
import type { Ctx } from './context.mts';

export interface OpenedBundle {
  file: string;
  /** What --restore-from repeats to get this very bundle again: the file, or github:RUN_ID. */
  source: string;
  /** For messages and the journal: the file's name, or the artifact and its run. */
  label: string;
  manifest: Manifest;
  /** The small parts, whole (secrets.json among them: in memory only, never on the laptop's disk). */
  parts: Map<string, Buffer>;
  /** The dump, decrypted into a private temp directory until the run ends. */
  dumpFile: string;
  close(): void;
}

/** The key that opens the bundle: the identity file setting, or the passphrase asked on a terminal. */
async function bundleIdentity(cfg: Config, yes: boolean): Promise<BundleIdentity> {
  const idFile = cfg.maybe('CODEXK8S_BACKUP_AGE_IDENTITY_FILE');
  if (idFile !== undefined) return { identities: readIdentityFile(idFile) };
  if (yes || !canPrompt())
    throw new UsageError(
      '--restore-from: no CODEXK8S_BACKUP_AGE_IDENTITY_FILE set and no terminal to ask for the passphrase; set it to the age secret key the bundle was made for',
    );
  return { passphrase: await readHidden('Passphrase of the backup bundle: ') };
}

/** Decrypts and checks the whole bundle; nothing is contacted yet. */
export async function openBundle(source: string, cfg: Config, yes: boolean, log: Logger): Promise<OpenedBundle> {
  const fromGitHub = parseGitHubSource(source);
  if (!fromGitHub && (!existsSync(source) || !statSync(source).isFile()))
    throw new UsageError(
      `--restore-from ${source}: no such file; expected a bundle written by --backup (.age), github:latest or github:RUN_ID`,
    );
  const id = await bundleIdentity(cfg, yes);
  const fetched = fromGitHub
    ? await downloadBackup(clientFromConfig(cfg, log), repoRef(cfg), fromGitHub, cfg.get('CODEXK8S_GITHUB_URL'), log)
    : undefined;
  const file = fetched?.file ?? source;
  const label = fetched ? `github: ${fetched.label}` : basename(file);
  // What the refusals name: the file given, or the artifact (not the temp file it was downloaded to).
  const shown = fetched ? `the backup ${fetched.label}` : file;
  const t0 = performance.now();
  const tmp = mkdtempSync(join(tmpdir(), 'ck8s-restore-'));
  const dumpFile = join(tmp, PART.dump);
  // The plain dump must not outlive the run, also when Ctrl-C ends it with process.exit.
  const remove = () => rmSync(tmp, { recursive: true, force: true });
  process.once('exit', remove);
  const close = () => {
    process.off('exit', remove);
    remove();
    fetched?.close();
  };
  let out: WriteStream | undefined;
  try {
    out = createWriteStream(dumpFile, { mode: 0o600 });
    const dump = out;
    const reader = new BundleReader(
      (piece) => new Promise<void>((res, rej) => dump.write(piece, (e) => (e ? rej(e) : res()))),
    );
    const plain = await decryptStream(toWeb(createReadStream(file)), id, shown);
    let done = 0;
    const total = statSync(file).size;
    const progress = setInterval(
      () => log.progress(`  .. bundle: ${formatBytes(done)} decrypted and checked (the file is ${formatBytes(total)})`),
      PROGRESS_SECONDS * 1000,
    );
    try {
      for await (const chunk of plain as unknown as AsyncIterable<Uint8Array>) {
        done += chunk.length;
        await reader.push(chunk);
      }
    } catch (e) {
      if (e instanceof OperationError) throw e;
      throw explainDecryptError(e, shown, id);
    } finally {
      clearInterval(progress);
      log.liveLine(undefined);
    }
    await new Promise<void>((res, rej) => dump.end((e?: Error | null) => (e ? rej(e) : res())));
    const { manifest, parts } = reader.end();
    const secrets = parseSecrets(parts.get(PART.secrets));
    registerSecret(secrets.postgres.password);
    if (secrets.webhookSecret) registerSecret(secrets.webhookSecret);
    const rows = Object.values(manifest.postgres.rows).reduce((a, b) => a + b, 0);
    log.info(
      color.bold(`==> backup bundle ${label}`) +
        `: from ${manifest.server.hostname} (${manifest.server.namespace}) at ${manifest.createdAt}; ` +
        `${Object.keys(manifest.postgres.rows).length} tables, ${rows} rows, dump ${formatBytes(manifest.parts[PART.dump]?.bytes ?? 0)}; ` +
        `decrypted and every part checked in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
    );
    if (manifest.image) log.info(`    its service ran ${manifest.image.ref}`);
    return { file, source: fetched?.source ?? source, label, manifest, parts, dumpFile, close };
  } catch (e) {
    out?.destroy();
    close();
    throw e;
  }
}

/** The parts onto the server, manifest last (so a cut upload is never taken for a restore). */
export async function uploadRestore(ctx: Ctx, b: OpenedBundle, overwrite: boolean): Promise<void> {
  const t0 = performance.now();
  const at = (name: string) => `${REMOTE.restoreDir}/${name}`;
  await ctx.ssh.run(['rm', '-f', at(PART.manifest)]);
  const bytes = statSync(b.dumpFile).size;
  let sent = 0;
  const counted = createReadStream(b.dumpFile).pipe(
    new Transform({
      transform(chunk: Buffer, _enc, cb) {
        sent += chunk.length;
        cb(null, chunk);
      },
    }),
  );
  const progress = setInterval(
    () => ctx.log.progress(`  .. upload of the dump: ${formatBytes(sent)} of ${formatBytes(bytes)}`),
    PROGRESS_SECONDS * 1000,
  );
  try {
    await helper(ctx, ['write-private', at(PART.dump)], { input: counted });
  } finally {
    clearInterval(progress);
    ctx.log.liveLine(undefined);
  }
  for (const name of [PART.secrets, PART.journal, PART.pins])
    await helper(ctx, ['write-private', at(name)], { input: b.parts.get(name) as Buffer });
  const options: RestoreOptions = { overwrite, source: b.label };
  await helper(ctx, ['write-private', at(RESTORE_OPTIONS_FILE)], { input: JSON.stringify(options) + '\n' });
  await helper(ctx, ['write-private', at(PART.manifest)], { input: b.parts.get(PART.manifest) as Buffer });
  ctx.log.info(
    `  + ${REMOTE.restoreDir}: the bundle's parts uploaded (${formatBytes(bytes)} dump, 0600) in ${((performance.now() - t0) / 1000).toFixed(1)}s; 40_postgres restores them`,
  );
}

/** 40_postgres refused the restore: the server is left as it was, without the uploaded bundle. */
export async function discardRestore(ctx: Ctx): Promise<void> {
  await ctx.ssh.run(['rm', '-rf', REMOTE.restoreDir], { allowFail: true });
  ctx.log.info(`  - ${REMOTE.restoreDir} removed (the restore was refused; nothing else was changed by it)`);
}
