// 50_deploy_codex_k8s and the in-cluster build, without a cluster:
//   - manifests/buildkit and manifests/app rendered for both modes, validated like the kubectl double validates
//     them, and held to what the step promises (restricted app pod, rootless BuildKit, TLS only in server mode);
//   - the ConfigMap is byte for byte manifests/buildkit/build.sh, and a new script restarts the pod;
//   - build.sh itself, run for real (sh, and BusyBox's sh when installed) with a stub buildctl and a stub wget
//     that answers like BusyBox's (and, when BusyBox is installed, its real wget against a local registry stub);
//   - argv builders, source.json and the git rules, the image ownership rule, the upload of app/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NAMES, appImageTag } from '../../bootstrap/lib/manifests.mts';
import type { KubeObject, Mode } from '../../bootstrap/lib/manifests.mts';
import {
  BUILD_SCRIPT_FILE,
  PULL_REGISTRY_HOST,
  appSourceProblem,
  buildExecArgv,
  buildScriptText,
  buildScriptsConfigMap,
  chooseImage,
  contextTarArgv,
  existsExecArgv,
  gitAppStatusArgv,
  gitHeadArgv,
  internalTag,
  liveAppImage,
  parseBuildOutput,
  parseSourceJson,
  pullRef,
  pushRef,
  sha256Hex,
  sourceJson,
} from '../../bootstrap/lib/build.mts';
import {
  appObjects,
  appPodsArgv,
  appValues,
  deploymentHealth,
  podImageDrift,
  runtimeSecret,
  runtimeSecretDrift,
  WEBHOOK_SECRET_KEY,
} from '../../bootstrap/lib/service.mts';
import { buildkitObjects } from '../../bootstrap/lib/buildkit.mts';
import type { DeploySettings } from '../../bootstrap/lib/service.mts';
import { REGISTRY_HOSTNAME } from '../../bootstrap/lib/k3s.mts';
import { IMAGES } from '../../bootstrap/lib/versions.mts';
import { REMOTE, UPLOAD_ENTRIES } from '../../bootstrap/lib/paths.mts';
import { buildUploadTree, isAppTestPath } from '../../bootstrap/lib/upload.mts';
import { STEPS } from '../../bootstrap/lib/catalogue.mts';
import { validateObject } from '../fakes/lib/validate.mts';
import { kindByApiVersion } from '../fakes/lib/kinds.mts';
import type { K8sObject } from '../fakes/lib/kinds.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const MODES: Mode[] = ['local', 'server'];
const SHA = '0123456789abcdef0123456789abcdef01234567';
const TAG = 'sha-0123456789ab';
const KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';

const settings = (mode: Mode): DeploySettings => ({
  mode,
  stagingNamespace: 'codex-k8s-staging',
  runnerNamespace: 'arc-runners',
  registryPort: 5000,
  rolloutTimeout: 300,
  buildTimeout: 900,
  ...(mode === 'server' ? { domain: 'staging.example.com' } : {}),
});
const IMAGE = pullRef(5000, TAG);

function objectsOf(mode: Mode): KubeObject[] {
  return [
    ...buildkitObjects(settings(mode), buildScriptText()),
    ...appObjects(settings(mode), IMAGE),
    runtimeSecret('codex-k8s-staging', 'x'.repeat(64)),
  ];
}
const find = (objs: KubeObject[], kind: string, name: string): Record<string, any> => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o as Record<string, any>;
};

// ---------------------------------------------------------------------------------------------------------------
// Manifests

for (const mode of MODES) {
  test(`${mode} mode: BuildKit, app and runtime Secret pass the Kubernetes schema with unknown-field strictness`, async () => {
    for (const o of objectsOf(mode)) {
      const info = kindByApiVersion(o.apiVersion, o.kind);
      assert.ok(info, `${o.apiVersion} ${o.kind}`);
      assert.deepEqual(await validateObject(o as K8sObject, info), [], `${o.kind}/${o.metadata.name}`);
      for (const k of ['name', 'instance', 'component', 'part-of', 'managed-by'])
        assert.ok(o.metadata.labels?.[`app.kubernetes.io/${k}`], `${o.kind}/${o.metadata.name} label ${k}`);
    }
  });
}

test('the app: restricted pod, probes, rolling update without downtime, secrets by reference, the image given', () => {
  const objs = appObjects(settings('local'), IMAGE);
  const d = find(objs, 'Deployment', NAMES.app);
  assert.equal(d['metadata'].namespace, 'codex-k8s-staging');
  assert.deepEqual(d['spec'].strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  const pod = d['spec'].template.spec;
  assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, 1000);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.containers.length, 1);
  const c = pod.containers[0];
  assert.equal(c.name, NAMES.appContainer);
  assert.equal(c.image, IMAGE);
  assert.deepEqual(c.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  assert.deepEqual(c.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ['ALL'] },
  });
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.startupProbe.httpGet.path, '/healthz');
  assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 60, 'a minute to start');
  assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
  const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  assert.equal(env['PORT'], '8080');
  assert.deepEqual(env['DATABASE_URL'], { secretKeyRef: { name: NAMES.postgresSecret, key: 'DATABASE_URL' } });
  assert.equal(env['GITHUB_WEBHOOK_SECRET_FILE'], `/var/run/secrets/codex-k8s/${WEBHOOK_SECRET_KEY}`);
  const mount = c.volumeMounts.find((m: any) => m.mountPath === '/var/run/secrets/codex-k8s');
  assert.equal(mount.readOnly, true);
  const vol = pod.volumes.find((v: any) => v.name === mount.name);
  assert.equal(vol.secret.secretName, NAMES.appRuntimeSecret);
  assert.equal(vol.secret.defaultMode, 0o440);
  assert.ok(
    c.volumeMounts.some((m: any) => m.mountPath === '/tmp'),
    'a writable /tmp on a read-only root',
  );
  // Restricted: nothing in the pod may ask for more (no hostPath, no host namespaces, no added capabilities).
  assert.ok(!pod.volumes.some((v: any) => v.hostPath), 'no hostPath');
  assert.ok(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC);

  const svc = find(objs, 'Service', NAMES.app);
  assert.deepEqual(svc['spec'].ports, [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
  assert.deepEqual(svc['spec'].selector, d['spec'].selector.matchLabels);
  assert.deepEqual(
    d['spec'].selector.matchLabels,
    Object.fromEntries(Object.entries(d['spec'].template.metadata.labels).filter(([k]) => /name$|instance$/.test(k))),
  );
});

test('the Ingress: TLS through cert-manager and the domain in server mode; plain HTTP without host in local mode', () => {
  const server = find(appObjects(settings('server'), IMAGE), 'Ingress', NAMES.app);
  assert.equal(server['spec'].ingressClassName, 'traefik');
  assert.equal(server['metadata'].annotations['cert-manager.io/cluster-issuer'], NAMES.clusterIssuer);
  assert.deepEqual(server['spec'].tls, [{ hosts: ['staging.example.com'], secretName: NAMES.appTlsSecret }]);
  assert.equal(server['spec'].rules.length, 1);
  assert.equal(server['spec'].rules[0].host, 'staging.example.com');
  assert.deepEqual(server['spec'].rules[0].http.paths, [
    { path: '/', pathType: 'Prefix', backend: { service: { name: NAMES.app, port: { name: 'http' } } } },
  ]);

  const local = find(appObjects(settings('local'), IMAGE), 'Ingress', NAMES.app);
  assert.equal(local['spec'].ingressClassName, 'traefik');
  assert.equal(local['spec'].tls, undefined);
  assert.equal(local['metadata'].annotations, undefined, 'no certificate is asked for');
  assert.equal(local['spec'].rules[0].host, undefined, 'answers on the server address, any Host');
  assert.deepEqual(local['spec'].rules[0].http, server['spec'].rules[0].http);
  assert.deepEqual(Object.keys(appValues(settings('local'), IMAGE)).sort(), ['APP_IMAGE', 'STAGING_NAMESPACE']);
  assert.throws(() => appValues({ ...settings('server'), domain: undefined }, IMAGE), /STAGING_DOMAIN/);
});

test('BuildKit: rootless upstream securityContext, one pod, no listener, cache volume, the script mounted executable', () => {
  const objs = buildkitObjects(settings('local'), buildScriptText());
  const sts = find(objs, 'StatefulSet', NAMES.buildkitStatefulSet);
  assert.equal(sts['metadata'].namespace, NAMES.systemNamespace);
  assert.equal(sts['spec'].replicas, 1);
  assert.equal(`${sts['metadata'].name}-0`, NAMES.buildkitPod);
  const pod = sts['spec'].template.spec;
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, 1000, 'the uid the image maps in /etc/subuid');
  const c = pod.containers[0];
  assert.equal(c.name, NAMES.buildkitContainer);
  assert.equal(c.image, IMAGES.buildkit);
  assert.match(IMAGES.buildkit, /^docker\.io\/moby\/buildkit:v\d+\.\d+\.\d+-rootless$/);
  assert.deepEqual(c.args, ['--oci-worker-no-process-sandbox']);
  assert.deepEqual(c.securityContext, {
    seccompProfile: { type: 'Unconfined' },
    appArmorProfile: { type: 'Unconfined' },
    allowPrivilegeEscalation: true,
  });
  assert.equal(c.ports, undefined, 'no port: builds come through kubectl exec only');
  assert.ok(!objs.some((o) => o.kind === 'Service'), 'no Service');
  assert.deepEqual(c.env, [{ name: 'CODEXK8S_REGISTRY', value: NAMES.registryInCluster }]);
  assert.deepEqual(c.readinessProbe.exec.command, ['buildctl', 'debug', 'workers']);
  assert.ok(c.resources.limits.memory);
  const scripts = c.volumeMounts.find((m: any) => m.name === 'scripts');
  assert.equal(`${scripts.mountPath}/build.sh`, NAMES.buildkitScriptPath);
  assert.equal(pod.volumes.find((v: any) => v.name === 'scripts').configMap.name, NAMES.buildkitScripts);
  assert.equal(pod.volumes.find((v: any) => v.name === 'scripts').configMap.defaultMode, 0o555);
  assert.equal(c.volumeMounts.find((m: any) => m.name === 'cache').mountPath, '/home/user/.local/share/buildkit');
  assert.equal(sts['spec'].volumeClaimTemplates[0].metadata.name, 'cache');
  assert.equal(sts['spec'].volumeClaimTemplates[0].spec.storageClassName, 'local-path');
  assert.equal(objs[0]?.kind, 'ConfigMap', 'the ConfigMap is applied before the pod that mounts it');

  const role = find(objs, 'Role', NAMES.builderRole);
  assert.equal(role['metadata'].namespace, NAMES.systemNamespace);
  assert.deepEqual(role['rules'], [
    { apiGroups: [''], resources: ['pods'], resourceNames: [NAMES.buildkitPod], verbs: ['get'] },
    { apiGroups: [''], resources: ['pods/exec'], resourceNames: [NAMES.buildkitPod], verbs: ['get', 'create'] },
  ]);
  const rb = find(objs, 'RoleBinding', NAMES.builderRoleBinding);
  assert.deepEqual(rb['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: NAMES.builderRole });
  assert.deepEqual(rb['subjects'], [
    { kind: 'ServiceAccount', name: NAMES.runnerServiceAccount, namespace: 'arc-runners' },
  ]);
  assert.ok(!objs.some((o) => o.kind.startsWith('Cluster')), 'nothing cluster-wide');
  // The reasons are written where an engineer reads them.
  const yaml = readFileSync(join(ROOT, 'manifests/buildkit/buildkit.yaml'), 'utf8');
  assert.match(yaml, /cannot be labelled pod-security\.kubernetes\.io\/enforce: baseline/);
});

test('the ConfigMap is manifests/buildkit/build.sh byte for byte, and a new script restarts buildkitd-0', () => {
  const script = readFileSync(BUILD_SCRIPT_FILE, 'utf8');
  const cm = find(buildkitObjects(settings('local'), buildScriptText()), 'ConfigMap', NAMES.buildkitScripts);
  assert.equal(cm['metadata'].namespace, NAMES.systemNamespace);
  assert.deepEqual(Object.keys(cm['data']), ['build.sh']);
  assert.equal(cm['data']['build.sh'], script);
  const annotation = (s: string) =>
    find(buildkitObjects(settings('local'), s), 'StatefulSet', NAMES.buildkitStatefulSet)['spec'].template.metadata
      .annotations['codex-k8s.io/build-script-sha256'];
  assert.equal(annotation(script), sha256Hex(script));
  assert.notEqual(annotation(script + '# changed\n'), annotation(script));
  assert.deepEqual(buildScriptsConfigMap('x')['data'], { 'build.sh': 'x' });
  assert.ok(
    readFileSync(BUILD_SCRIPT_FILE).length > 0 &&
      execFileSync('stat', ['-c', '%a', BUILD_SCRIPT_FILE], { encoding: 'utf8' }).trim().endsWith('5'),
    'build.sh is executable in the repository',
  );
});

test('names agree across modules: pull registry host, catalogue order', () => {
  assert.equal(PULL_REGISTRY_HOST, REGISTRY_HOSTNAME, 'the Deployment pulls through the name registries.yaml maps');
  const names = STEPS.map((s) => s.name);
  assert.equal(names.indexOf('50_deploy_codex_k8s'), names.indexOf('40_postgres') + 1);
  assert.equal(names.indexOf('60_runner_arc'), names.indexOf('50_deploy_codex_k8s') + 1);
});

// ---------------------------------------------------------------------------------------------------------------
// argv builders, parsers, source.json, ownership

test('argv: the exec protocol of build.sh, the context tar, git', () => {
  assert.deepEqual(buildExecArgv(SHA), [
    'kubectl',
    '--kubeconfig',
    KUBECONFIG,
    '-n',
    'codex-k8s-system',
    'exec',
    '-i',
    'buildkitd-0',
    '-c',
    'buildkitd',
    '--',
    '/opt/codex-k8s-build/build.sh',
    'build',
    TAG,
    SHA,
  ]);
  assert.deepEqual(existsExecArgv(TAG), [
    'kubectl',
    '--kubeconfig',
    KUBECONFIG,
    '-n',
    'codex-k8s-system',
    'exec',
    'buildkitd-0',
    '-c',
    'buildkitd',
    '--',
    '/opt/codex-k8s-build/build.sh',
    'exists',
    TAG,
  ]);
  assert.throws(() => buildExecArgv('0123'), /not a full git commit SHA/);
  assert.throws(() => existsExecArgv('latest'), /not an image tag/);
  assert.deepEqual(contextTarArgv('/opt/codex-k8s-bootstrap/app', '/tmp/x/context.tar'), [
    'tar',
    '--create',
    '--file',
    '/tmp/x/context.tar',
    '--numeric-owner',
    '--owner=0',
    '--group=0',
    '--directory',
    '/opt/codex-k8s-bootstrap/app',
    '.',
  ]);
  assert.deepEqual(gitHeadArgv('/r'), ['git', '-C', '/r', 'rev-parse', '--verify', 'HEAD']);
  assert.deepEqual(gitAppStatusArgv('/r'), [
    'git',
    '-C',
    '/r',
    'status',
    '--porcelain',
    '--untracked-files=all',
    '--',
    'app',
  ]);
  assert.deepEqual(appPodsArgv('ns'), [
    'kubectl',
    '--kubeconfig',
    KUBECONFIG,
    '--namespace',
    'ns',
    'get',
    'pods',
    '-l',
    'app.kubernetes.io/name=codex-k8s,app.kubernetes.io/instance=codex-k8s',
    '-o',
    'json',
  ]);
  for (const argv of [buildExecArgv(SHA), existsExecArgv(TAG)])
    assert.ok(!argv.some((a) => /\s/.test(a)), 'one word per element, no shell string');
});

test('image references: push through the Service, pull through the node; tags parsed back', () => {
  assert.equal(pushRef(TAG), `registry.codex-k8s-system.svc.cluster.local:5000/codex-k8s:${TAG}`);
  assert.equal(pullRef(5123, TAG), `registry.codex-k8s.internal:5123/codex-k8s:${TAG}`);
  assert.equal(internalTag(pullRef(5123, TAG)), TAG);
  assert.equal(internalTag(pushRef(TAG)), TAG);
  assert.equal(internalTag('docker.io/library/registry:3.0.0'), undefined);
  assert.equal(internalTag('registry.codex-k8s.internal:5000/other:sha-0123456789ab'), undefined);
  assert.deepEqual(parseBuildOutput(`pushed ${pushRef(TAG)}\n`, TAG), { status: 'pushed', ref: pushRef(TAG) });
  assert.deepEqual(parseBuildOutput(`noise\nunchanged ${pushRef(TAG)}\n`, TAG), {
    status: 'unchanged',
    ref: pushRef(TAG),
  });
  assert.throws(() => parseBuildOutput('', TAG), /no result line/);
  assert.throws(() => parseBuildOutput(`pushed ${pushRef('sha-ffffffffffff')}`, TAG), /reported .* want/);
});

test('source.json: written only for a full SHA, read back strictly', () => {
  assert.equal(sourceJson(SHA), `{"gitSha":"${SHA}"}\n`);
  assert.throws(() => sourceJson('abc'), /not a full git commit SHA/);
  assert.deepEqual(parseSourceJson(sourceJson(SHA), 'f'), { gitSha: SHA });
  assert.throws(() => parseSourceJson('{', 'f'), /f is not JSON/);
  assert.throws(() => parseSourceJson('{"gitSha":"ABC"}', 'f'), /no gitSha of 40 lower-case hex/);
  assert.throws(() => parseSourceJson('[]', 'f'), /no gitSha/);
  assert.equal(appImageTag(SHA), TAG);
});

test('git rules: a clean app/ gives the commit; a change, an untracked file or no checkout is named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-git-'));
  const git = (...a: string[]) =>
    spawnSync('git', ['-C', dir, ...a], {
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@e',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@e',
      },
    });
  const res = (r: ReturnType<typeof git>) => ({ exitCode: r.status ?? 1, stdout: r.stdout, stderr: r.stderr });
  const state = () => {
    const head = res(spawnSync(gitHeadArgv(dir)[0] as string, gitHeadArgv(dir).slice(1), { encoding: 'utf8' }));
    const status =
      head.exitCode === 0 ? res(spawnSync('git', gitAppStatusArgv(dir).slice(1), { encoding: 'utf8' })) : undefined;
    return { head, problem: appSourceProblem(head, status) };
  };
  assert.match(state().problem ?? '', /not a git checkout/);
  git('init', '-q');
  mkdirSync(join(dir, 'app', 'src'), { recursive: true });
  writeFileSync(join(dir, 'app', 'src', 'server.mts'), 'a');
  writeFileSync(join(dir, '.gitignore'), 'node_modules/\n');
  assert.match(state().problem ?? '', /not a git checkout with a commit/, 'no commit yet');
  git('add', '.');
  git('commit', '-q', '-m', 'x');
  const clean = state();
  assert.equal(clean.problem, undefined);
  assert.match(clean.head.stdout.trim(), /^[0-9a-f]{40}$/);
  writeFileSync(join(dir, 'app', 'src', 'server.mts'), 'b');
  assert.match(state().problem ?? '', /app\/ has uncommitted changes \(M app\/src\/server\.mts\)/);
  git('checkout', '--', 'app');
  writeFileSync(join(dir, 'app', 'src', 'new.mts'), 'n');
  assert.match(state().problem ?? '', /\?\? app\/src\/new\.mts/);
  execFileSync('rm', [join(dir, 'app', 'src', 'new.mts')]);
  mkdirSync(join(dir, 'app', 'node_modules', 'pg'), { recursive: true });
  writeFileSync(join(dir, 'app', 'node_modules', 'pg', 'index.js'), '');
  writeFileSync(join(dir, 'README'), 'outside app/ does not matter');
  assert.equal(state().problem, undefined, 'ignored files and changes outside app/ do not count');
});

test('image ownership: build only without a Deployment; afterwards the live image, whatever the commit', () => {
  const first = chooseImage(undefined, 5000, SHA);
  assert.deepEqual(first, {
    image: pullRef(5000, TAG),
    build: true,
    why: `first deploy: the uploaded app/ at ${SHA.slice(0, 12)} is built as ${TAG}`,
  });
  assert.throws(() => chooseImage(undefined, 5000, undefined), /source\.json is missing/);
  const live = find(
    appObjects(settings('local'), pullRef(5000, 'sha-ffffffffffff')),
    'Deployment',
    NAMES.app,
  ) as KubeObject;
  const kept = chooseImage(live, 5000, SHA);
  assert.equal(kept.image, pullRef(5000, 'sha-ffffffffffff'), 'the workflow deployed another commit: kept');
  assert.equal(kept.build, false);
  assert.equal(chooseImage(live, 5000, undefined).image, pullRef(5000, 'sha-ffffffffffff'));
  assert.equal(liveAppImage(live), pullRef(5000, 'sha-ffffffffffff'));
  const renamed = JSON.parse(JSON.stringify(live)) as Record<string, any>;
  renamed['spec'].template.spec.containers[0].name = 'web';
  assert.throws(() => chooseImage(renamed as KubeObject, 5000, SHA), /has no container "app"/);
});

test('health: rollout state of the Deployment and the image of its pods', () => {
  const dep = (status: Record<string, number>, generation = 2) =>
    ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'codex-k8s', namespace: 'ns', generation },
      spec: { replicas: 1 },
      status,
    }) as any;
  assert.deepEqual(
    deploymentHealth(dep({ observedGeneration: 2, replicas: 1, updatedReplicas: 1, availableReplicas: 1 })),
    [],
  );
  assert.match(
    deploymentHealth(dep({ observedGeneration: 1, replicas: 1, updatedReplicas: 1, availableReplicas: 1 }))[0] ?? '',
    /has not seen generation 2/,
  );
  assert.match(
    deploymentHealth(dep({ observedGeneration: 2, replicas: 2, updatedReplicas: 1, availableReplicas: 1 }))[0] ?? '',
    /1 old pod\(s\) left/,
  );
  assert.match(
    deploymentHealth(dep({ observedGeneration: 2, replicas: 1, updatedReplicas: 1, availableReplicas: 0 }))[0] ?? '',
    /0\/1 available/,
  );
  const pod = (name: string, image: string, ready: boolean, deleting = false) => ({
    metadata: { name, ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec: { containers: [{ name: 'app', image }] },
    status: { containerStatuses: [{ name: 'app', ready }] },
  });
  assert.deepEqual(podImageDrift([pod('a', IMAGE, true), pod('old', 'x:1', false, true)], IMAGE), []);
  assert.deepEqual(podImageDrift([pod('b', 'x:1', true)], IMAGE), [`pod b runs x:1, want ${IMAGE}`]);
  assert.deepEqual(podImageDrift([pod('c', IMAGE, false)], IMAGE), [`pod c runs ${IMAGE} but is not ready`]);
});

test('the runtime Secret: base64 data under github-webhook-secret; drift against the file, never the value', () => {
  const value = 'f'.repeat(64);
  const s = runtimeSecret('ns', value) as Record<string, any>;
  assert.equal(s['metadata'].name, NAMES.appRuntimeSecret);
  assert.equal(Buffer.from(s['data'][WEBHOOK_SECRET_KEY], 'base64').toString('utf8'), value);
  assert.deepEqual(runtimeSecretDrift('ns', value, { [WEBHOOK_SECRET_KEY]: value }), []);
  assert.deepEqual(runtimeSecretDrift('ns', value, undefined), ['Secret ns/codex-k8s-runtime does not exist']);
  const rotated = runtimeSecretDrift('ns', 'e'.repeat(64), { [WEBHOOK_SECRET_KEY]: value });
  assert.deepEqual(rotated, [
    `Secret ns/codex-k8s-runtime: github-webhook-secret differs from ${REMOTE.webhookSecretFile}`,
  ]);
  assert.ok(!JSON.stringify(rotated).includes(value));
  assert.deepEqual(runtimeSecretDrift('ns', undefined, undefined), [
    `${REMOTE.webhookSecretFile} does not exist (the webhook secret is generated once)`,
    'Secret ns/codex-k8s-runtime does not exist',
  ]);
});

test('upload: app/ sources, package files and Dockerfile; never node_modules or tests; source.json is part of the hash', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-upload-'));
  const put = (rel: string, text = rel) => {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), text);
  };
  for (const f of [
    'bootstrap/remote/00_preflight.mts',
    'manifests/app/app.yaml',
    'package.json',
    'app/src/server.mts',
    'app/src/lib/db.mts',
    'app/package.json',
    'app/package-lock.json',
    'app/Dockerfile',
    'app/.dockerignore',
    'app/README.md',
    'app/src/server.test.mts',
    'app/test/app.test.mts',
    'app/node_modules/pg/index.js',
    'app/src/node_modules/x.js',
  ])
    put(f);
  put('package-lock.json', JSON.stringify({ packages: { '': {} } }));
  const tree = buildUploadTree(dir);
  assert.deepEqual(
    tree.files.filter((f) => f.startsWith('app/')),
    [
      'app/.dockerignore',
      'app/Dockerfile',
      'app/package-lock.json',
      'app/package.json',
      'app/src/lib/db.mts',
      'app/src/server.mts',
    ],
  );
  assert.ok(tree.entries.includes('app'));
  assert.ok(!tree.entries.includes('source.json'));
  const withSource = buildUploadTree(dir, { 'source.json': sourceJson(SHA) });
  assert.ok(withSource.entries.includes('source.json'));
  assert.notEqual(withSource.hash, tree.hash);
  assert.notEqual(
    buildUploadTree(dir, { 'source.json': sourceJson('f'.repeat(40)) }).hash,
    withSource.hash,
    'another commit is another upload',
  );
  assert.equal(buildUploadTree(dir, { 'source.json': sourceJson(SHA) }).hash, withSource.hash, 'stable');
  assert.throws(() => buildUploadTree(dir, { app: 'x' }), /must be a new top-level name/);
  for (const e of withSource.entries)
    assert.ok((UPLOAD_ENTRIES as readonly string[]).includes(e), `${e} is a documented upload entry`);
  assert.equal(isAppTestPath('app/src/a.spec.ts'), true);
  assert.equal(isAppTestPath('app/src/contest.mts'), false);
  // The real repository: what app/ holds now ships, tests excluded.
  if (existsSync(join(ROOT, 'app', 'Dockerfile'))) {
    const real = buildUploadTree(ROOT);
    assert.ok(real.files.includes('app/Dockerfile'));
    assert.ok(!real.files.some((f) => f.startsWith('app/') && isAppTestPath(f)));
  }
});

// ---------------------------------------------------------------------------------------------------------------
// build.sh, for real, with stub tools

interface Sandbox {
  dir: string;
  bin: string;
  registry: string;
  calls: string;
  env: Record<string, string>;
}

/**
 * A directory standing in for buildkitd-0: `registry/<tag>` files are the pushed tags. The stub wget answers the
 * manifest URL like BusyBox's wget does (status lines with -S on stderr, exit 1 on any HTTP error); the stub buildctl
 * checks its flags and the extracted context, then "pushes" by creating the tag file.
 */
function sandbox(opts: { registryDown?: boolean; buildctlFails?: boolean; pushVanishes?: boolean } = {}): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-buildsh-'));
  const bin = join(dir, 'bin');
  const registry = join(dir, 'registry');
  const calls = join(dir, 'calls');
  mkdirSync(bin);
  mkdirSync(registry);
  mkdirSync(join(dir, 'tmp'));
  writeFileSync(
    join(bin, 'wget'),
    `#!/bin/sh
printf 'wget' >>'${calls}'; for a in "$@"; do printf ' [%s]' "$a" >>'${calls}'; done; echo >>'${calls}'
for url in "$@"; do :; done
${opts.registryDown ? `echo "wget: can't connect to remote host (10.43.0.5): Connection refused" >&2; exit 1` : ''}
tag=\${url##*/}
if [ -e '${registry}'/"$tag" ]; then
  printf '  HTTP/1.1 200 OK\\n  Content-Type: application/vnd.oci.image.manifest.v1+json\\n  \\n' >&2
  exit 0
fi
printf '  HTTP/1.1 404 Not Found\\nwget: server returned error: HTTP/1.1 404 Not Found\\n' >&2
exit 1
`,
  );
  writeFileSync(
    join(bin, 'buildctl'),
    `#!/bin/sh
printf 'buildctl' >>'${calls}'; for a in "$@"; do printf ' [%s]' "$a" >>'${calls}'; done; echo >>'${calls}'
echo '#1 [internal] load build definition from Dockerfile' >&2
${opts.buildctlFails ? `echo 'error: failed to solve: process "/bin/sh -c npm ci" did not complete successfully: exit code: 1' >&2; exit 1` : ''}
ctx=; out=
while [ $# -gt 0 ]; do
  case $1 in --local) case $2 in context=*) ctx=\${2#context=} ;; esac; shift ;; --output) out=$2; shift ;; esac
  shift
done
ls -A "$ctx" | sort >'${dir}/context-listing'
cat "$ctx/Dockerfile" >'${dir}/context-dockerfile'
name=\${out#*name=}; name=\${name%%,*}
${opts.pushVanishes ? '' : `: >'${registry}'/"\${name##*:}"`}
echo '#9 pushing layers done' >&2
`,
  );
  chmodSync(join(bin, 'wget'), 0o755);
  chmodSync(join(bin, 'buildctl'), 0o755);
  return {
    dir,
    bin,
    registry,
    calls,
    env: { PATH: `${bin}:/usr/bin:/bin`, TMPDIR: join(dir, 'tmp'), CODEXK8S_REGISTRY: NAMES.registryInCluster },
  };
}

const SHELLS = ['sh', ...(spawnSync('busybox', ['true']).status === 0 ? ['busybox sh'] : [])];

function buildSh(
  shell: string,
  sb: Sandbox,
  args: string[],
  input: string | Buffer = '',
  env: Record<string, string> = sb.env,
) {
  const words = shell.split(' ');
  const r = spawnSync(words[0] as string, [...words.slice(1), BUILD_SCRIPT_FILE, ...args], {
    env,
    input,
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    calls: existsSync(sb.calls) ? readFileSync(sb.calls, 'utf8').trim().split('\n').filter(Boolean) : [],
  };
}

function contextTar(files: Record<string, string>): Buffer {
  const d = mkdtempSync(join(tmpdir(), 'ck8s-ctx-'));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(join(d, f, '..'), { recursive: true });
    writeFileSync(join(d, f), text);
  }
  return execFileSync('tar', ['-c', '-f', '-', '-C', d, '.'], { maxBuffer: 64 * 1024 * 1024 });
}

const ACCEPT =
  'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json';
const REF = `${NAMES.registryInCluster}/codex-k8s:${TAG}`;

for (const shell of SHELLS) {
  test(`build.sh (${shell}): arguments are checked before anything runs (exit 2)`, () => {
    const sb = sandbox();
    for (const args of [
      [],
      ['bogus'],
      ['exists'],
      ['exists', 'latest'],
      ['exists', TAG, 'x'],
      ['exists', 'sha-0123456789AB'],
      ['build', TAG],
      ['build', TAG, SHA.toUpperCase()],
      ['build', TAG, SHA.slice(0, 39)],
      ['build', 'sha-ffffffffffff', SHA],
      ['build', TAG, SHA, 'x'],
      ['build', `${TAG}0`, `${SHA}0`],
    ]) {
      const r = buildSh(shell, sb, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: build\.sh/);
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(buildSh(shell, sb, []).calls, [], 'no wget, no buildctl');
    assert.match(
      buildSh(shell, sb, ['build', 'sha-ffffffffffff', SHA]).stderr,
      /is not the tag of GIT_SHA .* \(want sha-0123456789ab\)/,
    );
  });

  test(`build.sh (${shell}): exists asks the registry for the manifest: present 0, absent 3, no answer 1`, () => {
    const sb = sandbox();
    const absent = buildSh(shell, sb, ['exists', TAG]);
    assert.equal(absent.code, 3, absent.stderr);
    assert.equal(absent.stdout, `absent ${REF}\n`);
    assert.deepEqual(absent.calls, [
      `wget [-q] [-S] [--spider] [--header] [${ACCEPT}] [http://${NAMES.registryInCluster}/v2/codex-k8s/manifests/${TAG}]`,
    ]);
    writeFileSync(join(sb.registry, TAG), '');
    const present = buildSh(shell, sb, ['exists', TAG]);
    assert.equal(present.code, 0, present.stderr);
    assert.equal(present.stdout, `present ${REF}\n`);
    const down = buildSh(shell, sandbox({ registryDown: true }), ['exists', TAG]);
    assert.equal(down.code, 1);
    assert.equal(down.stdout, '');
    assert.match(down.stderr, /did not answer .* with 200 or 404: wget: can't connect/);
    const unset = buildSh(shell, sb, ['exists', TAG], '', { ...sb.env, CODEXK8S_REGISTRY: '' });
    assert.equal(unset.code, 1);
    assert.match(unset.stderr, /CODEXK8S_REGISTRY is not set/);
  });

  test(`build.sh (${shell}): build of a new tag runs buildctl with the context from stdin and pushes`, () => {
    const sb = sandbox();
    const dockerfile = 'FROM node:24\nARG GIT_SHA\nCOPY src ./src\n';
    const r = buildSh(
      shell,
      sb,
      ['build', TAG, SHA],
      contextTar({ Dockerfile: dockerfile, 'package.json': '{}', 'src/server.mts': 'x' }),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `pushed ${REF}\n`, 'only the result line on stdout');
    assert.match(r.stderr, /building .* \(git 0123456789abcdef/);
    assert.match(r.stderr, /#9 pushing layers done/, "buildctl's progress goes to stderr");
    const buildctl = r.calls.filter((c) => c.startsWith('buildctl'));
    assert.equal(buildctl.length, 1);
    assert.match(
      buildctl[0] as string,
      new RegExp(
        `^buildctl \\[build\\] \\[--progress=plain\\] \\[--frontend\\] \\[dockerfile\\.v0\\] \\[--local\\] \\[context=(\\S+)/context\\] \\[--local\\] \\[dockerfile=\\1/context\\] ` +
          `\\[--opt\\] \\[build-arg:GIT_SHA=${SHA}\\] \\[--output\\] \\[type=image,name=${REF.replace(/\./g, '\\.')},push=true,registry\\.insecure=true\\]$`,
      ),
    );
    assert.deepEqual(readFileSync(join(sb.dir, 'context-listing'), 'utf8').trim().split('\n'), [
      'Dockerfile',
      'package.json',
      'src',
    ]);
    assert.equal(readFileSync(join(sb.dir, 'context-dockerfile'), 'utf8'), dockerfile);
    assert.equal(
      r.calls.filter((c) => c.startsWith('wget')).length,
      2,
      'looked up before, and verified after the push',
    );
    assert.deepEqual(readdirSync(join(sb.dir, 'tmp')), [], 'the extracted context is removed');
  });

  test(`build.sh (${shell}): a tag already pushed is unchanged, stdin drained, nothing built`, () => {
    const sb = sandbox();
    writeFileSync(join(sb.registry, TAG), '');
    // More than any pipe buffer: had the script not read it, the writer would fail with EPIPE.
    const big = contextTar({ Dockerfile: 'FROM x\n', blob: 'x'.repeat(4 * 1024 * 1024) });
    const r = buildSh(shell, sb, ['build', TAG, SHA], big);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `unchanged ${REF}\n`);
    assert.deepEqual(
      r.calls.filter((c) => c.startsWith('buildctl')),
      [],
    );
  });

  test(`build.sh (${shell}): a broken context, a failed build or a push the registry does not show are errors`, () => {
    const noDockerfile = sandbox();
    const a = buildSh(shell, noDockerfile, ['build', TAG, SHA], contextTar({ 'src/x.mts': 'x' }));
    assert.equal(a.code, 1);
    assert.match(a.stderr, /no Dockerfile at its root/);
    assert.deepEqual(
      a.calls.filter((c) => c.startsWith('buildctl')),
      [],
    );

    const notTar = buildSh(
      shell,
      sandbox(),
      ['build', TAG, SHA],
      'this is not a tar archive, just text that is long enough '.repeat(20),
    );
    assert.equal(notTar.code, 1);
    assert.match(notTar.stderr, /not a readable tar|no Dockerfile/);

    const failing = sandbox({ buildctlFails: true });
    const b = buildSh(shell, failing, ['build', TAG, SHA], contextTar({ Dockerfile: 'FROM x\n' }));
    assert.equal(b.code, 1);
    assert.equal(b.stdout, '');
    assert.match(b.stderr, /did not complete successfully[\s\S]*buildctl build of .* failed/);
    assert.deepEqual(readdirSync(join(failing.dir, 'tmp')), []);

    const vanished = buildSh(
      shell,
      sandbox({ pushVanishes: true }),
      ['build', TAG, SHA],
      contextTar({ Dockerfile: 'FROM x\n' }),
    );
    assert.equal(vanished.code, 1);
    assert.match(vanished.stderr, /pushed .* but the registry does not list it/);
    assert.doesNotMatch(vanished.stdout, /pushed/);

    const down = buildSh(
      shell,
      sandbox({ registryDown: true }),
      ['build', TAG, SHA],
      contextTar({ Dockerfile: 'FROM x\n' }),
    );
    assert.equal(down.code, 1, 'an unreachable registry is not "absent": nothing is built');
    assert.deepEqual(
      down.calls.filter((c) => c.startsWith('buildctl')),
      [],
    );
  });
}

test(
  'build.sh with the real BusyBox wget against a registry stub: 200 present, 404 absent, 500 an error',
  { skip: spawnSync('busybox', ['true']).status !== 0 && 'busybox is not installed' },
  async () => {
    const seen: Array<{ method: string; url: string; accept: string }> = [];
    const server = createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', accept: String(req.headers['accept']) });
      if (req.url?.endsWith(`/${TAG}`)) {
        res.writeHead(200, {
          'content-type': 'application/vnd.oci.image.manifest.v1+json',
          'docker-content-digest': 'sha256:' + '0'.repeat(64),
        });
        res.end('{}');
      } else if (req.url?.endsWith('/sha-eeeeeeeeeeee')) {
        res.writeHead(500);
        res.end('boom');
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const bin = mkdtempSync(join(tmpdir(), 'ck8s-bb-'));
      execFileSync('ln', ['-s', '/usr/bin/busybox', join(bin, 'wget')]);
      const env = { PATH: `${bin}:/usr/bin:/bin`, CODEXK8S_REGISTRY: `127.0.0.1:${port}` };
      const exists = (tag: string) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const p = spawn('busybox', ['sh', BUILD_SCRIPT_FILE, 'exists', tag], { env });
          let stdout = '';
          let stderr = '';
          p.stdout.on('data', (c: Buffer) => (stdout += c));
          p.stderr.on('data', (c: Buffer) => (stderr += c));
          p.on('close', (code: number | null) => resolve({ code, stdout, stderr }));
        });
      const present = await exists(TAG);
      assert.equal(present.code, 0, present.stderr);
      assert.equal(present.stdout, `present 127.0.0.1:${port}/codex-k8s:${TAG}\n`);
      const absent = await exists('sha-ffffffffffff');
      assert.equal(absent.code, 3, absent.stderr);
      assert.equal(absent.stdout, `absent 127.0.0.1:${port}/codex-k8s:sha-ffffffffffff\n`);
      const broken = await exists('sha-eeeeeeeeeeee');
      assert.equal(broken.code, 1);
      assert.match(broken.stderr, /did not answer .* with 200 or 404/);
      assert.deepEqual(seen[0], {
        method: 'GET',
        url: `/v2/codex-k8s/manifests/${TAG}`,
        accept: ACCEPT.slice('Accept: '.length),
      });
    } finally {
      server.close();
    }
  },
);
