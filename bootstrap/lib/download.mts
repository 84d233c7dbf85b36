// Server-side downloads of pinned artifacts (lib/versions.mts), and the helm install that step 30 uses.
//
//   resolveForServer(cfg, artifact)                    -> ResolvedArtifact for this machine's architecture, after
//                                                         CODEXK8S_ARTIFACT_MIRROR / CODEXK8S_ARTIFACT_SHA256_OVERRIDES
//   downloadVerified(resolved, dest, opts?)            -> Promise<{ path, sha256, bytes, attempts }>
//        streams over HTTP(S) with Node's fetch into a temp file next to `dest` (bounded timeout per attempt,
//        bounded retries on network errors, 5xx and 429), checks the sha256, then renames it over `dest`.
//        A wrong checksum is never retried and never lands: the temp file is removed, `dest` is untouched.
//   helmDrift(ctx: { cfg }): Promise<string[]>           read-only; what differs from the pinned helm install
//   installHelm(ctx: { cfg, log? }): Promise<string[]>   downloads + verifies the tarball, extracts the binary into
//                                                         /opt/codex-k8s-bootstrap/tools/helm-<version>/helm, records
//                                                         a stamp, points /usr/local/bin/helm at it; returns changes
//   ensureHelm(ctx): Promise<string[]>                  installHelm only when helmDrift is non-empty
// Step 30 calls helmDrift() from its check() and installHelm() from its apply().
import {
  createWriteStream,
  mkdirSync,
  renameSync,
  rmSync,
  chmodSync,
  readFileSync,
  readlinkSync,
  lstatSync,
  symlinkSync,
  existsSync,
  mkdtempSync,
  createReadStream,
  writeFileSync,
} from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, basename, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { OperationError } from './errors.mts';
import { pollUntil } from './poll.mts';
import { run } from './exec.mts';
import { resolveArtifact } from './artifacts.mts';
import type { ResolvedArtifact } from './artifacts.mts';
import { HELM } from './versions.mts';
import type { Arch, Artifact } from './versions.mts';
import type { Config } from './config.mts';
import type { Logger } from './log.mts';
import { REMOTE } from './paths.mts';

/** This machine's architecture in versions.mts terms; anything else is refused (preflight says so first). */
export function serverArch(nodeArch: string = process.arch): Arch {
  if (nodeArch === 'x64' || nodeArch === 'arm64') return nodeArch;
  throw new OperationError(
    `unsupported CPU architecture ${nodeArch}: the pinned downloads exist for x64 (amd64) and arm64 only`,
  );
}

export function resolveForServer(cfg: Config, artifact: Artifact, arch: Arch = serverArch()): ResolvedArtifact {
  return resolveArtifact(
    artifact,
    arch,
    cfg.maybe('CODEXK8S_ARTIFACT_MIRROR'),
    cfg.maybe('CODEXK8S_ARTIFACT_SHA256_OVERRIDES'),
  );
}

/** Names the two settings that decide where a download comes from and what it must hash to. */
export function sourceHint(r: ResolvedArtifact, mirror: string | undefined): string {
  const where = mirror
    ? `CODEXK8S_ARTIFACT_MIRROR=${mirror} (serving ${r.name}/<file>)`
    : 'CODEXK8S_ARTIFACT_MIRROR is not set (vendor URL)';
  const sum = r.overriddenFrom
    ? `the checksum comes from CODEXK8S_ARTIFACT_SHA256_OVERRIDES (${r.name}:${r.arch}), pinned is ${r.overriddenFrom}`
    : `the checksum is the pin in bootstrap/lib/versions.mts (override: CODEXK8S_ARTIFACT_SHA256_OVERRIDES=${r.name}:${r.arch}=<sha256>)`;
  return `${where}; ${sum}`;
}

export interface DownloadOptions {
  /** Per attempt, for the whole body. */
  timeoutSeconds?: number;
  attempts?: number;
  /** First pause between attempts; doubles each time. */
  retryDelayMs?: number;
  mode?: number;
  /** For the error hint only: the mirror setting in force. */
  mirror?: string;
  log?: Logger;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  attempts: number;
}

class Retryable extends Error {}

async function attemptOnce(
  url: string,
  tmp: string,
  timeoutSeconds: number,
): Promise<{ sha256: string; bytes: number }> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(timeoutSeconds * 1000) });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    throw new Retryable(
      err.name === 'TimeoutError'
        ? `no answer within ${timeoutSeconds}s`
        : (err.cause?.code ?? err.cause?.message ?? err.message),
    );
  }
  if (!res.ok || res.body === null) {
    const why = `HTTP ${res.status} ${res.statusText}`.trim();
    // 404/403: asking again will not help; 5xx and 429 often do.
    if (res.status >= 500 || res.status === 429) throw new Retryable(why);
    throw new OperationError(why);
  }
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      tap,
      createWriteStream(tmp, { mode: 0o600 }),
    );
  } catch (e) {
    const err = e as Error;
    throw new Retryable(
      err.name === 'TimeoutError' || err.name === 'AbortError'
        ? `the body did not arrive within ${timeoutSeconds}s`
        : `the transfer broke: ${err.message}`,
    );
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * Downloads `r.url` to `dest` only if its sha256 is `r.sha256`. Bounded: `attempts` tries of `timeoutSeconds` each,
 * then a failure that names the URL, the last reason and the settings that choose the source.
 */
export async function downloadVerified(
  r: ResolvedArtifact,
  dest: string,
  opts: DownloadOptions = {},
): Promise<DownloadResult> {
  const attempts = opts.attempts ?? 4;
  const timeoutSeconds = opts.timeoutSeconds ?? 300;
  const firstDelayMs = opts.retryDelayMs ?? 2000;
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = join(dirname(dest), `.${basename(dest)}.${randomBytes(4).toString('hex')}.part`);
  const hint = sourceHint(r, opts.mirror);
  try {
    return await pollUntil<DownloadResult>(
      async (i) => {
        opts.log?.detail(`download ${r.name} ${r.version} ${r.arch}: ${r.url} (attempt ${i}/${attempts})`);
        let got: { sha256: string; bytes: number };
        try {
          got = await attemptOnce(r.url, tmp, timeoutSeconds);
        } catch (e) {
          rmSync(tmp, { force: true });
          if (!(e instanceof Retryable)) {
            throw new OperationError(
              `downloading ${r.name} ${r.version} from ${r.url} failed: ${(e as Error).message}`,
              { hint },
            );
          }
          return { waiting: e.message };
        }
        if (got.sha256 !== r.sha256) {
          // Never retried: a mirror or proxy that serves other bytes keeps doing so, and nothing may land.
          throw new OperationError(
            `sha256 mismatch for ${r.name} ${r.version} (${r.arch}) from ${r.url}: expected ${r.sha256}, got ${got.sha256} (${got.bytes} bytes); nothing was installed`,
            { hint },
          );
        }
        if (opts.mode !== undefined) chmodSync(tmp, opts.mode);
        renameSync(tmp, dest);
        return { done: { path: dest, sha256: got.sha256, bytes: got.bytes, attempts: i } };
      },
      {
        attempts,
        // Doubling: 2 s, 4 s, 8 s by default.
        intervalSeconds: (i) => (firstDelayMs * 2 ** (i - 1)) / 1000,
        what: `the download of ${r.url}`,
        onWait: (i, last, pause) =>
          opts.log?.warn(
            `download of ${r.url} failed (attempt ${i}/${attempts}): ${last}; retrying in ${Math.round(pause * 10) / 10}s`,
          ),
        onTimeout: (last) =>
          new OperationError(
            `downloading ${r.name} ${r.version} from ${r.url} failed after ${attempts} attempts: ${last}`,
            { hint: `check that this server reaches ${new URL(r.url).host}; ${hint}` },
          ),
      },
    );
  } finally {
    rmSync(tmp, { force: true });
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------------------------
// helm

export const TOOLS_DIR = `${REMOTE.base}/tools`;
export const HELM_LINK = '/usr/local/bin/helm';

export function helmDir(version: string = HELM.version): string {
  return join(TOOLS_DIR, `helm-${version}`);
}
export function helmBinary(version: string = HELM.version): string {
  return join(helmDir(version), 'helm');
}
const helmStamp = (version: string = HELM.version): string => join(helmDir(version), '.codex-k8s-stamp');

/** The stamp: which tarball the binary came from and the binary's own sha256 (a swapped binary is drift). */
export function helmStampContent(tarballSha256: string, binarySha256: string): string {
  return `tarball-sha256=${tarballSha256}\nbinary-sha256=${binarySha256}\n`;
}

export function parseHelmStamp(text: string | undefined): { tarball?: string; binary?: string } {
  if (text === undefined) return {};
  const tarball = /^tarball-sha256=([0-9a-f]{64})$/m.exec(text)?.[1];
  const binary = /^binary-sha256=([0-9a-f]{64})$/m.exec(text)?.[1];
  return { tarball, binary };
}

function readLink(path: string): string | undefined {
  try {
    return lstatSync(path).isSymbolicLink() ? readlinkSync(path) : undefined;
  } catch {
    return undefined;
  }
}

export async function helmDrift(ctx: { cfg: Config }): Promise<string[]> {
  const r = resolveForServer(ctx.cfg, HELM);
  const bin = helmBinary();
  const drift: string[] = [];
  if (!existsSync(bin)) {
    drift.push(`helm ${HELM.version} is not installed at ${bin}`);
  } else {
    const stamp = parseHelmStamp(existsSync(helmStamp()) ? readFileSync(helmStamp(), 'utf8') : undefined);
    if (stamp.tarball !== r.sha256)
      drift.push(
        `${bin} does not come from the tarball with sha256 ${r.sha256} (stamp says ${stamp.tarball ?? 'nothing'})`,
      );
    else if (stamp.binary !== (await sha256File(bin)))
      drift.push(`${bin} was changed after it was installed (its sha256 differs from the stamp)`);
  }
  const link = readLink(HELM_LINK);
  if (link !== bin)
    drift.push(
      `${HELM_LINK} ${link === undefined ? (existsSync(HELM_LINK) ? 'is not a symlink' : 'is missing') : `points to ${link}`}, want a symlink to ${bin}`,
    );
  return drift;
}

export async function installHelm(ctx: { cfg: Config; log?: Logger }): Promise<string[]> {
  const changes: string[] = [];
  const r = resolveForServer(ctx.cfg, HELM);
  const member = HELM.member?.[r.arch];
  if (member === undefined) throw new Error('versions.mts: HELM has no member for ' + r.arch);
  const bin = helmBinary();
  const stampFile = helmStamp();
  const stamp = parseHelmStamp(existsSync(stampFile) ? readFileSync(stampFile, 'utf8') : undefined);
  const intact = existsSync(bin) && stamp.tarball === r.sha256 && stamp.binary === (await sha256File(bin));
  if (!intact) {
    mkdirSync(TOOLS_DIR, { recursive: true, mode: 0o755 });
    const work = mkdtempSync(join(TOOLS_DIR, '.helm-'));
    try {
      const tarball = join(work, basename(new URL(r.url).pathname));
      await downloadVerified(r, tarball, { mirror: ctx.cfg.maybe('CODEXK8S_ARTIFACT_MIRROR'), log: ctx.log });
      const out = join(work, 'x');
      mkdirSync(out);
      await run(['tar', '-xzf', tarball, '-C', out, '--no-same-owner', member], { log: ctx.log, timeoutSeconds: 120 });
      const extracted = join(out, member);
      const st = existsSync(extracted) ? lstatSync(extracted) : undefined;
      if (!st?.isFile()) throw new OperationError(`${r.url} has no regular file ${member}; nothing was installed`);
      mkdirSync(helmDir(), { recursive: true, mode: 0o755 });
      chmodSync(extracted, 0o755);
      // Same filesystem (both under TOOLS_DIR): the rename is atomic, a half-written helm never exists.
      renameSync(extracted, bin);
      writeFileSync(stampFile, helmStampContent(r.sha256, await sha256File(bin)), { mode: 0o644 });
      changes.push(`helm ${HELM.version} installed at ${bin} (sha256-verified ${r.sha256.slice(0, 12)}…)`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  if (readLink(HELM_LINK) !== bin) {
    const before = readLink(HELM_LINK) ?? (existsSync(HELM_LINK) ? 'a file' : 'nothing');
    const tmpLink = join(dirname(HELM_LINK), `.helm.codex-k8s-${randomBytes(4).toString('hex')}`);
    symlinkSync(bin, tmpLink);
    renameSync(tmpLink, HELM_LINK);
    changes.push(`${HELM_LINK} -> ${bin} (was ${before})`);
  }
  return changes;
}

export async function ensureHelm(ctx: { cfg: Config; log?: Logger }): Promise<string[]> {
  return (await helmDrift(ctx)).length === 0 ? [] : installHelm(ctx);
}
