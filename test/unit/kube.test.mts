// bootstrap/lib/kube.mts: the argv builders and parsers, then the runners end to end against the kubectl and helm
// doubles on this machine (a PATH shim runs test/fakes/*.mts; CODEXK8S_FAKES_ROOT stands in for / so the
// k3s kubeconfig path resolves without root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import {
  KUBECONFIG,
  kubectlArgv,
  applyArgv,
  diffArgv,
  getJsonArgv,
  rolloutStatusArgv,
  helmUpgradeArgv,
  helmListArgv,
  helmGetValuesArgv,
  parseHelmList,
  diffName,
  diffSections,
  helmReleaseDrift,
  canonicalJson,
  objectsDrift,
  applyObjects,
  readSecret,
  getJson,
  existingNamespaces,
  helmReleaseState,
  helmUpgrade,
  rolloutStatus,
  imageMoves,
  appliedName,
} from '../../bootstrap/lib/kube.mts';
import type { HelmReleaseState } from '../../bootstrap/lib/kube.mts';
import type { KubeObject } from '../../bootstrap/lib/manifests.mts';
import { CERT_MANAGER_CHART } from '../../bootstrap/lib/versions.mts';
import { certManagerValues, certManagerChange } from '../../bootstrap/remote/30_cluster_deps.mts';
import { Logger, moved } from '../../bootstrap/lib/log.mts';
import { mask, clearSecretsForTests } from '../../bootstrap/lib/redact.mts';
import { FAKES_DIR, newStateDir, seedCluster, SERVER_NODE_BIN, writeFaults } from '../fakes/testkit.mts';
import { readCalls } from '../fakes/lib/recorder.mts';

const K = ['kubectl', '--kubeconfig', '/etc/rancher/k3s/k3s.yaml'];
const H = ['helm', '--kubeconfig', '/etc/rancher/k3s/k3s.yaml'];

test('argv builders: the k3s kubeconfig, objects and values on stdin, bounded waits', () => {
  assert.equal(KUBECONFIG, '/etc/rancher/k3s/k3s.yaml');
  assert.deepEqual(kubectlArgv('version'), [...K, 'version']);
  assert.deepEqual(applyArgv(), [...K, 'apply', '-f', '-']);
  assert.deepEqual(applyArgv({ serverSide: true }), [
    ...K,
    'apply',
    '--server-side',
    '--field-manager',
    'codex-k8s-bootstrap',
    '--force-conflicts',
    '-f',
    '-',
  ]);
  assert.deepEqual(diffArgv(), [...K, 'diff', '-f', '-']);
  assert.deepEqual(getJsonArgv('secret', 'db', 'ns'), [
    ...K,
    '--namespace',
    'ns',
    'get',
    'secret',
    'db',
    '-o',
    'json',
    '--ignore-not-found',
  ]);
  assert.deepEqual(getJsonArgv('namespace', ['a', 'b']), [
    ...K,
    'get',
    'namespace',
    'a',
    'b',
    '-o',
    'json',
    '--ignore-not-found',
  ]);
  assert.deepEqual(rolloutStatusArgv('statefulset', 'postgres', 'ns', 300), [
    ...K,
    '--namespace',
    'ns',
    'rollout',
    'status',
    'statefulset/postgres',
    '--timeout=300s',
  ]);
  assert.deepEqual(helmUpgradeArgv(CERT_MANAGER_CHART, 300), [
    ...H,
    'upgrade',
    '--install',
    'cert-manager',
    'oci://quay.io/jetstack/charts/cert-manager',
    '--version',
    CERT_MANAGER_CHART.version,
    '--namespace',
    'cert-manager',
    '--create-namespace',
    '--values',
    '-',
    '--wait',
    '--timeout',
    '300s',
  ]);
  assert.deepEqual(helmListArgv(CERT_MANAGER_CHART), [
    ...H,
    'list',
    '--namespace',
    'cert-manager',
    '--all',
    '--filter',
    '^cert-manager$',
    '-o',
    'json',
  ]);
  assert.deepEqual(helmGetValuesArgv(CERT_MANAGER_CHART), [
    ...H,
    'get',
    'values',
    'cert-manager',
    '--namespace',
    'cert-manager',
    '-o',
    'json',
  ]);
});

test('pins: the cert-manager chart version is exact, and the helm double allows exactly it', () => {
  assert.match(CERT_MANAGER_CHART.version, /^v\d+\.\d+\.\d+$/);
  const rules = JSON.parse(readFileSync(path.join(FAKES_DIR, 'charts.json'), 'utf8')) as {
    charts: Record<string, { versions: string[] }>;
  };
  assert.deepEqual(
    rules.charts['cert-manager']?.versions,
    [CERT_MANAGER_CHART.version],
    'bump test/fakes/charts.json with the pin',
  );
});

test('parsers: helm list, kubectl diff sections and names', () => {
  const list = JSON.stringify([
    {
      name: 'cert-manager',
      namespace: 'cert-manager',
      revision: '1',
      status: 'deployed',
      chart: 'cert-manager-v1.21.2',
      app_version: 'v1.21.2',
    },
  ]);
  assert.equal(parseHelmList(list, 'cert-manager')?.status, 'deployed');
  assert.equal(parseHelmList('[]', 'cert-manager'), undefined);
  assert.equal(parseHelmList('', 'cert-manager'), undefined);
  const o = (apiVersion: string, kind: string, name: string, namespace?: string): KubeObject => ({
    apiVersion,
    kind,
    metadata: { name, ...(namespace ? { namespace } : {}) },
  });
  assert.equal(
    diffName(o('apps/v1', 'Deployment', 'registry', 'codex-k8s-system')),
    'apps.v1.Deployment.codex-k8s-system.registry',
  );
  assert.equal(diffName(o('v1', 'Namespace', 'x')), 'v1.Namespace..x');
  assert.equal(
    diffName(o('cert-manager.io/v1', 'ClusterIssuer', 'letsencrypt')),
    'cert-manager.io.v1.ClusterIssuer..letsencrypt',
  );
  const out =
    'diff -u -N /tmp/LIVE-1/v1.Namespace..x /tmp/MERGED-1/v1.Namespace..x\n--- a\n+++ b\n@@ -0,0 +1,4 @@\n+apiVersion: v1\n' +
    'diff -u -N /tmp/LIVE-1/apps.v1.Deployment.ns.web /tmp/MERGED-1/apps.v1.Deployment.ns.web\n--- a\n+++ b\n@@ -1,3 +1,3 @@\n-  image: a\n+  image: b\n';
  assert.deepEqual(
    diffSections(out).map((s) => [s.name, s.created]),
    [
      ['v1.Namespace..x', true],
      ['apps.v1.Deployment.ns.web', false],
    ],
  );
});

test('helmReleaseDrift: missing, wrong version, failed, other values; nothing when all match (key order irrelevant)', () => {
  const want = { crds: { enabled: true, keep: true }, webhook: { resources: {} } };
  const ok: HelmReleaseState = {
    status: 'deployed',
    chart: 'cert-manager',
    version: CERT_MANAGER_CHART.version,
    values: { webhook: { resources: {} }, crds: { keep: true, enabled: true } },
  };
  assert.deepEqual(helmReleaseDrift(CERT_MANAGER_CHART, ok, want), []);
  assert.match(
    helmReleaseDrift(CERT_MANAGER_CHART, undefined, want)[0] ?? '',
    /cert-manager\/cert-manager is not installed \(want chart cert-manager v/,
  );
  assert.match(
    helmReleaseDrift(CERT_MANAGER_CHART, { ...ok, version: 'v1.0.0' }, want)[0] ?? '',
    /runs chart cert-manager v1\.0\.0, want cert-manager v/,
  );
  assert.match(
    helmReleaseDrift(CERT_MANAGER_CHART, { ...ok, status: 'failed' }, want)[0] ?? '',
    /is failed, want deployed/,
  );
  assert.deepEqual(helmReleaseDrift(CERT_MANAGER_CHART, { ...ok, values: { crds: { enabled: true } } }, want), [
    'helm release cert-manager/cert-manager values differ from the pinned values (crds, webhook)',
  ]);
  assert.equal(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
});

/** A fake "server": a PATH with kubectl/helm shims running the doubles, and the k3s kubeconfig under a fake root. */
function fakeServer(): { dir: string; restore: () => void } {
  const dir = newStateDir('ck8s-kube-');
  seedCluster(dir);
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'etc/rancher/k3s'), { recursive: true });
  fs.writeFileSync(path.join(root, KUBECONFIG), 'apiVersion: v1\nkind: Config\n', { mode: 0o600 });
  const node = SERVER_NODE_BIN;
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const tool of ['kubectl', 'helm'])
    fs.writeFileSync(
      path.join(bin, tool),
      `#!/bin/sh\nexec '${node}' '${path.join(FAKES_DIR, `${tool}.mts`)}' "$@"\n`,
      { mode: 0o755 },
    );
  const saved = {
    PATH: process.env['PATH'],
    D: process.env['CODEXK8S_FAKES_DIR'],
    R: process.env['CODEXK8S_FAKES_ROOT'],
    HOME: process.env['HOME'],
    KUBECONFIG: process.env['KUBECONFIG'],
  };
  process.env['PATH'] = `${bin}:${process.env['PATH']}`;
  process.env['CODEXK8S_FAKES_DIR'] = dir;
  process.env['CODEXK8S_FAKES_ROOT'] = root;
  process.env['HOME'] = dir;
  delete process.env['KUBECONFIG'];
  const put = (k: string, v: string | undefined) => (v === undefined ? delete process.env[k] : (process.env[k] = v));
  return {
    dir,
    restore: () => {
      put('PATH', saved.PATH);
      put('CODEXK8S_FAKES_DIR', saved.D);
      put('CODEXK8S_FAKES_ROOT', saved.R);
      put('HOME', saved.HOME);
      put('KUBECONFIG', saved.KUBECONFIG);
    },
  };
}

const ns = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const cm = (name: string, namespace: string, v: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace },
  data: { v },
});

test('runners against the doubles: drift, apply, re-check clean; Secret read-back masked; helm install only on drift', async () => {
  const { dir, restore } = fakeServer();
  const log = new Logger();
  try {
    const objs = [ns('app'), cm('one', 'app', 'a'), cm('two', 'app', 'b')];
    assert.deepEqual(await objectsDrift(objs), [
      'Namespace app does not exist',
      'ConfigMap app/one does not exist (namespace app does not exist yet)',
      'ConfigMap app/two does not exist (namespace app does not exist yet)',
    ]);
    assert.deepEqual(await applyObjects(objs, log), [
      'namespace/app created',
      'configmap/one created',
      'configmap/two created',
    ]);
    assert.deepEqual(await objectsDrift(objs), []);
    assert.deepEqual(await applyObjects(objs, log), [], 'unchanged lines are not changes');
    assert.deepEqual(await objectsDrift([ns('app'), cm('one', 'app', 'changed'), cm('two', 'app', 'b')]), [
      'ConfigMap app/one differs from its manifest',
    ]);
    assert.deepEqual([...(await existingNamespaces(['app', 'nope', 'default']))].sort(), ['app', 'default']);
    assert.equal(await getJson('configmap', 'missing', 'app'), undefined);
    assert.equal((await getJson('configmap', 'two', 'app'))?.['data'] !== undefined, true);

    clearSecretsForTests();
    const secret: KubeObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', namespace: 'app' },
      data: {
        PASSWORD: Buffer.from('very-secret-value').toString('base64'),
        USER: Buffer.from('someone').toString('base64'),
      },
    };
    await applyObjects([secret], log);
    assert.deepEqual(await readSecret('app', 's', ['PASSWORD']), { PASSWORD: 'very-secret-value', USER: 'someone' });
    assert.equal(
      mask('pw=very-secret-value user=someone'),
      'pw=*** user=someone',
      'only the named keys are registered',
    );
    assert.equal(await readSecret('app', 'nope', []), undefined);
    const argvs = readCalls(dir).map((c) => c.argv.join(' '));
    assert.ok(
      !argvs.some(
        (a) => a.includes('very-secret-value') || a.includes(Buffer.from('very-secret-value').toString('base64')),
      ),
      'never in argv',
    );

    await assert.rejects(
      applyObjects([cm('x', 'nowhere', 'v')], log, { what: 'the test map' }),
      /kubectl apply of the test map failed/,
    );
    await assert.rejects(
      rolloutStatus('deployment', 'missing', 'app', 5, log),
      /deployment app\/missing did not become ready within 5s/,
    );

    assert.equal(await helmReleaseState(CERT_MANAGER_CHART), undefined);
    await helmUpgrade(CERT_MANAGER_CHART, certManagerValues(), 60, log);
    const state = await helmReleaseState(CERT_MANAGER_CHART);
    assert.deepEqual(state, {
      status: 'deployed',
      chart: 'cert-manager',
      version: CERT_MANAGER_CHART.version,
      values: certManagerValues(),
    });
    assert.deepEqual(
      helmReleaseDrift(CERT_MANAGER_CHART, state, certManagerValues()),
      [],
      'installed = pinned: the next run does not upgrade',
    );
    const issuer: KubeObject = {
      apiVersion: 'cert-manager.io/v1',
      kind: 'ClusterIssuer',
      metadata: { name: 'x' },
      spec: { selfSigned: {} },
    };
    assert.deepEqual(
      await applyObjects([issuer], log),
      ['clusterissuer.cert-manager.io/x created'],
      'the release installed the CRDs',
    );
    await assert.rejects(
      helmUpgrade({ ...CERT_MANAGER_CHART, version: 'v0.0.1' }, certManagerValues(), 60, log),
      /helm could not install cert-manager v0\.0\.1/,
    );
  } finally {
    restore();
  }
});

test("HelmChartConfig: applied only once k3s' helm-controller re-ran helm-install-<chart> with its values and it succeeded", async () => {
  const { helmChartConfigDrift, awaitHelmChartConfig, readHelmChartState } =
    await import('../../bootstrap/lib/helmchartconfig.mts');
  const { clusterObjects } = await import('../../bootstrap/remote/30_cluster_deps.mts');
  const settings = {
    stagingNamespace: 'codex-k8s-staging',
    runnerNamespace: 'arc-runners',
    registryPort: 5000,
    letsencryptEmail: 'ops@example.com',
    letsencryptServer: 'staging',
  } as const;
  const configOf = (mode: 'local' | 'server'): KubeObject =>
    clusterObjects({ ...settings, mode }).find((o) => o.kind === 'HelmChartConfig') as KubeObject;
  const server = configOf('server');
  const want = (server['spec'] as { valuesContent: string }).valuesContent;
  const complete = { created: '2026-12-05T10:00:05Z', conditions: [{ type: 'Complete', status: 'True' }] };

  // Pure: every way "accepted by the API server" is not yet "applied".
  assert.match(
    helmChartConfigDrift(server, { values: undefined, job: complete })[0] ?? '',
    /not applied by k3s yet: Secret kube-system\/chart-values-traefik holds no HelmChartConfig values/,
  );
  assert.match(helmChartConfigDrift(server, { values: 'other: 1', job: complete })[0] ?? '', /holds other values/);
  assert.match(
    helmChartConfigDrift(server, { values: want, job: undefined })[0] ?? '',
    /Job kube-system\/helm-install-traefik does not exist/,
  );
  assert.match(
    helmChartConfigDrift(server, { values: want, job: complete }, '2026-12-05T10:00:06.100Z')[0] ?? '',
    /before the HelmChartConfig changed/,
  );
  assert.deepEqual(
    helmChartConfigDrift(server, { values: want, job: complete }, '2026-12-05T10:00:05.900Z'),
    [],
    'the same second counts as after',
  );
  assert.match(
    helmChartConfigDrift(server, {
      values: want,
      job: {
        ...complete,
        conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'm' }],
      },
    })[0] ?? '',
    /helm-install-traefik failed \(BackoffLimitExceeded: m\)/,
  );
  assert.match(
    helmChartConfigDrift(server, { values: want, job: { ...complete, conditions: [] } })[0] ?? '',
    /has not completed yet/,
  );
  assert.deepEqual(helmChartConfigDrift(server, { values: want, job: complete }), []);

  // Against the doubles: our values (both modes) are accepted by the Traefik chart's own schema; the old shape fails, named.
  const { restore } = fakeServer();
  const log = new Logger();
  try {
    for (const mode of ['local', 'server'] as const) {
      const cfg = configOf(mode);
      assert.ok(
        helmChartConfigDrift(cfg, await readHelmChartState(cfg)).length > 0,
        `${mode}: a fresh k3s has not seen our values`,
      );
      const since = new Date().toISOString();
      await applyObjects([cfg], log);
      assert.match(
        await awaitHelmChartConfig(cfg, { since, timeoutSeconds: 10, log }),
        /k3s applied HelmChartConfig kube-system\/traefik: Job kube-system\/helm-install-traefik ran/,
      );
      assert.deepEqual(
        helmChartConfigDrift(cfg, await readHelmChartState(cfg)),
        [],
        `${mode}: the next check is clean`,
      );
    }
    const old: KubeObject = {
      ...server,
      spec: {
        valuesContent:
          'ports:\n  web:\n    redirections:\n      entryPoint: {to: websecure, scheme: https, permanent: true}\n',
      },
    };
    const since = new Date().toISOString();
    await applyObjects([old], log);
    await assert.rejects(
      awaitHelmChartConfig(old, { since, timeoutSeconds: 10, log }),
      (err: Error & { detail?: string; hint?: string }) => {
        assert.match(
          err.message,
          /k3s could not apply HelmChartConfig kube-system\/traefik: Job kube-system\/helm-install-traefik failed/,
        );
        assert.match(
          err.detail ?? '',
          /last 20 log lines of job\/helm-install-traefik:[\s\S]*values don't meet the specifications of the schema[\s\S]*redirections: additional property not allowed/,
        );
        assert.match(err.hint ?? '', /kubectl -n kube-system delete job helm-install-traefik/);
        return true;
      },
    );
  } finally {
    restore();
  }
});

/** A workload with the given containers (name -> image); `kind` picks where the pod spec sits. */
function workload(
  kind: 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'Job' | 'CronJob',
  name: string,
  containers: Record<string, string>,
  initContainers: Record<string, string> = {},
): KubeObject {
  const list = (m: Record<string, string>) => Object.entries(m).map(([n, image]) => ({ name: n, image }));
  const template = {
    metadata: { labels: { app: name } },
    spec: {
      ...(Object.keys(initContainers).length > 0 ? { initContainers: list(initContainers) } : {}),
      containers: list(containers),
      ...(kind === 'Job' || kind === 'CronJob' ? { restartPolicy: 'Never' } : {}),
    },
  };
  const spec =
    kind === 'CronJob'
      ? { schedule: '17 3 * * *', jobTemplate: { spec: { template } } }
      : kind === 'Job'
        ? { template }
        : { selector: { matchLabels: { app: name } }, template };
  return {
    apiVersion: kind === 'Job' || kind === 'CronJob' ? 'batch/v1' : 'apps/v1',
    kind,
    metadata: { name, namespace: 'app' },
    spec,
  };
}

test('moved: "<what> <from> -> <to>", the detail in parentheses only when there is one', () => {
  assert.equal(
    moved('k3s', 'v1.36.1+k3s1', 'v1.36.2+k3s1', 'upgraded by the install script'),
    'k3s v1.36.1+k3s1 -> v1.36.2+k3s1 (upgraded by the install script)',
  );
  assert.equal(
    moved('image of statefulset/postgres container postgres:', 'a:1', 'a:2'),
    'image of statefulset/postgres container postgres: a:1 -> a:2',
  );
  assert.equal(moved('x', '1', '2', ''), 'x 1 -> 2', 'an empty detail adds nothing');
});

test('imageMoves: one from/to line per container whose image moves, in every workload kind; none for a create', () => {
  const OLD = 'docker.io/pgvector/pgvector:0.8.5-pg17-bookworm';
  const NEW = 'docker.io/pgvector/pgvector:0.8.6-pg17-bookworm';
  assert.deepEqual(
    imageMoves(
      workload('StatefulSet', 'postgres', { postgres: OLD }),
      workload('StatefulSet', 'postgres', { postgres: NEW }),
    ),
    [`image of statefulset/postgres container postgres: ${OLD} -> ${NEW}`],
  );
  assert.deepEqual(
    imageMoves(undefined, workload('StatefulSet', 'postgres', { postgres: NEW })),
    [],
    'a first install is not a move',
  );
  assert.deepEqual(
    imageMoves(workload('Deployment', 'web', { web: NEW }), workload('Deployment', 'web', { web: NEW })),
    [],
    'same image',
  );
  for (const kind of ['Deployment', 'DaemonSet', 'Job', 'CronJob'] as const)
    assert.deepEqual(
      imageMoves(workload(kind, 'w', { c: 'i:1' }), workload(kind, 'w', { c: 'i:2' })),
      [`image of ${kind.toLowerCase()}/w container c: i:1 -> i:2`],
      kind,
    );
  assert.deepEqual(
    imageMoves(
      workload('Deployment', 'web', { web: 'w:1', sidecar: 's:1' }, { migrate: 'm:1' }),
      workload('Deployment', 'web', { web: 'w:2', sidecar: 's:1', added: 'a:1' }, { migrate: 'm:2' }),
    ),
    ['image of deployment/web container web: w:1 -> w:2', 'image of deployment/web init container migrate: m:1 -> m:2'],
    'only the moved ones; a container only one side has is no move',
  );
  const cm: KubeObject = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'x', namespace: 'app' },
    data: { image: 'a' },
  };
  assert.deepEqual(imageMoves({ ...cm, data: { image: 'b' } }, cm), [], 'not a workload');
  assert.deepEqual(
    imageMoves(workload('Job', 'w', { c: 'i:1' }), workload('CronJob', 'w', { c: 'i:2' })),
    [],
    'another kind',
  );
});

test('certManagerChange: a chart bump is a from/to line; values-only changes and a first install keep their wording', () => {
  const pin = CERT_MANAGER_CHART;
  const id = `helm release ${pin.namespace}/${pin.release}`;
  const at = (version: string): HelmReleaseState => ({
    status: 'deployed',
    chart: 'cert-manager',
    version,
    values: {},
  });
  assert.equal(
    certManagerChange(undefined, [`${id} is not installed`]),
    `cert-manager ${pin.version} installed (${id})`,
  );
  const old = at('v1.0.0');
  assert.equal(
    certManagerChange(old, helmReleaseDrift(pin, old, {})),
    `cert-manager v1.0.0 -> ${pin.version} (${id} upgraded)`,
  );
  const drift = helmReleaseDrift(pin, old, certManagerValues());
  assert.equal(
    certManagerChange(old, drift),
    `cert-manager v1.0.0 -> ${pin.version} (${id} upgraded; ${drift[1]})`,
    'other drift stays as the reason',
  );
  const values = helmReleaseDrift(pin, at(pin.version), certManagerValues());
  assert.equal(values.length, 1);
  assert.equal(certManagerChange(at(pin.version), values), `cert-manager ${pin.version} upgraded (${values[0]})`);
});

test("appliedName: kubectl apply's name of an object, the group after the lowercase kind", () => {
  assert.equal(appliedName(workload('Deployment', 'web', { web: 'i' })), 'deployment.apps/web');
  assert.equal(appliedName(workload('CronJob', 'backup', { c: 'i' })), 'cronjob.batch/backup');
  assert.equal(appliedName(cm('x', 'app', 'v')), 'configmap/x');
  assert.equal(
    appliedName({ apiVersion: 'helm.cattle.io/v1', kind: 'HelmChartConfig', metadata: { name: 'traefik' } }),
    'helmchartconfig.helm.cattle.io/traefik',
  );
});

test('applyObjects against the doubles: an image move is journaled from/to; a create is not; a failed read costs only the line', async () => {
  const { dir, restore } = fakeServer();
  const log = new Logger();
  try {
    await applyObjects([ns('app')], log);
    assert.deepEqual(
      await applyObjects([workload('Deployment', 'web', { web: 'docker.io/library/nginx:1.27' })], log),
      ['deployment.apps/web created'],
    );
    assert.deepEqual(
      await applyObjects(
        [cm('settings', 'app', 'v'), workload('Deployment', 'web', { web: 'docker.io/library/nginx:1.28' })],
        log,
      ),
      [
        'configmap/settings created',
        'deployment.apps/web configured',
        'image of deployment/web container web: docker.io/library/nginx:1.27 -> docker.io/library/nginx:1.28',
      ],
    );
    assert.deepEqual(
      await applyObjects([workload('Deployment', 'web', { web: 'docker.io/library/nginx:1.28' })], log),
      [],
    );
    writeFaults(dir, { 'kubectl get deployment web': { exitCode: 1, stderr: 'error: the server is on fire' } });
    assert.deepEqual(
      await applyObjects([workload('Deployment', 'web', { web: 'docker.io/library/nginx:1.29' })], log),
      ['deployment.apps/web configured'],
      'the apply still happens, without the move line',
    );
    const gets = readCalls(dir).filter((c) => c.argv.includes('get'));
    assert.ok(
      gets.some((c) => c.fault === 'kubectl get deployment web'),
      'the read was attempted and failed',
    );
  } finally {
    restore();
  }
});
