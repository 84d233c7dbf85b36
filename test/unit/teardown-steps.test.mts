// --uninstall of steps 20..70, the parts that run without a server: the GitHub teardown plan (only what this tool
// created is deleted; adopted names are forgotten or left alone), driven against the fake GitHub twice (the second
// teardown finds nothing); the argv builders; the kept-dump naming and the write through .partial; the user
// namespace remedy's removal against a fake /proc, /sys and /etc.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub } from '../fakes/github/server.mts';
import { CaptureLog } from '../capture-log.mts';
import { loadConfig } from '../../bootstrap/lib/config.mts';
import type { Config } from '../../bootstrap/lib/config.mts';
import { createGitHub } from '../../bootstrap/lib/github/client.mts';
import type { GitHubClient } from '../../bootstrap/lib/github/client.mts';
import {
  applyWiring,
  describeTeardown,
  githubJournal,
  planWiring,
  snapshot,
  teardownPlan,
  NOTHING_WANTED,
} from '../../bootstrap/lib/github/wiring.mts';
import type { RepoSnapshot } from '../../bootstrap/lib/github/wiring.mts';
import type { GitHubJournal } from '../../bootstrap/lib/state.mts';
import { readJournal } from '../../bootstrap/lib/state.mts';
import { wanted } from '../../bootstrap/remote/70_github_repo.mts';
import { deleteArgv, helmUninstallArgv, KUBECONFIG } from '../../bootstrap/lib/kube.mts';
import { ARC_CONTROLLER_CHART } from '../../bootstrap/lib/versions.mts';
import { isOurKubeconfigCopy, uninstallArgv, K3S_UNINSTALL } from '../../bootstrap/lib/k3s.mts';
import {
  KEPT_DUMPS_DIR,
  dumpsToCopy,
  finalDumpName,
  finalDumpOfRun,
  keepStream,
  pvHostPath,
  utcStamp,
} from '../../bootstrap/lib/backup/server.mts';
import {
  APPARMOR_PROFILE,
  apparmorRemoveArgv,
  readUsernsFacts,
  removeUsernsRemedy,
  renderApparmorProfile,
  renderUsernsSysctl,
  usernsLeftovers,
  usernsPaths,
} from '../../bootstrap/lib/userns.mts';
import type { Runner } from '../../bootstrap/lib/userns.mts';
import { isOurs } from '../../bootstrap/remote/30_cluster_deps.mts';
import { TOOLS_DIR } from '../../bootstrap/lib/download.mts';
import { Logger } from '../../bootstrap/lib/log.mts';

const TOKEN = `github_pat_11UNIT${'a1B2c3D4'.repeat(8)}`;
const REPO = 'codex-k8s/unit-repo';
const REF = { owner: 'codex-k8s', repo: 'unit-repo' };
const PUBKEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl operator@laptop';

function config(api: string, extra: Record<string, string> = {}): Config {
  const r = loadConfig({
    side: 'server',
    strict: true,
    env: {
      CODEXK8S_GITHUB_REPO: REPO,
      CODEXK8S_GITHUB_PAT: TOKEN,
      CODEXK8S_GITHUB_API_URL: api,
      OPERATOR_SSH_PUBKEY: PUBKEY,
      ...extra,
    },
  });
  assert.deepEqual(r.problems, []);
  return r.config;
}
const SERVER = { CODEXK8S_STAGING_DOMAIN: 'staging.example.com', CODEXK8S_LETSENCRYPT_EMAIL: 'ops@example.com' };

// ---- GitHub: the plan ------------------------------------------------------------------------------------------------

const hook = (id: number, url: string) => ({
  id,
  url,
  contentType: 'json',
  insecureSsl: '0',
  events: ['push'],
  active: true,
});

test('the GitHub teardown plan deletes only what the journal says was created; adopted ones are forgotten or left', () => {
  const snap: RepoSnapshot = {
    repo: { id: 7, fullName: REPO },
    variables: new Map([
      ['CODEXK8S_MODE', 'server'],
      ['ADOPTED_VAR', 'theirs'],
    ]),
    secrets: new Map([
      ['CODEXK8S_WEBHOOK_SECRET', { updatedAt: '2026-12-01T00:00:00Z' }],
      ['ADOPTED_SECRET', { updatedAt: '2026-12-01T00:00:00Z' }],
    ]),
    publicKey: { keyId: 'k', key: 'AAAA' },
    hooks: [
      hook(1, 'https://a.example/webhooks/github'),
      hook(2, 'https://b.example/x'),
      hook(3, 'https://c.example/y'),
    ],
  };
  const j: GitHubJournal = {
    repo: REPO,
    repoId: 7,
    salt: '00',
    // GONE_VAR: created, then removed by hand: nothing to delete.
    variables: ['CODEXK8S_MODE', 'GONE_VAR'],
    secrets: {
      CODEXK8S_WEBHOOK_SECRET: { fingerprint: 'f', created: true },
      ADOPTED_SECRET: { fingerprint: 'f', created: false },
    },
    webhooks: [
      { id: 1, url: 'https://a.example/webhooks/github', secretFingerprint: 'f', created: true },
      { id: 2, url: 'https://b.example/x', secretFingerprint: 'f', created: false },
      { id: 4, url: 'https://gone.example/z', secretFingerprint: 'f', created: true },
    ],
  };
  const plan = teardownPlan(snap, j);
  assert.deepEqual(plan, planWiring(NOTHING_WANTED, snap, j), 'the teardown plan is planWiring with nothing wanted');
  assert.deepEqual(
    plan.map((a) => a.kind),
    ['delete-variable', 'delete-secret', 'delete-webhook', 'forget-webhook', 'forget-webhook'],
  );
  const lines = plan.map((a) => describeTeardown(a, REPO));
  assert.deepEqual(lines.slice(0, 3), [
    `GitHub variable CODEXK8S_MODE in ${REPO} (created by this tool)`,
    `GitHub secret CODEXK8S_WEBHOOK_SECRET in ${REPO} (created by this tool)`,
    `GitHub webhook https://a.example/webhooks/github (id 1) in ${REPO} (created by this tool)`,
  ]);
  assert.match(lines[3] ?? '', /webhook https:\/\/b\.example\/x \(id 2.*forgotten, never deleted/);
  const all = lines.join('\n');
  for (const name of ['ADOPTED_VAR', 'ADOPTED_SECRET', 'c.example', 'GONE_VAR'])
    assert.ok(!all.includes(name), `${name} is not touched`);
  assert.ok(!plan.some((a) => a.kind === 'delete-webhook' && a.id !== 1));
});

test('a pending webhook create: its orphan hook (ours) is deleted; with none on GitHub it is forgotten', () => {
  const base: RepoSnapshot = {
    repo: { id: 7, fullName: REPO },
    variables: new Map(),
    secrets: new Map(),
    publicKey: { keyId: 'k', key: 'AAAA' },
    hooks: [hook(9, 'https://a.example/webhooks/github')],
  };
  const j: GitHubJournal = {
    repo: REPO,
    repoId: 7,
    salt: '00',
    variables: [],
    secrets: {},
    webhooks: [],
    pendingWebhooks: ['https://a.example/webhooks/github'],
  };
  assert.deepEqual(
    teardownPlan(base, j).map((a) => a.kind),
    ['delete-webhook'],
  );
  assert.deepEqual(
    teardownPlan({ ...base, hooks: [] }, j).map((a) => a.kind),
    ['forget-pending-webhook'],
  );
});

describe('GitHub teardown against the fake GitHub', () => {
  let gh: FakeGitHub;
  let client: GitHubClient;
  let dir: string;
  let journal: string;
  let log: CaptureLog;
  const SECRET = 'f'.repeat(64);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ck8s-td-gh-'));
  });
  after(async () => {
    await gh?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await gh?.close();
    gh = await startFakeGitHub({ token: TOKEN, repo: REPO });
    log = new CaptureLog();
    client = createGitHub({ token: TOKEN, baseUrl: gh.url, log, sleep: async () => undefined });
    journal = join(dir, `state-${Math.random().toString(36).slice(2)}.json`);
  });

  /** What step 70's teardown does: snapshot, the journal by the repository's id, plan, apply (journaled). */
  async function teardown(): Promise<{ lines: string[]; changes: string[] }> {
    const snap = await snapshot(client, REF, true);
    const plan = teardownPlan(snap, githubJournal(journal, snap.repo));
    const lines = plan.map((a) => describeTeardown(a, snap.repo.fullName));
    return { lines, changes: await applyWiring(client, REF, plan, snap, journal, log) };
  }

  test('removes what the wiring created, keeps the adopted variable and a foreign hook; a second teardown finds nothing', async () => {
    // Before the tool: a variable it will adopt, and someone else's webhook.
    const now = new Date().toISOString();
    gh.variables.set('CODEXK8S_MODE', { value: 'by-hand', created_at: now, updated_at: now });
    gh.hooks.set(90001, {
      id: 90001,
      active: true,
      events: ['push'],
      config: { url: 'https://ci.example/hook', content_type: 'json', insecure_ssl: '0' },
      created_at: now,
      updated_at: now,
    });
    const w = wanted(config(gh.url, SERVER), SECRET);
    const snap0 = await snapshot(client, REF, true);
    await applyWiring(client, REF, planWiring(w, snap0, githubJournal(journal, snap0.repo)), snap0, journal, log);
    const created = Object.keys(w.variables).filter((n) => n !== 'CODEXK8S_MODE');
    for (const n of created) assert.ok(gh.variables.has(n), `${n} created`);
    assert.equal(gh.hooks.size, 2);

    const first = await teardown();
    assert.equal(first.lines.length, created.length + 1 + 1, first.lines.join('\n'));
    assert.ok(first.lines.every((l) => /\(created by this tool\)$/.test(l)));
    assert.ok(!first.lines.some((l) => l.includes('CODEXK8S_MODE ')), 'the adopted variable is not listed');
    assert.equal(first.changes.length, first.lines.length);

    for (const n of created) assert.ok(!gh.variables.has(n), `${n} deleted`);
    assert.equal(gh.variables.get('CODEXK8S_MODE')?.value, 'server', 'adopted: updated by the wiring, never deleted');
    assert.ok(!gh.secrets.has('CODEXK8S_WEBHOOK_SECRET'));
    assert.deepEqual([...gh.hooks.keys()], [90001], 'the foreign hook stays');
    const j = readJournal(journal).github;
    assert.deepEqual(j?.variables, []);
    assert.deepEqual(j?.webhooks, []);
    assert.deepEqual(Object.keys(j?.secrets ?? {}), []);

    const writes = gh.writes().length;
    const second = await teardown();
    assert.deepEqual(second, { lines: [], changes: [] });
    assert.equal(gh.writes().length, writes, 'the second teardown writes nothing');
    assert.deepEqual(gh.problems, []);
  });
});

// ---- argv builders ---------------------------------------------------------------------------------------------------

test('argv builders: helm uninstall (bounded --wait), kubectl delete, the k3s uninstall script, apparmor --remove', () => {
  assert.deepEqual(helmUninstallArgv(ARC_CONTROLLER_CHART, 300), [
    'helm',
    '--kubeconfig',
    KUBECONFIG,
    'uninstall',
    ARC_CONTROLLER_CHART.release,
    '--namespace',
    ARC_CONTROLLER_CHART.namespace,
    '--ignore-not-found',
    '--wait',
    '--timeout',
    '300s',
  ]);
  assert.deepEqual(deleteArgv('stg', ['ingress/codex-k8s', 'deployment/codex-k8s'], 120), [
    'kubectl',
    '--kubeconfig',
    KUBECONFIG,
    '--namespace',
    'stg',
    'delete',
    'ingress/codex-k8s',
    'deployment/codex-k8s',
    '--ignore-not-found',
    '--wait',
    '--timeout=120s',
  ]);
  assert.deepEqual(uninstallArgv(), [K3S_UNINSTALL]);
  assert.equal(K3S_UNINSTALL, '/usr/local/bin/k3s-uninstall.sh');
  assert.deepEqual(apparmorRemoveArgv('/etc/apparmor.d/x'), ['apparmor_parser', '--remove', '/etc/apparmor.d/x']);
});

test('ownership: the kubeconfig copy only while identical to k3s.yaml; the helm link only into our tools dir', () => {
  assert.equal(isOurKubeconfigCopy('a: 1\n', 'a: 1\n'), true);
  assert.equal(isOurKubeconfigCopy('a: 2\n', 'a: 1\n'), false, 'edited by the operator: theirs now');
  assert.equal(isOurKubeconfigCopy('a: 1\n', undefined), false, 'k3s.yaml gone: nothing proves it is ours');
  assert.equal(isOurKubeconfigCopy(undefined, 'a: 1\n'), false);
  assert.equal(isOurs(join(TOOLS_DIR, 'helm-v4.2.4', 'helm')), true);
  assert.equal(isOurs('/usr/lib/helm/helm'), false);
  assert.equal(isOurs(`${TOOLS_DIR}-other/helm`), false);
});

// ---- kept dumps ------------------------------------------------------------------------------------------------------

test('kept dumps: one directory for the launcher and the step; names carry the UTC time and the run id', () => {
  assert.equal(KEPT_DUMPS_DIR, '/var/backups/codex-k8s-bootstrap');
  const at = new Date('2026-12-07T20:35:01.123Z');
  assert.equal(utcStamp(at), '20261207T203501Z');
  const name = finalDumpName('codex_k8s', '20261207T203400Z-ab12', at);
  assert.equal(name, 'codex_k8s-20261207T203501Z-final-20261207T203400Z-ab12.dump');
  assert.equal(finalDumpName('db', 'odd/run id', at), 'db-20261207T203501Z-final-odd_run_id.dump');

  const names = ['codex_k8s-20261201T010000Z.dump', `${name}.partial`, 'codex_k8s-20261207T000000Z-final-other.dump'];
  assert.equal(finalDumpOfRun(names, 'codex_k8s', '20261207T203400Z-ab12'), undefined, 'a .partial does not count');
  assert.equal(finalDumpOfRun([...names, name], 'codex_k8s', '20261207T203400Z-ab12'), name);
  assert.equal(finalDumpOfRun([name], 'codex', '20261207T203400Z-ab12'), undefined, 'another database');
  assert.equal(finalDumpOfRun([name], 'codex_k8s', 'other'), undefined, 'another run dumps again');
});

test('nightly dumps to copy: *.dump not yet kept with the same size', () => {
  const source = new Map([
    ['a.dump', 10],
    ['b.dump', 20],
    ['c.dump', 30],
    ['notes.txt', 5],
  ]);
  const kept = new Map([
    ['a.dump', 10],
    ['b.dump', 7],
  ]);
  assert.deepEqual(dumpsToCopy(source, kept), ['b.dump', 'c.dump']);
  assert.deepEqual(dumpsToCopy(source, new Map([...source])), []);
});

test('the PV host path: local-path hostPath or a local volume; none otherwise', () => {
  assert.equal(
    pvHostPath({ spec: { hostPath: { path: '/var/lib/rancher/k3s/storage/pvc-1' } } }),
    '/var/lib/rancher/k3s/storage/pvc-1',
  );
  assert.equal(pvHostPath({ spec: { local: { path: '/mnt/x' } } }), '/mnt/x');
  assert.equal(pvHostPath({ spec: {} }), undefined);
  assert.equal(pvHostPath(undefined), undefined);
});

test('keepStream: 0600 through .partial, renamed when complete; an empty or failed stream keeps nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-td-keep-'));
  try {
    const n = await keepStream(Readable.from([Buffer.from('PGDMP'), Buffer.from('...')]), dir, 'x.dump');
    assert.equal(n, 8);
    assert.equal(readFileSync(join(dir, 'x.dump'), 'utf8'), 'PGDMP...');
    assert.equal(statSync(join(dir, 'x.dump')).mode & 0o777, 0o600);
    await assert.rejects(keepStream(Readable.from([]), dir, 'empty.dump'), /would be empty/);
    await assert.rejects(
      keepStream(Readable.from([Buffer.from('half')]), dir, 'failed.dump', async () => {
        throw new Error('pg_dump failed');
      }),
      /pg_dump failed/,
    );
    // A .partial left by a killed run is replaced, never taken for a dump.
    writeFileSync(join(dir, 'y.dump.partial'), 'stale');
    await keepStream(Readable.from([Buffer.from('fresh')]), dir, 'y.dump');
    assert.deepEqual(readdirSync(dir).sort(), ['x.dump', 'y.dump']);
    assert.equal(readFileSync(join(dir, 'y.dump'), 'utf8'), 'fresh');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- the user-namespace remedy ---------------------------------------------------------------------------------------

describe('removing the user-namespace remedy (fake /proc, /sys, /etc)', () => {
  let root: string;
  let calls: string[][];
  const paths = () => usernsPaths(root);
  /** apparmor_parser --remove: the profile the file names leaves the kernel's list. */
  const runner: Runner = async (argv) => {
    calls.push([...argv]);
    const file = argv[2] as string;
    assert.ok(existsSync(file), 'apparmor_parser --remove reads the profile file');
    assert.match(readFileSync(file, 'utf8'), new RegExp(`profile ${APPARMOR_PROFILE} `));
    const p = paths().profiles;
    writeFileSync(
      p,
      readFileSync(p, 'utf8')
        .split('\n')
        .filter((l) => !l.startsWith(`${APPARMOR_PROFILE} `))
        .join('\n'),
    );
    return { argv, stdout: '', stderr: '', exitCode: 0, seconds: 0 };
  };
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'ck8s-td-userns-'));
    calls = [];
    const p = paths();
    for (const f of [p.sysctl, p.profiles, p.sysctlFile, p.apparmorFile]) mkdirSync(join(f, '..'), { recursive: true });
    writeFileSync(p.sysctl, '0\n');
    writeFileSync(p.profiles, `rootlesskit (unconfined)\n${APPARMOR_PROFILE} (unconfined)\n`);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('apparmor: unloaded before its file goes, then nothing is left; a second run does nothing', async () => {
    writeFileSync(paths().apparmorFile, renderApparmorProfile());
    assert.deepEqual(usernsLeftovers(readUsernsFacts(paths()), paths()), [
      `AppArmor profile ${APPARMOR_PROFILE} (loaded)`,
      `file ${paths().apparmorFile}`,
    ]);
    const changes = await removeUsernsRemedy(new Logger(), paths(), runner);
    assert.deepEqual(changes, [`AppArmor profile ${APPARMOR_PROFILE} unloaded`, `removed ${paths().apparmorFile}`]);
    assert.deepEqual(calls, [['apparmor_parser', '--remove', paths().apparmorFile]]);
    assert.deepEqual(usernsLeftovers(readUsernsFacts(paths()), paths()), []);
    assert.deepEqual(await removeUsernsRemedy(new Logger(), paths(), runner), []);
    assert.equal(calls.length, 1);
  });

  test('a loaded profile whose file is gone (a killed run) is unloaded from the rendered profile', async () => {
    const changes = await removeUsernsRemedy(new Logger(), paths(), runner);
    assert.deepEqual(changes, [`AppArmor profile ${APPARMOR_PROFILE} unloaded`]);
    assert.notEqual(calls[0]?.[2], paths().apparmorFile);
    assert.ok(!existsSync(calls[0]?.[2] as string), 'the rendered copy is removed again');
  });

  test('sysctl: the file goes; the line says the running kernel keeps its value until the next boot', async () => {
    writeFileSync(paths().profiles, 'rootlesskit (unconfined)\n');
    writeFileSync(paths().sysctlFile, renderUsernsSysctl());
    assert.deepEqual(usernsLeftovers(readUsernsFacts(paths()), paths()), [
      `file ${paths().sysctlFile} (kernel.apparmor_restrict_unprivileged_userns = 0 at boot)`,
    ]);
    const changes = await removeUsernsRemedy(new Logger(), paths(), runner);
    assert.equal(changes.length, 1);
    assert.match(
      changes[0] ?? '',
      /^removed .*99-codex-k8s-buildkit-userns\.conf \(the running kernel keeps .*=0 until the next boot\)$/,
    );
    assert.deepEqual(calls, []);
    assert.deepEqual(usernsLeftovers(readUsernsFacts(paths()), paths()), []);
  });
});
