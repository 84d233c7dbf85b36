// Step 60 (ARC runners) end to end: the real launcher runs 00..40 and 60 against a sandbox server in local mode,
// then again, then 60 in server mode, then a run whose runner never comes online.
// Through the doubles (test/fakes): helm (chart rules and ARC effects: the controller's CRDs, the
// AutoscalingRunnerSet, a Ready listener pod only when the token Secret exists) and kubectl (objects validated on
// apply). Through the fake GitHub API: the runner list. The fake cannot be reached by the "listener" (there is
// none), so this test plays GitHub's part honestly: it registers an online runner named the way ARC names them
// only once the scale set exists on the server, and never before.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';
import { resolveStepName } from '../../bootstrap/lib/state.mts';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { ARC_CONTROLLER_CHART, ARC_VERSION, IMAGES } from '../../bootstrap/lib/versions.mts';
import { tokenSecretName } from '../../bootstrap/remote/60_runner_arc.mts';
import { randomBytes } from 'node:crypto';
import { accountCommands } from '../../bootstrap/lib/harden/operator.mts';

let t: Target;
const ONLY = process.env['CODEXK8S_E2E_RUNNER_STEPS'] ?? '00,10,20,30,40,60';
const STEP = '60_runner_arc';
const SET = 'codex-k8s-staging';
const RUNNERS_NS = 'arc-runners';
const STAGING_NS = 'codex-k8s-staging';
const KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';
const SERVER = {
  CODEXK8S_STAGING_DOMAIN: 'staging.e2e.example',
  CODEXK8S_LETSENCRYPT_EMAIL: 'ops@e2e.example',
  CODEXK8S_RUNNER_MIN: '2',
  CODEXK8S_RUNNER_MAX: '4',
};

const calls = () => t.doublesCalls();
const kubectl = (...args: string[]) => t.kubectl(...args);
const getJson = (...args: string[]) => t.kubeJson(...args);

async function helmJson(...args: string[]): Promise<any> {
  return JSON.parse((await t.sb.exec(['helm', '--kubeconfig', KUBECONFIG, ...args, '-o', 'json'])).stdout) as unknown;
}

describe('60_runner_arc against a sandbox server', { concurrency: false }, () => {
  before(async () => {
    t = await startTarget();
    if (!ONLY.split(',').includes('10')) await t.sb.exec(accountCommands.create('codex'));
    // The steps before 60 that ONLY leaves out (50_deploy_codex_k8s: its own e2e file covers it) are its prerequisites.
    const chosen = ONLY.split(',').map((n) => resolveStepName(stepNames(), n, 'ONLY'));
    await t.journalAsDone(
      stepNames()
        .slice(0, stepNames().indexOf(STEP))
        .filter((n) => !chosen.includes(n)),
    );
  });
  after(async () => {
    await t?.stop();
  });

  it('local mode: a first run installs the controller and the scale set (one runner) and waits for it online', async () => {
    assert.equal(t.github.runners.length, 0, 'no runner before the scale set exists');
    const stop = t.playArcRunner(SET, RUNNERS_NS);
    const r = await t.launch(['--yes', '--only', ONLY]).finally(stop);
    assert.equal(r.code, 0, r.output);
    assert.match(footers(r.output)[STEP] ?? '', /^\+ changed \d+$/, r.output);
    assert.ok(
      r.output.includes(`+ Secret arc-runners/${tokenSecretName(t.secret)} created with the token (key github_token)`),
      r.output,
    );
    assert.match(
      r.output,
      /\+ ARC controller installed \(chart gha-runner-scale-set-controller 0\.14\.2, helm release arc-systems\/arc\)/,
    );
    assert.match(r.output, /\+ runner scale set codex-k8s-staging installed \(chart gha-runner-scale-set 0\.14\.2/);
    assert.match(
      r.output,
      /\+ listener Ready, a runner of codex-k8s-staging online in GitHub \(attempt \d+\/\d+\); min 1, max 1 runners/,
    );
    assert.match(
      r.output,
      /ok\s+Administration: Read and write/,
      'the launcher checked the token for runner registration first',
    );
  });

  it('both releases run 0.14.2 with the local values; RBAC present, namespaced only; the token Secret holds the token', async () => {
    const ctl = (await helmJson('list', '-n', ARC_CONTROLLER_CHART.namespace)) as Array<Record<string, string>>;
    assert.deepEqual(
      ctl.map((x) => [x['name'], x['status'], x['chart']]),
      [['arc', 'deployed', `gha-runner-scale-set-controller-${ARC_VERSION}`]],
    );
    const set = (await helmJson('list', '-n', RUNNERS_NS)) as Array<Record<string, string>>;
    assert.deepEqual(
      set.map((x) => [x['name'], x['status'], x['chart']]),
      [[SET, 'deployed', `gha-runner-scale-set-${ARC_VERSION}`]],
    );
    const v = (await helmJson('get', 'values', SET, '-n', RUNNERS_NS)) as Record<string, any>;
    assert.deepEqual([v['minRunners'], v['maxRunners']], [1, 1]);
    assert.equal(v['githubConfigUrl'], `${t.github.url}/codex-k8s/e2e-sandbox`);
    assert.equal(v['githubConfigSecret'], tokenSecretName(t.secret));
    assert.equal(v['runnerScaleSetName'], SET);
    assert.equal(v['containerMode'], undefined);
    assert.equal(v['template']['spec']['serviceAccountName'], 'codex-k8s-runner');
    assert.deepEqual(
      v['template']['spec']['containers'].map((c: any) => [c.name, c.image]),
      [['runner', IMAGES.arcRunner]],
    );
    assert.deepEqual(v['controllerServiceAccount'], { namespace: 'arc-systems', name: 'arc-gha-rs-controller' });
    const cv = (await helmJson('get', 'values', 'arc', '-n', 'arc-systems')) as Record<string, any>;
    assert.equal(cv['serviceAccount']['name'], 'arc-gha-rs-controller');

    // What the (fake) controller made of it.
    const ars = await getJson('-n', RUNNERS_NS, 'autoscalingrunnersets.actions.github.com', SET);
    assert.ok(ars['metadata']['annotations']['runner-scale-set-id']);
    const pods = await getJson(
      '-n',
      'arc-systems',
      'pods',
      '-l',
      `app.kubernetes.io/component=runner-scale-set-listener,actions.github.com/scale-set-name=${SET}`,
    );
    assert.equal(pods['items'].length, 1);

    // RBAC: validated by the kubectl double on apply; here, present, labelled, and nothing cluster-wide.
    assert.equal(
      (await getJson('-n', RUNNERS_NS, 'serviceaccount', 'codex-k8s-runner'))['metadata']['labels'][
        'app.kubernetes.io/managed-by'
      ],
      'codex-k8s-bootstrap',
    );
    const role = await getJson('-n', STAGING_NS, 'role', 'codex-k8s-deployer');
    assert.ok(!JSON.stringify(role['rules']).includes('secrets'), 'no right on Secrets');
    assert.ok(!JSON.stringify(role['rules']).includes('*'), 'no wildcard');
    const binding = await getJson('-n', STAGING_NS, 'rolebinding', 'codex-k8s-runner-deployer');
    assert.deepEqual(binding['subjects'], [
      { kind: 'ServiceAccount', name: 'codex-k8s-runner', namespace: RUNNERS_NS },
    ]);
    assert.equal((await kubectl('get', 'clusterroles', '-o', 'name')).trim(), '', 'no ClusterRole');
    assert.equal((await kubectl('get', 'clusterrolebindings', '-o', 'name')).trim(), '', 'no ClusterRoleBinding');

    const secret = await getJson('-n', RUNNERS_NS, 'secret', tokenSecretName(t.secret));
    assert.deepEqual(Object.keys(secret['data']), ['github_token']);
    assert.equal(Buffer.from(secret['data']['github_token'], 'base64').toString('utf8'), t.secret);
  });

  it('the token never appeared in any argv, log or output; objects and values always went on stdin', async () => {
    const all = await calls();
    for (const c of all)
      assert.ok(
        !c.argv.join(' ').includes(t.secret) && !c.argv.join(' ').includes(Buffer.from(t.secret).toString('base64')),
        `token in argv: ${c.tool}`,
      );
    const texts = await t.capturedTexts();
    for (const [where, text] of Object.entries(texts)) {
      if (where === 'doubles calls.jsonl') continue; // checked above, argv by argv (stdin is recorded as a hash only)
      assert.ok(!text.includes(t.secret), `the token appears in ${where}`);
      assert.ok(!text.includes(Buffer.from(t.secret).toString('base64')), `the base64 token appears in ${where}`);
    }
    const upgrades = all.filter((c) => c.tool === 'helm' && c.argv.includes('upgrade'));
    assert.deepEqual(
      upgrades
        .filter((c) => c.argv.some((a) => a.includes('gha-runner')))
        .map((c) => c.argv.slice(c.argv.indexOf('--values'), c.argv.indexOf('--values') + 2)),
      [
        ['--values', '-'],
        ['--values', '-'],
      ],
    );
    for (const c of all.filter((x) => x.tool === 'kubectl' && x.argv.includes('apply')))
      assert.deepEqual(c.argv.slice(-2), ['-f', '-']);
  });

  it('the second run reports every step unchanged and makes no mutating call', async () => {
    const before = (await calls()).length;
    const r = await t.launch(['--yes', '--only', ONLY]);
    assert.equal(r.code, 0, r.output);
    assert.equal(footers(r.output)[STEP], '= unchanged', r.output);
    for (const [step, footer] of Object.entries(footers(r.output)))
      assert.equal(footer, '= unchanged', `${step}: ${footer}`);
    const after = (await calls()).slice(before);
    assert.ok(
      after.some((c) => c.tool === 'helm' && c.argv.includes('get') && c.argv.includes(SET)),
      'the re-run read the scale set values',
    );
    assert.deepEqual(
      after.filter((c) => c.mutating).map((c) => `${c.tool} ${c.argv.join(' ')}: ${(c.changes ?? []).join('; ')}`),
      [],
    );
  });

  it('server mode: the scale set autoscales between CODEXK8S_RUNNER_MIN and MAX; the controller is not touched; a re-run changes nothing', async () => {
    const before = (await calls()).length;
    const r = await t.launch(['--yes', '--only', STEP], SERVER);
    assert.equal(r.code, 0, r.output);
    assert.match(
      r.output,
      /\+ runner scale set codex-k8s-staging upgraded \(helm release arc-runners\/codex-k8s-staging values differ from the pinned values \(maxRunners, minRunners\)\)/,
    );
    assert.match(
      r.output,
      /\+ listener Ready, scale set codex-k8s-staging registered in GitHub \(attempt 1\/\d+\); min 2, max 4 runners/,
    );
    const v = (await helmJson('get', 'values', SET, '-n', RUNNERS_NS)) as Record<string, any>;
    assert.deepEqual([v['minRunners'], v['maxRunners']], [2, 4]);
    const upgrades = (await calls()).slice(before).filter((c) => c.tool === 'helm' && c.argv.includes('upgrade'));
    assert.deepEqual(
      upgrades.map((c) => c.argv[c.argv.indexOf('upgrade') + 2]),
      [SET],
      'only the scale set release was upgraded',
    );

    const mid = (await calls()).length;
    const again = await t.launch(['--yes', '--only', STEP], SERVER);
    assert.equal(again.code, 0, again.output);
    assert.deepEqual(footers(again.output), { [STEP]: '= unchanged' }, again.output);
    assert.deepEqual(
      (await calls())
        .slice(mid)
        .filter((c) => c.mutating)
        .map((c) => c.argv.join(' ')),
      [],
    );
    assert.deepEqual(t.github.problems, []);
  });

  it('a rotated token: a new Secret named after it, the scale set switched to it (ARC rebuilds the listener), the old Secret deleted; a re-run changes nothing', async () => {
    const rotated = `github_pat_E2EROTATED${randomBytes(20).toString('hex')}`;
    t.github.acceptToken(rotated);
    const stop = t.playArcRunner(SET, RUNNERS_NS);
    const r = await t.launch(['--yes', '--only', STEP], { CODEXK8S_GITHUB_PAT: rotated }).finally(stop);
    assert.equal(r.code, 0, r.output);
    assert.ok(
      r.output.includes(`+ Secret arc-runners/${tokenSecretName(rotated)} created with the token (key github_token)`),
      r.output,
    );
    assert.match(r.output, /\+ runner scale set codex-k8s-staging upgraded \(.*githubConfigSecret/);
    assert.ok(
      r.output.includes(
        `+ Secret arc-runners/${tokenSecretName(t.secret)} of an earlier token deleted (revoke that token in GitHub)`,
      ),
      r.output,
    );
    const v = (await helmJson('get', 'values', SET, '-n', RUNNERS_NS)) as Record<string, any>;
    assert.equal(v['githubConfigSecret'], tokenSecretName(rotated));
    const names = (
      await kubectl(
        '-n',
        RUNNERS_NS,
        'get',
        'secret',
        '-l',
        'app.kubernetes.io/name=codex-k8s-runner-github',
        '-o',
        'name',
      )
    )
      .trim()
      .split('\n');
    assert.deepEqual(names, [`secret/${tokenSecretName(rotated)}`]);
    const pods = await getJson(
      '-n',
      'arc-systems',
      'pods',
      '-l',
      `app.kubernetes.io/component=runner-scale-set-listener,actions.github.com/scale-set-name=${SET}`,
    );
    assert.equal(pods['items'].length, 1, 'a listener runs on the new token');

    const mid = (await calls()).length;
    const again = await t.launch(['--yes', '--only', STEP], { CODEXK8S_GITHUB_PAT: rotated });
    assert.deepEqual(footers(again.output), { [STEP]: '= unchanged' }, again.output);
    assert.deepEqual(
      (await calls())
        .slice(mid)
        .filter((c) => c.mutating)
        .map((c) => c.argv.join(' ')),
      [],
    );
    for (const text of Object.values(await t.capturedTexts()))
      assert.ok(!text.includes(rotated), 'the rotated token is masked everywhere');
  });

  it('local mode with no runner coming online: the bounded wait fails and says what is missing and where to look', async () => {
    t.github.runners.length = 0;
    const r = await t.launch(['--yes', '--only', STEP], { CODEXK8S_ROLLOUT_TIMEOUT: '10s' });
    assert.equal(r.code, 1, r.output);
    assert.match(footers(r.output)[STEP] ?? '', /^x failed/);
    assert.match(
      r.output,
      /the runner scale set codex-k8s-staging is not ready after 10s \(CODEXK8S_ROLLOUT_TIMEOUT\): no runner of the scale set codex-k8s-staging is online in GitHub \(codex-k8s\/e2e-sandbox: none registered\)/,
    );
    assert.match(r.output, /attempt 1\/\d+, next look in 1s/);
    assert.match(r.output, /-n arc-systems logs -l app\.kubernetes\.io\/component=runner-scale-set-listener/);
    assert.match(r.output, /lacks "Administration: Read and write"/);
  });
});
