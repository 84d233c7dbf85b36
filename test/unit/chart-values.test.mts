// Every values document the steps hand to a chart, checked against that chart's own upstream definition at our pin
// (test/fixtures/upstream/, PROVENANCE.md), and proof that the check refuses what the real chart refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { CHART_VALUES_SOURCES, chartValuesProblems } from '../fakes/lib/chart-values.mts';
import { certManagerValues } from '../../bootstrap/remote/30_cluster_deps.mts';
import { controllerValues, scaleSetValues } from '../../bootstrap/remote/60_runner_arc.mts';
import type { RunnerSettings } from '../../bootstrap/lib/runners.mts';
import { IMAGES } from '../../bootstrap/lib/versions.mts';

// As test/unit/runner.test.mts builds them (min/max by mode, as .env's defaults give).
const runner = (mode: 'server' | 'local'): RunnerSettings => ({
  mode,
  stagingNamespace: 'codex-k8s-staging',
  runnerNamespace: 'arc-runners',
  scaleSetName: 'codex-k8s-staging',
  min: mode === 'local' ? 1 : 0,
  max: mode === 'local' ? 1 : 3,
  githubUrl: 'https://github.com',
  repo: 'codex-k8s/codex-k8s',
  image: IMAGES.arcRunner,
});

/** The ARC versions whose key trees are vendored: the previous release (the upgrade test's start) and our pin. */
const ARC_VERSIONS = ['0.14.1', '0.14.2'] as const;

function traefikValues(file: string): unknown {
  const docs = parseAllDocuments(readFileSync(new URL(`../../manifests/cluster/${file}`, import.meta.url), 'utf8'));
  const hcc = docs
    .map(
      (d) =>
        d.toJS() as {
          kind?: string;
          metadata?: { name?: string; namespace?: string };
          spec?: { valuesContent?: string };
        },
    )
    .find(
      (o) => o.kind === 'HelmChartConfig' && o.metadata?.name === 'traefik' && o.metadata.namespace === 'kube-system',
    );
  assert.ok(
    hcc?.spec?.valuesContent !== undefined,
    `${file} holds the kube-system/traefik HelmChartConfig with valuesContent`,
  );
  return parse(hcc.spec.valuesContent) ?? {};
}

test('cert-manager values (30_cluster_deps certManagerValues) meet cert-manager v1.21.2 values.schema.json', () => {
  assert.deepEqual(chartValuesProblems('cert-manager', certManagerValues()), []);
});

test('ARC controller and scale-set values (60_runner_arc) use only keys the 0.14.1 and the 0.14.2 charts read', () => {
  for (const version of ARC_VERSIONS) {
    assert.deepEqual(chartValuesProblems('gha-runner-scale-set-controller', controllerValues(), version), [], version);
    for (const mode of ['server', 'local'] as const) {
      assert.deepEqual(
        chartValuesProblems(
          'gha-runner-scale-set',
          scaleSetValues(runner(mode), 'arc-github-token-0123456789'),
          version,
        ),
        [],
        `${version} ${mode}`,
      );
    }
  }
});

test("ARC values are checked against their own version's tree: pprof is 0.14.2's, an unvendored version is refused", () => {
  // gha-runner-scale-set-0.14.1..0.14.2, charts/gha-runner-scale-set-controller/values.yaml: `+pprof: {}` (addr).
  const withPprof = { ...controllerValues(), pprof: { addr: ':6060' } };
  assert.deepEqual(chartValuesProblems('gha-runner-scale-set-controller', withPprof, '0.14.2'), []);
  const [old, ...more] = chartValuesProblems('gha-runner-scale-set-controller', withPprof, '0.14.1');
  assert.match(old ?? '', /^pprof: not a value of this chart/);
  assert.ok(!/\bpprof\b/.test((old ?? '').replace(/^pprof:/, '')), "0.14.1's allowed keys do not list pprof");
  assert.deepEqual(more, []);
  // Likewise the rate limiter flag, also new in 0.14.2.
  const withLimiter = { ...controllerValues(), flags: { rateLimiter: { name: 'typed_rate_limiter' } } };
  assert.deepEqual(chartValuesProblems('gha-runner-scale-set-controller', withLimiter, '0.14.2'), []);
  assert.match(
    chartValuesProblems('gha-runner-scale-set-controller', withLimiter, '0.14.1')[0] ?? '',
    /^flags\.rateLimiter: not a value of this chart/,
  );
  // No silent fallback to another version's tree: the values are fine, the version is the problem.
  for (const chart of ['gha-runner-scale-set-controller', 'gha-runner-scale-set'] as const) {
    const values = chart === 'gha-runner-scale-set' ? scaleSetValues(runner('server'), 'sec') : controllerValues();
    const problems = chartValuesProblems(chart, values, '0.13.0');
    assert.equal(problems.length, 1, chart);
    assert.match(
      problems[0] ?? '',
      new RegExp(`^${chart} 0\\.13\\.0: no key tree vendored for this version \\(vendored: 0\\.14\\.1, 0\\.14\\.2\\)`),
    );
    assert.ok(problems[0]?.includes(`test/fixtures/upstream/arc-0.13.0/${chart}/`), 'says where to vendor it');
    assert.match(chartValuesProblems(chart, values)[0] ?? '', /no chart version given/, 'ARC needs the version');
  }
  // Schema-checked charts ignore the version, as before.
  assert.deepEqual(chartValuesProblems('cert-manager', certManagerValues(), 'v0.0.1'), []);
});

test("both modes' Traefik valuesContent meet the values.schema.json of the Traefik chart k3s bundles", () => {
  for (const file of ['traefik.server.yaml', 'traefik.local.yaml'])
    assert.deepEqual(chartValuesProblems('traefik', traefikValues(file)), [], file);
});

test('the old Traefik redirect shape (ports.web.redirections, before chart v39 / PR 1603) is refused', () => {
  const old = {
    ports: { web: { redirections: { entryPoint: { to: 'websecure', scheme: 'https', permanent: true } } } },
  };
  assert.deepEqual(chartValuesProblems('traefik', old), ['ports.web.redirections: additional property not allowed']);
  const now = {
    ports: { web: { http: { redirections: { entryPoint: { to: 'websecure', scheme: 'https', permanent: true } } } } },
  };
  assert.deepEqual(chartValuesProblems('traefik', now), []);
});

test('an unknown cert-manager key and unknown ARC keys are refused, naming the key', () => {
  assert.deepEqual(chartValuesProblems('cert-manager', { ...certManagerValues(), installCRDz: true }), [
    'installCRDz: additional property not allowed',
  ]);
  for (const version of ARC_VERSIONS) {
    const [c] = chartValuesProblems(
      'gha-runner-scale-set-controller',
      { ...controllerValues(), serviceAccount: { create: true, nam: 'x' } },
      version,
    );
    assert.match(c ?? '', /^serviceAccount\.nam: not a value of this chart/, version);
    const [s] = chartValuesProblems(
      'gha-runner-scale-set',
      { ...scaleSetValues(runner('server'), 'sec'), minRunner: 1 },
      version,
    );
    assert.match(s ?? '', /^minRunner: not a value of this chart/, version);
  }
});

test('each vendored upstream file is byte for byte the blob PROVENANCE.md names, and keys.json is what the derivation gives', async () => {
  const { createHash } = await import('node:crypto');
  const { deriveKeyTree } = await import('../fixtures/upstream/derive-arc-keys.mts');
  const dir = new URL('../fixtures/upstream/', import.meta.url);
  const rows = [
    ...readFileSync(new URL('PROVENANCE.md', dir), 'utf8').matchAll(
      /^\| ([^ |]+) \| [^|]+ \| [^|]+ \| [^|]+ \| ([0-9a-f]{40}) \|$/gm,
    ),
  ];
  // Every vendored file has its row; derived files (named in PROVENANCE's notes) and the derivation script are ours.
  const ours = new Set(['PROVENANCE.md', 'derive-arc-keys.mts', 'keys.json', 'template-value-refs.json', 'crds.json']);
  const { readdirSync } = await import('node:fs');
  const vendored = (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile() && !ours.has(d.name))
    .map((d) => `${d.parentPath ?? (d as unknown as { path: string }).path}/${d.name}`.slice(dir.pathname.length))
    .sort();
  assert.deepEqual(rows.map((r) => r[1]).sort(), vendored, 'each vendored file has exactly one PROVENANCE row');
  for (const [, file, sha] of rows) {
    const bytes = readFileSync(new URL(file as string, dir));
    const blob = createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
    assert.equal(blob, sha, `${file}: git blob sha`);
  }
  for (const version of ARC_VERSIONS) {
    for (const chart of ['gha-runner-scale-set-controller', 'gha-runner-scale-set']) {
      const at = (f: string) => readFileSync(new URL(`arc-${version}/${chart}/${f}`, dir), 'utf8');
      assert.deepEqual(
        JSON.parse(at('keys.json')),
        deriveKeyTree(parse(at('values.yaml')), JSON.parse(at('template-value-refs.json')) as string[]),
        `${version} ${chart}`,
      );
    }
  }
  // The vendored ARC versions are exactly the ones chart-values.mts checks against.
  const arcDirs = readdirSync(dir)
    .filter((d) => d.startsWith('arc-'))
    .sort();
  assert.deepEqual(
    arcDirs,
    ARC_VERSIONS.map((v) => `arc-${v}`),
  );
  for (const chart of ['gha-runner-scale-set-controller', 'gha-runner-scale-set'] as const)
    assert.deepEqual(Object.keys(CHART_VALUES_SOURCES[chart].byVersion).sort(), [...ARC_VERSIONS], chart);
});
