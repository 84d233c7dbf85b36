// Every values document the steps hand to a chart, checked against that chart's own upstream definition at our pin
// (test/fixtures/upstream/, PROVENANCE.md), and proof that the check refuses what the real chart refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { chartValuesProblems } from '../fakes/lib/chart-values.mts';
import { certManagerValues } from '../../bootstrap/remote/30_cluster_deps.mts';
import { controllerValues, scaleSetValues } from '../../bootstrap/remote/60_runner_arc.mts';
import type { RunnerSettings } from '../../bootstrap/lib/runners.mts';
import { IMAGES } from '../../bootstrap/lib/versions.mts';

const runner = (mode: 'server' | 'local'): RunnerSettings => ({
  mode,
  stagingNamespace: 'staging',
  runnerNamespace: 'arc-runners',
  scaleSetName: 'codex-k8s',
  min: 1,
  max: 3,
  githubUrl: 'https://github.com',
  repo: 'owner/name',
  image: IMAGES.arcRunner,
});

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

test('ARC controller and scale-set values (60_runner_arc) use only keys the 0.14.2 charts read', () => {
  assert.deepEqual(chartValuesProblems('gha-runner-scale-set-controller', controllerValues()), []);
  for (const mode of ['server', 'local'] as const) {
    assert.deepEqual(
      chartValuesProblems('gha-runner-scale-set', scaleSetValues(runner(mode), 'arc-github-token-0123456789')),
      [],
      mode,
    );
  }
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
  const [c] = chartValuesProblems('gha-runner-scale-set-controller', {
    ...controllerValues(),
    serviceAccount: { create: true, nam: 'x' },
  });
  assert.match(c ?? '', /^serviceAccount\.nam: not a value of this chart/);
  const [s] = chartValuesProblems('gha-runner-scale-set', { ...scaleSetValues(runner('server'), 'sec'), minRunner: 1 });
  assert.match(s ?? '', /^minRunner: not a value of this chart/);
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
  const ours = new Set(['PROVENANCE.md', 'derive-arc-keys.mts', 'keys.json', 'template-value-refs.json']);
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
  for (const chart of ['gha-runner-scale-set-controller', 'gha-runner-scale-set']) {
    const at = (f: string) => readFileSync(new URL(`arc-0.14.2/${chart}/${f}`, dir), 'utf8');
    assert.deepEqual(
      JSON.parse(at('keys.json')),
      deriveKeyTree(parse(at('values.yaml')), JSON.parse(at('template-value-refs.json')) as string[]),
      chart,
    );
  }
});
