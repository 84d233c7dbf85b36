// `npm run bench` part 5: --backup and --restore-from on a database of at least 100 MB of rows, next to plain
// pg_dump -Fc / pg_restore of the same data (target: within 1.3x of the plain tools).
//
// Two sandbox servers run steps 00-40 (test/e2e/restore.test.mts does the whole drill); their PostgreSQL pods are
// real databases on this host (startStaging routeDatabase). Compared:
//   backup   the bundle's stream, from the first byte asked over SSH to the checked, encrypted file on disk (the
//            launcher's own figure on its "+ FILE" line), against `pg_dump -Fc -f FILE` of the same database;
//   restore  the upload of the bundle's parts plus 40_postgres (which restores in one transaction and counts every
//            table), against `pg_restore --single-transaction` into an empty database.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { startTarget } from '../e2e/harness.mts';
import { startStaging } from '../e2e/staging.mts';
import { postgresBinDir } from '../pg/postgres.mts';

const UNTIL_40 = '00_preflight,10_harden_host,20_install_k3s,30_cluster_deps,40_postgres';
const MIB = 1024 * 1024;

function timed(argv: string[], env: Record<string, string>): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0] as string, argv.slice(1), { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

export async function benchBackup(): Promise<Array<[string, string, string]>> {
  const rows: Array<[string, string, string]> = [];
  const bin = postgresBinDir() as string;
  const work = mkdtempSync(join(tmpdir(), 'ck8s-bench-backup-'));
  const id = await generateX25519Identity();
  writeFileSync(join(work, 'key'), `${id}\n`, { mode: 0o600 });
  const a = await startTarget('bencha');
  const b = await startTarget('benchb', { github: a.github, githubToken: a.secret });
  const stagingA = await startStaging(a, { routeDatabase: true });
  const stagingB = await startStaging(b, { routeDatabase: true });
  try {
    const first = await a.launch(['--yes', '--only', UNTIL_40]);
    if (first.code !== 0) throw new Error(`bootstrap of A failed:\n${first.output}`);
    // About 110 MB of rows that compress the way real payloads do (hex of random digests, not one repeated byte).
    stagingA.pg.psql(
      'postgres',
      "INSERT INTO github_deliveries (delivery_id, event, payload) SELECT 'bench-' || g, 'push', jsonb_build_object('n', g, 'body', md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)) FROM generate_series(1, 400000) g",
    );
    const size = Number(stagingA.pg.psql('postgres', "SELECT pg_total_relation_size('github_deliveries')"));
    rows.push(['backup: database size', `${(size / MIB).toFixed(0)} MiB`, 'github_deliveries, 400k rows']);

    const out = join(work, 'bundles');
    const backup = await a.launch(['--yes', '--backup', out], {
      CODEXK8S_BACKUP_AGE_RECIPIENT: await identityToRecipient(id),
    });
    if (backup.code !== 0) throw new Error(`--backup failed:\n${backup.output}`);
    const file = join(out, readdirSync(out)[0] as string);
    const ours = Number(/every part checked against the manifest; ([\d.]+)s/.exec(backup.output)?.[1]);
    const plainFile = join(work, 'plain.dump');
    const env = stagingA.pg.env;
    const plain = timed([join(bin, 'pg_dump'), '-Fc', '-d', 'postgres', '-f', plainFile], env);
    rows.push([
      'backup: --backup stream',
      `${ours.toFixed(2)} s`,
      `pg_dump -Fc: ${plain.toFixed(2)} s; ${(ours / plain).toFixed(2)}x (target 1.3x); whole launcher run ${backup.seconds.toFixed(1)} s`,
    ]);
    rows.push([
      'backup: bundle size',
      `${(statSync(file).size / MIB).toFixed(1)} MiB`,
      `pg_dump -Fc file: ${(statSync(plainFile).size / MIB).toFixed(1)} MiB`,
    ]);

    const restore = await b.launch(['--yes', '--restore-from', file, '--only', UNTIL_40], {
      CODEXK8S_BACKUP_AGE_IDENTITY_FILE: join(work, 'key'),
    });
    if (restore.code !== 0) throw new Error(`--restore-from failed:\n${restore.output}`);
    const upload = Number(/the bundle's parts uploaded \([^)]*\) in ([\d.]+)s/.exec(restore.output)?.[1]);
    const step40 = Number(
      /==> \[05\/05\] 40_postgres[\s\S]*?\n[+=] changed \d+ \(([\d.]+)s\)/.exec(restore.output)?.[1],
    );
    const decrypt = Number(/decrypted and every part checked in ([\d.]+)s/.exec(restore.output)?.[1]);
    // The restore itself within 40_postgres (the dump checked, pg_restore, every table counted), as the step says.
    const restored = Number(/each table's count equal to the manifest's \(([\d.]+)s\)/.exec(restore.output)?.[1]);
    stagingB.pg.psql('postgres', 'CREATE DATABASE plain_restore');
    const plainRestore = timed(
      [join(bin, 'pg_restore'), '--single-transaction', '--no-owner', '-d', 'plain_restore', plainFile],
      stagingB.pg.env,
    );
    const oursRestore = decrypt + upload + restored;
    rows.push([
      'restore: --restore-from',
      `${oursRestore.toFixed(2)} s`,
      `pg_restore: ${plainRestore.toFixed(2)} s; ${(oursRestore / plainRestore).toFixed(2)}x (target 1.3x): decrypt and check ${decrypt.toFixed(2)} s + upload ${upload.toFixed(2)} s + restore and count ${restored.toFixed(2)} s; the whole 40_postgres ${step40.toFixed(2)} s`,
    ]);
  } finally {
    await stagingB.stop();
    await stagingA.stop();
    await b.stop();
    await a.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}
