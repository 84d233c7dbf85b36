// The kubectl double's exec into postgres-0 (test/fakes/lib/postgres-exec.mts), driven as a real process on the
// server's Node: what it refuses and how (pod, container, command, flags, -i/-t, the Secret's user and database,
// postgres.json), and, routed to a real PostgreSQL from test/pg on 127.0.0.1, that the real psql, pg_dump and
// pg_restore run through it with their stdin and stdout streaming: psql answers line by line while it runs, a
// pg_dump of the snapshot that session exported runs while the session stays open (the state lock is released),
// pg_restore reads the dump into a second database; exit codes and calls.jsonl as the double's conventions say.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import {
  baseEnv,
  FAKES_DIR,
  newStateDir,
  REPO_ROOT,
  runDouble,
  seedCluster,
  SERVER_NODE_BIN,
} from '../fakes/testkit.mts';
import type { RunResult } from '../fakes/testkit.mts';
import { readCalls, sha256 } from '../fakes/lib/recorder.mts';
import { postgresBinDir, startPostgres } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';

const USER = 'codex';
const DB = 'codex_k8s';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** What manifests/postgres and step 40 put in the cluster, cut down to what the double looks at. */
const POSTGRES_STACK = `apiVersion: v1
kind: Namespace
metadata: {name: staging}
---
apiVersion: v1
kind: Secret
metadata: {name: postgres-credentials, namespace: staging}
type: Opaque
data: {POSTGRES_USER: ${b64(USER)}, POSTGRES_PASSWORD: ${b64('pw')}, POSTGRES_DB: ${b64(DB)}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres, namespace: staging}
spec:
  serviceName: postgres-headless
  replicas: 1
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
      - name: postgres
        image: pgvector/pgvector:0.8.0-pg15
        ports: [{name: postgres, containerPort: 5432}]
`;

type K = (args: string[], stdin?: string | Buffer) => RunResult;

function cluster(withStack = true): { dir: string; kubeconfig: string; k: K } {
  const dir = newStateDir();
  const kubeconfig = seedCluster(dir);
  const k: K = (args, stdin) =>
    runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], stdin === undefined ? { dir } : { dir, stdin });
  if (withStack) {
    const r = k(['apply', '-f', '-'], POSTGRES_STACK);
    assert.equal(r.code, 0, r.stderr);
  }
  return { dir, kubeconfig, k };
}

const EXEC = ['-n', 'staging', 'exec'];
const IN_POD = ['postgres-0', '-c', 'postgres', '--'];
const PSQL = ['psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', USER, '-d', DB];
const PG_DUMP = ['pg_dump', '-Fc', '-U', USER, '-d', DB];
const PG_RESTORE = [
  'pg_restore',
  '--exit-on-error',
  '--single-transaction',
  '--no-owner',
  '--no-privileges',
  '-U',
  USER,
  '-d',
  DB,
];
const psql = (extra: string[] = []): string[] => [...EXEC, '-i', ...IN_POD, ...PSQL, ...extra];
const SUPPORTED = /\(fake kubectl: .*; it supports exactly: kubectl -n codex-k8s-system exec .* psql -X -q -At /;

function writeRoute(dir: string, route: Record<string, unknown>): void {
  fs.writeFileSync(path.join(dir, 'postgres.json'), JSON.stringify(route) + '\n');
}

test("exec postgres-0: the pod, the container, exactly three commands, -i as each needs it, the Secret's user and database", () => {
  const { dir, k } = cluster(false);
  const noPod = k(psql(), 'SELECT 1;\n');
  assert.equal(noPod.code, 1);
  assert.match(
    noPod.stderr,
    /^Error from server \(NotFound\): pods "postgres-0" not found\n\(fake kubectl: postgres-0 exists while the StatefulSet staging\/postgres exists/,
  );
  assert.equal(k(['apply', '-f', '-'], POSTGRES_STACK).code, 0);
  const before = readCalls(dir).length;

  const refusals: Array<[string, string[], RegExp]> = [
    ['another namespace', ['-n', 'other', 'exec', '-i', ...IN_POD, ...PSQL], /pods "postgres-0" not found/],
    ['no -c', [...EXEC, '-i', 'postgres-0', '--', ...PSQL], /requires -c\/--container/],
    [
      'another container',
      [...EXEC, '-i', 'postgres-0', '-c', 'sidecar', '--', ...PSQL],
      /\(BadRequest\): container sidecar is not valid for pod postgres-0/,
    ],
    ['-t', [...EXEC, '-i', '-t', ...IN_POD, ...PSQL], /does not support exec -t/],
    ['a shell', [...EXEC, '-i', ...IN_POD, 'sh', '-c', 'psql'], /cannot run "sh -c psql" in postgres-0/],
    [
      'a path',
      [...EXEC, '-i', ...IN_POD, '/usr/bin/psql', ...PSQL.slice(1)],
      /only printenv, psql, pg_dump and pg_restore/,
    ],
    ['psql without -X', [...EXEC, '-i', ...IN_POD, ...PSQL.filter((w) => w !== '-X')], /psql without -X/],
    ['psql -c', psql(['-c', 'SELECT 1']), /psql flag -c is not supported/],
    ['psql -f', psql(['-f', '/tmp/x.sql']), /psql flag -f is not supported/],
    [
      'psql ON_ERROR_STOP=0',
      [...EXEC, '-i', ...IN_POD, ...PSQL.map((w) => (w === 'ON_ERROR_STOP=1' ? 'ON_ERROR_STOP=0' : w))],
      /-v ON_ERROR_STOP=0 \(only -v ON_ERROR_STOP=1\)/,
    ],
    ['psql -U twice', psql(['-U', USER]), /-U given twice/],
    ['a positional database', psql([DB]), /no positional arguments \("codex_k8s"\)/],
    ['psql --host', psql(['--host=10.0.0.1']), /psql flag --host is not supported/],
    ['psql without -i', [...EXEC, ...IN_POD, ...PSQL], /refuses psql without -i/],
    ['pg_restore without -i', [...EXEC, ...IN_POD, ...PG_RESTORE], /refuses pg_restore without -i/],
    ['pg_dump with -i', [...EXEC, '-i', ...IN_POD, ...PG_DUMP], /refuses pg_dump with -i: it reads no stdin/],
    [
      'pg_dump plain format',
      [...EXEC, ...IN_POD, ...PG_DUMP.map((w) => (w === '-Fc' ? '-Fp' : w))],
      /-F p \(only -F c\)/,
    ],
    ['pg_dump --schema', [...EXEC, ...IN_POD, ...PG_DUMP, '--schema=public'], /pg_dump flag --schema is not supported/],
    ['pg_dump -f', [...EXEC, ...IN_POD, ...PG_DUMP, '-f', '/tmp/x'], /pg_dump flag -f is not supported/],
    ['pg_dump --snapshot without value', [...EXEC, ...IN_POD, ...PG_DUMP, '--snapshot='], /--snapshot needs a value/],
    [
      'pg_restore without --single-transaction',
      [...EXEC, '-i', ...IN_POD, ...PG_RESTORE.filter((w) => w !== '--single-transaction')],
      /pg_restore without --single-transaction/,
    ],
    ['pg_restore -c', [...EXEC, '-i', ...IN_POD, ...PG_RESTORE, '-c'], /pg_restore flag -c is not supported/],
    ['pg_restore --create', [...EXEC, '-i', ...IN_POD, ...PG_RESTORE, '--create'], /flag --create is not supported/],
  ];
  for (const [name, args, want] of refusals) {
    const r = k(args, 'SELECT 1;\n');
    assert.equal(r.code, 1, `${name}: ${r.stderr}`);
    assert.equal(r.stdout, '', name);
    assert.match(r.stderr, want, name);
    if (name !== '-t') assert.match(r.stderr, SUPPORTED, `${name} says what is supported`);
  }

  // The Secret decides the user and the database, as the pod's own PostgreSQL does: the real messages and codes.
  const wrongUser = k(
    psql().map((w) => (w === USER ? 'postgres' : w)),
    'SELECT 1;\n',
  );
  assert.deepEqual(
    [wrongUser.code, wrongUser.stdout, wrongUser.stderr],
    [
      2,
      '',
      'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: FATAL:  role "postgres" does not exist\ncommand terminated with exit code 2\n',
    ],
  );
  const wrongDb = k([...EXEC, ...IN_POD, ...PG_DUMP.map((w) => (w === DB ? 'postgres' : w))]);
  assert.deepEqual(
    [wrongDb.code, wrongDb.stderr],
    [
      1,
      'pg_dump: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: FATAL:  database "postgres" does not exist\ncommand terminated with exit code 1\n',
    ],
  );

  // Right words, in another order, glued short flags: accepted, and then there is no PostgreSQL to route to.
  const reordered: string[][] = [
    [...EXEC, '-i', ...IN_POD, 'psql', '-d', DB, '-At', '-vON_ERROR_STOP=1', '-q', `-U${USER}`, '-X'],
    [...EXEC, ...IN_POD, 'pg_dump', '--snapshot', '00000003-0000001B-1', '-d', DB, '-U', USER, '-F', 'c'],
    [
      ...EXEC,
      '-i',
      ...IN_POD,
      'pg_restore',
      '-U',
      USER,
      '--no-privileges',
      '--if-exists',
      '--clean',
      '-d',
      DB,
      '--no-owner',
      '--single-transaction',
      '--exit-on-error',
    ],
  ];
  for (const args of reordered) {
    const r = k(args, 'x');
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split('\n')[0],
      `error: the kubectl double has no PostgreSQL to exec into: write ${path.join(dir, 'postgres.json')} (test/e2e/harness.mts routePostgres)`,
    );
  }
  writeRoute(dir, { host: '127.0.0.1', port: 5432, user: 'postgres', database: DB, password: 'x' });
  const badRoute = k(psql(), 'SELECT 1;\n');
  assert.equal(badRoute.code, 1);
  assert.match(
    badRoute.stderr,
    /cannot use .*postgres\.json: unknown field password \(want \{"host": "\.\.\.", "port": N/,
  );
  writeRoute(dir, { host: '127.0.0.1', port: '5432', user: 'postgres', database: DB });
  assert.match(k(psql(), '').stderr, /port must be an integer 1\.\.65535/);

  assert.equal(k(['-n', 'staging', 'delete', 'secret', 'postgres-credentials']).code, 0);
  const noSecret = k(psql(), 'SELECT 1;\n');
  assert.equal(noSecret.code, 1);
  assert.match(
    noSecret.stderr,
    /^error: unable to upgrade connection: container not found \("postgres"\)\n\(fake kubectl: the pod cannot start: secret "postgres-credentials" not found in staging\)/,
  );

  const execs = readCalls(dir)
    .slice(before)
    .filter((c) => c.argv.includes('exec'));
  assert.ok(execs.length > refusals.length, 'every exec is recorded');
  assert.ok(
    execs.every((c) => !c.mutating && c.stdinSha256 === undefined),
    'refused calls change nothing and read no stdin',
  );
  assert.deepEqual(execs.at(-1)?.detail, {
    exec: { namespace: 'staging', pod: 'postgres-0', container: 'postgres', stdin: true, command: PSQL },
  });
});

test('exec postgres-0 printenv: the container env of the pod spec, secretKeyRef resolved; printenv exit codes', () => {
  const { k } = cluster(false);
  const withEnv = POSTGRES_STACK.replace(
    '        ports: [{name: postgres, containerPort: 5432}]\n',
    '        ports: [{name: postgres, containerPort: 5432}]\n' +
      '        env:\n' +
      '        - {name: POSTGRES_USER, valueFrom: {secretKeyRef: {name: postgres-credentials, key: POSTGRES_USER}}}\n' +
      '        - {name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: postgres-credentials, key: POSTGRES_PASSWORD}}}\n' +
      '        - {name: PGDATA, value: /var/lib/postgresql/data/pgdata}\n',
  );
  assert.equal(k(['apply', '-f', '-'], withEnv).code, 0);
  const printenv = (...names: string[]) => k([...EXEC, ...IN_POD, 'printenv', ...names]);
  const ok = printenv('POSTGRES_USER', 'POSTGRES_PASSWORD', 'PGDATA');
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `${USER}\npw\n/var/lib/postgresql/data/pgdata\n`);
  const missing = printenv('POSTGRES_USER', 'POSTGRES_DB');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /command terminated with exit code 1/);
  assert.match(k([...EXEC, ...IN_POD, 'printenv']).stderr, /printenv without names would print the whole environment/);
  assert.match(k([...EXEC, ...IN_POD, 'printenv', '-0', 'X']).stderr, /variable names only, no flags/);
  assert.match(k([...EXEC, '-i', ...IN_POD, 'printenv', 'PGDATA']).stderr, /printenv reads no stdin: no -i/);
  // A secretKeyRef into a key the Secret lacks: the container never started.
  const broken = withEnv.replace('key: POSTGRES_PASSWORD}', 'key: NOPE}');
  assert.equal(k(['apply', '-f', '-'], broken).code, 0);
  assert.match(printenv('PGDATA').stderr, /CreateContainerConfigError.*couldn't find key NOPE/);
});

test('in-process: the postgres exec names match bootstrap NAMES and the product argv of bootstrap/lib/backup', async () => {
  const { NAMES } = await import('../../bootstrap/lib/manifests.mts');
  const { POSTGRES } = await import('../fakes/lib/exec-targets.mts');
  const { parsePostgresCommand } = await import('../fakes/lib/postgres-exec.mts');
  assert.deepEqual(
    [POSTGRES.statefulSet, POSTGRES.pod, POSTGRES.secret],
    [NAMES.postgresStatefulSet, `${NAMES.postgresStatefulSet}-0`, NAMES.postgresSecret],
  );
  for (const words of [PSQL, PG_DUMP, [...PG_DUMP, '--snapshot=00000003-0000001B-1'], PG_RESTORE]) {
    const c = parsePostgresCommand(words);
    assert.deepEqual([c.tool, c.user, c.database], [words[0], USER, DB]);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Routed to a real PostgreSQL

const skip = postgresBinDir() === undefined ? 'PostgreSQL is not installed (apt-get install postgresql)' : false;
let pg: Postgres | undefined;
after(() => pg?.stop());

interface Live {
  /** The double's stdout, every chunk as it came. */
  chunks: Buffer[];
  stderr(): string;
  stdin: NodeJS.WritableStream;
  /** Its stdout as lines (opts.lines), instead of chunks. */
  lines: AsyncIterator<string> | undefined;
  done: Promise<{ code: number; stdout: Buffer; firstChunkBeforeExit: boolean }>;
}

/** Runs the double asynchronously (stdin and stdout live), the way the product runs kubectl. */
function live(dir: string, kubeconfig: string, args: string[], opts: { lines?: boolean } = {}): Live {
  const child = spawn(SERVER_NODE_BIN, [path.join(FAKES_DIR, 'kubectl.mts'), '--kubeconfig', kubeconfig, ...args], {
    cwd: REPO_ROOT,
    env: baseEnv(dir),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  let err = '';
  let exited = false;
  let firstChunkBeforeExit = false;
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const lines = opts.lines ? createInterface({ input: child.stdout })[Symbol.asyncIterator]() : undefined;
  if (!opts.lines)
    child.stdout.on('data', (c: Buffer) => {
      if (chunks.length === 0) firstChunkBeforeExit = !exited;
      chunks.push(c);
    });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const done = new Promise<{ code: number; stdout: Buffer; firstChunkBeforeExit: boolean }>((resolve) => {
    child.once('exit', () => (exited = true));
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(chunks), firstChunkBeforeExit });
    });
  });
  return { chunks, stderr: () => err, stdin: child.stdin, lines, done };
}

async function nextLine(l: Live, what: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    (l.lines as AsyncIterator<string>).next(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no line for ${what} within 20 s; stderr: ${l.stderr()}`)), 20_000);
    }),
  ]).finally(() => clearTimeout(timer));
  assert.ok(!r.done, `the double's stdout ended before ${what}: ${l.stderr()}`);
  return r.value;
}

test(
  'exec postgres-0 routed to a real PostgreSQL: psql answers line by line, pg_dump of its snapshot streams while it stays open, pg_restore reads the dump into a second database',
  { skip },
  async () => {
    pg = await startPostgres();
    const server = pg;
    server.psql('postgres', 'CREATE DATABASE source');
    server.psql('postgres', 'CREATE DATABASE target');
    // Enough rows for a dump of several MB: many pipe chunks, the first long before pg_dump ends.
    server.psql(
      'source',
      'CREATE TABLE deliveries (id int PRIMARY KEY, body text NOT NULL); ' +
        "INSERT INTO deliveries SELECT g, (SELECT string_agg(md5((g * 100 + k)::text), '') FROM generate_series(1, 20) k) " +
        'FROM generate_series(1, 20000) g',
    );
    const { dir, kubeconfig, k } = cluster();
    writeRoute(dir, { host: server.host, port: server.port, user: server.user, database: 'source' });
    const before = readCalls(dir).length;

    // Interactive psql: each answer arrives while the session runs, before stdin ends.
    const session = live(dir, kubeconfig, psql(), { lines: true });
    const sent: string[] = [];
    const send = (sql: string): void => {
      sent.push(sql);
      session.stdin.write(sql);
    };
    send('SELECT 1;\n');
    assert.equal(await nextLine(session, 'SELECT 1'), '1');
    send('SELECT 2;\n');
    assert.equal(await nextLine(session, 'SELECT 2'), '2');
    send('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n');
    const snapshot = await nextLine(session, 'the snapshot');
    assert.match(snapshot, /^[0-9A-F]+-[0-9A-F]+-\d+$/);
    // Written after the snapshot: the dump of the snapshot must not have it.
    server.psql('source', "INSERT INTO deliveries VALUES (20001, 'after the snapshot')");

    // pg_dump of that snapshot while the session holds it: another kubectl call, so the lock must be free.
    const dump = live(dir, kubeconfig, [...EXEC, ...IN_POD, ...PG_DUMP, `--snapshot=${snapshot}`]);
    const dumped = await dump.done;
    assert.equal(dumped.code, 0, dump.stderr());
    assert.equal(dump.stderr(), '');
    assert.equal(dumped.stdout.subarray(0, 5).toString(), 'PGDMP', 'a custom-format dump on stdout');
    assert.ok(dumped.stdout.length > 1_000_000, `a dump of several MB (${dumped.stdout.length} bytes)`);
    assert.ok(dump.chunks.length > 10, `streamed in many chunks (${dump.chunks.length})`);
    assert.ok(dumped.firstChunkBeforeExit, 'the first bytes arrived while pg_dump was still running');

    send('COMMIT;\n');
    session.stdin.end();
    const closed = await session.done;
    assert.equal(closed.code, 0, session.stderr());

    // pg_restore into a second database: the same stack, postgres.json now naming `target`.
    writeRoute(dir, { host: server.host, port: server.port, user: server.user, database: 'target' });
    const restore = live(dir, kubeconfig, [...EXEC, '-i', ...IN_POD, ...PG_RESTORE]);
    for (let i = 0; i < dumped.stdout.length; i += 256 * 1024)
      restore.stdin.write(dumped.stdout.subarray(i, i + 256 * 1024));
    restore.stdin.end();
    const restored = await restore.done;
    assert.equal(restored.code, 0, restore.stderr());
    assert.equal(server.psql('target', 'SELECT count(*), max(id) FROM deliveries').trim(), '20000|20000');
    assert.equal(
      server.psql('target', "SELECT md5(string_agg(body, ',' ORDER BY id)) FROM deliveries"),
      server.psql('source', "SELECT md5(string_agg(body, ',' ORDER BY id)) FROM deliveries WHERE id <= 20000"),
      'the data of the snapshot, without the row written after it',
    );

    // The remote exit code is kubectl's: psql stops at the first error with 3.
    const failing = k(psql(), 'SELECT 1;\nSELECT nope;\nSELECT 2;\n');
    assert.equal(failing.code, 3);
    assert.equal(failing.stdout, '1\n', 'the output before the error, nothing after it');
    assert.match(
      failing.stderr,
      /ERROR: {2}column "nope" does not exist[\s\S]*\ncommand terminated with exit code 3\n$/,
    );
    // A failed restore (not a dump) changes nothing and says so with pg_restore's own words.
    const notADump = k([...EXEC, '-i', ...IN_POD, ...PG_RESTORE], 'not a dump');
    assert.equal(notADump.code, 1);
    assert.match(notADump.stderr, /pg_restore: error: .*\ncommand terminated with exit code 1\n$/);

    const calls = readCalls(dir)
      .slice(before)
      .filter((c) => c.argv.includes('exec'));
    assert.deepEqual(
      calls.map((c) => [c.argv[c.argv.indexOf('--') + 1], c.exitCode, c.mutating]),
      [
        ['pg_dump', 0, false],
        ['psql', 0, true],
        ['pg_restore', 0, true],
        ['psql', 3, true],
        ['pg_restore', 1, false],
      ],
      'recorded when each ends (the dump ended inside the session); pg_dump never mutating',
    );
    const [dumpCall, psqlCall, restoreCall] = calls;
    assert.equal(dumpCall?.stdinSha256, undefined, 'pg_dump reads no stdin');
    assert.equal(psqlCall?.stdinSha256, sha256(sent.join('')), 'psql: the hash of its stdin');
    assert.equal(restoreCall?.stdinSha256, sha256(dumped.stdout), 'pg_restore: the hash of the dump it read');
    assert.match(
      restoreCall?.changes?.[0] ?? '',
      /^pg_restore into database codex_k8s in staging\/postgres-0 \(routed to postgres@127\.0\.0\.1:\d+\/target\)$/,
    );
    assert.deepEqual(psqlCall?.detail, {
      exec: { namespace: 'staging', pod: 'postgres-0', container: 'postgres', stdin: true, command: PSQL },
    });
  },
);
