// PostgreSQL's side of a backup and a restore, all through `kubectl exec` into the StatefulSet's pod: the database
// binaries are the image's own, and nothing is written to the server's disk on the way.
//
// A backup's row counts and its dump see the same data: a psql session opens a REPEATABLE READ transaction, exports
// its snapshot and counts in it, then pg_dump reads that snapshot (--snapshot) while the session keeps it open.
// A restore runs in one transaction (--single-transaction): a failure leaves the database as it was.
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { OperationError } from '../errors.mts';
import { CommandError, run, spawnStream } from '../exec.mts';
import type { StreamingProcess } from '../exec.mts';
import { inClusterKubectlArgv, kubectlArgv } from '../kube.mts';
import type { Logger } from '../log.mts';
import { NAMES } from '../manifests.mts';
import { registerSecret } from '../redact.mts';

/** The pod and container of the StatefulSet's one replica. */
export const POSTGRES_POD = `${NAMES.postgresStatefulSet}-0`;
export const POSTGRES_CONTAINER = 'postgres';

export interface Database {
  namespace: string;
  user: string;
  db: string;
  /** On a runner pod (the nightly backup): kubectl with the pod's ServiceAccount, not the server's kubeconfig. */
  inCluster?: boolean;
}

/** `kubectl exec` into the PostgreSQL container; `-i` when the command reads stdin. */
export function pgExecArgv(
  d: Pick<Database, 'namespace' | 'inCluster'>,
  withStdin: boolean,
  words: readonly string[],
): string[] {
  return (d.inCluster ? inClusterKubectlArgv : kubectlArgv)(
    '-n',
    d.namespace,
    'exec',
    ...(withStdin ? ['-i'] : []),
    POSTGRES_POD,
    '-c',
    POSTGRES_CONTAINER,
    '--',
    ...words,
  );
}

/** The container's database credentials, as the pod got them from the Secret (env, in this order). */
export const CREDENTIAL_ENV = ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB'] as const;

/**
 * The credentials read inside the pod (`printenv`): what the nightly backup's Role allows, which has no right on
 * the Secret itself. The values come back on stdout only, and the password is a registered secret at once.
 */
export async function podCredentials(
  d: Pick<Database, 'namespace' | 'inCluster'>,
  log: Logger,
): Promise<{ user: string; password: string; db: string }> {
  const r = await run(pgExecArgv(d, false, ['printenv', ...CREDENTIAL_ENV]), {
    log,
    allowFail: true,
    timeoutSeconds: 60,
  });
  const [user = '', password = '', db = ''] = r.stdout.split('\n');
  if (password !== '') registerSecret(password);
  if (r.exitCode !== 0 || user === '' || password === '' || db === '')
    throw new OperationError(
      `cannot read the database credentials in ${d.namespace}/${POSTGRES_POD} (kubectl exec printenv exit ${r.exitCode})`,
      {
        detail: r.stderr.trim().split('\n').slice(-10).join('\n'),
        hint: `is PostgreSQL running (40_postgres), and may this identity exec into ${POSTGRES_POD} (Role ${NAMES.backupRole}, manifests/runner/rbac.yaml)?`,
      },
    );
  return { user, password, db };
}

/** psql reading SQL from stdin: no ~/.psqlrc, no notices, unaligned tuples only, stop at the first error. */
export function psqlWords(d: Database): string[] {
  return ['psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', d.user, '-d', d.db];
}

export function pgDumpWords(d: Database, snapshot?: string): string[] {
  return ['pg_dump', '-Fc', ...(snapshot ? [`--snapshot=${snapshot}`] : []), '-U', d.user, '-d', d.db];
}

/**
 * `--clean --if-exists` replaces what the dump holds (a service that already started may have created its empty
 * tables); everything in one transaction; ownership and grants are the restoring user's, as the dump's user may differ.
 */
export function pgRestoreWords(d: Database): string[] {
  return [
    'pg_restore',
    '--exit-on-error',
    '--single-transaction',
    '--clean',
    '--if-exists',
    '--no-owner',
    '--no-privileges',
    '-U',
    d.user,
    '-d',
    d.db,
  ];
}

/**
 * Exact rows per "schema.table" of every ordinary and partitioned table outside the system schemas, as one JSON
 * object on one line (a name with any character survives). count(*) per table, through query_to_xml: one statement.
 */
export const ROW_COUNTS_SQL = `SELECT coalesce(json_object_agg(n.nspname || '.' || c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint ORDER BY n.nspname, c.relname), '{}') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%';`;

export function parseRowCounts(line: string): Record<string, number> {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error(`row counts are not JSON: ${line.slice(0, 200)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('row counts are not a JSON object');
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(v)) {
    if (!Number.isSafeInteger(n) || (n as number) < 0)
      throw new Error(`row count of ${k} is not a count: ${String(n)}`);
    out[k] = n as number;
  }
  return out;
}

/** One query's answer lines (psql -At), for the short questions of a restore. */
async function query(d: Database, sql: string, log: Logger): Promise<string[]> {
  const r = await run(pgExecArgv(d, true, psqlWords(d)), { input: sql + '\n', log, timeoutSeconds: 300 });
  return r.stdout.split('\n').filter((l) => l !== '');
}

export async function rowCounts(d: Database, log: Logger): Promise<Record<string, number>> {
  return parseRowCounts((await query(d, ROW_COUNTS_SQL, log))[0] ?? '{}');
}

/** Rows in all user tables together: 0 is an empty database (tables a service made for itself may exist). */
export async function totalRows(d: Database, log: Logger): Promise<number> {
  return Object.values(await rowCounts(d, log)).reduce((a, b) => a + b, 0);
}

/** Whether the pod answers at all (it does not exist before the first apply of step 40). */
export async function databaseReachable(d: Database, log: Logger): Promise<boolean> {
  const r = await run(pgExecArgv(d, true, psqlWords(d)), {
    input: 'SELECT 1;\n',
    log,
    allowFail: true,
    timeoutSeconds: 60,
  });
  return r.exitCode === 0 && r.stdout.trim() === '1';
}

/** A psql session holding an exported snapshot open, and what it counted in it. */
export interface SnapshotSession {
  snapshot: string;
  serverVersion: string;
  rows: Record<string, number>;
  /** Commits the read-only transaction and ends the session (after pg_dump is done with the snapshot). */
  close(): Promise<void>;
}

/** Opens the session the dump reads from: its snapshot, the server version, the exact row counts. */
export async function openSnapshot(d: Database, log: Logger): Promise<SnapshotSession> {
  const p = spawnStream(pgExecArgv(d, true, psqlWords(d)), { stdin: 'pipe', log });
  const lines = createInterface({ input: p.stdout })[Symbol.asyncIterator]();
  const stdin = p.stdin as NonNullable<StreamingProcess['stdin']>;
  const next = async (what: string): Promise<string> => {
    const r = await lines.next();
    if (r.done) {
      const res = await p.done;
      throw new CommandError(res, `psql ended before it gave ${what}`);
    }
    return r.value;
  };
  try {
    stdin.write('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n');
    const snapshot = (await next('the snapshot')).trim();
    if (!/^[0-9A-F-]+$/i.test(snapshot)) throw new Error(`pg_export_snapshot() answered ${snapshot.slice(0, 80)}`);
    stdin.write('SHOW server_version;\n');
    const serverVersion = (await next('the server version')).trim();
    stdin.write(ROW_COUNTS_SQL + '\n');
    const rows = parseRowCounts(await next('the row counts'));
    return {
      snapshot,
      serverVersion,
      rows,
      async close() {
        stdin.end('COMMIT;\n');
        const res = await p.done;
        if (res.exitCode !== 0) throw new CommandError(res, 'the snapshot session of the backup failed');
      },
    };
  } catch (e) {
    p.kill();
    await p.done;
    throw e;
  }
}

/** pg_dump -Fc of the snapshot, as a stream; `done` says whether it was complete. */
export function dumpStream(d: Database, snapshot: string, log: Logger): StreamingProcess {
  return spawnStream(pgExecArgv(d, false, pgDumpWords(d, snapshot)), { log });
}

/** pg_restore of a custom-format dump from `src`, in one transaction. */
export async function restoreDump(d: Database, src: Readable, log: Logger): Promise<void> {
  const p = spawnStream(pgExecArgv(d, true, pgRestoreWords(d)), { stdin: src, log });
  p.stdout.resume();
  const res = await p.done;
  if (res.exitCode !== 0)
    throw new OperationError(`pg_restore into ${d.db} failed (exit ${res.exitCode}); the database is as it was`, {
      detail: res.stderr.trim().split('\n').slice(-15).join('\n'),
      hint: 'the whole restore is one transaction: fix the cause and run again (the bundle stays on the server until it is restored)',
    });
}
