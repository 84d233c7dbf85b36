// The app image, as far as it can be measured on a machine without a container runtime or Docker Hub access:
//   - the build context that step 50 and the workflow stream to BuildKit (a tar of app/, .dockerignore applied
//     the way BuildKit applies it is approximated by the files the Dockerfile COPYs),
//   - the deps stage: `npm ci --omit=dev` from app/package-lock.json in an empty directory (the image's layer),
//   - the layers this repository adds on top of the base image (node_modules + package.json + src).
// The base image (node:24.19.0-bookworm-slim, ~75 MB compressed per Docker Hub) and BuildKit's own time are not
// measured here; docs/architecture.md has the paper budget and how to measure push-to-live on a real server.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function du(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((sum, name) => sum + du(join(path, name)), 0);
}

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(2)} MiB`;

export function benchImage(repoRoot: string): Array<[string, string, string]> {
  const app = join(repoRoot, 'app');
  const rows: Array<[string, string, string]> = [];
  const tar = spawnSync(
    'tar',
    [
      '-C',
      app,
      '--exclude=node_modules',
      '-c',
      'Dockerfile',
      '.dockerignore',
      'package.json',
      'package-lock.json',
      'src',
    ],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  if (tar.status !== 0) throw new Error(`tar of app/ failed: ${tar.stderr.toString()}`);
  rows.push([
    'build context streamed to BuildKit',
    mib(tar.stdout.length),
    'tar of app/ (Dockerfile, package files, src)',
  ]);

  const dir = mkdtempSync(join(tmpdir(), 'codex-k8s-image-bench-'));
  try {
    cpSync(join(app, 'package.json'), join(dir, 'package.json'));
    cpSync(join(app, 'package-lock.json'), join(dir, 'package-lock.json'));
    const started = performance.now();
    const npm = spawnSync(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'],
      { cwd: dir, encoding: 'utf8' },
    );
    const seconds = (performance.now() - started) / 1000;
    if (npm.status !== 0) {
      rows.push([
        'deps stage (npm ci --omit=dev)',
        'failed',
        (npm.stderr || npm.stdout).trim().split('\n').pop() ?? '',
      ]);
      return rows;
    }
    rows.push([
      'deps stage (npm ci --omit=dev)',
      `${seconds.toFixed(1)} s`,
      'npm cache warm; a cold BuildKit cache adds the download',
    ]);
    const layer = du(join(dir, 'node_modules')) + du(join(app, 'src')) + du(join(app, 'package.json'));
    rows.push(['app layers on the base image', mib(layer), 'node_modules + src + package.json, uncompressed']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
