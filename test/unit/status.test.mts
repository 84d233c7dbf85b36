// --status: the facts become lines with a level and, where action is needed, the command or runbook section
// (bootstrap/lib/status.mts); the server's side of it is remote_helpers.sh `status`, run here for real.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatStatus, imageRepository, parseStatusAnswer, statusReport } from '../../bootstrap/lib/status.mts';
import type { ClusterFacts, GitHubFacts, KubeItem, ServerFacts, StatusSettings } from '../../bootstrap/lib/status.mts';
import { emptyJournal, parseJournal } from '../../bootstrap/lib/state.mts';
import type { Journal } from '../../bootstrap/lib/state.mts';
import type { RunInfo } from '../../bootstrap/lib/actions.mts';
import { ARC_VERSION, CERT_MANAGER_CHART, IMAGES, K3S_VERSION, pinVersions } from '../../bootstrap/lib/versions.mts';
import { stripAnsi } from '../../bootstrap/lib/log.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const NOW = Date.parse('2026-12-07T12:00:00Z') / 1000;
const SHA = 'a'.repeat(40);
const S: StatusSettings = {
  mode: 'local',
  host: 'staging.example',
  stagingNamespace: 'codex-k8s-staging',
  runnerNamespace: 'arc-runners',
  scaleSetName: 'codex-k8s-staging',
  runnerImage: IMAGES.arcRunner,
  repo: 'org/repo',
};

const ok = <T,>(value: T) => ({ ok: true as const, value });
const err = (error: string) => ({ ok: false as const, error });
const iso = (secondsAgo: number) => new Date((NOW - secondsAgo) * 1000).toISOString();

function node(name: string, ready: boolean, version = K3S_VERSION): KubeItem {
  return {
    metadata: { name },
    status: {
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
      nodeInfo: { kubeletVersion: version },
    },
  };
}

function workload(kind: string, ns: string, name: string, image: string, ready = 1): KubeItem {
  return {
    kind,
    metadata: { name, namespace: ns },
    spec: { replicas: 1, template: { spec: { containers: [{ name, image }] } } },
    status: { readyReplicas: ready },
  };
}

function journal(over: Partial<Journal> = {}): Journal {
  const j = emptyJournal();
  j.steps['00_preflight'] = { status: 'ok', startedAt: iso(700), changes: [], configHash: 'h', runId: 'r1' };
  j.history.push({ step: '00_preflight', status: 'ok', at: iso(600), runId: 'r1', changed: 0 });
  return { ...j, ...over };
}

function server(over: Partial<ServerFacts> = {}): ServerFacts {
  return {
    now: NOW,
    lock: 'free',
    lockOwner: {},
    diskBytes: 100e9,
    diskAvailBytes: 60e9,
    memKib: 8_000_000,
    memAvailKib: 5_000_000,
    journal: journal({
      deployLoop: {
        repo: 'org/repo',
        branch: 'main',
        headSha: SHA,
        runId: 7,
        runUrl: 'https://github.com/org/repo/actions/runs/7',
        smokeUrl: 'http://10.43.0.10',
        provenAt: iso(3600),
        pins: pinVersions(),
      },
    }),
    ...over,
  };
}

function cluster(over: Partial<ClusterFacts> = {}): ClusterFacts {
  return {
    nodes: ok([node('staging', true)]),
    workloads: ok([
      workload('Deployment', 'codex-k8s-system', 'registry', IMAGES.registry),
      workload('StatefulSet', 'codex-k8s-staging', 'postgres', IMAGES.postgres),
      workload('StatefulSet', 'codex-k8s-system', 'buildkitd', IMAGES.buildkit),
      workload(
        'Deployment',
        'codex-k8s-staging',
        'codex-k8s',
        `registry.codex-k8s.internal:5000/codex-k8s:sha-${SHA.slice(0, 12)}`,
      ),
    ]),
    backupCronJob: ok({
      metadata: { name: 'postgres-backup', namespace: 'codex-k8s-staging', creationTimestamp: iso(5 * 86400) },
      status: { lastSuccessfulTime: iso(8 * 3600) },
    }),
    scaleSet: ok({
      metadata: { name: S.scaleSetName, namespace: S.runnerNamespace },
      spec: { template: { spec: { containers: [{ name: 'runner', image: IMAGES.arcRunner }] } } },
      status: { currentRunners: 1, runningEphemeralRunners: 1, pendingEphemeralRunners: 0 },
    }),
    releases: ok([
      {
        name: 'cert-manager',
        namespace: 'cert-manager',
        status: 'deployed',
        chart: `cert-manager-${CERT_MANAGER_CHART.version}`,
      },
      {
        name: 'arc',
        namespace: 'arc-systems',
        status: 'deployed',
        chart: `gha-runner-scale-set-controller-${ARC_VERSION}`,
      },
      {
        name: S.scaleSetName,
        namespace: S.runnerNamespace,
        status: 'deployed',
        chart: `gha-runner-scale-set-${ARC_VERSION}`,
      },
    ]),
    postgresBytes: ok(48 * 1024 * 1024),
    ...over,
  };
}

function lastDeploy(): RunInfo {
  return {
    id: 7,
    runNumber: 3,
    htmlUrl: 'https://github.com/org/repo/actions/runs/7',
    headSha: SHA,
    headBranch: 'main',
    event: 'push',
    status: 'completed',
    conclusion: 'success',
    createdAt: iso(3700),
  };
}

function github(over: Partial<GitHubFacts> = {}): GitHubFacts {
  return {
    lastDeploy: ok(lastDeploy()),
    runners: ok([{ name: 'codex-k8s-staging-abcde-runner-x', status: 'online', busy: false }]),
    runnerReleases: ok([
      { tag_name: 'v2.336.0', published_at: '2026-07-20T00:00:00Z', draft: false, prerelease: false },
    ]),
    ...over,
  };
}

const texts = (r: ReturnType<typeof statusReport>, level?: string) =>
  r.lines.filter((l) => level === undefined || l.level === level).map((l) => `${l.area}: ${l.text}`);

test('a converged staging: healthy, every area answered, nothing to act on', () => {
  const r = statusReport(S, server(), cluster(), github());
  assert.equal(r.healthy, true);
  assert.deepEqual(texts(r, 'fail'), []);
  assert.deepEqual(texts(r, 'warn'), []);
  assert.deepEqual(
    [...new Set(r.lines.map((l) => l.area))],
    ['cluster', 'charts', 'images', 'postgres', 'service', 'runners', 'deploys', 'tls', 'host', 'journal'],
  );
  const all = texts(r).join('\n');
  assert.match(all, /cluster: 1\/1 node\(s\) Ready/);
  assert.match(all, new RegExp(`staging: k3s ${K3S_VERSION.replace('+', '\\+')} \\(the pin\\)`));
  assert.match(all, /postgres: ready \(1\/1\), 48\.0 MiB on disk/);
  assert.match(all, /last successful backup 8h ago/);
  assert.match(all, /service: codex-k8s 1\/1 ready, image of commit aaaaaaaaaaaa/);
  assert.match(all, /runners: 1 online in GitHub \(1 idle, 0 busy\), 0 offline/);
  assert.match(
    all,
    /deploys: last deploy #3 of aaaaaaaaaaaa, 62m ago: success https:\/\/github\.com\/org\/repo\/actions\/runs\/7/,
  );
  assert.match(all, /host: disk under \/var\/lib: .* \(60%\)/);
  assert.match(all, /journal: last run r1, 10m ago; every step ok/);
  assert.match(
    all,
    /deploy loop last proven for aaaaaaaaaaaa at \S+$/m,
    'with the pins of this checkout: nothing more',
  );
  assert.ok(r.lines.every((l) => l.level !== 'ok' || l.action === undefined));
});

test('a deploy loop proven before an upgrade says so: the proof is of the old cluster', () => {
  const proven = server().journal.deployLoop;
  const line = (pins: Record<string, string> | undefined) => {
    const j = server().journal;
    const facts = server({ journal: { ...j, deployLoop: { ...(proven as NonNullable<typeof proven>), pins } } });
    return texts(statusReport(S, facts, cluster(), github())).find((t) => t.includes('deploy loop last proven')) ?? '';
  };
  assert.match(
    line({ ...pinVersions(), k3s: 'v1.36.1+k3s1' }),
    /, with other pins than this checkout \(a run proves it again: --only 80_deploy_loop_check\)$/,
  );
  assert.match(line(undefined), / \(before the pins were recorded\)$/);
});

test('each kind of trouble is named, with the command or runbook section that deals with it', () => {
  const r = statusReport(
    S,
    server({
      diskAvailBytes: 3e9,
      lock: 'alive step 4242',
      lockOwner: { holder: 'dev@laptop pid 1 run r2', step: '40_postgres' },
      journal: journal({
        steps: {
          '00_preflight': { status: 'ok', startedAt: iso(9), changes: [], configHash: 'h', runId: 'r1' },
          '30_cluster_deps': { status: 'failed', startedAt: iso(9), changes: [], configHash: 'h', runId: 'r1' },
        },
      }),
    }),
    cluster({
      nodes: ok([node('staging', true, 'v1.36.1+k3s1'), node('agent-1', false)]),
      workloads: ok([
        workload('Deployment', 'codex-k8s-system', 'registry', 'docker.io/library/registry:3.0.0'),
        workload('StatefulSet', 'codex-k8s-staging', 'postgres', IMAGES.postgres, 0),
      ]),
      backupCronJob: ok({
        metadata: { name: 'postgres-backup', creationTimestamp: iso(9 * 86400) },
        status: { lastSuccessfulTime: iso(3 * 86400) },
      }),
      releases: ok([
        { name: 'cert-manager', namespace: 'cert-manager', status: 'failed', chart: 'cert-manager-v1.20.0' },
      ]),
    }),
    github({
      lastDeploy: ok({ ...lastDeploy(), conclusion: 'failure' }),
      runners: ok([{ name: 'codex-k8s-staging-x', status: 'offline', busy: false }]),
      runnerReleases: ok([
        { tag_name: 'v2.337.0', published_at: '2026-10-01T00:00:00Z', draft: false, prerelease: false },
      ]),
    }),
  );
  assert.equal(r.healthy, false);
  const byText = (re: RegExp) => r.lines.find((l) => re.test(l.text));
  const expect: Array<[RegExp, string, RegExp]> = [
    [/1\/2 node\(s\) Ready; NotReady: agent-1/, 'fail', /k3s down or the node NotReady/],
    [/staging: k3s v1\.36\.1\+k3s1, the pin is/, 'warn', /--only 20_install_k3s/],
    [/cert-manager\/cert-manager: cert-manager-v1\.20\.0 is failed/, 'fail', /--from 30_cluster_deps/],
    [/arc-systems\/arc: not installed/, 'fail', /--from 60_runner_arc/],
    [
      /codex-k8s-system\/registry runs docker\.io\/library\/registry:3\.0\.0; the pin is/,
      'warn',
      /--only 30_cluster_deps/,
    ],
    [/^not ready \(0\/1\)/, 'fail', /PostgreSQL crash-loops/],
    [/last successful backup 3d ago .* later than 26h/, 'warn', /Restore PostgreSQL from a backup/],
    [/Deployment codex-k8s-staging\/codex-k8s is missing/, 'fail', /--from 50_deploy_codex_k8s/],
    [/0 online in GitHub .* 1 offline/, 'fail', /Runners offline/],
    [
      /runner 2\.336\.0 is past GitHub's limit since 2026-10-31/,
      'fail',
      /CODEXK8S_RUNNER_IMAGE=ghcr\.io\/actions\/actions-runner:2\.337\.0/,
    ],
    [/last deploy #3 .*: failure/, 'fail', /A staging deploy is red/],
    [/disk under \/var\/lib: .* \(5%\)|disk under \/var\/lib: .* \(3%\)/, 'fail', /volume is full/],
    [/30_cluster_deps failed/, 'warn', /--from 30_cluster_deps/],
    [/a run is going on: dev@laptop pid 1 run r2, step 40_postgres/, 'info', /^$/],
  ];
  for (const [re, level, action] of expect) {
    const l = byText(re);
    assert.ok(l, `a line matching ${re} in:\n${texts(r).join('\n')}`);
    assert.equal(l.level, level, `${l.text}`);
    assert.match(l.action ?? '', action, l.text);
  }
});

test('what could not be read is a line of its own, never a gap; an API server that does not answer is a failure', () => {
  const r = statusReport(
    S,
    server({ journal: emptyJournal(), lock: 'gone its connection and its step have ended' }),
    cluster({
      nodes: err('kubectl get nodes: The connection to the server 127.0.0.1:6443 was refused'),
      workloads: err('kubectl get deployments: refused'),
      backupCronJob: err('refused'),
      scaleSet: err('refused'),
      releases: err('helm list: Kubernetes cluster unreachable'),
      postgresBytes: err('refused'),
    }),
    github({
      lastDeploy: err('Resource not accessible by personal access token'),
      runners: err('Bad credentials'),
      runnerReleases: err('no answer'),
    }),
  );
  assert.equal(r.healthy, false);
  const all = texts(r).join('\n');
  assert.match(all, /cluster: the API server does not answer: kubectl get nodes: The connection .* refused/);
  assert.match(all, /charts: helm releases: unknown \(helm list: Kubernetes cluster unreachable\)/);
  assert.match(all, /images: workload images: unknown/);
  assert.match(all, /postgres: the nightly backup: unknown \(refused\)/);
  assert.match(all, /runners: runners registered in GitHub: unknown \(Bad credentials\)/);
  assert.match(all, /deploys: the last staging-deploy run: unknown \(Resource not accessible/);
  assert.match(all, /deploys: the deploy loop was never proven on this server/);
  assert.match(all, /journal: no run recorded on this server/);
  assert.match(
    all,
    /a lock of a run that ended is left \(its connection and its step have ended\): the next run takes it over/,
  );
});

test('the nightly backup: none yet on a new CronJob is a fact, none after a day is a warning', () => {
  const fresh = statusReport(
    S,
    server(),
    cluster({ backupCronJob: ok({ metadata: { name: 'postgres-backup', creationTimestamp: iso(3600) }, status: {} }) }),
    github(),
  );
  assert.match(texts(fresh, 'info').join('\n'), /no backup yet: the CronJob is 60m old and runs nightly/);
  const old = statusReport(
    S,
    server(),
    cluster({
      backupCronJob: ok({ metadata: { name: 'postgres-backup', creationTimestamp: iso(3 * 86400) }, status: {} }),
    }),
    github(),
  );
  assert.match(texts(old, 'warn').join('\n'), /no successful backup yet/);
  const missing = statusReport(S, server(), cluster({ backupCronJob: ok(undefined) }), github());
  assert.match(texts(missing, 'fail').join('\n'), /CronJob codex-k8s-staging\/postgres-backup is missing/);
});

test('server mode: the certificate days left from the ingress Secret; none, unparsable and close to its end are named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-status-'));
  try {
    const cert = (days: number) => {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-subj',
          '/CN=staging.example',
          '-days',
          String(days),
          '-keyout',
          join(dir, 'k.pem'),
          '-out',
          join(dir, 'c.pem'),
        ],
        { stdio: 'ignore' },
      );
      return readFileSync(join(dir, 'c.pem'), 'utf8');
    };
    const srv = { ...S, mode: 'server' as const, domain: 'staging.example' };
    // The certificate's dates are real ones (from now), so this report is measured against the real clock.
    const now = server({ now: Math.floor(Date.now() / 1000) });
    const good = statusReport(srv, now, cluster({ certificate: ok(cert(80)) }), github());
    assert.match(
      texts(good, 'ok').join('\n'),
      /tls: staging\.example: (79|80) day\(s\) left \(until \d{4}-\d\d-\d\d\), issuer CN=staging\.example/,
    );
    const close = statusReport(srv, now, cluster({ certificate: ok(cert(5)) }), github());
    const l = close.lines.find((x) => x.area === 'tls');
    assert.equal(l?.level, 'warn');
    assert.match(l?.action ?? '', /The TLS certificate was not issued/);
    assert.equal(
      statusReport(srv, now, cluster({ certificate: ok(undefined) }), github()).lines.find((x) => x.area === 'tls')
        ?.level,
      'fail',
    );
    assert.match(
      texts(
        statusReport(
          srv,
          now,
          cluster({ certificate: ok('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }),
          github(),
        ),
        'fail',
      ).join('\n'),
      /does not parse/,
    );
    assert.match(
      texts(statusReport(S, server(), cluster(), github())).join('\n'),
      /tls: local mode: plain HTTP, no certificate/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the screen: symbols on a terminal, words otherwise, the action under its line, the verdict last', () => {
  const r = statusReport(S, server({ diskAvailBytes: 10e9 }), cluster(), github());
  const plain = formatStatus(r, false).map(stripAnsi);
  assert.ok(
    plain.some((l) => /^ {2}cluster +ok {4}1\/1 node\(s\) Ready$/.test(l)),
    plain.join('\n'),
  );
  const disk = plain.findIndex((l) => /warn {2}disk under/.test(l));
  assert.ok(disk > 0);
  assert.match(plain[disk + 1] ?? '', /^ +-> docs\/runbook\.md "PostgreSQL crash-loops, or its volume is full"$/);
  assert.match(plain.at(-1) ?? '', /^healthy, 1 warning\(s\) \(at 2026-12-07T12:00:00\.000Z\)$/);
  const tty = formatStatus(r, true).map(stripAnsi);
  assert.ok(tty.some((l) => /✓ {2}1\/1 node\(s\) Ready/.test(l)));
  assert.ok(tty.some((l) => /! {2}disk under/.test(l)));
});

test('every runbook section a line can point to exists in docs/runbook.md', () => {
  const runbook = readFileSync(join(ROOT, 'docs/runbook.md'), 'utf8');
  const src = readFileSync(join(ROOT, 'bootstrap/lib/status.mts'), 'utf8');
  const titles = [...src.matchAll(/section\('([^']+)'\)/g)].map((m) => m[1] as string);
  assert.ok(titles.length >= 6);
  for (const t of titles) assert.ok(runbook.includes(`## ${t}\n`), `docs/runbook.md has no section "${t}"`);
});

test('image references: the repository without tag or digest, a registry port kept', () => {
  assert.equal(imageRepository('docker.io/library/registry:3.1.1'), 'docker.io/library/registry');
  assert.equal(
    imageRepository('registry.codex-k8s.internal:5000/codex-k8s:abc'),
    'registry.codex-k8s.internal:5000/codex-k8s',
  );
  assert.equal(
    imageRepository('registry.codex-k8s.internal:5000/codex-k8s'),
    'registry.codex-k8s.internal:5000/codex-k8s',
  );
  assert.equal(imageRepository(`ghcr.io/a/b:1.0@sha256:${'0'.repeat(64)}`), 'ghcr.io/a/b');
});

test('remote_helpers.sh status, for real: the lock looked at (its token never printed), disk, memory, the journal', (t) => {
  if (process.getuid?.() !== 0) return t.skip('the helper refuses a user that is not root');
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-status-'));
  try {
    const lock = join(dir, 'lock');
    mkdirSync(lock, { mode: 0o700 });
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    writeFileSync(
      join(lock, 'owner'),
      `token=s3cr3ttoken\nholder=dev@laptop pid 9 run r9\nsince=1700000000\nrun=r9\nstep=40_postgres\nboot_id=${bootId}\npid=999999\npid_start=1\nstep_pid=\nstep_start=\n`,
    );
    const j = journal();
    writeFileSync(join(dir, 'state.json'), JSON.stringify(j));
    const out = execFileSync(
      'bash',
      [join(ROOT, 'bootstrap/lib/remote_helpers.sh'), 'status', lock, join(dir, 'state.json'), dir],
      {
        encoding: 'utf8',
      },
    );
    assert.doesNotMatch(out, /s3cr3ttoken/);
    const f = parseStatusAnswer(out, parseJournal);
    assert.equal(f.lock, 'gone its connection and its step have ended');
    assert.deepEqual(f.lockOwner, {
      holder: 'dev@laptop pid 9 run r9',
      since: '1700000000',
      run: 'r9',
      step: '40_postgres',
    });
    assert.ok((f.diskBytes ?? 0) > 0 && (f.diskAvailBytes ?? -1) >= 0 && (f.memKib ?? 0) > 0, out);
    assert.ok(Math.abs(f.now - Date.now() / 1000) < 60);
    assert.deepEqual(f.journal, j);
    rmSync(lock, { recursive: true });
    assert.equal(
      parseStatusAnswer(
        execFileSync(
          'bash',
          [join(ROOT, 'bootstrap/lib/remote_helpers.sh'), 'status', lock, join(dir, 'none.json'), dir],
          { encoding: 'utf8' },
        ),
        parseJournal,
      ).lock,
      'free',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
