// The k3s install script double (test/fakes/k3s-install.sh) under a fake root (CODEXK8S_FAKES_ROOT): files, modes,
// recorded version, idempotent re-runs, refusals, `k3s kubectl` delegation and the uninstall script.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FAKES_DIR, newStateDir, runProcess, SERVER_NODE_BIN } from '../fakes/testkit.mts';
import type { RunResult } from '../fakes/testkit.mts';
import { readCalls } from '../fakes/lib/recorder.mts';

const SCRIPT = path.join(FAKES_DIR, 'k3s-install.sh');
const V1 = 'v1.31.4+k3s1';
const V2 = 'v1.32.1+k3s1';

interface Fixture {
  dir: string;
  root: string;
  install(env: Record<string, string>, args?: string[]): RunResult;
}

function fixture(): Fixture {
  const dir = newStateDir();
  const root = fs.mkdtempSync(path.join(dir, 'root-'));
  return {
    dir,
    root,
    install: (env, args = []) =>
      runProcess('sh', [SCRIPT, ...args], { dir, env: { CODEXK8S_FAKES_ROOT: root, ...env } }),
  };
}

const mode = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8);

test('installs the k3s stand-in under the fake root and records the requested version', () => {
  const { dir, root, install } = fixture();
  const token = 'K10-not-a-real-token';
  const r = install(
    {
      INSTALL_K3S_VERSION: V1,
      INSTALL_K3S_EXEC: 'server --disable traefik --tls-san staging.example.com',
      K3S_TOKEN: token,
    },
    ['--write-kubeconfig-mode', '640', '--node-name', 'node1'],
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\[INFO\]  Using v1\.31\.4\+k3s1 as release/);
  const bin = path.join(root, 'usr/local/bin');
  assert.equal(mode(path.join(bin, 'k3s')), '755');
  assert.equal(fs.readlinkSync(path.join(bin, 'kubectl')), 'k3s');
  assert.ok(fs.existsSync(path.join(bin, 'k3s-uninstall.sh')) && fs.existsSync(path.join(bin, 'k3s-killall.sh')));
  const kubeconfig = path.join(root, 'etc/rancher/k3s/k3s.yaml');
  assert.equal(mode(kubeconfig), '640');
  assert.match(fs.readFileSync(kubeconfig, 'utf8'), /server: https:\/\/127\.0\.0\.1:6443/);
  const unit = fs.readFileSync(path.join(root, 'etc/systemd/system/k3s.service'), 'utf8');
  assert.match(unit, /^Type=exec$/m);
  assert.match(
    unit,
    /ExecStart=\/usr\/local\/bin\/k3s \\\n\t'server' \\\n\t'--disable' \\\n\t'traefik' \\\n\t'--tls-san' \\\n\t'staging\.example\.com'/,
  );
  assert.equal(mode(path.join(root, 'etc/systemd/system/k3s.service.env')), '600');

  const version = spawnSync(path.join(bin, 'k3s'), ['--version'], { encoding: 'utf8' });
  assert.equal(version.stdout.split('\n')[0], `k3s version ${V1} (fa4e0000)`);
  const cluster = JSON.parse(fs.readFileSync(path.join(dir, 'cluster.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual([cluster['version'], cluster['nodeName'], cluster['disabled']], [V1, 'node1', ['traefik']]);

  const [rec] = readCalls(dir);
  assert.equal(rec?.tool, 'k3s-install');
  assert.deepEqual(rec?.argv, ['--write-kubeconfig-mode', '640', '--node-name', 'node1']);
  assert.equal(rec?.mutating, true);
  assert.equal(rec?.exitCode, 0);
  const env = rec?.detail?.['env'] as Record<string, string>;
  assert.equal(env['INSTALL_K3S_VERSION'], V1);
  assert.equal(env['K3S_TOKEN'], '<redacted>');
  assert.ok(!fs.readFileSync(path.join(dir, 'calls.jsonl'), 'utf8').includes(token), 'the token is not in calls.jsonl');
  assert.ok(rec?.changes?.includes('wrote /etc/rancher/k3s/k3s.yaml (mode 640)'));
});

test('re-running with the same version changes nothing; a new version replaces the binary', () => {
  const { dir, root, install } = fixture();
  assert.equal(install({ INSTALL_K3S_VERSION: V1 }).code, 0);
  const binary = path.join(root, 'usr/local/bin/k3s');
  const before = fs.readFileSync(binary, 'utf8');
  assert.equal(mode(path.join(root, 'etc/rancher/k3s/k3s.yaml')), '600', 'default kubeconfig mode');

  const again = install({ INSTALL_K3S_VERSION: V1 });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Skipping binary downloaded, installed k3s matches hash/);
  assert.match(again.stdout, /Skipping \/usr\/local\/bin\/kubectl symlink to k3s, already exists/);
  assert.equal(fs.readFileSync(binary, 'utf8'), before);

  const upgrade = install({ INSTALL_K3S_VERSION: V2, K3S_KUBECONFIG_MODE: '644' });
  assert.equal(upgrade.code, 0, upgrade.stderr);
  assert.match(spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout, /^k3s version v1\.32\.1\+k3s1 /);
  assert.equal(mode(path.join(root, 'etc/rancher/k3s/k3s.yaml')), '644');
  const calls = readCalls(dir);
  assert.deepEqual(
    calls.map((c) => c.mutating),
    [true, false, true],
  );
  assert.equal(calls[1]?.changes, undefined);
  assert.deepEqual(calls[2]?.changes, [
    'wrote /usr/local/bin/k3s (mode 755)',
    'wrote /etc/rancher/k3s/k3s.yaml (mode 644)',
    'cluster v1.32.1+k3s1 up (cluster.json)',
  ]);
});

test('refuses an unpinned or malformed version, agents and unknown server flags (recorded, exit 1)', () => {
  const { dir, root, install } = fixture();
  const none = install({});
  assert.equal(none.code, 1);
  assert.match(none.stderr, /INSTALL_K3S_VERSION is required/);
  const malformed = install({ INSTALL_K3S_VERSION: '1.31.4' });
  assert.match(malformed.stderr, /INSTALL_K3S_VERSION=1\.31\.4 is not a k3s release \(want vX\.Y\.Z\+k3sN\)/);
  const typo = install({ INSTALL_K3S_VERSION: V1 }, ['--disabel', 'traefik']);
  assert.equal(typo.code, 1);
  assert.match(typo.stderr, /unknown k3s server flag --disabel/);
  const agent = install({ INSTALL_K3S_VERSION: V1, K3S_URL: 'https://10.0.0.1:6443' });
  assert.match(agent.stderr, /single server only/);
  assert.ok(!fs.existsSync(path.join(root, 'usr/local/bin/k3s')), 'nothing installed');
  assert.deepEqual(
    readCalls(dir).map((c) => [c.exitCode, c.mutating]),
    [
      [1, false],
      [1, false],
      [1, false],
      [1, false],
    ],
  );
  assert.deepEqual(readCalls(dir)[2]?.argv, ['--disabel', 'traefik']);
});

test('`k3s kubectl` reaches the kubectl double through its launcher; k3s-uninstall.sh removes everything', () => {
  const { dir, root, install } = fixture();
  assert.equal(install({ INSTALL_K3S_VERSION: V1 }, ['--node-name', 'node1']).code, 0);
  const env = {
    CODEXK8S_FAKES_ROOT: root,
    CODEXK8S_FAKES_KUBECTL: path.join(FAKES_DIR, 'bin', 'kubectl'),
    CODEXK8S_FAKES_NODE: SERVER_NODE_BIN,
    CODEXK8S_FAKES_HOME: FAKES_DIR,
  };
  const nodes = runProcess(path.join(root, 'usr/local/bin/k3s'), ['kubectl', 'get', 'nodes', '-o', 'name'], {
    dir,
    env,
  });
  assert.deepEqual([nodes.code, nodes.stdout], [0, 'node/node1\n'], nodes.stderr);
  const viaSymlink = runProcess(
    path.join(root, 'usr/local/bin/kubectl'),
    ['get', 'node', 'node1', '-o', 'jsonpath={.status.nodeInfo.kubeletVersion}'],
    { dir, env },
  );
  assert.equal(viaSymlink.stdout, V1);

  const un = runProcess('sh', [path.join(root, 'usr/local/bin/k3s-uninstall.sh')], {
    dir,
    env: { CODEXK8S_FAKES_ROOT: root },
  });
  assert.equal(un.code, 0, un.stderr);
  for (const f of [
    'usr/local/bin/k3s',
    'usr/local/bin/kubectl',
    'usr/local/bin/k3s-uninstall.sh',
    'etc/rancher/k3s/k3s.yaml',
    'etc/systemd/system/k3s.service',
  ]) {
    assert.ok(!fs.existsSync(path.join(root, f)), `${f} removed`);
  }
  assert.ok(
    !fs.existsSync(path.join(dir, 'cluster.json')) && !fs.existsSync(path.join(dir, 'objects')),
    'cluster state wiped',
  );
  const tools = readCalls(dir).map((c) => `${c.tool}:${c.mutating}`);
  assert.deepEqual(tools, ['k3s-install:true', 'kubectl:false', 'kubectl:false', 'k3s-uninstall:true']);
});

test('the shell doubles are shellcheck-clean', (t) => {
  if (spawnSync('shellcheck', ['--version']).status !== 0) {
    t.skip('shellcheck is not installed');
    return;
  }
  const files = [SCRIPT, path.join(FAKES_DIR, 'bin', 'kubectl'), path.join(FAKES_DIR, 'bin', 'helm')];
  const r = spawnSync('shellcheck', ['--severity=style', '-s', 'sh', ...files], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('`k3s server` writes containerd hosts.toml from registries.yaml like k3s: http stays http; the fault knob writes https', () => {
  const { dir, root, install } = fixture();
  assert.equal(install({ INSTALL_K3S_VERSION: V1 }).code, 0);
  const regDir = path.join(root, 'etc/rancher/k3s');
  fs.writeFileSync(
    path.join(regDir, 'registries.yaml'),
    [
      'mirrors:',
      '  "registry.codex-k8s.internal:5000":',
      '    endpoint:',
      '      - "http://127.0.0.1:5000"',
      '  "127.0.0.1:5000":',
      '    endpoint:',
      '      - "http://127.0.0.1:5000"',
      '',
    ].join('\n'),
  );
  const env = {
    CODEXK8S_FAKES_K3S_SERVER_ONCE: '1',
    CODEXK8S_FAKES_NODE: SERVER_NODE_BIN,
    CODEXK8S_FAKES_HOME: FAKES_DIR,
  };
  const start = (): RunResult => runProcess(path.join(root, 'usr/local/bin/k3s'), ['server'], { dir, env });
  const certs = path.join(root, 'var/lib/rancher/k3s/agent/etc/containerd/certs.d');
  const hostsToml = path.join(certs, 'registry.codex-k8s.internal:5000', 'hosts.toml');

  const first = start();
  assert.equal(first.code, 0, first.stderr);
  assert.equal(
    fs.readFileSync(hostsToml, 'utf8'),
    [
      '# File generated by k3s. DO NOT EDIT.',
      'server = "https://registry.codex-k8s.internal:5000/v2"',
      'capabilities = ["pull", "resolve", "push"]',
      '',
      '[host."http://127.0.0.1:5000/v2"]',
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n'),
  );
  // Like k3s: the only endpoint of 127.0.0.1:5000 is its (http, localhost) default, so no file is written for it.
  assert.deepEqual(fs.readdirSync(certs), ['registry.codex-k8s.internal:5000']);

  const again = start();
  assert.equal(again.code, 0, again.stderr);

  fs.writeFileSync(path.join(dir, 'k3s-server-faults.json'), JSON.stringify({ httpsEndpoints: true }));
  assert.equal(start().code, 0);
  assert.match(fs.readFileSync(hostsToml, 'utf8'), /^\[host\."https:\/\/127\.0\.0\.1:5000\/v2"\]$/m);

  fs.writeFileSync(path.join(dir, 'k3s-server-faults.json'), JSON.stringify({ httpsEndpoint: true }));
  const typo = start();
  assert.equal(typo.code, 1);
  assert.match(typo.stderr, /unknown key "httpsEndpoint"/);
  fs.rmSync(path.join(dir, 'k3s-server-faults.json'));

  fs.writeFileSync(
    path.join(regDir, 'registries.yaml'),
    'mirrors:\n  "x:5000":\n    endpoints:\n      - "http://127.0.0.1:5000"\n',
  );
  const bad = start();
  assert.equal(bad.code, 1, 'a registries.yaml k3s would refuse fails the start');
  assert.match(bad.stderr, /mirrors\."x:5000": unknown key "endpoints"/);

  const servers = readCalls(dir).filter((c) => c.tool === 'k3s-server');
  assert.deepEqual(
    servers.map((c) => [c.exitCode, c.mutating]),
    [
      [0, true],
      [0, false],
      [0, true],
      [1, false],
      [1, false],
    ],
  );
  assert.deepEqual(servers[0]?.changes, [
    'wrote /var/lib/rancher/k3s/agent/etc/containerd/certs.d/registry.codex-k8s.internal:5000/hosts.toml',
  ]);
});
