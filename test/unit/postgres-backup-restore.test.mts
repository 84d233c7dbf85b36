// Backup and restore of PostgreSQL against a real server (Debian's PostgreSQL, started by test/pg/postgres.mts):
// the backup CronJob's own script (rendered from manifests/postgres) with the real pg_dump, its rotation, and the
// restore command of docs/runbook.md ("Restore PostgreSQL from a backup", step 6) with the real pg_restore.
// Only what needs the cluster is left out: `kubectl exec` around the commands, and the volume path (/backups is
// the pod's mount; here a temp dir stands for it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, postgresBinDir } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';
import { postgresObjects, POSTGRES_USER, POSTGRES_DB } from '../../bootstrap/remote/40_postgres.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const skip =
  postgresBinDir() === undefined ? 'PostgreSQL is not installed (apt-get install postgresql; .ci/run does)' : false;
let pg: Postgres;

interface Container {
  command?: string[];
  env?: Array<{ name: string; value?: string }>;
}

/** The script the backup CronJob runs, exactly as rendered for the cluster. */
function backupScript(): string {
  const cron = postgresObjects({
    mode: 'local',
    namespace: 'codex-k8s-staging',
    backupSchedule: '17 3 * * *',
    backupKeep: 7,
  }).find((o) => o.kind === 'CronJob') as
    { spec: { jobTemplate: { spec: { template: { spec: { containers: Container[] } } } } } } | undefined;
  const command = cron?.spec.jobTemplate.spec.template.spec.containers[0]?.command;
  assert.ok(
    command && command[0] === 'sh' && command[1] === '-c' && typeof command[2] === 'string',
    'the CronJob runs sh -c SCRIPT',
  );
  return command[2] as string;
}

/** The restore command of the runbook (step 6), without the kubectl exec around it. */
function runbookRestoreCommand(): string {
  const runbook = readFileSync(join(ROOT, 'docs/runbook.md'), 'utf8');
  const start = runbook.indexOf('## Restore PostgreSQL from a backup');
  const section = runbook.slice(start, runbook.indexOf('\n## ', start + 5));
  const m = /(pg_restore [^'\n]*\/tmp\/restore\.dump)/.exec(section);
  assert.ok(m, 'the runbook restores with pg_restore ... /tmp/restore.dump');
  return m[1] as string;
}

function sh(script: string, env: Record<string, string>): { code: number; out: string } {
  const r = spawnSync('sh', ['-c', script], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${postgresBinDir()}:${process.env['PATH']}`, ...env },
  });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

function rows(): string {
  return pg.psql(POSTGRES_DB, 'select id, body from deliveries order by id');
}

before(async () => {
  if (skip) return;
  pg = await startPostgres();
  pg.psql('postgres', `create role ${POSTGRES_USER} login`);
  pg.psql('postgres', `create database ${POSTGRES_DB} owner ${POSTGRES_USER}`);
  pg.psql(
    POSTGRES_DB,
    `set role ${POSTGRES_USER}; create table deliveries (id int primary key, body jsonb not null); insert into deliveries values (1, '{"event":"push"}'), (2, '{"event":"issues"}')`,
  );
});
after(() => pg?.stop());

test(
  'backup: the CronJob script dumps with pg_dump -Fc and keeps the newest BACKUP_KEEP; the runbook restore brings the data back',
  { skip },
  async () => {
    const backups = mkdtempSync(join(tmpdir(), 'ck8s-backups-'));
    const script = backupScript().replaceAll('/backups', backups);
    const env = {
      ...pg.env,
      PGUSER: POSTGRES_USER,
      PGDATABASE: POSTGRES_DB,
      PGPASSWORD: 'unused-with-trust',
      BACKUP_KEEP: '2',
    };
    for (let i = 0; i < 3; i++) {
      const r = sh(script, env);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /wrote .*codex_k8s-\d{8}T\d{6}Z\.dump/);
      if (i < 2) await new Promise((res) => setTimeout(res, 1100)); // file names have one-second resolution
    }
    const dumps = readdirSync(backups).sort();
    assert.equal(dumps.length, 2, `rotation keeps BACKUP_KEEP=2: ${dumps.join(', ')}`);
    assert.ok(
      dumps.every((f) => /^codex_k8s-\d{8}T\d{6}Z\.dump$/.test(f)),
      'no .partial left',
    );
    const dump = join(backups, dumps[dumps.length - 1] as string);
    assert.equal(
      readFileSync(dump).subarray(0, 5).toString(),
      'PGDMP',
      'the runbook step 3 check holds: a custom-format dump',
    );

    const before = rows();
    pg.psql(POSTGRES_DB, `delete from deliveries where id = 2; insert into deliveries values (3, '{"event":"lost"}')`);
    assert.notEqual(rows(), before);

    const restore = runbookRestoreCommand().replace('/tmp/restore.dump', dump);
    const r = sh(restore, { ...pg.env, POSTGRES_USER, POSTGRES_DB });
    assert.equal(r.code, 0, r.out);
    assert.equal(rows(), before, 'the data of the dump is back');
  },
);

test('restore: a damaged dump fails as a whole and changes nothing (--single-transaction)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-backups-'));
  const good = join(dir, 'good.dump');
  const r0 = sh(`pg_dump -Fc -f '${good}'`, { ...pg.env, PGUSER: POSTGRES_USER, PGDATABASE: POSTGRES_DB });
  assert.equal(r0.code, 0, r0.out);
  const damaged = join(dir, 'damaged.dump');
  const bytes = readFileSync(good);
  writeFileSync(damaged, bytes.subarray(0, Math.floor(bytes.length * 0.8)));
  chmodSync(damaged, 0o644);
  pg.psql(POSTGRES_DB, `insert into deliveries values (4, '{"event":"after-dump"}') on conflict do nothing`);
  const now = rows();
  const r = sh(runbookRestoreCommand().replace('/tmp/restore.dump', damaged), {
    ...pg.env,
    POSTGRES_USER,
    POSTGRES_DB,
  });
  assert.notEqual(r.code, 0, 'pg_restore reports the damaged dump');
  assert.equal(rows(), now, 'nothing was dropped or half-restored');
});
