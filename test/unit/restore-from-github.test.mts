// --restore-from github:latest | github:RUN_ID (lib/backup/from-github.mts, zip.mts) against the fake GitHub API:
// the artifact is found as GitHub lists it, fetched through the storage redirect without the token, and unzipped;
// every way it can be wrong is an error that says what, before anything is contacted (exit 2 where it is input).
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  BACKUP_ARTIFACT,
  BACKUP_ARTIFACT_FILE,
  downloadBackup,
  parseGitHubSource,
} from '../../bootstrap/lib/backup/from-github.mts';
import { ZipError, extractEntry, zipEntries } from '../../bootstrap/lib/backup/zip.mts';
import { createGitHub } from '../../bootstrap/lib/github/client.mts';
import type { GitHubClient } from '../../bootstrap/lib/github/client.mts';
import { OperationError, UsageError } from '../../bootstrap/lib/errors.mts';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub } from '../fakes/github/server.mts';
import { zipArchive } from '../fakes/zip-writer.mts';
import { CaptureLog } from '../capture-log.mts';

const TOKEN = 'github_pat_' + 'r'.repeat(40);
const REPO = 'codex-k8s/staging';
const REF = { owner: 'codex-k8s', repo: 'staging' };

test('github: sources: latest, a run id, or a file; anything else after github: is a usage error', () => {
  assert.deepEqual(parseGitHubSource('github:latest'), { run: 'latest' });
  assert.deepEqual(parseGitHubSource('github:18000000042'), { run: 18000000042 });
  assert.equal(parseGitHubSource('/home/me/backups/x.age'), undefined);
  assert.equal(parseGitHubSource('github.age'), undefined);
  for (const bad of ['github:', 'github:newest', 'github:0', 'github:-1', 'github:12a', 'github:99999999999999999999'])
    assert.throws(
      () => parseGitHubSource(bad),
      (e: unknown) => e instanceof UsageError && /expected github:latest or github:RUN_ID/.test(e.message),
      bad,
    );
});

test('zip: stored, deflated and empty entries read back byte for byte; a cut or foreign archive is named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-zip-'));
  try {
    const big = randomBytes(300_000);
    const text = Buffer.from('x'.repeat(100_000));
    const file = join(dir, 'a.zip');
    writeFileSync(
      file,
      zipArchive([
        { name: 'big.bin', data: big },
        { name: 'text.txt', data: text, deflate: true },
        { name: 'empty', data: Buffer.alloc(0) },
      ]),
    );
    const entries = await zipEntries(file);
    assert.deepEqual(
      entries.map((e) => [e.name, e.method, e.size]),
      [
        ['big.bin', 0, 300_000],
        ['text.txt', 8, 100_000],
        ['empty', 0, 0],
      ],
    );
    for (const [e, want] of [
      [entries[0], big],
      [entries[1], text],
      [entries[2], Buffer.alloc(0)],
    ] as const) {
      const out = join(dir, `out-${e!.name}`);
      await extractEntry(file, e!, out);
      assert.ok(readFileSync(out).equals(want), e!.name);
      assert.equal(statSync(out).mode & 0o777, 0o600);
    }

    // Zip64 fields on every entry (an archiver that forces them): the same content.
    writeFileSync(
      join(dir, 'f64.zip'),
      zipArchive(
        [
          { name: 'big.bin', data: big },
          { name: 'text.txt', data: text, deflate: true },
        ],
        { zip64: true },
      ),
    );
    const e64 = await zipEntries(join(dir, 'f64.zip'));
    assert.deepEqual(
      e64.map((e) => [e.name, e.size]),
      [
        ['big.bin', 300_000],
        ['text.txt', 100_000],
      ],
    );
    await extractEntry(join(dir, 'f64.zip'), e64[1]!, join(dir, 'out64'));
    assert.ok(readFileSync(join(dir, 'out64')).equals(text));

    const whole = readFileSync(file);
    writeFileSync(join(dir, 'cut.zip'), whole.subarray(0, 200_000));
    await assert.rejects(
      zipEntries(join(dir, 'cut.zip')),
      (e: unknown) => e instanceof ZipError && /end record/.test(e.message),
    );
    writeFileSync(join(dir, 'tiny.zip'), 'PK');
    await assert.rejects(zipEntries(join(dir, 'tiny.zip')), /not a zip archive/);
    // A zip64 archive marks the directory's offset 0xFFFFFFFF in the end record.
    const z64 = Buffer.from(whole);
    z64.writeUInt32LE(0xffffffff, z64.length - 6);
    writeFileSync(join(dir, 'z64.zip'), z64);
    await assert.rejects(zipEntries(join(dir, 'z64.zip')), /zip64/);
    // The directory is whole, the data behind it was cut: the entry is named as cut short.
    await assert.rejects(extractEntry(join(dir, 'cut.zip'), entries[0]!, join(dir, 'x')), /big.bin is cut short/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('github: downloads against the fake GitHub API', async (t) => {
  let fake: FakeGitHub;
  let gh: GitHubClient;
  let log: CaptureLog;
  const bundle = (tag: string) => Buffer.concat([Buffer.from(`age-encryption.org/v1 ${tag}\n`), randomBytes(70_000)]);
  const artifact = (data: Buffer, deflate = false) => zipArchive([{ name: BACKUP_ARTIFACT_FILE, data, deflate }]);

  before(async () => {
    fake = await startFakeGitHub({ token: TOKEN, repo: REPO });
  });
  beforeEach(() => {
    log = new CaptureLog();
    gh = createGitHub({ token: TOKEN, baseUrl: fake.url, log, sleep: async () => undefined });
    fake.artifacts.length = 0;
    fake.calls.length = 0;
    fake.permissions.actions = 'write';
  });
  after(async () => fake?.close());

  await t.test('none yet: exit 2, naming the workflow that makes them and the file alternative', async () => {
    await assert.rejects(
      downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log),
      (e: unknown) =>
        e instanceof OperationError &&
        e.exitCode === 2 &&
        /no backup artifact staging-backup in codex-k8s\/staging/.test(e.message) &&
        /staging-backup\.yml/.test(e.hint ?? '') &&
        /--backup DIR/.test(e.hint ?? ''),
    );
  });

  await t.test(
    'latest is the newest that has not expired; the storage URL gets no token; the file is 0600',
    async () => {
      const old = bundle('old');
      const newest = bundle('newest');
      fake.addArtifact(BACKUP_ARTIFACT, artifact(old));
      fake.addArtifact('something-else', artifact(bundle('other')));
      const want = fake.addArtifact(BACKUP_ARTIFACT, artifact(newest, true));
      fake.addArtifact(BACKUP_ARTIFACT, artifact(bundle('gone')), { expired: true });
      const got = await downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log);
      try {
        assert.ok(readFileSync(got.file).equals(newest));
        assert.equal(statSync(got.file).mode & 0o777, 0o600);
        assert.equal(got.source, `github:${want.runId}`, 'a resume names the run, not "latest"');
        assert.match(got.label, new RegExp(`artifact ${want.id} of run ${want.runId}`));
        assert.deepEqual(fake.problems, []);
        assert.ok(fake.calls.some((c) => c.route === 'GET (artifact storage)' && c.status === 200));
        assert.ok(!readFileSync(got.file).includes(TOKEN));
      } finally {
        got.close();
      }
      assert.equal(existsSync(got.file), false, 'close removes the download');
    },
  );

  await t.test('a run id takes that run, even when newer ones exist; a run without one is exit 2', async () => {
    const first = fake.addArtifact(BACKUP_ARTIFACT, artifact(bundle('first')));
    fake.addArtifact(BACKUP_ARTIFACT, artifact(bundle('second')));
    const got = await downloadBackup(gh, REF, { run: first.runId }, 'https://github.com', log);
    try {
      assert.match(readFileSync(got.file, 'utf8').slice(0, 40), /first/);
    } finally {
      got.close();
    }
    await assert.rejects(
      downloadBackup(gh, REF, { run: 17 }, 'https://github.com', log),
      (e: unknown) =>
        e instanceof OperationError && e.exitCode === 2 && /of run 17 in codex-k8s\/staging/.test(e.message),
    );
    fake.artifacts.forEach((a) => (a.expired = true));
    await assert.rejects(
      downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log),
      /the 2 named staging-backup have expired/,
    );
  });

  await t.test('a 502 and a secondary rate limit on the way are retried, as every GitHub call is', async () => {
    const want = fake.addArtifact(BACKUP_ARTIFACT, artifact(bundle('retried')));
    fake.fault('GET /repos/{owner}/{repo}/actions/artifacts', { kind: 'bad-gateway' });
    fake.fault('GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}', {
      kind: 'secondary-rate-limit',
    });
    const got = await downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log);
    try {
      assert.match(readFileSync(got.file, 'utf8').slice(0, 40), /retried/);
      assert.equal(got.source, `github:${want.runId}`);
    } finally {
      got.close();
    }
    assert.ok(
      log.lines.some((l) => /retrying in \d+s \(try 2\/3\)/.test(l)),
      log.lines.join('\n'),
    );
    assert.deepEqual(fake.problems, []);
  });

  await t.test('a token without Actions read: the error names the permission', async () => {
    fake.addArtifact(BACKUP_ARTIFACT, artifact(bundle('x')));
    fake.permissions.actions = 'none';
    await assert.rejects(
      downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log),
      (e: unknown) =>
        e instanceof OperationError && /listing the backup artifacts/.test(e.message) && /Actions/i.test(e.message),
    );
  });

  await t.test('an artifact that is not the bundle zip: exit 2, what it holds instead', async () => {
    fake.addArtifact(BACKUP_ARTIFACT, zipArchive([{ name: 'notes.txt', data: Buffer.from('hi') }]));
    await assert.rejects(
      downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log),
      (e: unknown) =>
        e instanceof OperationError && e.exitCode === 2 && /holds notes\.txt, not staging-backup\.age/.test(e.message),
    );
    fake.artifacts.length = 0;
    fake.addArtifact(BACKUP_ARTIFACT, artifact(bundle('cut')).subarray(0, 5000));
    await assert.rejects(
      downloadBackup(gh, REF, { run: 'latest' }, 'https://github.com', log),
      (e: unknown) => e instanceof OperationError && e.exitCode === 2 && /not a readable artifact/.test(e.message),
    );
  });
});
