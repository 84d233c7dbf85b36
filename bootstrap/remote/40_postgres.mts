#!/opt/codex-k8s-bootstrap/node/bin/node --
// 40_postgres: PostgreSQL (pgvector image) for the staging service in CODEXK8S_STAGING_NAMESPACE, with nightly
// pg_dump backups (manifests/postgres).
//
// Credentials are generated ONCE into the Secret postgres-credentials and read back on every later run: the data
// directory is initialised with that password, so a new one would lock the service out of its own database.
// The step therefore refuses to generate a password when the Secret is gone but the data volume is still there,
// and never deletes anything: not the Secret, not the data PVC (data-postgres-0), not the backups.
// The password exists in memory and on kubectl's stdin only; it is registered for masking before any output.
//
// Restore (--restore-from on the launcher, lib/backup/server.mts): the credentials come from the bundle instead, the
// dump is restored into the empty database, its row counts are proven against the manifest, and the webhook secret
// and the journal's GitHub record are put back. `--backup-stream` writes a bundle to stdout for --backup.
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runStep, changeList, loadStepConfig } from '../lib/step.mts';
import type { StepContext, StepMode, Teardown } from '../lib/step.mts';
import { REMOTE } from '../lib/paths.mts';
import { readJournal, writeJournal } from '../lib/state.mts';
import { writeFileAtomic } from '../lib/fsx.mts';
import { rowCountMismatches } from '../lib/backup/bundle.mts';
import { databaseReachable, podCredentials, restoreDump, rowCounts, POSTGRES_POD } from '../lib/backup/database.mts';
import type { Database } from '../lib/backup/database.mts';
import {
  KEPT_DUMPS_DIR,
  dumpSizes,
  dumpsToCopy,
  ensureKeptDir,
  finalDumpName,
  finalDumpOfRun,
  keepStream,
  pvHostPath,
  writeFinalDump,
  pendingRestore,
  refuseRestore,
  removePending,
  restoreConflicts,
  verifyUploadedDump,
  writeBackup,
} from '../lib/backup/server.mts';
import type { PendingRestore } from '../lib/backup/server.mts';
import { OperationError } from '../lib/errors.mts';
import { registerSecret } from '../lib/redact.mts';
import { render, NAMES, recommendedLabels } from '../lib/manifests.mts';
import type { KubeObject, Mode, PlaceholderValue } from '../lib/manifests.mts';
import {
  objectsDrift,
  applyObjects,
  getJson,
  existingNamespaces,
  readSecret,
  rolloutStatus,
  KUBECONFIG,
} from '../lib/kube.mts';
import { IMAGES } from '../lib/versions.mts';
import { clusterAnswers } from '../lib/teardown.mts';

// ---- check / apply --------------------------------------------------------------------------------------------------

async function check(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  await requireNamespace(s.namespace, ctx);
  const state = await secretState(s, ctx);
  const pending = pendingRestore(ctx.log);
  const drift = pending
    ? state.drift.map((d) => d.replace('(a password is generated once)', '(made from the backup bundle)'))
    : [...state.drift];
  if (pending) {
    await refuseConflicts(pending, s, state.data, ctx);
    drift.push(
      `a restore from ${pending.options.source} (${pending.manifest.server.hostname}, ${pending.manifest.createdAt}) is pending`,
    );
  }
  const sts = await liveStatefulSet(s, ctx);
  const major = majorVersionRefusal(runningImage(sts), IMAGES.postgres);
  if (major) drift.push(major);
  const objectDrift = await objectsDrift(postgresObjects(s), ctx.log);
  drift.push(...objectDrift);
  if (!objectDrift.some((d) => d.startsWith(`StatefulSet ${s.namespace}/${NAMES.postgresStatefulSet} `)))
    drift.push(...postgresHealth(s, sts));
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  await requireNamespace(s.namespace, ctx);
  // Before anything: a new major version cannot start on the old data directory (the pod would crash-loop).
  const major = majorVersionRefusal(runningImage(await liveStatefulSet(s, ctx)), IMAGES.postgres);
  if (major)
    throw new OperationError(`${major}; nothing was changed`, {
      hint: 'a major upgrade is a dump and a restore: --backup, then restore it onto a server bootstrapped with this checkout (docs/runbook.md "Upgrades (the pins moved)")',
    });
  const changes = changeList(ctx);
  const state = await secretState(s, ctx);
  const pending = pendingRestore(ctx.log);
  if (state.data === undefined && pending) {
    const secret = credentialsSecret(s.namespace, pending.secrets.postgres);
    await applyObjects([secret], ctx.log, { what: secretId(s.namespace), serverSide: true });
    changes.push(
      `${secretId(s.namespace)} created from the backup bundle (the password of ${pending.manifest.server.hostname}, kept from now on)`,
    );
  } else if (state.data === undefined) {
    const password = generatePassword();
    registerSecret(password);
    const secret = credentialsSecret(s.namespace, { user: POSTGRES_USER, password, db: POSTGRES_DB });
    registerSecret(databaseUrl(s.namespace, POSTGRES_USER, password, POSTGRES_DB));
    await applyObjects([secret], ctx.log, { what: secretId(s.namespace), serverSide: true });
    changes.push(`${secretId(s.namespace)} created with a generated password (kept from now on)`);
  } else if (state.drift.length > 0) {
    const d = state.data;
    await applyObjects(
      [
        credentialsSecret(s.namespace, {
          user: d['POSTGRES_USER'] as string,
          password: d['POSTGRES_PASSWORD'] as string,
          db: d['POSTGRES_DB'] as string,
        }),
      ],
      ctx.log,
      { what: secretId(s.namespace), serverSide: true },
    );
    changes.push(`${secretId(s.namespace)}: DATABASE_URL rewritten from the existing credentials (password kept)`);
  }
  changes.push(...(await applyObjects(postgresObjects(s), ctx.log)));
  await rolloutStatus(
    'statefulset',
    NAMES.postgresStatefulSet,
    s.namespace,
    ctx.cfg.get('CODEXK8S_ROLLOUT_TIMEOUT'),
    ctx.log,
  );
  if (pending) changes.push(...(await finishRestore(pending, s, ctx)));
  return changes;
}

/** The restore's last part, after the database runs: the dump in, its row counts proven, the rest put back. */
async function finishRestore(p: PendingRestore, s: PostgresSettings, ctx: StepContext): Promise<string[]> {
  const changes: string[] = [];
  const d = databaseOf(s, p);
  // Asked again, not taken from check(): on a fresh server check() had no credentials and no running database to
  // count. pg_restore --clean replaces exactly what the dump holds: a database that already holds the bundle's rows
  // (a restore that committed, then stopped before it was recorded) is restored again, to the same rows.
  if (await refuseConflicts(p, s, (await secretState(s, ctx)).data, ctx))
    ctx.log.info(
      `  = database ${d.db} already holds the bundle's rows (an earlier restore stopped before it was recorded): restored again`,
    );
  const t0 = performance.now();
  await verifyUploadedDump(p);
  await restoreDump(d, createReadStream(p.dumpFile), ctx.log);
  const mismatches = rowCountMismatches(p.manifest.postgres.rows, await restoredCounts(d, p, ctx));
  if (mismatches.length > 0)
    throw new OperationError(`the restored database does not have the bundle's rows: ${mismatches.join('; ')}`, {
      hint: 'the bundle stays on the server: run again to restore it anew (the restore replaces what the dump holds), or restore an older bundle',
    });
  const rows = Object.values(p.manifest.postgres.rows).reduce((a, b) => a + b, 0);
  changes.push(
    `database ${d.db} restored from ${p.options.source}: ${Object.keys(p.manifest.postgres.rows).length} tables, ${rows} rows, each table's count equal to the manifest's (${((performance.now() - t0) / 1000).toFixed(1)}s)`,
  );
  if (p.secrets.webhookSecret !== undefined && !existsSync(REMOTE.webhookSecretFile)) {
    mkdirSync(dirname(REMOTE.webhookSecretFile), { recursive: true, mode: 0o700 });
    await writeFileAtomic(REMOTE.webhookSecretFile, p.secrets.webhookSecret + '\n', { mode: 0o600, uid: 0, gid: 0 });
    changes.push(`${REMOTE.webhookSecretFile} restored from the bundle (0600; GitHub keeps the same webhook secret)`);
  }
  const journal = readJournal(REMOTE.journal);
  if (p.github !== undefined && journal.github === undefined) {
    writeJournal(REMOTE.journal, { ...journal, github: p.github });
    changes.push(
      `journal: the record of what this tool wrote to GitHub (${p.github.repo}) restored, so 70_github_repo rewrites only what differs`,
    );
  }
  removePending(p);
  changes.push(`${p.dir} removed (the restore is complete)`);
  return changes;
}

const databaseOf = (s: PostgresSettings, p: PendingRestore): Database => ({
  namespace: s.namespace,
  user: p.secrets.postgres.user,
  db: p.secrets.postgres.db,
});

/** The restored counts, without the empty tables a service may have made for itself that the dump does not hold. */
async function restoredCounts(d: Database, p: PendingRestore, ctx: StepContext): Promise<Record<string, number>> {
  const found = await rowCounts(d, ctx.log);
  return Object.fromEntries(Object.entries(found).filter(([t, n]) => n > 0 || t in p.manifest.postgres.rows));
}

/**
 * Refuses (exit 2, nothing changed) a restore this server cannot take. Returns true when the database already holds
 * exactly the bundle's rows (an earlier run restored it and stopped before it was recorded): those are not in the way.
 */
async function refuseConflicts(
  p: PendingRestore,
  s: PostgresSettings,
  credentials: Readonly<Record<string, string>> | undefined,
  ctx: StepContext,
): Promise<boolean> {
  const d = databaseOf(s, p);
  let rows: number | undefined;
  let already = false;
  if (credentials !== undefined && (await databaseReachable(d, ctx.log))) {
    const counts = await restoredCounts(d, p, ctx);
    already = Object.keys(counts).length > 0 && rowCountMismatches(p.manifest.postgres.rows, counts).length === 0;
    rows = already ? 0 : Object.values(counts).reduce((a, b) => a + b, 0);
  }
  const webhook = existsSync(REMOTE.webhookSecretFile)
    ? readFileSync(REMOTE.webhookSecretFile, 'utf8').trim()
    : undefined;
  const github = readJournal(REMOTE.journal).github;
  const conflicts = restoreConflicts(p, {
    namespace: s.namespace,
    ...(credentials ? { credentials } : {}),
    ...(webhook ? { webhookSecret: webhook } : {}),
    ...(github ? { github } : {}),
    ...(rows !== undefined ? { rows } : {}),
  });
  if (conflicts.length > 0) throw refuseRestore(conflicts);
  return already;
}

/** --backup-stream: the bundle, unencrypted, on stdout (the launcher's SSH channel). Logs go to stderr. */
const backupStreamMode: StepMode = async (log, { envFile }) => {
  log.stdoutForData = true;
  const cfg = loadStepConfig(envFile, log);
  const m = await writeBackup(
    process.stdout,
    { namespace: cfg.get('CODEXK8S_STAGING_NAMESPACE'), mode: cfg.get('CODEXK8S_MODE') },
    log,
  );
  const rows = Object.values(m.postgres.rows).reduce((a, b) => a + b, 0);
  log.info(
    `backup written: ${Object.keys(m.postgres.rows).length} tables, ${rows} rows, dump ${m.parts['postgres.dump']?.bytes ?? 0} bytes`,
  );
  return 0;
};

// ---- --uninstall: the data is kept (a final dump and the nightly ones) unless --purge-data ----------------------

const teardown: Teardown = {
  async check(ctx, o) {
    if (o.purgeData)
      return existsSync(KEPT_DUMPS_DIR)
        ? [`directory ${KEPT_DUMPS_DIR} (the kept PostgreSQL dumps: --purge-data)`]
        : [];
    const k = await keepState(ctx);
    const left: string[] = [];
    if (k.copy.length > 0)
      left.push(
        `${k.copy.length} nightly dump(s) in ${k.nightlyDir} (PVC ${NAMES.postgresBackupPvc}): copied to ${KEPT_DUMPS_DIR}/ (kept)`,
      );
    if (k.dumpDue) left.push(`PostgreSQL database ${k.db}: a final dump goes to ${KEPT_DUMPS_DIR}/ (kept)`);
    return left;
  },
  async apply(ctx, o) {
    const changes = changeList(ctx);
    if (o.purgeData) {
      if (existsSync(KEPT_DUMPS_DIR)) {
        rmSync(KEPT_DUMPS_DIR, { recursive: true, force: true });
        changes.push(`removed ${KEPT_DUMPS_DIR} (the kept PostgreSQL dumps; --purge-data)`);
      }
      return changes;
    }
    const k = await keepState(ctx);
    if (k.copy.length === 0 && !k.dumpDue) return changes;
    ensureKeptDir();
    for (const name of k.copy) {
      const bytes = await keepStream(createReadStream(join(k.nightlyDir as string, name)), KEPT_DUMPS_DIR, name);
      changes.push(`nightly dump ${name} copied to ${KEPT_DUMPS_DIR}/ (${bytes} bytes, 0600)`);
    }
    if (k.dumpDue) {
      const s = settingsFrom(ctx);
      const creds = await secretOrPod(s, ctx);
      const d: Database = { namespace: s.namespace, user: creds.user, db: creds.db };
      if (!(await databaseReachable(d, ctx.log)))
        throw new OperationError(
          `${s.namespace}/${POSTGRES_POD} does not answer: no final dump of ${d.db} can be taken, and k3s's uninstall (20_install_k3s) deletes its volume`,
          {
            hint: `start it (kubectl --kubeconfig ${KUBECONFIG} -n ${s.namespace} get pods; the launcher with --only 40_postgres), then --uninstall again; or --uninstall --purge-data to let the data go`,
          },
        );
      const name = finalDumpName(d.db, ctx.runId, new Date());
      const bytes = await writeFinalDump(d, KEPT_DUMPS_DIR, name, ctx.log);
      changes.push(`final dump of database ${d.db} kept: ${join(KEPT_DUMPS_DIR, name)} (${bytes} bytes, 0600)`);
    }
    return changes;
  },
};

interface KeepState {
  db: string;
  /** A final dump is still to be taken in this run: the database is there and this run has not dumped it. */
  dumpDue: boolean;
  /** The host directory of the nightly dumps' volume, when the PV names one. */
  nightlyDir?: string;
  /** Nightly dumps not yet in KEPT_DUMPS_DIR. */
  copy: string[];
}

/** What of the database is still to keep; nothing when the cluster is gone (k3s took the volumes with it). */
async function keepState(ctx: StepContext): Promise<KeepState> {
  const s = settingsFrom(ctx);
  const none: KeepState = { db: POSTGRES_DB, dumpDue: false, copy: [] };
  if (!(await clusterAnswers(ctx.log))) return none;
  const sts = await getJson('statefulset', NAMES.postgresStatefulSet, s.namespace, ctx.log);
  // The same name apply() dumps under, so the check after it finds the dump (the Secret first, else the pod's env).
  const db =
    sts === undefined
      ? POSTGRES_DB
      : await secretOrPod(s, ctx).then(
          (c) => c.db,
          () => POSTGRES_DB,
        );
  const kept = existsSync(KEPT_DUMPS_DIR) ? readdirSync(KEPT_DUMPS_DIR) : [];
  const dumpDue = sts !== undefined && finalDumpOfRun(kept, db, ctx.runId) === undefined;
  const nightlyDir = await nightlyDumpDir(s, ctx);
  const copy = nightlyDir === undefined ? [] : dumpsToCopy(dumpSizes(nightlyDir), dumpSizes(KEPT_DUMPS_DIR));
  return { db, dumpDue, copy, ...(nightlyDir !== undefined ? { nightlyDir } : {}) };
}

/** The host path of the PV bound to postgres-backups; optional: a PV without one (or none) is said and skipped. */
async function nightlyDumpDir(s: PostgresSettings, ctx: StepContext): Promise<string | undefined> {
  const pvc = await getJson<KubeObject & { spec?: { volumeName?: string } }>(
    'persistentvolumeclaim',
    NAMES.postgresBackupPvc,
    s.namespace,
    ctx.log,
  );
  if (pvc === undefined) return undefined;
  const volume = pvc.spec?.volumeName;
  const pv = volume
    ? await getJson<Parameters<typeof pvHostPath>[0] & KubeObject>('persistentvolume', volume, undefined, ctx.log)
    : undefined;
  const path = pvHostPath(pv);
  if (path === undefined || !existsSync(path)) {
    ctx.log.info(
      `  = PVC ${s.namespace}/${NAMES.postgresBackupPvc}: ${volume ? `its PV ${volume} names no host path here` : 'not bound to a PV'}; its nightly dumps are not copied (the final dump is kept)`,
    );
    return undefined;
  }
  return path;
}

/** The credentials from the Secret, or (Secret gone) as the running pod got them. */
async function secretOrPod(s: PostgresSettings, ctx: StepContext): Promise<{ user: string; db: string }> {
  const secret = await readSecret(s.namespace, NAMES.postgresSecret, MASKED_KEYS, ctx.log);
  if (secret?.['POSTGRES_USER'] && secret['POSTGRES_DB'])
    return { user: secret['POSTGRES_USER'], db: secret['POSTGRES_DB'] };
  return podCredentials({ namespace: s.namespace }, ctx.log);
}

// ---- how they read and change the server ---------------------------------------------------------------------------

export const POSTGRES_USER = 'codex';
export const POSTGRES_DB = 'codex_k8s';
/** Keys of the credentials Secret; the service reads DATABASE_URL, the StatefulSet and the backups the others. */
export const SECRET_KEYS = ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB', 'DATABASE_URL'] as const;
const MASKED_KEYS = ['POSTGRES_PASSWORD', 'DATABASE_URL'];

export interface PostgresSettings {
  mode: Mode;
  namespace: string;
  backupSchedule: string;
  backupKeep: number;
}

export function settingsFrom(ctx: StepContext): PostgresSettings {
  return {
    mode: ctx.cfg.get('CODEXK8S_MODE'),
    namespace: ctx.cfg.get('CODEXK8S_STAGING_NAMESPACE'),
    backupSchedule: ctx.cfg.get('CODEXK8S_POSTGRES_BACKUP_SCHEDULE'),
    backupKeep: ctx.cfg.get('CODEXK8S_POSTGRES_BACKUP_KEEP'),
  };
}

export function postgresValues(s: PostgresSettings): Record<string, PlaceholderValue> {
  // BACKUP_KEEP goes into an env var, and env values are strings.
  return {
    STAGING_NAMESPACE: s.namespace,
    POSTGRES_IMAGE: IMAGES.postgres,
    BACKUP_SCHEDULE: s.backupSchedule,
    BACKUP_KEEP: String(s.backupKeep),
  };
}

/**
 * Pure: the PostgreSQL major version of an image: pgvector's tags carry it as `-pgNN` (`0.8.6-pg17-bookworm`), the
 * official image as the tag's first number (`postgres:17.6`). undefined when the tag says neither.
 */
export function postgresMajor(image: string): number | undefined {
  const colon = image.lastIndexOf(':');
  if (colon < 0) return undefined;
  const [repo, tag] = [image.slice(0, colon), image.slice(colon + 1)];
  const m = /(?:^|-)pg(\d+)(?:-|$)/.exec(tag) ?? (/(^|\/)postgres$/.test(repo) ? /^(\d+)/.exec(tag) : null);
  return m ? Number(m[1]) : undefined;
}

/**
 * Pure: why the pinned image must not replace the running one, or undefined. A minor or pgvector move is an
 * in-place update on the same volume; a major move is not (PostgreSQL refuses a data directory of another major).
 */
export function majorVersionRefusal(live: string | undefined, want: string): string | undefined {
  if (live === undefined || live === want) return undefined;
  const [from, to] = [postgresMajor(live), postgresMajor(want)];
  if (from === undefined || to === undefined || from === to) return undefined;
  return `PostgreSQL ${from} -> ${to}: the pinned image ${want} is another major version than the running ${live}, and it cannot start on the data directory of PostgreSQL ${from}`;
}

type LiveStatefulSet = KubeObject & {
  spec?: { template?: { spec?: { containers?: { name: string; image: string }[] } } };
  status?: { readyReplicas?: number };
};

/** The live StatefulSet of PostgreSQL, if it exists: one read for its image and its health. */
function liveStatefulSet(s: PostgresSettings, ctx: StepContext): Promise<LiveStatefulSet | undefined> {
  return getJson<LiveStatefulSet>('statefulset', NAMES.postgresStatefulSet, s.namespace, ctx.log);
}

/** The image the StatefulSet's postgres container runs. */
function runningImage(sts: LiveStatefulSet | undefined): string | undefined {
  return sts?.spec?.template?.spec?.containers?.find((c) => c.name === 'postgres')?.image;
}

export function postgresObjects(s: PostgresSettings): KubeObject[] {
  return render('postgres', s.mode, postgresValues(s)).objects;
}

/** 32 characters from [A-Za-z0-9_-]: 192 random bits, safe in a URL and in a shell word. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

export function databaseUrl(namespace: string, user: string, password: string, db: string): string {
  return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${NAMES.postgresService}.${namespace}.svc.cluster.local:5432/${encodeURIComponent(db)}`;
}

export interface Credentials {
  user: string;
  password: string;
  db: string;
}

/** The Secret, with every value base64-encoded in `data` (what `get -o json` returns, so a read-back compares). */
export function credentialsSecret(namespace: string, c: Credentials): KubeObject {
  const values: Record<string, string> = {
    POSTGRES_USER: c.user,
    POSTGRES_PASSWORD: c.password,
    POSTGRES_DB: c.db,
    DATABASE_URL: databaseUrl(namespace, c.user, c.password, c.db),
  };
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: NAMES.postgresSecret,
      namespace,
      labels: recommendedLabels('postgres', 'database', 'postgres'),
      annotations: {
        'codex-k8s.io/generated-by': '40_postgres: generated once, never regenerated; see docs/runbook.md',
      },
    },
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
  };
}

/**
 * What is wrong with an existing Secret. `fatal`: a value the database depends on is missing (never invented);
 * `fixable`: DATABASE_URL is missing or does not match the other keys (rewritten from them).
 */
export function secretProblems(
  namespace: string,
  data: Readonly<Record<string, string>>,
): { fatal: string[]; fixable: string[] } {
  const fatal = ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB']
    .filter((k) => !data[k])
    .map((k) => `key ${k} is missing or empty`);
  if (fatal.length > 0) return { fatal, fixable: [] };
  const url = databaseUrl(
    namespace,
    data['POSTGRES_USER'] as string,
    data['POSTGRES_PASSWORD'] as string,
    data['POSTGRES_DB'] as string,
  );
  return {
    fatal: [],
    fixable:
      data['DATABASE_URL'] === url
        ? []
        : [`DATABASE_URL ${data['DATABASE_URL'] ? 'does not match the other keys' : 'is missing'}`],
  };
}

const secretId = (ns: string): string => `Secret ${ns}/${NAMES.postgresSecret}`;

async function requireNamespace(ns: string, ctx: StepContext): Promise<void> {
  if (!(await existingNamespaces([ns], ctx.log)).has(ns)) {
    throw new OperationError(`namespace ${ns} does not exist`, {
      hint: 'it is created by 30_cluster_deps: run the launcher with --from 30',
    });
  }
}

/** Reads the Secret; refuses the states where generating or repairing would lose access to existing data. */
async function secretState(
  s: PostgresSettings,
  ctx: StepContext,
): Promise<{ data?: Record<string, string>; drift: string[] }> {
  const data = await readSecret(s.namespace, NAMES.postgresSecret, MASKED_KEYS, ctx.log);
  if (data === undefined) {
    const pvc = await getJson('persistentvolumeclaim', NAMES.postgresDataPvc, s.namespace, ctx.log);
    if (pvc !== undefined) {
      throw new OperationError(
        `${secretId(s.namespace)} is gone but the data volume ${NAMES.postgresDataPvc} still exists: a new password would not open the existing database, so none is generated`,
        {
          hint: `restore the Secret (same POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB) from your records, then run again; see docs/runbook.md "PostgreSQL credentials Secret lost"`,
        },
      );
    }
    return { drift: [`${secretId(s.namespace)} does not exist (a password is generated once)`] };
  }
  const p = secretProblems(s.namespace, data);
  if (p.fatal.length > 0) {
    throw new OperationError(
      `${secretId(s.namespace)} is incomplete (${p.fatal.join('; ')}); it is never regenerated`,
      {
        hint: `kubectl --kubeconfig ${KUBECONFIG} -n ${s.namespace} get secret ${NAMES.postgresSecret} -o jsonpath='{.data}' | tr , '\\n' | cut -d: -f1  (which keys are there); restore the missing ones, then run again`,
      },
    );
  }
  return { data, drift: p.fixable.map((f) => `${secretId(s.namespace)}: ${f}`) };
}

function postgresHealth(s: PostgresSettings, sts: LiveStatefulSet | undefined): string[] {
  if (sts === undefined) return [];
  const ready = sts.status?.readyReplicas ?? 0;
  return ready >= 1 ? [] : [`StatefulSet ${s.namespace}/${NAMES.postgresStatefulSet} is not ready (${ready}/1)`];
}

if (import.meta.filename === process.argv[1])
  await runStep('40_postgres', { check, apply, modes: { 'backup-stream': backupStreamMode }, teardown });
