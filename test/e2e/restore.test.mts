// The restore drill: server A is bootstrapped and the real service stores webhook deliveries in a real PostgreSQL
// (test/e2e/staging.mts; the kubectl double routes `exec` into postgres-0 to that database: psql, pg_dump and
// pg_restore are the real ones). `--backup` writes an age-encrypted bundle to the laptop. Server B, a second sandbox
// wired to the same (fake) GitHub repository, is bootstrapped `--restore-from` that bundle: the service on B shows
// A's latest delivery and row counts, the database password and the webhook secret are byte-identical, and GitHub
// sees no secret written again. B's first restore takes the bundle the way a nightly backup leaves it: as the
// newest workflow artifact in the fake GitHub (`--restore-from github:latest`, a zip fetched through the storage
// redirect); the second takes the file. Then the refusals: a wrong key, a truncated and a flipped bundle (before
// anything is contacted), and a target database that holds rows (refused by 40_postgres before it changes anything).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { startStaging } from './staging.mts';
import { zipArchive } from '../fakes/zip-writer.mts';
import { BACKUP_ARTIFACT, BACKUP_ARTIFACT_FILE } from '../../bootstrap/lib/backup/from-github.mts';
import type { Staging } from './staging.mts';

const NS = 'codex-k8s-staging';
const UNTIL_40 = '00_preflight,10_harden_host,20_install_k3s,30_cluster_deps,40_postgres';
const SET = 'codex-k8s-staging';

let a: Target;
let b: Target;
let stagingA: Staging | undefined;
let stagingB: Staging;
let keys: Record<string, string>;
let bundle: string;
let countsA: string;
let latestA: unknown;

const exactCounts = (s: Staging): string => s.pg.psql('postgres', 'SELECT (SELECT count(*) FROM github_deliveries)');
async function latest(s: Staging): Promise<unknown> {
  const r = await fetch(`${s.url.replace(/\/$/, '')}/webhooks/github/latest`);
  assert.equal(r.status, 200, `${s.url} /webhooks/github/latest answered ${r.status}`);
  return r.json();
}
const secretOf = async (t: Target, key: string): Promise<string> =>
  Buffer.from(
    ((await t.kubeJson('secret', 'postgres-credentials', '-n', NS)) as { data: Record<string, string> }).data[key] ??
      '',
    'base64',
  ).toString('utf8');
const webhookFile = async (t: Target) =>
  (await t.sb.exec(['cat', '/etc/codex-k8s-bootstrap/secrets/github-webhook-secret'])).stdout;
const secretWrites = (t: Target) =>
  t.github.calls.filter((c) => c.method === 'PUT' && /\/actions\/secrets\//.test(c.route)).length;
const sshCalls = (t: Target) => {
  try {
    return readFileSync(t.sshArgvLog, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
};

describe('backup and restore onto a fresh server (the restore drill)', { concurrency: false }, () => {
  before(async () => {
    const id = await generateX25519Identity();
    const other = await generateX25519Identity();
    keys = { recipient: await identityToRecipient(id) };
    a = await startTarget();
    const dir = join(a.dir, 'keys');
    mkdirSync(dir, { mode: 0o700 });
    for (const [name, k] of [
      ['id', id],
      ['other', other],
    ] as const) {
      writeFileSync(join(dir, name), `# created: by the e2e drill\n${k}\n`, { mode: 0o600 });
      keys[name] = join(dir, name);
    }
    stagingA = await startStaging(a, { routeDatabase: true });
    const stop = a.playArcRunner(SET, 'arc-runners');
    const r = await a.launch(['--yes']).finally(stop);
    assert.equal(r.code, 0, r.output);
    // More than the smoke checks' deliveries: a few hundred rows, as a staging that has been used.
    stagingA.pg.psql(
      'postgres',
      "INSERT INTO github_deliveries (delivery_id, event, payload, received_at) SELECT 'drill-' || g, 'push', jsonb_build_object('n', g), now() + g * interval '1 ms' FROM generate_series(1, 500) g",
    );
  });
  after(async () => {
    await stagingB?.stop();
    await stagingA?.stop();
    await b?.stop();
    await a?.stop();
  });

  it('--backup writes one encrypted bundle (0600) to the laptop and changes nothing on the server', async () => {
    const journal = (await a.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout;
    const out = join(a.dir, 'backups');
    const r = await a.launch(['--yes', '--backup', out], {
      CODEXK8S_BACKUP_AGE_RECIPIENT: keys['recipient'] as string,
    });
    assert.equal(r.code, 0, r.output);
    const files = readdirSync(out);
    assert.equal(files.length, 1, files.join(', '));
    assert.match(files[0] as string, /^codex-k8s-staging-.+-\d{8}T\d{6}Z\.age$/);
    bundle = join(out, files[0] as string);
    assert.equal(statSync(bundle).mode & 0o777, 0o600);
    assert.match(readFileSync(bundle).subarray(0, 40).toString('latin1'), /^age-encryption\.org\/v1\n/);
    assert.match(r.output, /every part checked against the manifest/);
    assert.match(r.output, /\b1 tables, 50\d rows\b/);
    // Read-only: no step ran, the journal is as it was, no dump was left on the server.
    assert.equal((await a.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout, journal);
    const left = await a.sb.exec(['sh', '-c', 'find / -xdev -name "*.dump" -newer /etc/hostname 2>/dev/null | head'], {
      allowFail: true,
    });
    assert.equal(left.stdout.trim(), '');
    countsA = exactCounts(stagingA as Staging);
    latestA = await latest(stagingA as Staging);
    await stagingA?.stop();
    stagingA = undefined;
  });

  it('server B, restored from the nightly artifact, then from the file: the same latest delivery, rows, password and webhook secret', async () => {
    b = await startTarget(undefined, { github: a.github, githubToken: a.secret });
    stagingB = await startStaging(b, { routeDatabase: true });
    const artifact = a.github.addArtifact(
      BACKUP_ARTIFACT,
      zipArchive([{ name: BACKUP_ARTIFACT_FILE, data: readFileSync(bundle) }]),
    );
    const writesBefore = secretWrites(b);
    const r = await b.launch(['--yes', '--restore-from', 'github:latest', '--only', UNTIL_40], {
      CODEXK8S_BACKUP_AGE_IDENTITY_FILE: keys['id'] as string,
    });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, new RegExp(`downloaded the backup artifact ${artifact.id} of run ${artifact.runId}`));
    assert.match(r.output, /created from the backup bundle/);
    assert.match(
      r.output,
      new RegExp(
        `restored from github: artifact ${artifact.id} of run ${artifact.runId} .*: 1 tables, 50\\d rows, each table's count equal to the manifest's`,
      ),
    );
    assert.ok(
      a.github.calls.some((c) => c.route === 'GET (artifact storage)' && c.status === 200),
      'the zip came from the storage URL',
    );
    assert.deepEqual(a.github.problems, []);
    assert.equal(exactCounts(stagingB), countsA);
    assert.deepEqual(await latest(stagingB), latestA);
    assert.equal(await secretOf(b, 'POSTGRES_PASSWORD'), await secretOf(a, 'POSTGRES_PASSWORD'));
    assert.equal(await webhookFile(b), await webhookFile(a));
    assert.equal(
      (await b.sb.exec(['test', '-e', '/var/lib/codex-k8s-bootstrap/restore'], { allowFail: true })).exitCode,
      1,
    );

    // A restore that stopped after its commit but before it was recorded: the same bundle again is not refused as
    // a database with rows (they are the bundle's own), and restoring it again leaves the same rows.
    const again = await b.launch(['--yes', '--restore-from', bundle, '--only', UNTIL_40], {
      CODEXK8S_BACKUP_AGE_IDENTITY_FILE: keys['id'] as string,
    });
    assert.equal(again.code, 0, again.output);
    assert.match(again.output, /already holds the bundle's rows \(an earlier restore stopped before it was recorded\)/);
    assert.match(again.output, /restored from codex-k8s-staging-.+\.age: 1 tables, 50\d rows/);
    assert.equal(exactCounts(stagingB), countsA);
    assert.deepEqual(await latest(stagingB), latestA);

    // The rest of the sequence: 70 finds GitHub as the restored journal says, and writes no secret again.
    const stop = b.playArcRunner(SET, 'arc-runners');
    const rest = await b.launch(['--yes']).finally(stop);
    assert.equal(rest.code, 0, rest.output);
    assert.equal(footers(rest.output)['40_postgres'], '= unchanged', rest.output);
    assert.equal(secretWrites(b), writesBefore, 'a GitHub secret was written again after the restore');
    assert.equal(await webhookFile(b), await webhookFile(a));
  });

  it('a wrong key, a truncated bundle and a flipped byte are refused before anything is contacted (exit 2)', async () => {
    const data = readFileSync(bundle);
    const cut = join(b.dir, 'cut.age');
    writeFileSync(cut, data.subarray(0, data.length - 4096), { mode: 0o600 });
    const flipped = join(b.dir, 'flipped.age');
    const f = Buffer.from(data);
    f[Math.floor(f.length / 2)] = (f[Math.floor(f.length / 2)] as number) ^ 0x01;
    writeFileSync(flipped, f, { mode: 0o600 });
    chmodSync(cut, 0o600);
    for (const [file, key, why] of [
      [bundle, keys['other'], /does not open this bundle \(wrong key or passphrase\)/],
      [cut, keys['id'], /is damaged or truncated/],
      [flipped, keys['id'], /is damaged or truncated/],
    ] as const) {
      const before = sshCalls(b);
      const r = await b.launch(['--yes', '--restore-from', file], { CODEXK8S_BACKUP_AGE_IDENTITY_FILE: key as string });
      assert.equal(r.code, 2, r.output);
      assert.match(r.output, why);
      assert.equal(sshCalls(b), before, `${file}: the server was contacted`);
    }
  });

  it('a target database that holds rows is refused by 40_postgres before it changes anything (exit 2)', async () => {
    const journal = JSON.parse((await b.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout) as {
      steps: Record<string, unknown>;
    };
    const counts = exactCounts(stagingB);
    const r = await b.launch(['--yes', '--restore-from', bundle], {
      CODEXK8S_BACKUP_AGE_IDENTITY_FILE: keys['id'] as string,
    });
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /this server cannot take the restore: database codex_k8s in codex-k8s-staging is not empty/);
    assert.match(r.output, /--restore-overwrite/);
    assert.equal(exactCounts(stagingB), counts);
    assert.equal(
      (await b.sb.exec(['test', '-e', '/var/lib/codex-k8s-bootstrap/restore'], { allowFail: true })).exitCode,
      1,
    );
    const f = footers(r.output);
    for (const s of ['00_preflight', '10_harden_host', '20_install_k3s', '30_cluster_deps'])
      assert.equal(f[s], '= unchanged', `${s}\n${r.output}`);
    const after = JSON.parse((await b.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout) as {
      steps: Record<string, { status: string }>;
    };
    assert.deepEqual(Object.keys(after.steps).sort(), Object.keys(journal.steps).sort());
  });

  it('no secret appears in any output, log, argv or record of A or B', async () => {
    const password = await secretOf(b, 'POSTGRES_PASSWORD');
    const webhook = (await webhookFile(b)).trim();
    for (const t of [a, b])
      for (const [where, text] of Object.entries(await t.capturedTexts())) {
        assert.ok(!text.includes(t.secret), `the GitHub token leaked into: ${where}`);
        assert.ok(!text.includes(password), `the database password leaked into: ${where}`);
        assert.ok(!text.includes(webhook), `the webhook secret leaked into: ${where}`);
      }
  });
});
