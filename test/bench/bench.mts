// `npm run bench`: performance figures, printed, not asserted.
//   1. SSH connections the server accepted during one full launcher run (target: 1, plus the operator's fresh
//      login that proves an sshd/firewall change on a first run)
//   2. wall time of a first run and of a converged re-run (target: re-run <= 25% of the first), and of --check on
//      the converged server, with the doubles' mutating calls during it (target: 0)
//   3. wall time of `npm test` (skip with --skip-npm-test)
//   4. the app image: build context, deps stage time, layer size (test/bench/image.mts; `--image-only` for just this)
//   5. --backup and --restore-from of a database of 100+ MB of rows, next to plain pg_dump/pg_restore
//      (test/bench/backup.mts; `--backup-only` for just this)
// Needs what the e2e tests need: root, systemd-nspawn, debootstrap (see README).
import { spawnSync } from 'node:child_process';
import { startTarget } from '../e2e/harness.mts';
import { REPO_ROOT } from '../sandbox/sandbox.mts';
import { benchImage } from './image.mts';
import { benchBackup } from './backup.mts';
import { startStaging } from '../e2e/staging.mts';

const skipNpmTest = process.argv.includes('--skip-npm-test');
const imageOnly = process.argv.includes('--image-only');
const backupOnly = process.argv.includes('--backup-only');
const rows: Array<[string, string, string]> = [];

if (!backupOnly) rows.push(...benchImage(REPO_ROOT));
if (!imageOnly && !backupOnly) await benchLauncher();
if (!imageOnly) rows.push(...(await benchBackup()));

async function benchLauncher(): Promise<void> {
  const t = await startTarget('bench');
  const stopRunner = t.playArcRunner();
  const staging = await startStaging(t);
  try {
    const c0 = await t.sb.countAcceptedSsh();
    const first = await t.launch(['--yes']);
    if (first.code !== 0) throw new Error(`first run failed:\n${first.output}`);
    const c1 = await t.sb.countAcceptedSsh();
    const second = await t.launch(['--yes']);
    if (second.code !== 0) throw new Error(`re-run failed:\n${second.output}`);
    const c2 = await t.sb.countAcceptedSsh();
    rows.push(['SSH connections accepted, first run', String(c1 - c0), 'target 2: the master and the login check']);
    rows.push(['SSH connections accepted, re-run', String(c2 - c1), 'target 1']);
    rows.push(['first run (fresh server)', `${first.seconds.toFixed(2)} s`, '']);
    rows.push(['converged re-run', `${second.seconds.toFixed(2)} s`, '']);
    const ratio = (second.seconds / first.seconds) * 100;
    rows.push(['re-run / first run', `${ratio.toFixed(1)} %`, `target <= 25 % (${ratio <= 25 ? 'met' : 'NOT met'})`]);
    const mutating = async () => (await t.doublesCalls()).filter((c) => c.mutating).length;
    const m0 = await mutating();
    const check = await t.launch(['--yes', '--check']);
    if (check.code !== 0) throw new Error(`--check on the converged server did not say converged:\n${check.output}`);
    rows.push([
      '--check, converged server',
      `${check.seconds.toFixed(2)} s`,
      `next to the converged re-run's ${second.seconds.toFixed(2)} s`,
    ]);
    rows.push(['mutating calls during --check', String((await mutating()) - m0), 'target 0']);
  } finally {
    stopRunner();
    await staging.stop();
    await t.stop();
  }
}

if (!skipNpmTest && !imageOnly && !backupOnly) {
  const started = performance.now();
  const r = spawnSync('npm', ['test'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  const summary = (r.stdout?.toString() ?? '').trim().split('\n').pop() ?? '';
  rows.push(['npm test', `${((performance.now() - started) / 1000).toFixed(1)} s`, `exit ${r.status}; ${summary}`]);
}

const w = Math.max(...rows.map((r) => r[0].length));
const v = Math.max(...rows.map((r) => r[1].length));
console.log('codex-k8s staging bootstrap: bench');
for (const [k, val, note] of rows) console.log(`  ${k.padEnd(w)}  ${val.padStart(v)}  ${note}`);
