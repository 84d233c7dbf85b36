// --restore-from github:latest | github:RUN_ID: the bundle of a nightly backup run
// (.github/workflows/staging-backup.yml), fetched with the configured token before anything else happens. GitHub
// keeps it as a workflow artifact named BACKUP_ARTIFACT, a zip holding BACKUP_ARTIFACT_FILE. `latest` is the newest
// one that has not expired; a run id takes that run's. The artifact is downloaded to a private temp directory
// (0700, files 0600) and unzipped there; from then on it is a bundle file like any other (lib/launcher/restore.mts
// opens and checks it whole). A resumed restore names the run it resolved to, so a nightly run that finishes
// meanwhile cannot swap the bundle.
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OperationError, UsageError } from '../errors.mts';
import { explainGitHubError } from '../github/client.mts';
import type { GitHubClient, RepoRef } from '../github/client.mts';
import { PROGRESS_SECONDS, formatBytes } from '../log.mts';
import type { Logger } from '../log.mts';
import { ZipError, extractEntry, zipEntries } from './zip.mts';

/** The artifact's name and the one file in it (staging-backup.yml uploads them; a unit test keeps them equal). */
export const BACKUP_ARTIFACT = 'staging-backup';
export const BACKUP_ARTIFACT_FILE = 'staging-backup.age';

export type GitHubBackupRef = { run: 'latest' } | { run: number };

/** `github:latest` / `github:RUN_ID`; undefined for a file name; a usage error for any other `github:` value. */
export function parseGitHubSource(source: string): GitHubBackupRef | undefined {
  if (!source.startsWith('github:')) return undefined;
  const v = source.slice('github:'.length);
  if (v === 'latest') return { run: 'latest' };
  if (/^[1-9][0-9]{0,18}$/.test(v) && Number.isSafeInteger(Number(v))) return { run: Number(v) };
  throw new UsageError(
    `--restore-from ${source}: expected github:latest or github:RUN_ID (the id of a staging-backup workflow run, digits), or a bundle file`,
  );
}

interface Artifact {
  id: number;
  name: string;
  size_in_bytes: number;
  expired: boolean;
  created_at: string | null;
  workflow_run?: { id?: number; head_sha?: string } | null;
}

export interface DownloadedBundle {
  /** The bundle file, in a private temp directory. */
  file: string;
  /** What to pass to --restore-from to get this very bundle again (`github:RUN_ID`). */
  source: string;
  /** For messages: the run, the artifact and its time. */
  label: string;
  close(): void;
}

/** The newest artifact of the ref that has not expired; an OperationError (exit 2) naming what there is otherwise. */
export function pickArtifact(ref: GitHubBackupRef, repo: string, artifacts: readonly Artifact[]): Artifact {
  const named = artifacts.filter((a) => a.name === BACKUP_ARTIFACT);
  const live = named
    .filter((a) => !a.expired)
    .sort((a, b) => (b.created_at ?? '').localeCompare(a.created_at ?? '') || b.id - a.id);
  const where = ref.run === 'latest' ? `in ${repo}` : `of run ${ref.run} in ${repo}`;
  const first = live[0];
  if (first) return first;
  throw new OperationError(
    named.length > 0
      ? `no backup artifact ${where} is left: the ${named.length} named ${BACKUP_ARTIFACT} have expired`
      : `no backup artifact ${BACKUP_ARTIFACT} ${where}`,
    {
      hint: `the nightly workflow .github/workflows/staging-backup.yml uploads one (it needs CODEXK8S_BACKUP_AGE_RECIPIENT); see its runs, or restore from a file written by --backup DIR`,
      exitCode: 2,
    },
  );
}

export async function downloadBackup(
  gh: GitHubClient,
  r: RepoRef,
  ref: GitHubBackupRef,
  githubUrl: string,
  log: Logger,
): Promise<DownloadedBundle> {
  const repo = `${r.owner}/${r.repo}`;
  const fail = (e: unknown, what: string) =>
    e instanceof OperationError ? e : explainGitHubError(e, what, repo, githubUrl);
  let artifacts: Artifact[];
  try {
    artifacts =
      ref.run === 'latest'
        ? (await gh.rest.actions.listArtifactsForRepo({ ...r, name: BACKUP_ARTIFACT, per_page: 100 })).data.artifacts
        : (
            await gh.rest.actions.listWorkflowRunArtifacts({
              ...r,
              run_id: ref.run,
              name: BACKUP_ARTIFACT,
              per_page: 100,
            })
          ).data.artifacts;
  } catch (e) {
    throw fail(e, `listing the backup artifacts of ${repo}`);
  }
  const a = pickArtifact(ref, repo, artifacts);
  const runId = a.workflow_run?.id;
  const label = `artifact ${a.id} of ${runId ? `run ${runId}` : 'an unknown run'} (${a.created_at ?? 'no date'})`;
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-artifact-'));
  const close = () => rmSync(dir, { recursive: true, force: true });
  // The bundle must not outlive the run, also when Ctrl-C ends it with process.exit.
  process.once('exit', close);
  const done = () => {
    process.off('exit', close);
    close();
  };
  try {
    const zip = join(dir, `${BACKUP_ARTIFACT}.zip`);
    await fetchArchive(gh, r, a, zip, label, log, (e, what) => fail(e, what));
    const file = join(dir, BACKUP_ARTIFACT_FILE);
    try {
      const entries = await zipEntries(zip);
      const entry = entries.find((e) => e.name === BACKUP_ARTIFACT_FILE);
      if (!entry)
        throw new ZipError(`holds ${entries.map((e) => e.name).join(', ') || 'nothing'}, not ${BACKUP_ARTIFACT_FILE}`);
      await extractEntry(zip, entry, file);
    } catch (e) {
      if (!(e instanceof ZipError)) throw e;
      throw new OperationError(`the backup ${label} is not a readable artifact: the zip ${e.message}`, {
        hint: `download it again (run the same command); if it stays so, take an older run: --restore-from github:RUN_ID`,
        exitCode: 2,
      });
    }
    rmSync(zip, { force: true });
    log.info(`  + downloaded the backup ${label}`);
    return { file, source: runId ? `github:${runId}` : `github:latest`, label, close: done };
  } catch (e) {
    done();
    throw e;
  }
}

/**
 * The artifact's zip into `dest`. GitHub answers the download with a redirect to a short-lived storage URL that
 * needs no token (and must not get it): the redirect is taken by hand and the archive streamed from there.
 */
async function fetchArchive(
  gh: GitHubClient,
  r: RepoRef,
  a: Artifact,
  dest: string,
  label: string,
  log: Logger,
  fail: (e: unknown, what: string) => Error,
): Promise<void> {
  let location: string | undefined;
  try {
    const res = await gh.request('GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}', {
      ...r,
      artifact_id: a.id,
      archive_format: 'zip',
      request: { redirect: 'manual' },
    });
    location = typeof res.headers.location === 'string' ? res.headers.location : undefined;
  } catch (e) {
    throw fail(e, `downloading the backup ${label}`);
  }
  if (!location)
    throw new OperationError(`downloading the backup ${label}: GitHub answered without the archive's location`);
  const storage = new URL(location).host;
  let res: Response;
  try {
    res = await fetch(location, { redirect: 'follow' });
  } catch (e) {
    throw new OperationError(`downloading the backup ${label} from ${storage}: ${(e as Error).message}`, {
      hint: 'check the outbound HTTPS of this machine, then run the same command again',
    });
  }
  if (!res.ok || !res.body)
    throw new OperationError(`downloading the backup ${label} from ${storage}: answered ${res.status}`, {
      hint: 'the storage URL is short-lived: run the same command again',
    });
  let got = 0;
  const progress = setInterval(
    () => log.progress(`  .. download: ${formatBytes(got)} of ${formatBytes(a.size_in_bytes)}`),
    PROGRESS_SECONDS * 1000,
  );
  try {
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          got += chunk.length;
          cb(null, chunk);
        },
      }),
      createWriteStream(dest, { mode: 0o600 }),
    );
  } catch (e) {
    throw new OperationError(`downloading the backup ${label} from ${storage}: cut off after ${got} bytes`, {
      hint: `run the same command again (${(e as Error).message})`,
    });
  } finally {
    clearInterval(progress);
    log.liveLine(undefined);
  }
}
