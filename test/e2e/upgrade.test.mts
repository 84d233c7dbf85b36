// Upgrades by moving pins, end to end: the launcher of the tool's previous release (test/e2e/previous-release.mts:
// this checkout with earlier k3s, ARC, PostgreSQL and registry pins) bootstraps a sandbox server; the launcher of
// this checkout then upgrades it with a normal run. Through the doubles: the k3s installer (the version is what
// `k3s --version` answers), helm (ARC's charts at 0.14.1 allowed by this test's charts.json rule; the controller's
// crds/ made at install only, as helm does), kubectl (workloads patched in place). Steps 10 and 50 are out of scope
// (their own e2e files) and journaled as done; 80 runs, so the deploy loop and its smoke checks are proven again
// on the upgraded cluster, against the app on this host (test/e2e/staging.mts), whose database is the server's.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { startStaging } from './staging.mts';
import type { Staging } from './staging.mts';
import { MOVES, previousRelease } from './previous-release.mts';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';
import { accountCommands } from '../../bootstrap/lib/harden/operator.mts';
import { ARC_CRDS } from '../../bootstrap/lib/runners.mts';
import { ARC_VERSION, IMAGES, K3S_VERSION, pinVersions } from '../../bootstrap/lib/versions.mts';
import { CRD_FROM_CHART } from '../fakes/lib/chart-hooks.mts';
import { chartRulesAllowing } from '../fakes/lib/chart-rules.mts';

const STEPS = [
  '00_preflight',
  '20_install_k3s',
  '30_cluster_deps',
  '40_postgres',
  '60_runner_arc',
  '70_github_repo',
  '80_deploy_loop_check',
];
const SET = 'codex-k8s-staging';
const STAGING_NS = 'codex-k8s-staging';
const JOURNAL = '/var/lib/codex-k8s-bootstrap/state.json';
const previous = (name: string) => MOVES.find((m) => m.name === name)?.previous as string;

let t: Target;
let staging: Staging;
let old: { root: string; sha: string };
let stopRunner: () => void;

interface Journal {
  steps: Record<string, { changes: string[] }>;
  deployLoop?: { pins?: Record<string, string>; headSha: string };
}
const journal = async (): Promise<Journal> => JSON.parse((await t.sb.exec(['cat', JOURNAL])).stdout) as Journal;

/**
 * What must survive an upgrade untouched: the server's secret files, the cluster's Secrets (uid and data) and the
 * objects that hold the data (the StatefulSet updated in place, its claims). The rows are checked on their own.
 */
async function kept(): Promise<Record<string, string>> {
  const files = (
    await t.sb.exec([
      'sh',
      '-c',
      'cd /etc/codex-k8s-bootstrap/secrets && for f in *; do printf "%s %s\\n" "$f" "$(sha256sum < "$f" | cut -c1-64)"; done',
    ])
  ).stdout;
  const out: Record<string, string> = { 'secret files': files };
  for (const ns of [STAGING_NS, 'arc-runners'])
    for (const s of (await t.kubeJson('-n', ns, 'secrets'))['items'] as any[])
      out[`Secret ${ns}/${s.metadata.name}`] = `${s.metadata.uid} ${createHash('sha256')
        .update(JSON.stringify(s.data ?? {}))
        .digest('hex')}`;
  for (const p of (await t.kubeJson('-n', STAGING_NS, 'persistentvolumeclaims'))['items'] as any[])
    out[`PVC ${p.metadata.name}`] = p.metadata.uid;
  out['StatefulSet postgres'] = (await t.kubeJson('-n', STAGING_NS, 'statefulset', 'postgres'))['metadata'].uid;
  return out;
}

const k3sVersion = async () => (await t.sb.exec(['k3s', '--version'])).stdout.split('\n')[0] ?? '';
const image = async (kind: string, name: string, ns = STAGING_NS) =>
  (await t.kubeJson('-n', ns, kind, name))['spec']['template']['spec']['containers'][0]['image'] as string;
const helmChart = async (ns: string) =>
  (
    JSON.parse(
      (await t.sb.exec(['helm', '--kubeconfig', '/etc/rancher/k3s/k3s.yaml', 'list', '-n', ns, '-o', 'json'])).stdout,
    ) as Array<{ chart: string }>
  ).map((r) => r.chart);
async function crdsFrom(): Promise<string[]> {
  const items = (await t.kubeJson('customresourcedefinitions'))['items'] as any[];
  return items
    .filter((c) => (ARC_CRDS as readonly string[]).includes(c.metadata.name))
    .map((c) => `${c.metadata.name} ${c.metadata.annotations?.[CRD_FROM_CHART]}`)
    .sort();
}
const esc = (x: string) => x.replace(/[.+*?^${}()|[\]\\]/g, '\\$&');

/** Each pattern matches `text` after the previous one's match: the lines come in this order. */
function inOrder(text: string, patterns: readonly RegExp[]): void {
  let at = 0;
  for (const re of patterns) {
    const m = re.exec(text.slice(at));
    assert.ok(m, `${re} after position ${at} in:\n${text}`);
    at += m.index + m[0].length;
  }
}
const crdsOf = (version: string) => ARC_CRDS.map((n) => `${n} gha-runner-scale-set-controller-${version}`).sort();

describe(
  'upgrades by moving pins: the previous release bootstraps, this checkout upgrades',
  { concurrency: false },
  () => {
    before(async () => {
      t = await startTarget();
      staging = await startStaging(t, { routeDatabase: true });
      await t.sb.exec(accountCommands.create('codex'));
      await t.journalAsDone(stepNames().filter((n) => !STEPS.includes(n)));
      // The helm double allows the earlier ARC version too: the shipped rules with 0.14.1 added (a test's rule
      // replaces the shipped one of that chart).
      await t.sb.exec(['sh', '-c', 'cat > /var/lib/codex-k8s-fakes/charts.json'], {
        input: JSON.stringify(
          chartRulesAllowing(
            ['gha-runner-scale-set-controller', 'gha-runner-scale-set'],
            [previous('gha-runner-scale-set-controller')],
          ),
        ),
      });
      old = await previousRelease();
      stopRunner = t.playArcRunner(SET, 'arc-runners');
    });
    after(async () => {
      stopRunner?.();
      await staging?.stop();
      await t?.stop();
    });

    it('the previous release bootstraps: k3s, ARC, PostgreSQL and the registry at the earlier pins', async () => {
      const r = await t.launch(['--yes', '--only', STEPS.join(',')], {}, { repoRoot: old.root });
      assert.equal(r.code, 0, r.output);
      assert.match(await k3sVersion(), new RegExp(`^k3s version ${previous('k3s').replace('+', '\\+')} `));
      assert.deepEqual(await helmChart('arc-systems'), [
        `gha-runner-scale-set-controller-${previous('gha-runner-scale-set-controller')}`,
      ]);
      assert.deepEqual(await helmChart('arc-runners'), [
        `gha-runner-scale-set-${previous('gha-runner-scale-set-controller')}`,
      ]);
      assert.deepEqual(await crdsFrom(), crdsOf(previous('gha-runner-scale-set-controller')));
      assert.equal(await image('statefulset', 'postgres'), previous('image:postgres'));
      assert.equal(await image('deployment', 'registry', 'codex-k8s-system'), previous('image:registry'));
      assert.equal(Object.keys((await journal()).deployLoop?.pins ?? {}).length > 0, true, 'the loop was proven');
      // Rows the app wrote (the smoke checks' deliveries) plus some of ours: they must be there after the upgrade.
      staging.pg.psql(
        'postgres',
        "INSERT INTO github_deliveries (delivery_id, event, payload, received_at) SELECT 'upgrade-' || g, 'push', jsonb_build_object('n', g), now() FROM generate_series(1, 50) g",
      );
    });

    let keptBefore: Record<string, string>;

    it('--check of this checkout shows the plan: each version move, ARC by its own sequence, the loop to prove again', async () => {
      keptBefore = await kept();
      // What is compared must be there, or "unchanged" proves nothing.
      const keys = Object.keys(keptBefore).join('\n');
      for (const want of [
        /^Secret codex-k8s-staging\/postgres/m,
        /^Secret arc-runners\/codex-k8s-runner-github-/m,
        /^StatefulSet postgres$/m,
      ])
        assert.match(keys, want);
      assert.match(keptBefore['secret files'] ?? '', /^github-webhook-secret [0-9a-f]{64}$/m);
      const r = await t.launch(['--check', '--only', STEPS.join(',')]);
      assert.equal(r.code, 1, r.output);
      assert.match(
        r.output,
        new RegExp(`k3s is ${previous('k3s').replace('+', '\\+')}, want ${K3S_VERSION.replace('+', '\\+')}`),
      );
      assert.match(
        r.output,
        new RegExp(`ARC ${previous('gha-runner-scale-set-controller')} -> ${ARC_VERSION} by ARC's upgrade sequence`),
      );
      assert.match(r.output, /the deploy loop was proven with other pins \(.*k3s v1\.36\.1\+k3s1 -> /);
      assert.deepEqual(await kept(), keptBefore, '--check changed nothing that holds data or secrets');
    });

    it("the normal run upgrades in order (k3s, charts, images), each journaled from -> to; a failure half-way through ARC's sequence stops with the resume command", async () => {
      // The CRDs' deletion fails once: the controller is gone by then, its old CRDs are not.
      await t.sb.exec(['sh', '-c', 'cat > /var/lib/codex-k8s-fakes/faults.json'], {
        input: JSON.stringify({
          'kubectl delete customresourcedefinitions': {
            exitCode: 1,
            stderr: 'Error from server (InternalError): etcdserver: request timed out',
            times: 1,
          },
        }),
      });
      const r = await t.launch(['--yes', '--only', STEPS.join(',')]);
      assert.equal(r.code, 1, r.output);
      const f = footers(r.output);
      for (const s of ['20_install_k3s', '30_cluster_deps', '40_postgres'])
        assert.match(f[s] ?? '', /^\+ changed \d+$/, `${s}\n${r.output}`);
      assert.equal(f['60_runner_arc'], 'x failed', r.output);
      assert.equal(f['70_github_repo'], undefined, 'the run stopped at the failure');
      assert.match(
        r.output,
        /deleting ARC's CRDs \(autoscalinglisteners\.actions\.github\.com, .*\) failed \(exit 1\)/,
      );
      assert.match(r.output, /etcdserver: request timed out/, "kubectl's reason is shown");
      assert.match(r.output, /then resume with: \S+ (--env-file \S+ )?--from 60_runner_arc$/m);
      // The order of the run: k3s before the charts, the charts before the images.
      const pos = (s: string) => r.output.indexOf(`] ${s}`);
      assert.ok(pos('20_install_k3s') < pos('30_cluster_deps') && pos('30_cluster_deps') < pos('40_postgres'));

      const j = await journal();
      const changes = (s: string) => j.steps[s]?.changes.join('\n') ?? '';
      assert.match(changes('20_install_k3s'), new RegExp(`^k3s ${esc(previous('k3s'))} -> ${esc(K3S_VERSION)}`, 'm'));
      assert.match(
        changes('30_cluster_deps'),
        new RegExp(
          `^image of deployment/registry container registry: ${esc(previous('image:registry'))} -> ${esc(IMAGES.registry)}`,
          'm',
        ),
      );
      assert.match(
        changes('40_postgres'),
        new RegExp(
          `^image of statefulset/postgres container postgres: ${esc(previous('image:postgres'))} -> ${esc(IMAGES.postgres)}`,
          'm',
        ),
      );
      // What the failed step did is journaled, in ARC's order; then the failure.
      inOrder(changes('60_runner_arc'), [
        /^ARC upgrade: helm release arc-runners\/codex-k8s-staging \(runner scale set codex-k8s-staging\) uninstalled$/m,
        /^ARC upgrade: helm release arc-systems\/arc \(ARC controller 0\.14\.1\) uninstalled$/m,
      ]);
      assert.deepEqual(await helmChart('arc-systems'), [], 'the controller is gone');
      assert.deepEqual(await crdsFrom(), crdsOf(previous('gha-runner-scale-set-controller')), 'its old CRDs are not');
      const check = await t.launch(['--check', '--only', '60_runner_arc']);
      assert.match(
        check.output,
        /an ARC upgrade 0\.14\.1 -> \S+ stopped half-way \(\/var\/lib\/codex-k8s-bootstrap\/arc-upgrade\.json\): this run finishes it/,
      );
    });

    it("the resume finishes ARC's sequence (the CRDs left without a controller go first), journals ARC from -> to, and proves the loop again", async () => {
      const deliveries = staging.deliveries();
      const r = await t.launch(['--yes', '--from', '60_runner_arc']);
      assert.equal(r.code, 0, r.output);
      const f = footers(r.output);
      assert.deepEqual(Object.keys(f), ['60_runner_arc', '70_github_repo', '80_deploy_loop_check'], r.output);
      assert.match(f['60_runner_arc'] ?? '', /^\+ changed \d+$/);
      assert.equal(f['70_github_repo'], '= unchanged', r.output);
      assert.match(f['80_deploy_loop_check'] ?? '', /^\+ changed \d+$/);

      const j = await journal();
      const changes = (s: string) => j.steps[s]?.changes.join('\n') ?? '';
      inOrder(changes('60_runner_arc'), [
        /^CRD autoscalingrunnersets\.actions\.github\.com deleted \(left without a controller\)$/m,
        /^ARC controller installed \(chart gha-runner-scale-set-controller /m,
        /^runner scale set codex-k8s-staging installed/m,
        new RegExp(`^ARC 0\\.14\\.1 -> ${esc(ARC_VERSION)} \\(by ARC's upgrade sequence\\)$`, 'm'),
        /^listener Ready, a runner of codex-k8s-staging online in GitHub/m,
      ]);
      assert.equal(
        (await t.sb.exec(['test', '-e', '/var/lib/codex-k8s-bootstrap/arc-upgrade.json'], { allowFail: true }))
          .exitCode,
        1,
        'the record of the upgrade in progress is gone',
      );
      assert.match(changes('80_deploy_loop_check'), /^smoke checks from the server against \S+: /m);
      assert.ok(staging.deliveries() > deliveries, 'the smoke checks ran against staging after the upgrade');

      // What now runs.
      assert.match(await k3sVersion(), new RegExp(`^k3s version ${esc(K3S_VERSION)} `));
      assert.deepEqual(await helmChart('arc-systems'), [`gha-runner-scale-set-controller-${ARC_VERSION}`]);
      assert.deepEqual(await helmChart('arc-runners'), [`gha-runner-scale-set-${ARC_VERSION}`]);
      assert.deepEqual(
        await crdsFrom(),
        crdsOf(ARC_VERSION),
        "the CRDs are the new chart's, not kept from the old one",
      );
      assert.equal(await image('statefulset', 'postgres'), IMAGES.postgres);
      assert.equal(await image('deployment', 'registry', 'codex-k8s-system'), IMAGES.registry);
      assert.ok(
        t.github.runners.some((x) => x.name.startsWith(`${SET}-`) && x.status === 'online'),
        'a runner of the scale set is back online',
      );
      assert.deepEqual(j.deployLoop?.pins, pinVersions(), 'the loop is proven with the current pins');
    });

    it('the PostgreSQL data and every secret are unchanged; the StatefulSet was updated in place, not recreated', async () => {
      assert.deepEqual(await kept(), keptBefore);
      // The rows: ours are all there (the smoke checks of the re-proof added deliveries of their own).
      assert.equal(
        staging.pg.psql('postgres', "SELECT count(*) FROM github_deliveries WHERE delivery_id LIKE 'upgrade-%'").trim(),
        '50',
      );
    });

    it('a second run of this checkout is all unchanged', async () => {
      const r = await t.launch(['--yes', '--only', STEPS.join(',')]);
      assert.equal(r.code, 0, r.output);
      for (const s of STEPS) assert.equal(footers(r.output)[s], '= unchanged', `${s}\n${r.output}`);
    });

    it('a pin that moves PostgreSQL to another major version is refused before anything changes (the data directory would not start)', async () => {
      // A server whose PostgreSQL is 16, as if installed by a checkout that pinned it: the pin (17) must not replace it.
      const pg16 = 'docker.io/pgvector/pgvector:0.8.6-pg16-bookworm';
      await t.kubectl('-n', STAGING_NS, 'set', 'image', 'statefulset/postgres', `postgres=${pg16}`);
      const calls = (await t.doublesCalls()).filter((c) => c.mutating).length;
      const r = await t.launch(['--yes', '--only', '40_postgres']);
      assert.equal(r.code, 1, r.output);
      assert.ok(
        r.output.includes(
          `PostgreSQL 16 -> 17: the pinned image ${IMAGES.postgres} is another major version than the running ${pg16}, and it cannot start on the data directory of PostgreSQL 16; nothing was changed`,
        ),
        r.output,
      );
      assert.equal(await image('statefulset', 'postgres'), pg16);
      assert.equal((await t.doublesCalls()).filter((c) => c.mutating).length, calls, 'no mutating call');
    });

    it('the previous release against the upgraded server is refused before it uploads anything (exit 2): it would move pins back', async () => {
      const tree = async () =>
        (await t.sb.exec(['sha256sum', '/opt/codex-k8s-bootstrap/bootstrap/lib/versions.mts'])).stdout;
      const before = await tree();
      const calls = (await t.doublesCalls()).length;
      for (const args of [['--yes'], ['--check']]) {
        const r = await t.launch(args, {}, { repoRoot: old.root });
        assert.equal(r.code, 2, r.output);
        assert.match(
          r.output,
          new RegExp(
            `this checkout is older than the one that last converged the server \\(commit [0-9a-f]{12}, \\S+\\): the server has .*k3s ${esc(K3S_VERSION)} \\(here ${esc(previous('k3s'))}\\).*gha-runner-scale-set-controller ${esc(ARC_VERSION)} \\(here 0\\.14\\.1\\).*; nothing was changed\\. Pull that commit`,
          ),
        );
        assert.equal(footers(r.output)['00_preflight'], undefined, `${args}: no step ran`);
      }
      assert.equal(await tree(), before, "the server's tree is this checkout's, not the older one");
      assert.equal((await t.doublesCalls()).length, calls, 'nothing was called on the server');
    });

    it('without that record (a server converged before it existed), step 20 itself refuses to downgrade k3s', async () => {
      const j = JSON.parse((await t.sb.exec(['cat', JOURNAL])).stdout) as Record<string, unknown>;
      assert.ok(j['tool'], 'the launcher runs recorded the checkout');
      delete j['tool'];
      await t.sb.exec(['sh', '-c', `cat > ${JOURNAL}`], { input: JSON.stringify(j) });
      const installs = async () => (await t.doublesCalls()).filter((c) => c.tool === 'k3s-install').length;
      const calls = await installs();
      const r = await t.launch(['--yes', '--only', '20_install_k3s'], {}, { repoRoot: old.root });
      assert.equal(r.code, 1, r.output);
      assert.ok(
        r.output.includes(
          `k3s on the server is ${K3S_VERSION}, newer than ${previous('k3s')}, the pin of this checkout: k3s does not support downgrades, so nothing was changed`,
        ),
        r.output,
      );
      assert.match(r.output, /--(only|from) 20_install_k3s/, 'the resume command is named');
      assert.ok((await k3sVersion()).startsWith(`k3s version ${K3S_VERSION} `));
      assert.equal(await installs(), calls, 'no install ran');
    });
  },
);
