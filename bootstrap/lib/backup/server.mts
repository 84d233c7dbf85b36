// The server's side of backups: what `40_postgres --backup-stream` writes, and the restore that 40_postgres finishes.
//
// Backup: the bundle (lib/backup/bundle.mts), unencrypted, to stdout, which is the launcher's SSH channel; the laptop
// encrypts it. Nothing is written on the server.
// Restore: the launcher uploads the decrypted, checked parts into REMOTE.restoreDir (0700, files 0600), manifest.json
// last, so a directory without it is an upload that did not finish. 40_postgres then creates the credentials Secret
// from them, restores the dump, proves the row counts, puts back the webhook secret and the journal's record of
// what GitHub holds, and removes the directory. Until then every run continues the restore.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fchmodSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { OperationError } from '../errors.mts';
import { CommandError, spawnStream } from '../exec.mts';
import { getJson, readSecret } from '../kube.mts';
import type { Logger } from '../log.mts';
import { NAMES } from '../manifests.mts';
import type { KubeObject } from '../manifests.mts';
import { REMOTE } from '../paths.mts';
import { registerSecret } from '../redact.mts';
import { readJournal } from '../state.mts';
import type { GitHubJournal } from '../state.mts';
import { PINS } from '../versions.mts';
import { BundleWriter, PART, damaged, parseSecrets } from './bundle.mts';
import type { BundleSecrets, Manifest } from './bundle.mts';
import { dumpStream, openSnapshot, pgDumpWords, pgExecArgv } from './database.mts';
import type { Database } from './database.mts';

// ---- backup ---------------------------------------------------------------------------------------------------------

export interface BackupSource {
  namespace: string;
  mode: string;
}

/** Everything a bundle holds besides the dump, gathered by whoever makes it (the server, or the nightly workflow). */
export interface BundleInputs {
  database: Database;
  password: string;
  /** REMOTE.webhookSecretFile's value (the server), or the Actions secret (the workflow). */
  webhookSecret?: string;
  /** The server's journal; `{}` where it cannot be read (the workflow's runner). */
  journal: unknown;
  image?: Manifest['image'];
  server: Manifest['server'];
}

/** The server's side of --backup: the bundle of this server's staging, to `out`. */
export async function writeBackup(out: Writable, s: BackupSource, log: Logger): Promise<Manifest> {
  // Two independent reads of the cluster, side by side (each is a kubectl start).
  const [creds, image] = await Promise.all([
    readSecret(s.namespace, NAMES.postgresSecret, ['POSTGRES_PASSWORD', 'DATABASE_URL'], log),
    runningImage(s.namespace, log),
  ]);
  if (!creds?.['POSTGRES_USER'] || !creds['POSTGRES_PASSWORD'] || !creds['POSTGRES_DB'])
    throw new OperationError(
      `Secret ${s.namespace}/${NAMES.postgresSecret} is missing or incomplete: nothing to back up`,
      {
        hint: 'run the launcher first (40_postgres creates the database and its Secret)',
      },
    );
  const webhook = existsSync(REMOTE.webhookSecretFile)
    ? readFileSync(REMOTE.webhookSecretFile, 'utf8').trim()
    : undefined;
  return writeBundle(
    out,
    {
      database: { namespace: s.namespace, user: creds['POSTGRES_USER'], db: creds['POSTGRES_DB'] },
      password: creds['POSTGRES_PASSWORD'],
      ...(webhook ? { webhookSecret: webhook } : {}),
      journal: readJournal(REMOTE.journal),
      ...(image ? { image } : {}),
      server: { hostname: hostname(), namespace: s.namespace, mode: s.mode },
    },
    log,
  );
}

/**
 * Writes the whole bundle to `out`: the parts, then the dump of one snapshot (its row counts go into the manifest),
 * then the manifest. Throws (and the bundle is left without its end mark) on any failure.
 */
export async function writeBundle(out: Writable, b: BundleInputs, log: Logger): Promise<Manifest> {
  const d = b.database;
  registerSecret(b.password);
  if (b.webhookSecret) registerSecret(b.webhookSecret);
  const secrets: BundleSecrets = {
    postgres: { user: d.user, password: b.password, db: d.db },
    ...(b.webhookSecret ? { webhookSecret: b.webhookSecret } : {}),
  };

  const session = await openSnapshot(d, log);
  const w = new BundleWriter(out);
  try {
    await w.part(PART.secrets, JSON.stringify(secrets) + '\n');
    await w.part(PART.journal, JSON.stringify(b.journal, null, 2) + '\n');
    await w.part(
      PART.pins,
      JSON.stringify(
        PINS.map((p) => ({ name: p.name, version: p.version })),
        null,
        2,
      ) + '\n',
    );
    const dump = dumpStream(d, session.snapshot, log);
    await w.streamPart(PART.dump, dump.stdout);
    const res = await dump.done;
    if (res.exitCode !== 0) throw new CommandError(res, 'pg_dump failed');
  } finally {
    await session.close();
  }
  return w.finish({
    format: 1,
    createdAt: new Date().toISOString(),
    server: b.server,
    ...(b.image ? { image: b.image } : {}),
    postgres: { serverVersion: session.serverVersion, rows: session.rows },
  });
}

/** The service's image now, and the commit its tag names (`sha-<12 hex>`): the first image of a restored server. */
async function runningImage(namespace: string, log: Logger): Promise<Manifest['image']> {
  const dep = await getJson<
    KubeObject & { spec?: { template?: { spec?: { containers?: { name: string; image: string }[] } } } }
  >('deployment', NAMES.app, namespace, log);
  const ref = dep?.spec?.template?.spec?.containers?.find((c) => c.name === NAMES.appContainer)?.image;
  if (!ref) return undefined;
  const m = /:sha-([0-9a-f]{7,40})$/.exec(ref);
  return { ref, ...(m ? { commit: m[1] } : {}) };
}

// ---- restore --------------------------------------------------------------------------------------------------------

/** What the launcher puts next to the parts: how this restore may proceed. */
export interface RestoreOptions {
  /** --restore-overwrite: replace a database that holds rows. */
  overwrite: boolean;
  /** The bundle's file name on the laptop, for the journal and the messages. */
  source: string;
}

export const RESTORE_OPTIONS_FILE = 'options.json';

export interface PendingRestore {
  dir: string;
  manifest: Manifest;
  secrets: BundleSecrets;
  /** The `github` section of the journal the bundle holds, when it had one. */
  github?: GitHubJournal;
  options: RestoreOptions;
  dumpFile: string;
}

/** The restore waiting in REMOTE.restoreDir, if any; an upload that did not finish is ignored (and said so). */
export function pendingRestore(log: Logger, dir: string = REMOTE.restoreDir): PendingRestore | undefined {
  if (!existsSync(dir)) return undefined;
  const at = (name: string) => join(dir, name);
  if (!existsSync(at(PART.manifest))) {
    log.warn(`${dir} holds an upload of a backup bundle that did not finish; run --restore-from again to restore`);
    return undefined;
  }
  try {
    const manifest = JSON.parse(readFileSync(at(PART.manifest), 'utf8')) as Manifest;
    const secrets = parseSecrets(readFileSync(at(PART.secrets)));
    registerSecret(secrets.postgres.password);
    if (secrets.webhookSecret) registerSecret(secrets.webhookSecret);
    const journalText = readFileSync(at(PART.journal), 'utf8');
    const github = (JSON.parse(journalText) as { github?: GitHubJournal }).github;
    const options = JSON.parse(readFileSync(at(RESTORE_OPTIONS_FILE), 'utf8')) as RestoreOptions;
    return { dir, manifest, secrets, ...(github ? { github } : {}), options, dumpFile: at(PART.dump) };
  } catch (e) {
    if (e instanceof OperationError) throw e;
    throw damaged(`the upload in ${dir} is unreadable (${(e as Error).message}): run --restore-from again`);
  }
}

/** The dump on the server is the one the manifest describes (an upload cut short is found here, not by pg_restore). */
export async function verifyUploadedDump(p: PendingRestore): Promise<void> {
  const want = p.manifest.parts[PART.dump];
  const size = statSync(p.dumpFile).size;
  const hash = createHash('sha256');
  for await (const c of createReadStream(p.dumpFile)) hash.update(c as Buffer);
  const sha256 = hash.digest('hex');
  if (!want || want.bytes !== size || want.sha256 !== sha256)
    throw damaged(
      `${p.dumpFile} on the server (${size} bytes) is not the dump the manifest describes (${want?.bytes ?? '?'} bytes): run --restore-from again`,
    );
}

/**
 * Why this server cannot take the restore, before anything changes (exit 2): it already holds other secrets, or a
 * database with rows. Pure: the caller reads the server.
 */
export function restoreConflicts(
  p: PendingRestore,
  server: {
    namespace: string;
    credentials?: Readonly<Record<string, string>>;
    webhookSecret?: string;
    github?: GitHubJournal;
    rows?: number;
  },
): string[] {
  const out: string[] = [];
  const c = server.credentials;
  const b = p.secrets.postgres;
  if (c && (c['POSTGRES_USER'] !== b.user || c['POSTGRES_PASSWORD'] !== b.password || c['POSTGRES_DB'] !== b.db))
    out.push(
      `Secret ${server.namespace}/${NAMES.postgresSecret} already holds other credentials than the bundle's; the restored data needs the bundle's`,
    );
  if (
    server.webhookSecret !== undefined &&
    p.secrets.webhookSecret !== undefined &&
    server.webhookSecret !== p.secrets.webhookSecret
  )
    out.push(`${REMOTE.webhookSecretFile} already holds another webhook secret than the bundle's`);
  if (server.github && p.github && (server.github.repoId !== p.github.repoId || server.github.salt !== p.github.salt))
    out.push(`the journal ${REMOTE.journal} already records another repository wiring than the bundle's`);
  if (server.rows !== undefined && server.rows > 0 && !p.options.overwrite)
    out.push(
      `database ${b.db} in ${server.namespace} is not empty (${server.rows} rows): a restore would replace them`,
    );
  return out;
}

export function refuseRestore(conflicts: readonly string[]): OperationError {
  return new OperationError(`this server cannot take the restore: ${conflicts.join('; ')}`, {
    hint: 'restore onto a fresh server (docs/runbook.md "Restoring staging onto a new server"); to replace a database that holds rows, add --restore-overwrite',
    exitCode: 2,
  });
}

/** The restore is complete: its files go (the dump and the secrets are on the laptop, in the bundle). */
export function removePending(p: PendingRestore): void {
  rmSync(p.dir, { recursive: true, force: true });
}

// ---- --uninstall: the dumps kept on the server -----------------------------------------------------------------------

/** Where 40_postgres's teardown keeps the database (0700, files 0600); --purge-data removes it. */
export const KEPT_DUMPS_DIR = '/var/backups/codex-k8s-bootstrap';
export const DUMP_SUFFIX = '.dump';
const PARTIAL = '.partial';

/** "20261207T203501Z" */
export function utcStamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** A run id as a file-name word (the launcher's are already; a hand-set CODEXK8S_RUN_ID may not be). */
function runWord(runId: string): string {
  return runId.replace(/[^A-Za-z0-9-]/g, '_');
}

/**
 * `<db>-<UTC time>-final-<run id>.dump`: the run id makes "this run already dumped" a look at the directory, so the
 * runner's check after apply (and a repeat within the same run) finds it and does not dump again.
 */
export function finalDumpName(db: string, runId: string, at: Date): string {
  return `${db}-${utcStamp(at)}-final-${runWord(runId)}${DUMP_SUFFIX}`;
}

/** Pure: the final dump of `db` this run made, among the directory's names (a .partial never counts). */
export function finalDumpOfRun(names: readonly string[], db: string, runId: string): string | undefined {
  const tail = `-final-${runWord(runId)}${DUMP_SUFFIX}`;
  return names.find(
    (n) => n.startsWith(`${db}-`) && n.endsWith(tail) && /^\d{8}T\d{6}Z$/.test(n.slice(db.length + 1, -tail.length)),
  );
}

/** Pure: the nightly dumps (`*.dump`) not yet copied, given the sizes of both directories' files. */
export function dumpsToCopy(source: ReadonlyMap<string, number>, kept: ReadonlyMap<string, number>): string[] {
  return [...source.keys()].filter((n) => n.endsWith(DUMP_SUFFIX) && kept.get(n) !== source.get(n)).sort();
}

/** The kept directory, 0700 root, made before any file goes in. */
export function ensureKeptDir(dir: string = KEPT_DUMPS_DIR): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** The `*.dump` files of a directory with their sizes; empty when it is not there. */
export function dumpSizes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync(dir)) return out;
  for (const n of readdirSync(dir)) {
    if (!n.endsWith(DUMP_SUFFIX)) continue;
    const st = statSync(join(dir, n));
    if (st.isFile()) out.set(n, st.size);
  }
  return out;
}

/**
 * Writes `src` to `dir/name` through `name.partial` (0600 before the first byte); `complete` (the writer's exit
 * status) and size > 0 are checked before the rename, so a `name` without .partial is always whole.
 */
export async function keepStream(
  src: Readable,
  dir: string,
  name: string,
  complete: () => Promise<void> = async () => {},
): Promise<number> {
  const target = join(dir, name);
  const partial = target + PARTIAL;
  rmSync(partial, { force: true });
  try {
    const fd = openSync(partial, 'wx', 0o600);
    fchmodSync(fd, 0o600);
    await pipeline(src, createWriteStream('', { fd }));
    await complete();
    const size = statSync(partial).size;
    if (size === 0) throw new OperationError(`${target} would be empty: nothing was kept`);
    renameSync(partial, target);
    return size;
  } finally {
    rmSync(partial, { force: true });
  }
}

/** The final `pg_dump -Fc` of the database (the exec form of the backups), kept as `name` in `dir`. */
export async function writeFinalDump(d: Database, dir: string, name: string, log: Logger): Promise<number> {
  const p = spawnStream(pgExecArgv(d, false, pgDumpWords(d)), { log });
  try {
    return await keepStream(p.stdout, dir, name, async () => {
      const res = await p.done;
      if (res.exitCode !== 0) throw new CommandError(res, `pg_dump of ${d.db} failed; nothing was kept`);
    });
  } catch (e) {
    p.kill();
    await p.done;
    throw e;
  }
}

/** Pure: the host directory behind a PersistentVolume (local-path's hostPath, or a `local` volume), if it has one. */
export function pvHostPath(
  pv: { spec?: { local?: { path?: string }; hostPath?: { path?: string } } } | undefined,
): string | undefined {
  return pv?.spec?.local?.path ?? pv?.spec?.hostPath?.path ?? undefined;
}
