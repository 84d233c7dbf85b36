// Every pin of versions.mts carries its release date and source, and `npm run pins` prints each one, offline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as versions from '../../bootstrap/lib/versions.mts';
import { PINS, IMAGES, ARTIFACTS } from '../../bootstrap/lib/versions.mts';
import { renderPins, ageDays, isIsoDate } from '../../bootstrap/host/pins.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const TODAY = new Date().toISOString().slice(0, 10);

test('every pin has an ISO release date, not in the future, and a source URL', () => {
  assert.ok(PINS.length >= ARTIFACTS.length + Object.keys(IMAGES).length + 4);
  for (const p of PINS) {
    assert.ok(isIsoDate(p.released), `${p.name}: released ${p.released} is not yyyy-mm-dd`);
    assert.ok(p.released <= TODAY, `${p.name}: released ${p.released} is in the future`);
    assert.match(p.source, /^https:\/\/\S+/, `${p.name}: no source URL`);
    assert.ok(p.version.length > 0, `${p.name}: no version`);
  }
  assert.equal(new Set(PINS.map((p) => p.name)).size, PINS.length, 'pin names are unique');
});

test('PINS covers every pinned version that versions.mts exports', () => {
  const listed = new Set(PINS.map((p) => p.version));
  const names = new Set(PINS.map((p) => p.name));
  const missing: string[] = [];
  for (const [name, value] of Object.entries(versions)) {
    if (name === 'PINS' || name === 'IMAGE_PROVENANCE') continue;
    if (typeof value === 'string' && /VERSION$/.test(name) && !listed.has(value)) missing.push(`${name}=${value}`);
    if (value && typeof value === 'object' && 'version' in value && !listed.has(String(value.version)))
      missing.push(`${name}.version`);
    if (value && typeof value === 'object' && 'chart' in value && !names.has(String(value.chart)))
      missing.push(`${name}.chart`);
  }
  for (const image of Object.values(IMAGES)) if (!listed.has(image)) missing.push(`IMAGES ${image}`);
  assert.deepEqual(missing, []);
});

test('isIsoDate refuses what is not a calendar day', () => {
  for (const bad of ['2026-02-30', '2026-13-01', '26-01-01', '2026-1-1', 'today', ''])
    assert.equal(isIsoDate(bad), false, bad);
  assert.equal(isIsoDate('2024-02-29'), true);
});

test('renderPins: oldest first, age in days, dateNote marked', () => {
  const out = renderPins(
    [
      { name: 'b', kind: 'image', version: '2', released: '2026-12-01', source: 'https://b.example' },
      {
        name: 'a',
        kind: 'artifact',
        version: '1',
        released: '2026-01-01',
        source: 'https://a.example',
        dateNote: 'pin day',
      },
    ],
    '2026-12-06',
  );
  const lines = out.split('\n');
  assert.match(lines[2] ?? '', /^a\s+1\s+2026-01-01\*\s+339\s+https:\/\/a\.example$/);
  assert.match(lines[3] ?? '', /^b\s+2\s+2026-12-01\s+5\s+https:\/\/b\.example$/);
  assert.match(out, /\n\* a: pin day\n$/);
  assert.equal(ageDays('2026-11-06', '2026-12-06'), 30);
});

test('npm run pins: the script runs offline and prints every pin with its date, age and source', () => {
  const out = execFileSync(
    'node',
    ['--import', 'tsx', join(ROOT, 'bootstrap/host/pins.mts'), '--today', '2026-12-06'],
    { cwd: ROOT, encoding: 'utf8' },
  );
  for (const p of PINS) {
    const row = out.split('\n').find((l) => l.startsWith(`${p.name} `));
    assert.ok(row, `${p.name} is not printed`);
    assert.ok(row.includes(p.version) && row.includes(p.released) && row.includes(p.source), `${p.name}: ${row}`);
    assert.match(row, new RegExp(`\\s${ageDays(p.released, '2026-12-06')}\\s`), `${p.name}: age`);
  }
  const bad = spawnSync('node', ['--import', 'tsx', join(ROOT, 'bootstrap/host/pins.mts'), '--today', '2026-02-30'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr + bad.stdout, /--today 2026-02-30: not a date; expected YYYY-MM-DD/);
});

test('comparePinVersions orders each kind of pin by its leading numbers; what has none is not ordered', () => {
  const { comparePinVersions: cmp, pinsNewerThan } = versions;
  const older = (a: string, b: string) => assert.ok((cmp(a, b) as number) < 0, `${a} < ${b}`);
  older('v1.36.1+k3s1', 'v1.36.2+k3s1');
  older('v1.36.2+k3s1', 'v1.36.2+k3s2');
  older('v1.36.9+k3s1', 'v1.36.10+k3s1');
  older('0.14.1', '0.14.2');
  older('24.19.0', '24.20.0');
  older('docker.io/pgvector/pgvector:0.8.5-pg17-bookworm', 'docker.io/pgvector/pgvector:0.8.6-pg17-bookworm');
  older('docker.io/moby/buildkit:v0.33.0-rootless', 'docker.io/moby/buildkit:v0.34.0-rootless');
  older('localhost:5000/registry:3.1.0', 'localhost:5000/registry:3.1.1');
  assert.equal(cmp('v1.21.2', 'v1.21.2'), 0);
  assert.equal(cmp('019b0afdd830', '119b0afdd830'), undefined, "the install script's commit is not ordered");
  assert.equal(cmp('x:0.8.6-pg17-bookworm', 'x:0.8.6-pg18-bookworm'), undefined, 'same numbers, other strings');
  for (const p of PINS) assert.equal(cmp(p.version, p.version), 0, p.name);
  assert.deepEqual(
    pinsNewerThan({ k3s: 'v1.36.2+k3s1', helm: 'v4.2.4', gone: '1.0' }, { k3s: 'v1.36.1+k3s1', helm: 'v4.3.0' }),
    ['k3s v1.36.2+k3s1 (here v1.36.1+k3s1)'],
  );
});
