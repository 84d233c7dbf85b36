// 60_runner_arc, the pure parts: the values of both ARC releases per mode (checked against the helm double's chart
// rules, the same ones the sandbox uses), the runners' RBAC (Kubernetes schemas with unknown-field strictness, and
// exactly the rights a deploy needs, nothing cluster-wide), the token Secret drift, the health evaluation; then the
// helm double's ARC effects driven as real processes with the step's own values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  settingsFrom,
  runnerCounts,
  githubConfigUrl,
  scaleSetPin,
  controllerValues,
  scaleSetValues,
  runnerObjects,
  tokenSecret,
  tokenSecretDrift,
  tokenSecretName,
  healthProblems,
  clusterProblems,
  healthHint,
  listenerPodsArgv,
  listenerSelector,
  isRunnerOf,
  arcVersionMove,
  runnerImageOf,
  CONTROLLER_SERVICE_ACCOUNT,
  TOKEN_KEY,
} from '../../bootstrap/remote/60_runner_arc.mts';
import { ARC_CRDS } from '../../bootstrap/lib/runners.mts';
import type { RunnerSettings, Health } from '../../bootstrap/remote/60_runner_arc.mts';
import type { StepContext } from '../../bootstrap/lib/step.mts';
import type { KubeObject } from '../../bootstrap/lib/manifests.mts';
import { NAMES } from '../../bootstrap/lib/manifests.mts';
import { helmReleaseDrift, parseHelmList, KUBECONFIG } from '../../bootstrap/lib/kube.mts';
import { ARC_CONTROLLER_CHART, ARC_SCALE_SET_CHART, IMAGES } from '../../bootstrap/lib/versions.mts';
import { stepNames, stepInfo } from '../../bootstrap/lib/catalogue.mts';
import { validateObject } from '../fakes/lib/validate.mts';
import { kindByApiVersion } from '../fakes/lib/kinds.mts';
import type { K8sObject } from '../fakes/lib/kinds.mts';
import { CHART_HOOKS, CRD_FROM_CHART, arcCrds } from '../fakes/lib/chart-hooks.mts';
import { seededDoubles, writeFile } from '../fakes/testkit.mts';
import { chartRulesAllowing } from '../fakes/lib/chart-rules.mts';
import { readCalls } from '../fakes/lib/recorder.mts';

const ROOT = path.join(import.meta.dirname, '..', '..');
const TOKEN = 'github_pat_UNIT_TEST_NOT_A_REAL_TOKEN_0123456789';
const SECRET = tokenSecretName(TOKEN);

function settings(mode: 'local' | 'server', over: Partial<RunnerSettings> = {}): RunnerSettings {
  return {
    mode,
    stagingNamespace: 'codex-k8s-staging',
    runnerNamespace: 'arc-runners',
    scaleSetName: 'codex-k8s-staging',
    min: mode === 'local' ? 1 : 0,
    max: mode === 'local' ? 1 : 3,
    githubUrl: 'https://github.com',
    repo: 'codex-k8s/codex-k8s',
    image: IMAGES.arcRunner,
    ...over,
  };
}

interface ChartRule {
  versions?: string[];
  requiredValues?: string[];
  allowedTopLevelValues?: string[];
  hooks?: string[];
  effects?: string[];
}
const RULES = (
  JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fakes/charts.json'), 'utf8')) as {
    charts: Record<string, ChartRule>;
  }
).charts;

/** What the helm double would refuse in these values (versions, required and allowed keys, hooks). */
function chartProblems(
  chart: string,
  version: string,
  values: Record<string, unknown>,
  release: { name: string; namespace: string },
): string[] {
  const rule = RULES[chart];
  assert.ok(rule, `charts.json has a rule for ${chart}`);
  const problems: string[] = [];
  if (!rule.versions?.includes(version)) problems.push(`version ${version} not allowed`);
  for (const req of rule.requiredValues ?? []) {
    let cur: unknown = values;
    for (const k of req.split('.'))
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
    if (cur === undefined) problems.push(`${req}: Required value`);
  }
  for (const k of Object.keys(values))
    if (!(rule.allowedTopLevelValues ?? []).includes(k)) problems.push(`${k}: not allowed`);
  for (const h of rule.hooks ?? [])
    problems.push(...(CHART_HOOKS[h]?.(values, { ...release, chart, version }) ?? [`unknown hook ${h}`]));
  return problems;
}

test('the step sits between 50_deploy_codex_k8s and 70_github_repo and is marked as calling GitHub', () => {
  const names = stepNames();
  assert.equal(names.indexOf('60_runner_arc'), names.indexOf('50_deploy_codex_k8s') + 1);
  assert.equal(names.indexOf('70_github_repo'), names.indexOf('60_runner_arc') + 1);
  assert.equal(stepInfo('60_runner_arc').usesGitHub, true);
  assert.ok(fs.existsSync(path.join(ROOT, 'bootstrap/remote/60_runner_arc.mts')));
});

test('settings come from the configuration; local mode keeps one runner whatever MIN/MAX say', () => {
  const values: Record<string, unknown> = {
    CODEXK8S_MODE: 'local',
    CODEXK8S_STAGING_NAMESPACE: 'stg',
    CODEXK8S_RUNNER_NAMESPACE: 'runners',
    CODEXK8S_RUNNER_SCALE_SET_NAME: 'set',
    CODEXK8S_RUNNER_MIN: 0,
    CODEXK8S_RUNNER_MAX: 4,
    CODEXK8S_GITHUB_URL: 'https://ghe.example/',
    CODEXK8S_GITHUB_REPO: 'o/r',
    CODEXK8S_RUNNER_IMAGE: 'mirror.example/actions/actions-runner:2.999.0',
  };
  const ctx = { cfg: { get: (n: string) => values[n], maybe: (n: string) => values[n] } } as unknown as StepContext;
  const s = settingsFrom(ctx);
  assert.deepEqual(s, {
    mode: 'local',
    stagingNamespace: 'stg',
    runnerNamespace: 'runners',
    scaleSetName: 'set',
    min: 0,
    max: 4,
    githubUrl: 'https://ghe.example/',
    repo: 'o/r',
    image: 'mirror.example/actions/actions-runner:2.999.0',
  });
  assert.equal(
    (scaleSetValues(s, SECRET) as { template: { spec: { containers: Array<{ image: string }> } } }).template.spec
      .containers[0]?.image,
    s.image,
    'the setting reaches the chart values',
  );
  const local = runnerCounts(s);
  assert.deepEqual([local.min, local.max], [1, 1]);
  assert.match(local.ignored ?? '', /CODEXK8S_RUNNER_MIN=0 \/ CODEXK8S_RUNNER_MAX=4 are used in server mode only/);
  assert.equal(runnerCounts(settings('local')).ignored, undefined, 'the defaults (1/1) say nothing');
  assert.deepEqual(runnerCounts({ ...s, mode: 'server' }), { min: 0, max: 4 });
  assert.equal(githubConfigUrl('https://ghe.example//', 'o/r'), 'https://ghe.example/o/r');
});

test('scale-set values per mode: min/max, URL, Secret by name, our ServiceAccount, the pinned runner, no dind', () => {
  for (const [mode, over, min, max] of [
    ['local', { min: 0, max: 5 }, 1, 1],
    ['server', {}, 0, 3],
    ['server', { min: 2, max: 7 }, 2, 7],
  ] as const) {
    const s = settings(mode, over);
    const v = scaleSetValues(s, SECRET) as Record<string, any>;
    assert.deepEqual([v['minRunners'], v['maxRunners']], [min, max], `${mode} ${JSON.stringify(over)}`);
    assert.equal(v['githubConfigUrl'], 'https://github.com/codex-k8s/codex-k8s');
    assert.equal(v['githubConfigSecret'], SECRET, 'a Secret name (string), never inline credentials');
    assert.equal(v['runnerScaleSetName'], 'codex-k8s-staging');
    assert.deepEqual(v['controllerServiceAccount'], {
      namespace: ARC_CONTROLLER_CHART.namespace,
      name: CONTROLLER_SERVICE_ACCOUNT,
    });
    assert.equal(v['containerMode'], undefined, 'container mode unset: no dind, no kubernetes-mode hooks');
    const spec = v['template'].spec;
    assert.equal(spec.serviceAccountName, NAMES.runnerServiceAccount);
    assert.deepEqual(
      spec.containers.map((c: any) => c.name),
      ['runner'],
      'the runner container only (no dind sidecar)',
    );
    const c = spec.containers[0];
    assert.equal(c.image, IMAGES.arcRunner);
    assert.match(c.image, /^ghcr\.io\/actions\/actions-runner:\d+\.\d+\.\d+$/);
    assert.deepEqual(c.command, ['/home/runner/run.sh']);
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.notEqual(c.securityContext.privileged, true);
    assert.ok(!JSON.stringify(v).includes('privileged'));
    assert.deepEqual(
      chartProblems(ARC_SCALE_SET_CHART.chart, ARC_SCALE_SET_CHART.version, v, {
        name: s.scaleSetName,
        namespace: s.runnerNamespace,
      }),
      [],
      'the helm double accepts them',
    );
  }
  assert.deepEqual(scaleSetPin(settings('server')), {
    ...ARC_SCALE_SET_CHART,
    release: 'codex-k8s-staging',
    namespace: 'arc-runners',
  });
  assert.throws(
    () => scaleSetValues(settings('server', { scaleSetName: 'x'.repeat(46) }), SECRET),
    /has 46 characters; ARC allows at most 45/,
  );
});

test("controller values pass the chart rule; both charts are pinned to 0.14.2 from GitHub's OCI registry", () => {
  assert.deepEqual(
    chartProblems(ARC_CONTROLLER_CHART.chart, ARC_CONTROLLER_CHART.version, controllerValues(), {
      name: ARC_CONTROLLER_CHART.release,
      namespace: ARC_CONTROLLER_CHART.namespace,
    }),
    [],
  );
  for (const pin of [ARC_CONTROLLER_CHART, ARC_SCALE_SET_CHART]) {
    assert.equal(pin.version, '0.14.2');
    assert.equal(pin.ref, `oci://ghcr.io/actions/actions-runner-controller-charts/${pin.chart}`);
  }
  assert.equal(ARC_CONTROLLER_CHART.namespace, 'arc-systems');
});

test('the helm double refuses what the real chart (or ARC) would: inline token, min > max, no runner container, bad URL', () => {
  const good = scaleSetValues(settings('server'), SECRET);
  const rel = { name: 'codex-k8s-staging', namespace: 'arc-runners' };
  const p = (v: Record<string, unknown>) => chartProblems('gha-runner-scale-set', '0.14.2', v, rel).join('\n');
  assert.match(
    p({ ...good, githubConfigSecret: { github_token: TOKEN } }),
    /githubConfigSecret\.github_token: inline secret value[\s\S]*githubConfigSecret: must name an existing Secret/,
  );
  assert.ok(!p({ ...good, githubConfigSecret: { github_token: TOKEN } }).includes(TOKEN));
  assert.match(p({ ...good, minRunners: 4, maxRunners: 2 }), /maxRunners has to be greater or equal to minRunners/);
  assert.match(
    p({ ...good, template: { spec: { containers: [{ name: 'x', image: 'a:1' }] } } }),
    /a container named "runner" is required/,
  );
  assert.match(
    p({
      ...good,
      template: { spec: { containers: [{ name: 'runner', image: 'ghcr.io/actions/actions-runner:latest' }] } },
    }),
    /a pinned image is required/,
  );
  assert.match(p({ ...good, githubConfigUrl: 'github.com/o/r' }), /githubConfigUrl: must be/);
  assert.match(p({ ...good, runnerScaleSetName: 'x'.repeat(46) }), /up to 45 characters/);
  assert.match(p({ ...good, containerMode: { type: 'docker' } }), /containerMode\.type: unknown/);
  assert.match(p({ ...good, extra: 1 }), /extra: not allowed/);
  assert.match(
    chartProblems(
      'gha-runner-scale-set-controller',
      '0.14.2',
      { serviceAccount: { name: 'default' } },
      { name: 'arc', namespace: 'arc-systems' },
    ).join('\n'),
    /cannot be set to 'default'/,
  );
  assert.match(chartProblems('gha-runner-scale-set', '0.14.1', good, rel).join('\n'), /version 0\.14\.1 not allowed/);
});

test('helmReleaseDrift: the release as installed is left alone; a min/max change or a chart bump is drift', () => {
  const s = settings('server');
  const pin = scaleSetPin(s);
  const installed = {
    status: 'deployed',
    chart: pin.chart,
    version: pin.version,
    values: JSON.parse(JSON.stringify(scaleSetValues(s, SECRET))) as Record<string, unknown>,
  };
  assert.deepEqual(helmReleaseDrift(pin, installed, scaleSetValues(s, SECRET)), []);
  assert.deepEqual(helmReleaseDrift(pin, installed, scaleSetValues({ ...s, max: 5 }, SECRET)), [
    'helm release arc-runners/codex-k8s-staging values differ from the pinned values (maxRunners)',
  ]);
  assert.match(
    helmReleaseDrift(pin, { ...installed, version: '0.13.0' }, scaleSetValues(s, SECRET))[0] ?? '',
    /runs chart gha-runner-scale-set 0\.13\.0, want gha-runner-scale-set 0\.14\.2/,
  );
  assert.deepEqual(helmReleaseDrift(pin, installed, scaleSetValues({ ...s, mode: 'local' }, SECRET)), [
    'helm release arc-runners/codex-k8s-staging values differ from the pinned values (maxRunners, minRunners)',
  ]);
});

for (const mode of ['local', 'server'] as const) {
  test(`${mode} mode: the runner RBAC passes the Kubernetes schema with unknown-field strictness`, async () => {
    const objs = runnerObjects(settings(mode));
    assert.deepEqual(
      objs.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`),
      [
        `ServiceAccount arc-runners/${NAMES.runnerServiceAccount}`,
        `Role codex-k8s-staging/${NAMES.runnerRole}`,
        `RoleBinding codex-k8s-staging/${NAMES.runnerRoleBinding}`,
        `Role codex-k8s-staging/${NAMES.backupRole}`,
        `RoleBinding codex-k8s-staging/${NAMES.backupRoleBinding}`,
      ],
    );
    for (const o of objs) {
      const info = kindByApiVersion(o.apiVersion, o.kind);
      assert.ok(info, `${o.apiVersion} ${o.kind}`);
      assert.deepEqual(await validateObject(o as K8sObject, info), [], `${o.kind}/${o.metadata.name}`);
      for (const k of ['name', 'instance', 'component', 'part-of', 'managed-by'])
        assert.ok(o.metadata.labels?.[`app.kubernetes.io/${k}`], `${o.kind}: label ${k}`);
      assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'codex-k8s-bootstrap');
    }
  });
}

test('the Role grants exactly what a deploy needs in the staging namespace, no Secrets, nothing cluster-wide', () => {
  const objs = runnerObjects(settings('server', { stagingNamespace: 'stg', runnerNamespace: 'runners' }));
  assert.ok(!objs.some((o) => o.kind.startsWith('Cluster')), 'no ClusterRole / ClusterRoleBinding');
  const role = objs.find((o) => o.kind === 'Role' && o.metadata.name === NAMES.runnerRole) as KubeObject & {
    rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }>;
  };
  assert.equal(role.metadata.namespace, 'stg');
  const grants = new Map<string, string[]>();
  for (const r of role.rules) {
    assert.equal(r.resourceNames, undefined);
    for (const g of r.apiGroups)
      for (const res of r.resources)
        grants.set(`${g || 'core'}/${res}`, [...(grants.get(`${g || 'core'}/${res}`) ?? []), ...r.verbs].sort());
  }
  const read = ['get', 'list', 'watch'];
  // set image and rollout undo are patches; nothing may be created or deleted in staging by a workflow.
  assert.deepEqual(Object.fromEntries([...grants].sort()), {
    'apps/deployments': ['get', 'list', 'patch', 'watch'],
    'apps/replicasets': read,
    'core/configmaps': read,
    'core/events': read,
    'core/pods': read,
    'core/pods/log': ['get'],
    'core/services': read,
    'networking.k8s.io/ingresses': read,
  });
  for (const [res, verbs] of grants) {
    assert.ok(!verbs.includes('*') && !res.includes('*'), `${res}: no wildcards`);
    assert.ok(!verbs.includes('escalate') && !verbs.includes('bind') && !verbs.includes('impersonate'), res);
  }
  assert.ok(
    ![...grants.keys()].some((k) => /secrets|roles|rolebindings|serviceaccounts/.test(k)),
    'no Secrets, no RBAC, no tokens',
  );
  const binding = objs.find((o) => o.kind === 'RoleBinding' && o.metadata.name === NAMES.runnerRoleBinding) as Record<
    string,
    any
  >;
  assert.equal(binding['metadata'].namespace, 'stg');
  assert.deepEqual(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: NAMES.runnerRole });
  assert.deepEqual(binding['subjects'], [
    { kind: 'ServiceAccount', name: NAMES.runnerServiceAccount, namespace: 'runners' },
  ]);
  assert.equal(objs.find((o) => o.kind === 'ServiceAccount')?.metadata.namespace, 'runners');
});

test('the backup Role grants exec into postgres-0 and nothing else; bound to the same runner ServiceAccount', () => {
  const objs = runnerObjects(settings('server', { stagingNamespace: 'stg', runnerNamespace: 'runners' }));
  const role = objs.find((o) => o.kind === 'Role' && o.metadata.name === NAMES.backupRole) as KubeObject & {
    rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }>;
  };
  assert.equal(role.metadata.namespace, 'stg');
  assert.deepEqual(role.rules, [
    { apiGroups: [''], resources: ['pods'], resourceNames: ['postgres-0'], verbs: ['get'] },
    { apiGroups: [''], resources: ['pods/exec'], resourceNames: ['postgres-0'], verbs: ['create', 'get'] },
  ]);
  const binding = objs.find((o) => o.kind === 'RoleBinding' && o.metadata.name === NAMES.backupRoleBinding) as Record<
    string,
    any
  >;
  assert.deepEqual(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: NAMES.backupRole });
  assert.deepEqual(binding['subjects'], [
    { kind: 'ServiceAccount', name: NAMES.runnerServiceAccount, namespace: 'runners' },
  ]);
});

test('the token Secret: built for stdin, compared by hash, never quoted in a drift line', async () => {
  const secret = tokenSecret('arc-runners', TOKEN) as KubeObject & { data: Record<string, string> };
  assert.deepEqual(Object.keys(secret.data), [TOKEN_KEY]);
  assert.equal(Buffer.from(secret.data[TOKEN_KEY] as string, 'base64').toString('utf8'), TOKEN);
  assert.deepEqual(
    await validateObject(
      secret as K8sObject,
      kindByApiVersion('v1', 'Secret') as NonNullable<ReturnType<typeof kindByApiVersion>>,
    ),
    [],
  );
  assert.deepEqual(tokenSecretDrift(secret, TOKEN, 'arc-runners'), []);
  const lines = [
    ...tokenSecretDrift(undefined, TOKEN, 'arc-runners'),
    ...tokenSecretDrift(tokenSecret('arc-runners', `${TOKEN}-rotated`), TOKEN, 'arc-runners'),
    ...tokenSecretDrift({ ...secret, data: {} }, TOKEN, 'arc-runners'),
  ];
  const name = tokenSecretName(TOKEN);
  assert.deepEqual(lines, [
    `Secret arc-runners/${name} does not exist (ARC reads the token from it)`,
    `Secret arc-runners/${name}: github_token is not the current CODEXK8S_GITHUB_PAT (sha256 differs)`,
    `Secret arc-runners/${name} has no key github_token`,
  ]);
  // The name follows the token: a rotated token is another Secret, so the chart value changes and ARC rebuilds
  // the listener with it. The name gives nothing away: a prefix of the sha256 of a 40+ character random token.
  assert.match(name, new RegExp(`^${NAMES.runnerGitHubSecret}-[0-9a-f]{10}$`));
  assert.notEqual(tokenSecretName(`${TOKEN}-rotated`), name);
  assert.equal(tokenSecret('arc-runners', TOKEN).metadata.name, name);
});

const readyPod = {
  metadata: { name: 'set-abc-listener' },
  status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
};
const registered = { annotations: { 'runner-scale-set-id': '7' }, phase: 'Running' };

test('health: each missing piece is named, in order; local mode also needs a runner online in GitHub', () => {
  const local = settings('local', { scaleSetName: 'set' });
  const server = settings('server', { scaleSetName: 'set' });
  assert.deepEqual(healthProblems(server, { listenerPods: [] }), [
    'the AutoscalingRunnerSet arc-runners/set does not exist (the scale-set chart creates it)',
  ]);
  const crashing = {
    metadata: { name: 'set-abc-listener' },
    status: {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'False' }],
      containerStatuses: [{ state: { waiting: { reason: 'CrashLoopBackOff' } } }],
    },
  };
  assert.deepEqual(healthProblems(server, { scaleSet: { annotations: {} }, listenerPods: [crashing] }), [
    'the scale set set is not registered in GitHub: the controller has not written the runner-scale-set-id annotation on AutoscalingRunnerSet arc-runners/set',
    'the listener pod of set in arc-systems is not Ready (set-abc-listener Running (CrashLoopBackOff))',
  ]);
  assert.deepEqual(
    healthProblems(server, { scaleSet: registered, listenerPods: [readyPod] }),
    [],
    'server mode: registered + listener Ready',
  );
  const h: Health = {
    scaleSet: registered,
    listenerPods: [readyPod],
    runners: [
      { name: 'other-runner', status: 'online', labels: ['self-hosted'] },
      { name: 'set-x7k2p-runner-abcde', status: 'offline', labels: ['set'] },
    ],
  };
  assert.deepEqual(clusterProblems(local, h), []);
  assert.deepEqual(healthProblems(local, h), [
    'no runner of the scale set set is online in GitHub (codex-k8s/codex-k8s: set-x7k2p-runner-abcde offline)',
  ]);
  assert.deepEqual(healthProblems(local, { ...h, runners: [] }), [
    'no runner of the scale set set is online in GitHub (codex-k8s/codex-k8s: none registered)',
  ]);
  assert.deepEqual(
    healthProblems(local, { ...h, runners: [{ name: 'set-x7k2p-runner-abcde', status: 'online', labels: ['set'] }] }),
    [],
  );
  assert.equal(isRunnerOf({ name: 'settle-1', labels: [] }, 'set'), false);
  assert.equal(isRunnerOf({ name: 'anything', labels: ['set'] }, 'set'), true);
  const hint = healthHint(local);
  assert.match(
    hint,
    /kubectl --kubeconfig \/etc\/rancher\/k3s\/k3s\.yaml -n arc-systems logs -l app\.kubernetes\.io\/component=runner-scale-set-listener/,
  );
  assert.match(hint, /Administration: Read and write/);
  assert.deepEqual(listenerPodsArgv('set'), [
    'kubectl',
    '--kubeconfig',
    KUBECONFIG,
    '--namespace',
    'arc-systems',
    'get',
    'pods',
    '-l',
    listenerSelector('set'),
    '-o',
    'json',
  ]);
});

test('the helm double plays ARC: CRDs from the controller, the scale set, and a Ready listener only once the token Secret exists', () => {
  const { dir, h, k } = seededDoubles();
  const s = settings('local', { scaleSetName: 'set' });
  for (const ns of ['arc-runners', 'codex-k8s-staging']) assert.equal(k(['create', 'namespace', ns]).code, 0);
  const pin = scaleSetPin(s);
  const upgradeScaleSet = () =>
    h(
      [
        'upgrade',
        '--install',
        pin.release,
        pin.ref,
        '--version',
        pin.version,
        '--namespace',
        pin.namespace,
        '--values',
        '-',
        '--wait',
        '--timeout',
        '60s',
      ],
      JSON.stringify(scaleSetValues(s, SECRET)),
    );

  const early = upgradeScaleSet();
  assert.equal(early.code, 1);
  assert.match(
    early.stderr,
    /ensure CRDs are installed first \(CRD autoscalingrunnersets\.actions\.github\.com not found \(chart gha-runner-scale-set-controller installs it from crds\/ at install\)/,
  );

  const c = ARC_CONTROLLER_CHART;
  const ctl = h(
    [
      'upgrade',
      '--install',
      c.release,
      c.ref,
      '--version',
      c.version,
      '--namespace',
      c.namespace,
      '--create-namespace',
      '--values',
      '-',
    ],
    JSON.stringify(controllerValues()),
  );
  assert.equal(ctl.code, 0, ctl.stderr);
  const deploy = JSON.parse(
    k(['-n', 'arc-systems', 'get', 'deployment', 'arc-gha-rs-controller', '-o', 'json']).stdout,
  ) as Record<string, any>;
  assert.equal(deploy['status'].availableReplicas, 1);
  assert.equal(deploy['spec'].template.spec.serviceAccountName, CONTROLLER_SERVICE_ACCOUNT);

  const noSecret = upgradeScaleSet();
  assert.equal(noSecret.code, 0, noSecret.stderr);
  const pods = () =>
    (
      JSON.parse(k(['-n', 'arc-systems', 'get', 'pods', '-l', listenerSelector('set'), '-o', 'json']).stdout) as {
        items: Array<Record<string, any>>;
      }
    ).items;
  const ars = () =>
    JSON.parse(
      k(['-n', 'arc-runners', 'get', 'autoscalingrunnersets.actions.github.com', 'set', '-o', 'json']).stdout,
    ) as Record<string, any>;
  const health = (): Health => ({
    scaleSet: { annotations: ars()['metadata'].annotations ?? {}, phase: ars()['status']?.phase },
    listenerPods: pods() as Health['listenerPods'],
  });
  assert.equal(pods().length, 0, 'no token Secret: no listener');
  assert.deepEqual(
    clusterProblems(s, health()).map((l) => l.replace(/:.*/, '')),
    [
      'the scale set set is not registered in GitHub',
      'the listener pod of set in arc-systems is not Ready (no listener pod)',
    ],
  );

  assert.equal(k(['apply', '-f', '-'], JSON.stringify(tokenSecret('arc-runners', TOKEN))).code, 0);
  assert.equal(upgradeScaleSet().code, 0);
  assert.equal(pods().length, 1, 'one listener (the old one is replaced on upgrade)');
  assert.deepEqual(clusterProblems(s, health()), []);
  assert.equal(ars()['spec'].minRunners, 1);
  assert.equal(ars()['spec'].template.spec.serviceAccountName, NAMES.runnerServiceAccount);
  assert.equal(upgradeScaleSet().code, 0);
  assert.equal(pods().length, 1);
  assert.equal(ars()['metadata'].annotations['runner-scale-set-id'], '1', 'the ID stays across upgrades');

  // helm list / get values read back exactly what the step compares with: no drift, so no upgrade on a re-run.
  const entry = parseHelmList(
    h(['list', '--namespace', pin.namespace, '--all', '--filter', `^${pin.release}$`, '-o', 'json']).stdout,
    pin.release,
  );
  assert.equal(entry?.chart, 'gha-runner-scale-set-0.14.2');
  const values = JSON.parse(
    h(['get', 'values', pin.release, '--namespace', pin.namespace, '-o', 'json']).stdout,
  ) as Record<string, unknown>;
  assert.deepEqual(
    helmReleaseDrift(
      pin,
      { status: entry?.status ?? '', chart: pin.chart, version: '0.14.2', values },
      scaleSetValues(s, SECRET),
    ),
    [],
  );
  assert.ok(
    readCalls(dir).every((call) => !call.argv.join(' ').includes(TOKEN)),
    'the token is in no argv',
  );
  // helm uninstall undoes the chart's effects: the scale set and its listener go (the controller deregisters
  // them), then the controller's Deployment.
  assert.equal(h(['uninstall', pin.release, '--namespace', pin.namespace, '--wait']).code, 0);
  const gone = k(['-n', 'arc-runners', 'get', 'autoscalingrunnersets.actions.github.com', 'set', '-o', 'json']);
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /NotFound|not found/);
  assert.equal(pods().length, 0, 'the listener goes with the scale set');
  assert.equal(h(['uninstall', c.release, '--namespace', c.namespace, '--wait']).code, 0);
  assert.notEqual(k(['-n', 'arc-systems', 'get', 'deployment', 'arc-gha-rs-controller', '-o', 'json']).code, 0);
});

test("ARC's CRDs are the chart's crds/ at our pin; a version move of either release is an upgrade by ARC's sequence", () => {
  assert.deepEqual(
    [...ARC_CRDS],
    arcCrds().map((c) => c.name),
    'ARC_CRDS = test/fixtures/upstream/.../crds.json',
  );
  assert.equal(arcVersionMove(undefined, undefined), undefined, 'nothing installed: an install, not an upgrade');
  assert.equal(arcVersionMove({ version: ARC_CONTROLLER_CHART.version }, undefined), undefined);
  assert.equal(arcVersionMove({ version: '0.14.1' }, { version: ARC_CONTROLLER_CHART.version }), '0.14.1');
  assert.equal(arcVersionMove(undefined, { version: '0.13.0' }), '0.13.0', 'a scale set left on an older chart');
  const values = scaleSetValues(settings('local'), SECRET);
  assert.equal(runnerImageOf(values), IMAGES.arcRunner);
  assert.equal(runnerImageOf(undefined), undefined);
  assert.equal(runnerImageOf({ template: { spec: { containers: [{ name: 'other', image: 'x' }] } } }), undefined);
});

test("the helm double keeps a chart's crds/ as helm does: made at install, never upgraded, kept at uninstall; kubectl delete takes their objects", () => {
  const { dir, h, k } = seededDoubles();
  // The shipped rule, with an earlier version allowed too.
  writeFile(dir, 'charts.json', JSON.stringify(chartRulesAllowing(['gha-runner-scale-set-controller'], ['0.14.1'])));
  const c = ARC_CONTROLLER_CHART;
  const ctl = (version: string) =>
    h(
      [
        'upgrade',
        '--install',
        c.release,
        c.ref,
        '--version',
        version,
        '-n',
        c.namespace,
        '--create-namespace',
        '-f',
        '-',
      ],
      JSON.stringify(controllerValues()),
    );
  const crds = () =>
    Object.fromEntries(
      (
        JSON.parse(
          k(['get', 'customresourcedefinitions', ...ARC_CRDS, '--ignore-not-found', '-o', 'json']).stdout ||
            '{"items":[]}',
        ) as {
          items: K8sObject[];
        }
      ).items.map((o) => [o.metadata.name, o.metadata.annotations?.[CRD_FROM_CHART]]),
    );
  const all = (v: string) => Object.fromEntries(ARC_CRDS.map((n) => [n, `gha-runner-scale-set-controller-${v}`]));
  assert.deepEqual(crds(), {});
  assert.equal(ctl('0.14.1').code, 0);
  assert.deepEqual(crds(), all('0.14.1'), 'the install made them');
  assert.equal(ctl(c.version).code, 0);
  assert.deepEqual(crds(), all('0.14.1'), 'helm upgrade never touches crds/');
  assert.equal(h(['uninstall', c.release, '-n', c.namespace]).code, 0);
  assert.deepEqual(crds(), all('0.14.1'), 'helm uninstall keeps them');
  assert.equal(k(['create', 'namespace', 'arc-runners']).code, 0);
  const ars = `apiVersion: actions.github.com/v1alpha1\nkind: AutoscalingRunnerSet\nmetadata: {name: left, namespace: arc-runners}\nspec: {}\n`;
  assert.equal(k(['apply', '-f', '-'], ars).code, 0, 'the kind is served while its CRD is there');
  const del = k(['delete', 'customresourcedefinitions', ...ARC_CRDS, '--ignore-not-found']);
  assert.equal(del.code, 0, del.stderr);
  assert.deepEqual(crds(), {});
  assert.match(
    k(['-n', 'arc-runners', 'get', 'autoscalingrunnersets.actions.github.com', 'left']).stderr,
    /doesn't have a resource type|no matches for kind|could not find the requested resource/,
    'the CRD took its objects and its kind with it',
  );
  assert.equal(ctl(c.version).code, 0);
  assert.deepEqual(crds(), all(c.version), 'a fresh install brings the CRDs of the new version');
});
