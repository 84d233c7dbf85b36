// The tool's "previous release" for the upgrade test: a snapshot of this checkout (harness.mts snapshotRepo) whose
// bootstrap/lib/versions.mts holds earlier pins. Test-only by construction: nothing in bootstrap/ reads an override;
// the upgrade is what a user gets by pulling a newer checkout and running it. Each earlier pin is a real release
// older than the current pin, so the doubles see versions that exist (charts.json allows them per test).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { snapshotRepo } from './harness.mts';
import { ARC_VERSION, IMAGES, K3S_VERSION } from '../../bootstrap/lib/versions.mts';

export interface PinMove {
  /** As PINS names it (lib/versions.mts pinVersions). */
  readonly name: string;
  readonly previous: string;
  readonly current: string;
}

/**
 * The pins that move, with the source of each earlier release. When a current pin is bumped, these stay valid
 * (still older); a current pin equal to its previous one fails the test, as it would prove no upgrade.
 */
export const MOVES: readonly PinMove[] = [
  // v1.36.1+k3s1, released 2026-05-20 (docs.k3s.io/release-notes/v1.36.X).
  { name: 'k3s', previous: 'v1.36.1+k3s1', current: K3S_VERSION },
  // gha-runner-scale-set-0.14.1, 2026-04-14 (tag in actions/actions-runner-controller, commit 74cfc385); both
  // charts move with ARC_VERSION. Its crds/ hold the same four files as 0.14.2's.
  { name: 'gha-runner-scale-set-controller', previous: '0.14.1', current: ARC_VERSION },
  // pgvector v0.8.5, 2026-07-08: its README lists 0.8.5-pg17-bookworm.
  { name: 'image:postgres', previous: 'docker.io/pgvector/pgvector:0.8.5-pg17-bookworm', current: IMAGES.postgres },
  // distribution v3.1.0, 2026-04-06 (tag in distribution/distribution).
  { name: 'image:registry', previous: 'docker.io/library/registry:3.1.0', current: IMAGES.registry },
];

/** Pure: versions.mts with each current pin's literal replaced by the previous one; exactly one literal each. */
export function withPreviousPins(source: string, moves: readonly PinMove[]): string {
  let out = source;
  for (const m of moves) {
    if (m.previous === m.current) throw new Error(`${m.name}: the previous pin equals the current one (${m.current})`);
    const literal = `'${m.current}'`;
    const n = out.split(literal).length - 1;
    if (n !== 1) throw new Error(`${m.name}: ${literal} occurs ${n} times in versions.mts, expected once`);
    out = out.replace(literal, `'${m.previous}'`);
  }
  return out;
}

/** A committed snapshot of this checkout with the previous pins: run the launcher from `root` to install them. */
export async function previousRelease(): Promise<{ root: string; sha: string }> {
  const snap = await snapshotRepo();
  const file = join(snap.root, 'bootstrap', 'lib', 'versions.mts');
  writeFileSync(file, withPreviousPins(readFileSync(file, 'utf8'), MOVES));
  await snap.git('commit', '-q', '-a', '-m', 'the previous release: earlier pins');
  return { root: snap.root, sha: (await snap.git('rev-parse', 'HEAD')).trim() };
}
