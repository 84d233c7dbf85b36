// Packaging of the staging service (app/): the dependency pins agree between the image's lockfile and the
// repository's (the tests run against the root node_modules, the image against app/'s own), the Dockerfile follows
// the rules (pinned base = the bootstrap's Node, production dependencies only, non-root, GIT_SHA -> /version), and the
// sources need nothing the image does not carry. The image itself is exercised in app.test.mts ("the image layout").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE } from '../../bootstrap/lib/versions.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const APP = join(ROOT, 'app');

interface Lock {
  packages: Record<
    string,
    { version?: string; integrity?: string; dev?: boolean; dependencies?: Record<string, string> }
  >;
}
const readJson = <T,>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

test('pg: one exact version in app/package.json, the root devDependencies and both lockfiles (same tarballs)', () => {
  const app = readJson<{ dependencies?: Record<string, string>; devDependencies?: unknown; type?: string }>(
    join(APP, 'package.json'),
  );
  const root = readJson<{ devDependencies: Record<string, string>; dependencies: Record<string, string> }>(
    join(ROOT, 'package.json'),
  );
  assert.deepEqual(Object.keys(app.dependencies ?? {}), ['pg'], 'pg is the only dependency of the service');
  assert.equal(
    app.devDependencies,
    undefined,
    'the image installs production dependencies only; the app has no others',
  );
  assert.equal(app.type, 'module');
  const version = app.dependencies?.['pg'] ?? '';
  assert.match(version, /^\d+\.\d+\.\d+$/, 'exact version, no range');
  assert.equal(root.devDependencies['pg'], version, 'root devDependencies pg');
  assert.match(root.devDependencies['@types/pg'] ?? '', /^\d+\.\d+\.\d+$/, 'root devDependencies @types/pg, exact');

  const appLock = readJson<Lock>(join(APP, 'package-lock.json'));
  const rootLock = readJson<Lock>(join(ROOT, 'package-lock.json'));
  assert.equal(
    appLock.packages['']?.dependencies?.['pg'],
    version,
    'app/package-lock.json is up to date with app/package.json',
  );
  const installed = Object.entries(appLock.packages).filter(([path]) => path !== '');
  assert.ok(installed.length > 1);
  for (const [path, entry] of installed) {
    assert.ok(!entry.dev, `${path} is not a dev dependency`);
    assert.equal(rootLock.packages[path]?.version, entry.version, `${path}: the tests run the version the image ships`);
    assert.equal(rootLock.packages[path]?.integrity, entry.integrity, `${path}: same tarball`);
  }
  assert.ok(
    !existsSync(join(APP, 'node_modules')),
    'no node_modules under app/ (the launcher and the image install their own)',
  );
});

test('Dockerfile: pinned Node base (same as versions.mts NODE) by digest, npm ci --omit=dev, non-root, GIT_SHA -> CODEXK8S_VERSION', () => {
  const text = readFileSync(join(APP, 'Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  const froms = lines.filter((l) => /^FROM\s/i.test(l));
  assert.equal(froms.length, 2, 'multi-stage: deps and runtime');
  for (const f of froms) {
    assert.match(
      f,
      new RegExp(
        `^FROM node:${NODE.version.replace(/\./g, '\\.')}-bookworm-slim@sha256:[0-9a-f]{64} AS (deps|runtime)$`,
      ),
      f,
    );
  }
  assert.equal(new Set(froms.map((f) => f.split(' ')[1])).size, 1, 'both stages on the same image');
  assert.ok(
    lines.some((l) => /^RUN npm ci --omit=dev\b/.test(l)),
    'npm ci --omit=dev (lockfile-exact, no dev dependencies)',
  );
  assert.ok(lines.includes('COPY package.json package-lock.json ./'));
  assert.ok(lines.includes('COPY --from=deps /app/node_modules ./node_modules'));
  assert.ok(lines.includes('COPY src ./src'));
  assert.ok(!lines.some((l) => /^COPY \. /.test(l)), 'no COPY . (nothing but the sources and the manifest)');
  const user = lines.filter((l) => l.startsWith('USER ')).pop();
  assert.match(user ?? '', /^USER [1-9]\d*:[1-9]\d*$/, 'numeric non-root user (runAsNonRoot can verify it)');
  assert.ok(lines.includes('ARG GIT_SHA=""'));
  assert.ok(lines.includes('ENV CODEXK8S_VERSION=${GIT_SHA}'));
  assert.ok(lines.includes('EXPOSE 8080'));
  assert.equal(lines[lines.length - 1], 'CMD ["node", "src/server.mts"]');
  assert.ok(!/HEALTHCHECK/.test(lines.join('\n')), "probes are Kubernetes'");
});

test('.dockerignore keeps node_modules, tests and env files out of the build context', () => {
  const entries = readFileSync(join(APP, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const want of ['node_modules', '**/node_modules', '.env', '.env.*', '**/*.test.mts', '.git'])
    assert.ok(entries.includes(want), want);
});

test('app/src imports only node: builtins, pg and its own .mts files (what the image carries)', () => {
  const files = readdirSync(join(APP, 'src')).filter((f) => f.endsWith('.mts'));
  assert.ok(files.includes('server.mts') && files.includes('app.mts'));
  for (const f of files) {
    const src = readFileSync(join(APP, 'src', f), 'utf8');
    for (const m of src.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)) {
      const spec = m[1] as string;
      if (spec.startsWith('node:') || spec === 'pg') continue;
      assert.match(spec, /^\.\/[a-z-]+\.mts$/, `${f} imports ${spec}`);
      assert.ok(files.includes(spec.slice(2)), `${f} imports ${spec}, which exists`);
    }
  }
});
