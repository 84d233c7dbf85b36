#!/usr/bin/env -S node --import tsx --
// The nightly backup's bundle (.github/workflows/staging-backup.yml), made on a runner pod in the staging cluster:
// the same format as `--backup DIR` (lib/backup/bundle.mts), encrypted with age to CODEXK8S_BACKUP_AGE_RECIPIENT
// before it touches the disk, written 0600 to --out. kubectl uses the pod's ServiceAccount, whose Role
// codex-k8s-backup allows exec into postgres-0 only: the credentials are read there (printenv), the row counts and
// the dump come from one snapshot (psql, pg_dump). The webhook secret comes from the job's environment
// (CODEXK8S_WEBHOOK_SECRET, the Actions secret 70_github_repo keeps). What the runner cannot read stays out and
// the manifest says so: the server's journal (`{}`) and the running image.
// Exit 0 with the bundle written; 2 for bad input; 1 when the backup failed (nothing is left at --out then).
import { appendFileSync, closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { UsageError } from '../lib/errors.mts';
import { Logger, color, formatBytes } from '../lib/log.mts';
import { parseCli, helpText, runMain } from '../lib/cli.mts';
import type { CliSpec } from '../lib/cli.mts';
import { registerSecret } from '../lib/redact.mts';
import { BundleReader, PART, checkedOnTheWay } from '../lib/backup/bundle.mts';
import type { Manifest } from '../lib/backup/bundle.mts';
import { encryptStream, toWeb } from '../lib/backup/crypt.mts';
import { podCredentials } from '../lib/backup/database.mts';
import { writeBundle } from '../lib/backup/server.mts';
import { settingProblem } from '../lib/config.mts';
import type { SettingName } from '../lib/config.mts';

const SELF = './bootstrap/host/nightly_backup.mts';
export const RECIPIENT_ENV = 'CODEXK8S_BACKUP_AGE_RECIPIENT' satisfies SettingName;
export const WEBHOOK_ENV = 'CODEXK8S_WEBHOOK_SECRET';

export const SPEC: CliSpec = {
  name: SELF,
  usage: `${SELF} --namespace NS --out FILE [--markdown FILE]`,
  summary:
    'Writes an encrypted backup bundle of the staging database, from inside the cluster (the nightly staging-backup\n' +
    `workflow). The age recipient comes from ${RECIPIENT_ENV}, the webhook secret from ${WEBHOOK_ENV} (both in the\n` +
    'environment, never in argv). Restore it with the launcher: --restore-from github:latest.',
  flags: [
    { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
    { name: 'namespace', type: 'string', value: 'NS', description: 'the staging namespace (postgres-0 lives there)' },
    { name: 'out', type: 'string', value: 'FILE', description: 'where the bundle goes (0600; must not exist yet)' },
    { name: 'markdown', type: 'string', value: 'FILE', description: 'append a summary table (the job summary)' },
  ],
};

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, log: Logger): Promise<number> {
  const flags = parseCli(SPEC, argv);
  if (flags['help']) {
    process.stdout.write(helpText(SPEC));
    return 0;
  }
  const namespace = flags['namespace'] as string | undefined;
  const out = flags['out'] as string | undefined;
  if (!namespace || !out) throw new UsageError(`${!namespace ? '--namespace NS' : '--out FILE'} is required`);
  if (existsSync(out)) throw new UsageError(`--out ${out}: exists already; expected a new file for the bundle`);
  const problem = settingProblem(RECIPIENT_ENV, env[RECIPIENT_ENV]);
  if (problem) throw new UsageError(problem);
  const recipient = (env[RECIPIENT_ENV] as string).trim();
  const webhookSecret = (env[WEBHOOK_ENV] ?? '').trim() || undefined;
  if (webhookSecret) registerSecret(webhookSecret);

  const t0 = performance.now();
  log.info(color.bold(`==> backup: ${namespace}/postgres-0 -> ${out}`));
  const creds = await podCredentials({ namespace, inCluster: true }, log);
  const partial = `${out}.partial`;
  // Opened exclusively and 0600 before the first byte: no one else's file is overwritten, no one reads along.
  const fd = openSync(partial, 'wx', 0o600);
  let bytes = 0;
  let manifest: Manifest;
  try {
    const plain = new PassThrough();
    const written = writeBundle(
      plain,
      {
        database: { namespace, user: creds.user, db: creds.db, inCluster: true },
        password: creds.password,
        ...(webhookSecret ? { webhookSecret } : {}),
        journal: {},
        server: {
          hostname: `staging-backup workflow of ${env['GITHUB_REPOSITORY'] ?? 'an unknown repository'}`,
          namespace,
          mode: env['CODEXK8S_MODE'] || 'unknown',
        },
      },
      log,
    ).then(
      (m) => {
        plain.end();
        return m;
      },
      (e: unknown) => {
        // Ends the encryption loop below with the same error, so nothing half-made is kept.
        plain.destroy(e as Error);
        throw e;
      },
    );
    written.catch(() => undefined); // awaited below, after the loop; no unhandled rejection meanwhile
    // Read back on its way to the encrypter: what is kept is what its manifest says (as --backup checks it).
    const reader = new BundleReader();
    const sealed = await encryptStream(toWeb(checkedOnTheWay(plain, reader)), { recipient });
    for await (const chunk of sealed as unknown as AsyncIterable<Uint8Array>) {
      writeSync(fd, chunk);
      bytes += chunk.length;
    }
    manifest = await written;
    reader.end();
    fsyncSync(fd);
    closeSync(fd);
    renameSync(partial, out);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(partial, { force: true });
    throw e;
  }
  const rows = Object.values(manifest.postgres.rows).reduce((a, b) => a + b, 0);
  const tables = Object.keys(manifest.postgres.rows).length;
  const dump = manifest.parts[PART.dump]?.bytes ?? 0;
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  log.info(
    `  + ${out}: ${formatBytes(bytes)} (0600), ${tables} tables, ${rows} rows, dump ${formatBytes(dump)}, PostgreSQL ${manifest.postgres.serverVersion}; every part checked against the manifest; ${seconds}s`,
  );
  if (!webhookSecret)
    log.warn(`${WEBHOOK_ENV} is not set: the bundle has no webhook secret (a restore makes a new one)`);
  const markdown = flags['markdown'] as string | undefined;
  if (markdown)
    appendFileSync(
      markdown,
      [
        '### staging backup',
        '',
        '| tables | rows | dump | bundle | PostgreSQL | took |',
        '|---|---|---|---|---|---|',
        `| ${tables} | ${rows} | ${formatBytes(dump)} | ${formatBytes(bytes)} | ${manifest.postgres.serverVersion} | ${seconds}s |`,
        '',
        'Restore onto a new server: `bootstrap/host/bootstrap_remote_staging.mts --restore-from github:latest`',
        '',
      ].join('\n'),
    );
  return 0;
}

if (import.meta.filename === process.argv[1]) {
  const log = new Logger();
  await runMain(SPEC, log, () => main(process.argv.slice(2), process.env, log));
}
