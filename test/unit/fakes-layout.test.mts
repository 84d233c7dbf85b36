// test/fakes/install-layout.mts: the files the sandbox harness copies. The overlay is copied into a temp root
// and the doubles are run from there through their launchers, so a missing package or file shows up here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fakesOverlayFiles, FAKES_HOME } from '../fakes/install-layout.mts';
import { newStateDir, REPO_ROOT, runProcess, seedCluster, SERVER_NODE_BIN } from '../fakes/testkit.mts';
import { NODE } from '../../bootstrap/lib/versions.mts';

function copyOverlay(root: string): void {
  for (const f of fakesOverlayFiles()) {
    const dest = path.join(root, f.dest);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(f.src, dest);
    fs.chmodSync(dest, f.mode);
  }
}

/**
 * The server's Node (native type stripping): $CODEXK8S_TEST_NODE24, or extracted from the tarball the sandbox
 * harness caches (test/sandbox/sandbox.mts prepareNodeMirror); undefined when neither exists (the test skips).
 */
function serverNode(dir: string): string | undefined {
  const fromEnv = process.env['CODEXK8S_TEST_NODE24'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const name = `node-v${NODE.version}-linux-x64`;
  const caches = [
    path.join(process.env['CODEXK8S_SANDBOX_CACHE'] ?? '/var/cache/codex-k8s-sandbox', 'node-mirror'),
    path.join(REPO_ROOT, 'test', '.cache', 'node-mirror'),
  ];
  const tarball = caches.map((c) => path.join(c, `${name}.tar.xz`)).find((t) => fs.existsSync(t));
  if (process.arch !== 'x64' || tarball === undefined) return undefined;
  const r = spawnSync('tar', ['-xJf', tarball, '-C', dir, `${name}/bin/node`]);
  return r.status === 0 ? path.join(dir, name, 'bin', 'node') : undefined;
}

test('the overlay lists the doubles, their launchers and every package they import, nothing host-only', () => {
  const files = fakesOverlayFiles();
  const dests = new Set(files.map((f) => f.dest));
  for (const d of [
    `${FAKES_HOME}/kubectl.mts`,
    `${FAKES_HOME}/helm.mts`,
    `${FAKES_HOME}/lib/recorder.mts`,
    `${FAKES_HOME}/charts.json`,
    `${FAKES_HOME}/k3s-install.sh`,
    '/usr/local/bin/kubectl',
    '/usr/local/bin/helm',
    `${FAKES_HOME}/node_modules/yaml/package.json`,
    `${FAKES_HOME}/node_modules/kubernetes-models/apps/v1/Deployment.js`,
    `${FAKES_HOME}/node_modules/@kubernetes-models/apimachinery/package.json`,
    `${FAKES_HOME}/node_modules/ajv/package.json`,
  ]) {
    assert.ok(dests.has(d), `${d} is in the overlay`);
  }
  // kubernetes-models 5's own validate/base sit nested under it: cert-manager 4.4.2 keeps the older ones at the top.
  assert.ok(
    [...dests].some((d) =>
      /\/node_modules\/kubernetes-models\/node_modules\/@kubernetes-models\/validate\/package\.json$/.test(d),
    ),
    'validate 5 is in the overlay',
  );
  assert.ok(
    ![...dests].some((d) => d.endsWith('/testkit.mts') || d.endsWith('/install-layout.mts') || d.endsWith('.d.ts')),
    'no host-only files, no typings',
  );
  assert.equal(dests.size, files.length, 'no destination twice');
  assert.ok(files.every((f) => fs.existsSync(f.src)));
  assert.equal(files.find((f) => f.dest === '/usr/local/bin/kubectl')?.mode, 0o755);
  assert.match(
    fs.readFileSync(files.find((f) => f.dest === '/usr/local/bin/helm')?.src ?? '', 'utf8'),
    /exec "\$NODE" --disable-warning=ExperimentalWarning "\$FAKES_HOME\/helm\.mts" "\$@"/,
  );
});

test('copied into an empty root, the doubles run from their launchers; without the server node the launcher says so', () => {
  const dir = newStateDir();
  const root = path.join(dir, 'root');
  copyOverlay(root);
  const kubeconfig = seedCluster(dir);
  const env = { CODEXK8S_FAKES_NODE: SERVER_NODE_BIN, CODEXK8S_FAKES_HOME: path.join(root, FAKES_HOME) };
  const apply = runProcess(path.join(root, 'usr/local/bin/kubectl'), ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
    dir,
    env,
    stdin:
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx, imagePullPolicyy: Always}]}\n',
  });
  assert.equal(apply.code, 1, 'validation ran with the copied kubernetes-models');
  assert.match(apply.stderr, /spec\.template\.spec\.containers\[0\]\.imagePullPolicyy: unknown field/);
  // The vendored upstream data travels too: a HelmChartConfig is checked against helm-controller's CRD in the copy.
  const hcc = runProcess(path.join(root, 'usr/local/bin/kubectl'), ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
    dir,
    env,
    stdin:
      'apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik, namespace: kube-system}\nspec: {valuesContnet: x}\n',
  });
  assert.match(hcc.stderr, /unknown field "spec\.valuesContnet"/, hcc.stderr);
  const helm = runProcess(path.join(root, 'usr/local/bin/helm'), ['version', '--short'], { dir, env });
  assert.deepEqual([helm.code, helm.stdout], [0, 'v3.19.2+g8766e71\n'], helm.stderr);

  const noNode = runProcess('sh', [path.join(root, 'usr/local/bin/kubectl'), 'get', 'nodes'], {
    dir,
    env: { CODEXK8S_FAKES_NODE: path.join(dir, 'no-such-node') },
  });
  assert.equal(noNode.code, 127);
  assert.match(noNode.stderr, /kubectl \(codex-k8s test double\): .*no-such-node is missing or not executable/);
});

test(`on the server's Node ${NODE.version} (native type stripping, no loader) the copied doubles run`, (t) => {
  const dir = newStateDir();
  const node = serverNode(dir);
  if (node === undefined) {
    t.skip(`no Node ${NODE.version}: set CODEXK8S_TEST_NODE24 or build the sandbox node mirror cache`);
    return;
  }
  const root = path.join(dir, 'root');
  copyOverlay(root);
  const kubeconfig = seedCluster(dir);
  const env = { CODEXK8S_FAKES_NODE: node, CODEXK8S_FAKES_HOME: path.join(root, FAKES_HOME) };
  const manifest =
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: staging}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: staging}\ndata: {a: b}\n';
  const first = runProcess(path.join(root, 'usr/local/bin/kubectl'), ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
    dir,
    env,
    stdin: manifest,
  });
  assert.deepEqual(
    [first.code, first.stdout, first.stderr],
    [0, 'namespace/staging created\nconfigmap/c created\n', ''],
  );
  const second = runProcess(
    path.join(root, 'usr/local/bin/kubectl'),
    ['--kubeconfig', kubeconfig, 'apply', '-f', '-'],
    { dir, env, stdin: manifest },
  );
  assert.equal(second.stdout, 'namespace/staging unchanged\nconfigmap/c unchanged\n');
  const helm = runProcess(
    path.join(root, 'usr/local/bin/helm'),
    ['--kubeconfig', kubeconfig, 'list', '-A', '-o', 'json'],
    { dir, env },
  );
  assert.deepEqual([helm.code, helm.stdout, helm.stderr], [0, '[]\n', '']);
});
