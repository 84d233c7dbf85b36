// The helm double (test/fakes/helm.mts), driven as a real process: pinning, revisions, values, chart rules,
// registry login, and its link with the kubectl double (namespaces, CRD kinds installed by a chart).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { seededDoubles, writeFile } from '../fakes/testkit.mts';
import { readCalls } from '../fakes/lib/recorder.mts';

const ARC = 'oci://ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set';

test('upgrade without an exact --version is refused as an unpinned chart, and changes nothing', () => {
  const { dir, h } = seededDoubles();
  const none = h(['upgrade', '--install', 'arc', ARC, '-n', 'arc-runners', '--create-namespace']);
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    /^Error: unpinned chart: "helm upgrade arc oci:\/\/ghcr\.io\/.*\/gha-runner-scale-set" has no --version/,
  );
  const range = h(['upgrade', '--install', 'arc', ARC, '--version', '^0.14.0']);
  assert.equal(range.code, 1);
  assert.match(range.stderr, /unpinned chart: --version "\^0\.14\.0" is not an exact version/);
  const tagged = h(['upgrade', '--install', 'arc', `${ARC}:0.14.2`, '--version', '0.14.2']);
  assert.match(tagged.stderr, /refuses a tag or digest in the chart ref/);
  const noRepo = h(['upgrade', '--install', 'cm', 'jetstack/cert-manager', '--version', 'v1.16.1']);
  assert.equal(noRepo.stderr.trim(), 'Error: repo jetstack not found');
  assert.equal(h(['list', '-A', '-o', 'json']).stdout, '[]\n');
  assert.ok(readCalls(dir).every((c) => !c.mutating));
});

test('upgrade --install: revisions bump like real helm; list/status/history/get values show the latest', () => {
  const { dir, h, k } = seededDoubles();
  // Revision mechanics only: the shipped ARC rule (values, effects) is exercised in test/unit/runner.test.mts.
  writeFile(dir, 'charts.json', JSON.stringify({ charts: { 'gha-runner-scale-set': { versions: ['0.14.2'] } } }));
  const values = writeFile(
    dir,
    'values.yaml',
    'githubConfigUrl: https://github.com/o/r\nminRunners: 0\nmaxRunners: 3\ntemplate:\n  spec:\n    serviceAccountName: runner\n',
  );
  const missingNs = h(['upgrade', '--install', 'arc', ARC, '--version', '0.14.2', '-n', 'arc-runners', '-f', values]);
  assert.equal(missingNs.code, 1);
  assert.equal(
    missingNs.stderr.trim(),
    'Error: INSTALLATION FAILED: create: failed to create: namespaces "arc-runners" not found',
  );

  const args = [
    'upgrade',
    '--install',
    'arc',
    ARC,
    '--version',
    '0.14.2',
    '-n',
    'arc-runners',
    '--create-namespace',
    '-f',
    values,
    '--set',
    'maxRunners=5,runnerGroup=default',
    '--wait',
    '--timeout',
    '10m',
  ];
  const first = h(args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^Release "arc" does not exist\. Installing it now\.\nNAME: arc\n/);
  assert.match(first.stdout, /\nSTATUS: deployed\nREVISION: 1\n/);
  assert.equal(
    k(['get', 'ns', 'arc-runners', '-o', 'jsonpath={.status.phase}']).stdout,
    'Active',
    '--create-namespace created it in the cluster',
  );

  const second = h(args);
  assert.match(second.stdout, /^Release "arc" has been upgraded\. Happy Helming!\n[\s\S]*REVISION: 2\n/);
  const list = JSON.parse(h(['list', '-A', '-o', 'json']).stdout) as Array<Record<string, string>>;
  assert.equal(list.length, 1);
  assert.deepEqual(
    { ...list[0], updated: undefined },
    {
      name: 'arc',
      namespace: 'arc-runners',
      revision: '2',
      updated: undefined,
      status: 'deployed',
      chart: 'gha-runner-scale-set-0.14.2',
      app_version: '0.14.2',
    },
  );
  const status = JSON.parse(h(['status', 'arc', '-n', 'arc-runners', '-o', 'json']).stdout) as Record<string, any>;
  assert.deepEqual(
    [status['version'], status['info']['status'], status['info']['description']],
    [2, 'deployed', 'Upgrade complete'],
  );
  const history = JSON.parse(h(['history', 'arc', '-n', 'arc-runners', '-o', 'json']).stdout) as Array<
    Record<string, unknown>
  >;
  assert.deepEqual(
    history.map((r) => [r['revision'], r['status']]),
    [
      [1, 'superseded'],
      [2, 'deployed'],
    ],
  );

  const got = JSON.parse(h(['get', 'values', 'arc', '-n', 'arc-runners', '-o', 'json']).stdout) as Record<
    string,
    unknown
  >;
  assert.deepEqual(
    got,
    {
      githubConfigUrl: 'https://github.com/o/r',
      minRunners: 0,
      maxRunners: 5,
      runnerGroup: 'default',
      template: { spec: { serviceAccountName: 'runner' } },
    },
    'values files merged, then --set (typed) on top',
  );

  const noValues = h(['upgrade', 'arc', ARC, '--version', '0.14.2', '-n', 'arc-runners']);
  assert.equal(noValues.code, 0, noValues.stderr);
  assert.deepEqual(
    JSON.parse(h(['get', 'values', 'arc', '-n', 'arc-runners', '-o', 'json']).stdout),
    got,
    'no values given: the previous ones are reused',
  );
  const upgrades = readCalls(dir).filter((c) => c.argv.includes('upgrade'));
  assert.deepEqual(
    upgrades.map((c) => [c.exitCode, c.mutating]),
    [
      [1, false],
      [0, true],
      [0, true],
      [0, true],
    ],
    'every successful upgrade is a new revision',
  );
  assert.match(upgrades[3]?.changes?.[0] ?? '', /revision 3 .*same chart and values as before/);

  const un = h(['uninstall', 'arc', '-n', 'arc-runners']);
  assert.deepEqual([un.code, un.stdout], [0, 'release "arc" uninstalled\n']);
  const gone = h(['status', 'arc', '-n', 'arc-runners']);
  assert.deepEqual([gone.code, gone.stderr.trim()], [1, 'Error: release: not found']);
  assert.equal(
    h(['uninstall', 'arc', '-n', 'arc-runners']).stderr.trim(),
    'Error: uninstall: Release not loaded: arc: release: not found',
  );
  assert.equal(path.basename(values), 'values.yaml');
});

test('charts.json rules: allowed versions, required values and a values hook', () => {
  const { dir, h, k } = seededDoubles();
  assert.equal(k(['create', 'namespace', 'arc-runners']).code, 0);
  fs.writeFileSync(
    path.join(dir, 'charts.json'),
    JSON.stringify({
      charts: {
        'gha-runner-scale-set': {
          versions: ['0.14.2'],
          requiredValues: ['githubConfigUrl'],
          hooks: ['secrets-by-reference'],
        },
      },
    }),
  );
  const base = ['upgrade', '--install', 'arc', ARC, '-n', 'arc-runners'];
  const wrongVersion = h([...base, '--version', '0.14.1', '--set', 'githubConfigUrl=https://github.com/o/r']);
  assert.equal(wrongVersion.code, 1);
  assert.match(
    wrongVersion.stderr,
    /^Error: chart "gha-runner-scale-set" version "0\.14\.1" not found in oci:.*charts\.json allows 0\.14\.2/,
  );
  const missing = h([...base, '--version', '0.14.2']);
  assert.match(
    missing.stderr,
    /values don't meet the specifications[\s\S]*gha-runner-scale-set:\n- githubConfigUrl: Required value/,
  );
  const token = 'ghp_0123456789abcdefNOTREAL';
  const inline = h(
    [...base, '--version', '0.14.2', '-f', '-'],
    `githubConfigUrl: https://github.com/o/r\ngithubConfigSecret:\n  github_token: ${token}\n`,
  );
  assert.equal(inline.code, 1);
  assert.match(inline.stderr, /- githubConfigSecret\.github_token: inline secret value in chart values/);
  assert.ok(!inline.stderr.includes(token), 'the hook does not echo the value');
  const byRef = h(
    [...base, '--version', '0.14.2', '-f', '-'],
    'githubConfigUrl: https://github.com/o/r\ngithubConfigSecret: arc-github-app\n',
  );
  assert.equal(byRef.code, 0, byRef.stderr);
  const badYaml = h([...base, '--version', '0.14.2', '-f', writeFile(dir, 'bad.yaml', 'a: [1, 2\n')]);
  assert.equal(badYaml.code, 1);
  assert.match(badYaml.stderr, /^Error: failed to parse .*bad\.yaml/);
});

test('a chart release installs its CRD kinds for the kubectl double (cert-manager needs crds.enabled=true)', () => {
  const { dir, h, k } = seededDoubles();
  // The shipped rule (test/fakes/charts.json) pins the version and insists on crds.enabled=true:
  const pinned = h([
    'upgrade',
    '--install',
    'cert-manager',
    'oci://quay.io/jetstack/charts/cert-manager',
    '--version',
    'v1.16.1',
    '-n',
    'cert-manager',
    '--create-namespace',
  ]);
  assert.match(pinned.stderr, /version "v1\.16\.1" not found .*charts\.json allows v\d/);
  const rules = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', 'fakes', 'charts.json'), 'utf8')) as {
    charts: Record<string, { versions: string[] }>;
  };
  const noCrds = h([
    'upgrade',
    '--install',
    'cert-manager',
    'oci://quay.io/jetstack/charts/cert-manager',
    '--version',
    rules.charts['cert-manager']?.versions[0] ?? '',
    '-n',
    'cert-manager',
    '--create-namespace',
  ]);
  assert.match(noCrds.stderr, /crds\.enabled: Required value[\s\S]*crds\.enabled: must be true/);
  // A test's own rule (state dir charts.json) replaces it: here, to see the CRD gating of a release without CRDs.
  writeFile(dir, 'charts.json', JSON.stringify({ charts: { 'cert-manager': { versions: ['v1.16.1'] } } }));
  assert.equal(
    h(['repo', 'add', 'jetstack', 'https://charts.jetstack.io']).stdout,
    '"jetstack" has been added to your repositories\n',
  );
  assert.equal(
    h(['repo', 'add', 'jetstack', 'https://charts.jetstack.io']).stdout,
    '"jetstack" already exists with the same configuration, skipping\n',
  );
  const install = [
    'upgrade',
    '--install',
    'cert-manager',
    'jetstack/cert-manager',
    '--version',
    'v1.16.1',
    '-n',
    'cert-manager',
    '--create-namespace',
  ];
  assert.equal(h(install).code, 0);
  const issuer =
    'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: letsencrypt}\nspec:\n  acme:\n    server: https://acme-staging-v02.api.letsencrypt.org/directory\n    privateKeySecretRef: {name: letsencrypt-key}\n    solvers: [{http01: {ingress: {ingressClassName: traefik}}}]\n';
  const early = k(['apply', '-f', '-'], issuer);
  assert.equal(early.code, 1);
  assert.match(early.stderr, /no matches for kind "ClusterIssuer"[\s\S]*installed without crds\.enabled=true/);
  assert.equal(h([...install, '--set', 'crds.enabled=true']).code, 0);
  const late = k(['apply', '-f', '-'], issuer);
  assert.deepEqual([late.code, late.stdout], [0, 'clusterissuer.cert-manager.io/letsencrypt created\n']);
  const badIssuer = k(
    ['apply', '-f', '-'],
    'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: x}\nspec: {acme: {server: s}, selfSigned: {}}\n',
  );
  assert.equal(badIssuer.code, 1);
  assert.match(badIssuer.stderr, /spec: exactly one of acme, ca, selfSigned, vault, venafi is required \(got 2\)/);
});

test('registry login: a password in argv is refused; --password-stdin works and is recorded by hash only', () => {
  const { dir, h } = seededDoubles();
  const password = 'pw-NOT-REAL-123456';
  const argv = h(['registry', 'login', 'ghcr.io', '-u', 'bot', '--password', password]);
  assert.equal(argv.code, 1);
  assert.match(argv.stderr, /refuses -p\/--password/);
  const login = h(['registry', 'login', 'ghcr.io', '-u', 'bot', '--password-stdin'], `${password}\n`);
  assert.deepEqual([login.code, login.stdout], [0, 'Login Succeeded\n']);
  const again = h(['registry', 'login', 'ghcr.io', '-u', 'bot', '--password-stdin'], `${password}\n`);
  assert.equal(again.code, 0);
  const logins = readCalls(dir).filter((c) => c.argv.includes('--password-stdin'));
  assert.deepEqual(
    logins.map((c) => c.mutating),
    [true, false],
    'the same credentials again change nothing',
  );
  assert.ok(logins.every((c) => typeof c.stdinSha256 === 'string'));
  const everything =
    fs.readFileSync(path.join(dir, 'calls.jsonl'), 'utf8') +
    fs.readFileSync(path.join(dir, 'helm', 'registries.json'), 'utf8');
  assert.equal(everything.split(password).length - 1, 1, 'the password appears only in the refused argv call');
  assert.equal(h(['version', '--short']).stdout, 'v3.19.2+g8766e71\n');
  assert.match(h(['install', 'x', ARC]).stderr, /^Error: unknown command "install" for "helm"/);
});

test("upgrade with values the real chart's schema refuses fails like helm: exit 1, the bad key named, nothing installed", () => {
  const { h } = seededDoubles();
  const ref = 'oci://quay.io/jetstack/charts/cert-manager';
  const base = [
    'upgrade',
    '--install',
    'cert-manager',
    ref,
    '--version',
    'v1.21.2',
    '-n',
    'cert-manager',
    '--create-namespace',
    '--set',
    'crds.enabled=true',
  ];
  const bad = h([...base, '--set', 'installCRDz=true']);
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /^Error: INSTALLATION FAILED: values don't meet the specifications of the schema\(s\)[\s\S]*cert-manager:\n[\s\S]*- installCRDz: additional property not allowed/,
  );
  assert.equal(h(['list', '-A', '-o', 'json']).stdout.includes('cert-manager'), false);
  const nested = h([...base, '--set', 'webhook.replicaCountt=2']);
  assert.match(nested.stderr, /- webhook\.replicaCountt: additional property not allowed/);
  assert.equal(h(base).code, 0);
});
