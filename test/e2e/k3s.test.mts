// Step 20 (k3s) end to end: the real launcher runs steps 00, 10, 20 against a sandbox server, with the k3s install
// double served from the artifact mirror where the pinned install script would come from.
// Proven for real: the script's sha256 is checked (a tampered mirror copy changes nothing), registries.yaml on disk,
// the generated hosts.toml read back after the (re)start (the double generates it from registries.yaml the way k3s
// does), the kubeconfig's mode and owner, a re-run that changes nothing, and a loud failure on an https hosts.toml.
// Through the double: the k3s binary, the cluster and node Ready.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { K3S_VERSION, K3S_INSTALL } from '../../bootstrap/lib/versions.mts';
import { registriesYaml } from '../../bootstrap/lib/k3s.mts';
import { accountCommands } from '../../bootstrap/lib/harden/operator.mts';

let t: Target;
const CERTS = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d';
const HOSTS_TOML = `${CERTS}/registry.codex-k8s.internal:5000/hosts.toml`;
const STEP20 = /^20_/;
// The steps each run takes. CODEXK8S_E2E_K3S_STEPS=00,20 isolates step 20 from a step 10 under repair (the
// operator user is then created here, as step 10 would).
const ONLY = process.env['CODEXK8S_E2E_K3S_STEPS'] ?? '00,10,20';

const calls = () => t.doublesCalls();
const mutating = async () => (await calls()).filter((c) => c.mutating);

function step20Footer(output: string): string | undefined {
  const f = footers(output);
  const key = Object.keys(f).find((k) => STEP20.test(k));
  return key === undefined ? undefined : f[key];
}

async function exists(path: string): Promise<boolean> {
  return (await t.sb.exec(['test', '-e', path], { allowFail: true })).exitCode === 0;
}

describe('20_install_k3s against a sandbox server', { concurrency: false }, () => {
  const mirrorScript = (): string => join(t.dir, 'mirror', K3S_INSTALL.name, K3S_INSTALL.files.x64);
  let pristine: Buffer;

  before(async () => {
    t = await startTarget();
    if (!ONLY.split(',').includes('10')) await t.sb.exec(accountCommands.create('codex'));
    pristine = readFileSync(mirrorScript());
  });
  after(async () => {
    await t?.stop();
  });

  it('a tampered install script on the mirror is refused with a clear message, and nothing changes', async () => {
    writeFileSync(mirrorScript(), Buffer.concat([pristine, Buffer.from('\necho tampered\n')]));
    try {
      const r = await t.launch(['--yes', '--only', ONLY]);
      assert.equal(r.code, 1, r.output);
      assert.equal(step20Footer(r.output), 'x failed', r.output);
      assert.match(
        r.output,
        /sha256 mismatch for k3s-install [0-9a-f]{12} \(x64\) from http:\/\/\S+\/k3s-install\/install\.sh: expected [0-9a-f]{64}, got [0-9a-f]{64}/,
      );
      assert.match(r.output, /CODEXK8S_ARTIFACT_MIRROR=http:\/\/\S+ \(serving k3s-install\/<file>\)/);
      assert.match(r.output, /CODEXK8S_ARTIFACT_SHA256_OVERRIDES \(k3s-install:x64\)/);
    } finally {
      writeFileSync(mirrorScript(), pristine);
    }
    assert.ok(
      t.mirror.requests.some((q) => q.path === '/k3s-install/install.sh'),
      'the script was fetched from the mirror',
    );
    for (const p of [
      '/usr/local/bin/k3s',
      '/etc/systemd/system/k3s.service',
      '/etc/rancher/k3s/registries.yaml',
      '/etc/rancher/k3s/k3s.yaml',
      CERTS,
    ]) {
      assert.equal(await exists(p), false, `${p} must not exist after a refused download`);
    }
    assert.deepEqual(
      (await calls()).filter((c) => c.tool.startsWith('k3s')),
      [],
      'the installer never ran',
    );
    const leftovers = await t.sb.exec(['sh', '-c', 'ls -A /var/lib/codex-k8s-bootstrap | grep k3s-install || true']);
    assert.equal(leftovers.stdout.trim(), '', 'no temp dir left behind');
  });

  it('the first run installs k3s with the pinned version and flags, and has the real effects', async () => {
    const r = await t.launch(['--yes', '--only', ONLY]);
    assert.equal(r.code, 0, r.output);
    assert.match(step20Footer(r.output) ?? '', /^\+ changed \d+$/, r.output);

    const installs = (await calls()).filter((c) => c.tool === 'k3s-install');
    assert.equal(installs.length, 1);
    assert.deepEqual(installs[0]?.argv, [
      'server',
      '--write-kubeconfig-mode',
      '600',
      '--cluster-cidr',
      '10.42.0.0/16',
      '--service-cidr',
      '10.43.0.0/16',
    ]);
    assert.equal(installs[0]?.detail?.env?.['INSTALL_K3S_VERSION'], K3S_VERSION);
    assert.equal(
      (await t.sb.exec(['/usr/local/bin/k3s', '--version'])).stdout.split('\n')[0],
      `k3s version ${K3S_VERSION} (fa4e0000)`,
    );
    assert.equal((await t.sb.exec(['systemctl', 'is-active', 'k3s'], { allowFail: true })).stdout.trim(), 'active');

    assert.equal((await t.sb.exec(['cat', '/etc/rancher/k3s/registries.yaml'])).stdout, registriesYaml(5000));
    assert.equal(
      (await t.sb.exec(['stat', '-c', '%a %U', '/etc/rancher/k3s/registries.yaml'])).stdout.trim(),
      '600 root',
    );
    const hosts = (await t.sb.exec(['cat', HOSTS_TOML])).stdout;
    assert.match(hosts, /^\[host\."http:\/\/127\.0\.0\.1:5000\/v2"\]$/m, hosts);
    assert.doesNotMatch(hosts, /https:\/\/127\.0\.0\.1/);
    assert.ok(
      (await calls()).some((c) => c.tool === 'k3s-server' && c.mutating),
      'hosts.toml was generated by the (re)started service',
    );

    const kube = await t.sb.exec(['stat', '-c', '%a %U %G', '/home/codex/.kube', '/home/codex/.kube/config']);
    assert.deepEqual(kube.stdout.trim().split('\n'), ['700 codex codex', '600 codex codex']);
    const [copy, orig] = await Promise.all([
      t.sb.exec(['cat', '/home/codex/.kube/config']),
      t.sb.exec(['cat', '/etc/rancher/k3s/k3s.yaml']),
    ]);
    assert.equal(copy.stdout, orig.stdout);
    assert.equal((await t.sb.exec(['stat', '-c', '%a', '/etc/rancher/k3s/k3s.yaml'])).stdout.trim(), '600');
    // The copied kubeconfig reaches the cluster (as root: the kubectl double keeps its state in a root-owned dir).
    const viaCopy = await t.sb.exec([
      'kubectl',
      '--kubeconfig',
      '/home/codex/.kube/config',
      'get',
      'nodes',
      '-o',
      'name',
    ]);
    assert.match(viaCopy.stdout, /^node\//);
  });

  it('the second run is unchanged and records no mutating call', async () => {
    const before = (await mutating()).length;
    const requests = t.mirror.requests.filter((q) => q.path.startsWith('/k3s-install/')).length;
    const r = await t.launch(['--yes', '--only', ONLY]);
    assert.equal(r.code, 0, r.output);
    assert.equal(step20Footer(r.output), '= unchanged', r.output);
    assert.deepEqual((await mutating()).slice(before), [], 'no mutating call');
    assert.equal(
      t.mirror.requests.filter((q) => q.path.startsWith('/k3s-install/')).length,
      requests,
      'the script is not downloaded again',
    );
  });

  it('a k3s that writes an https hosts.toml (k3s #12551) fails the step loudly, with the runbook pointer', async () => {
    await t.sb.exec([
      'sh',
      '-c',
      'echo \'{"httpsEndpoints": true}\' > /var/lib/codex-k8s-fakes/k3s-server-faults.json && systemctl restart k3s',
    ]);
    await t.sb.exec([
      'sh',
      '-c',
      `for i in $(seq 1 50); do grep -q 'https://127' '${HOSTS_TOML}' && exit 0; sleep 0.2; done; exit 1`,
    ]);
    const r = await t.launch(['--yes', '--only', ONLY]);
    assert.equal(r.code, 1, r.output);
    assert.match(
      r.output,
      /~ \S+hosts\.toml uses https:\/\/127\.0\.0\.1:5000\/v2, want http:\/\/127\.0\.0\.1:5000 \(k3s #12551\)/,
    );
    assert.match(r.output, /k3s generated an https endpoint for the http in-cluster registry/);
    assert.match(r.output, /docs\/runbook\.md, "k3s pulls from the in-cluster registry over https"/);

    await t.sb.exec(['rm', '/var/lib/codex-k8s-fakes/k3s-server-faults.json']);
    const fixed = await t.launch(['--yes', '--only', ONLY]);
    assert.equal(fixed.code, 0, fixed.output);
    assert.match(fixed.output, /\+ restarted k3s/);
    assert.match((await t.sb.exec(['cat', HOSTS_TOML])).stdout, /^\[host\."http:\/\/127\.0\.0\.1:5000\/v2"\]$/m);
  });
});
