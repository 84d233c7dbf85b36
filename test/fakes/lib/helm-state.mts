// Helm release storage of the helm double (read by the kubectl double too: a chart's release "installs" CRD kinds).
// Layout: ${state}/helm/releases/<namespace>/<release>.json = { name, namespace, history: [revision, ...] }
//         ${state}/helm/repositories.json, ${state}/helm/registries.json
import fs from 'node:fs';
import path from 'node:path';

export type ReleaseStatus = 'deployed' | 'superseded' | 'failed' | 'uninstalled';

export interface ReleaseRevision {
  revision: number;
  status: ReleaseStatus;
  chart: { name: string; version: string; ref: string };
  appVersion: string;
  /** User-supplied values (what `helm get values` prints), merged from -f files and --set flags. */
  values: Record<string, unknown>;
  /** ISO time. */
  updated: string;
  description: string;
}

export interface Release {
  name: string;
  namespace: string;
  history: ReleaseRevision[];
}

function releasesDir(dir: string): string {
  return path.join(dir, 'helm', 'releases');
}

function releaseFile(dir: string, namespace: string, name: string): string {
  return path.join(releasesDir(dir), namespace, `${name}.json`);
}

export function readRelease(dir: string, namespace: string, name: string): Release | undefined {
  try {
    return JSON.parse(fs.readFileSync(releaseFile(dir, namespace, name), 'utf8')) as Release;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export function writeRelease(dir: string, release: Release): void {
  const file = releaseFile(dir, release.namespace, release.name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(release, null, 2) + '\n');
}

export function deleteRelease(dir: string, namespace: string, name: string): void {
  fs.rmSync(releaseFile(dir, namespace, name), { force: true });
}

export function listReleases(dir: string): Release[] {
  const root = releasesDir(dir);
  if (!fs.existsSync(root)) return [];
  const out: Release[] = [];
  for (const ns of fs.readdirSync(root).sort()) {
    for (const f of fs.readdirSync(path.join(root, ns)).sort()) {
      if (!f.endsWith('.json')) continue;
      out.push(JSON.parse(fs.readFileSync(path.join(root, ns, f), 'utf8')) as Release);
    }
  }
  return out;
}

/** The latest revision of a release, whatever its status. */
export function latest(release: Release): ReleaseRevision | undefined {
  return release.history[release.history.length - 1];
}

/** Deployed releases of a chart (by chart name), for CRD availability. */
export function deployedReleasesOfChart(dir: string, chartName: string): ReleaseRevision[] {
  return listReleases(dir)
    .map(latest)
    .filter((r): r is ReleaseRevision => r !== undefined && r.status === 'deployed' && r.chart.name === chartName);
}
