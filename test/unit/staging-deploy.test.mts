// .github/workflows/staging-deploy.yml, executed: test/workflow-runner.mts runs each job's run: blocks with bash, in
// order, against
//   - the kubectl double (test/fakes/kubectl.mts) on a seeded fake cluster: namespaces and registry (30), BuildKit
//     and the codex-k8s Deployment (50), all rendered from manifests/; exec into buildkitd-0 runs build.sh's protocol
//     and records pushes, `set image` and `rollout undo` change the Deployment, an unpushed image never rolls out;
//   - the real app (app/src/server.mts on Node 24) with a real PostgreSQL, as staging, for the smoke job.
// The `uses:` steps have stand-ins: checkout copies this repository's tree into the job's workspace (no
// node_modules: the smoke CLI must run on plain Node), setup-node puts the server's Node 24 on PATH, and the kubectl
// download step (id kubectl) puts the double on PATH instead (its own script is run separately below, with a curl
// stand-in, to prove the checksum check). The runner's PATH has no node: like the ARC runner image, only setup-node
// brings one. In the pod, kubectl would use the ServiceAccount (no kubeconfig: client-go's in-cluster fallback);
// here the runner's environment carries KUBECONFIG for the double.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import {
  checkoutStandIn,
  runnerBin,
  runWorkflow,
  shouldRun,
  jobCondition,
  evaluate,
  parseCommandFile,
  WorkflowTestError,
} from '../workflow-runner.mts';
import type { StandIn, WorkflowResult } from '../workflow-runner.mts';
import {
  SERVER_NODE_BIN,
  REPO_ROOT,
  FAKES_DIR,
  newStateDir,
  seedCluster,
  runDouble,
  writeFaults,
} from '../fakes/testkit.mts';
import { readCalls } from '../fakes/lib/recorder.mts';
import { readRegistry } from '../fakes/lib/registry.mts';
import { startPostgres } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';
import { startAppProcess } from '../app-process.mts';
import type { AppProcess } from '../app-process.mts';
import { NODE, WORKFLOW_KUBECTL } from '../../bootstrap/lib/versions.mts';
import { NAMES, appImageTag } from '../../bootstrap/lib/manifests.mts';
import { buildExecArgv, buildScriptText, pullRef, PULL_REGISTRY_HOST } from '../../bootstrap/lib/build.mts';
import { clusterObjects } from '../../bootstrap/remote/30_cluster_deps.mts';
import { buildkitObjects } from '../../bootstrap/lib/buildkit.mts';
import { appObjects } from '../../bootstrap/lib/service.mts';
import type { DeploySettings } from '../../bootstrap/lib/service.mts';
import { LOCAL_STAGING_URL } from '../../bootstrap/remote/70_github_repo.mts';

const WORKFLOW = join(REPO_ROOT, '.github', 'workflows', 'staging-deploy.yml');
const STAGING_NS = 'codex-k8s-staging';
const SCALE_SET = 'codex-k8s-staging';
const RUNNER_NAME = `${SCALE_SET}-7xk2p-runner-q4z8d`;
const REGISTRY = `${PULL_REGISTRY_HOST}:5000`;
const DEPLOY_SETTINGS: DeploySettings = {
  mode: 'local',
  stagingNamespace: STAGING_NS,
  runnerNamespace: 'arc-runners',
  registryPort: 5000,
  rolloutTimeout: 60,
  buildTimeout: 600,
};
const sha = () => randomBytes(20).toString('hex');
const FIRST = sha();
const work = mkdtempSync(join(tmpdir(), 'ck8s-staging-deploy-'));

interface Wf {
  on: Record<string, unknown>;
  permissions: Record<string, string>;
  concurrency: { group: string; 'cancel-in-progress': boolean };
  env: Record<string, string>;
  jobs: Record<
    string,
    {
      needs?: string | string[];
      'runs-on': string;
      steps: Array<{ id?: string; name?: string; uses?: string; run?: string; with?: Record<string, unknown> }>;
    }
  >;
}
const wf = parse(readFileSync(WORKFLOW, 'utf8')) as Wf;

// ---------------------------------------------------------------------------------------------------------------
// The shape GitHub sees

describe('staging-deploy.yml: triggers, permissions, pins', () => {
  it('runs on a push to main and on dispatch, one at a time, never cancelled, with contents: read only', () => {
    assert.deepEqual(Object.keys(wf.on).sort(), ['push', 'workflow_dispatch']);
    assert.deepEqual(wf.on['push'], { branches: ['main'] });
    assert.deepEqual(wf.permissions, { contents: 'read' });
    assert.deepEqual(wf.concurrency, { group: 'staging-deploy', 'cancel-in-progress': false });
    assert.deepEqual(Object.keys(wf.jobs), ['build', 'deploy', 'smoke']);
    for (const job of Object.values(wf.jobs))
      assert.equal(job['runs-on'], '${{ vars.CODEXK8S_RUNNER_SCALE_SET_NAME }}');
  });

  it('every action is pinned by commit SHA, the same pins as ci.yml', () => {
    const ci = readFileSync(join(REPO_ROOT, '.github', 'workflows', 'ci.yml'), 'utf8');
    const uses = Object.values(wf.jobs).flatMap((j) =>
      j.steps.map((s) => s.uses).filter((u): u is string => u !== undefined),
    );
    assert.ok(uses.length >= 3);
    for (const u of uses) {
      assert.match(u, /^[a-z-]+\/[a-z-]+@[0-9a-f]{40}$/, `${u} is not pinned by commit`);
      assert.ok(ci.includes(`uses: ${u} `), `${u}: another pin than ci.yml's`);
    }
    const setupNode = wf.jobs['smoke']?.steps.find((s) => s.uses?.startsWith('actions/setup-node@'));
    assert.equal(setupNode?.with?.['node-version'], NODE.version, 'the smoke job runs the Node the server runs');
  });

  it('kubectl: the pin of versions.mts (Kubernetes of k3s), one identical download step per job', () => {
    assert.equal(wf.env['KUBECTL_VERSION'], WORKFLOW_KUBECTL.version);
    assert.equal(wf.env['KUBECTL_SHA256_AMD64'], WORKFLOW_KUBECTL.sha256.x64);
    assert.equal(wf.env['KUBECTL_SHA256_ARM64'], WORKFLOW_KUBECTL.sha256.arm64);
    const steps = Object.values(wf.jobs).map((j) => j.steps.find((s) => s.id === 'kubectl'));
    assert.equal(steps.length, 3);
    for (const s of steps) assert.equal(s?.run, steps[0]?.run, 'the copies of the kubectl step differ');
  });

  it('the build calls build.sh exactly as step 50 does (lib/build.mts buildExecArgv)', () => {
    const build = wf.jobs['build']?.steps.find((s) => s.name?.startsWith('Build in the cluster'))?.run ?? '';
    const words = buildExecArgv('0'.repeat(40)).slice(3); // without kubectl --kubeconfig FILE
    const expected = words
      .join(' ')
      .replace(NAMES.systemNamespace, '"$SYSTEM_NAMESPACE"')
      .replace(`sha-${'0'.repeat(12)} ${'0'.repeat(40)}`, '"$TAG" "$GITHUB_SHA"');
    assert.ok(build.includes(`kubectl ${expected}`), `expected "kubectl ${expected}" in:\n${build}`);
    assert.equal(wf.env['SYSTEM_NAMESPACE'], NAMES.systemNamespace);
  });
});

describe('the test interpreter refuses what it does not know', () => {
  const scope = {
    vars: { A: 'a' },
    secrets: { S: 's' },
    sha: 'f'.repeat(40),
    needs: {},
    steps: { x: { o: '1' } },
    env: { E: 'e' },
  };
  it('evaluates the simple references only', () => {
    assert.equal(
      evaluate(
        '${{ vars.A }}-${{ secrets.S }}-${{ github.sha }}-${{ steps.x.outputs.o }}-${{ env.E }}-${{ vars.NONE }}',
        scope,
        't',
      ),
      `a-s-${'f'.repeat(40)}-1-e-`,
    );
    assert.throws(() => evaluate('${{ github.event.head_commit.id }}', scope, 't'), WorkflowTestError);
    assert.throws(() => evaluate("${{ vars.A == 'a' }}", scope, 't'), WorkflowTestError);
    assert.throws(() => evaluate('${{ steps.y.outputs.o }}', scope, 't'), /no step with id y/);
  });
  it('job-level if: a repository variable compared with a string, nothing else', () => {
    assert.equal(jobCondition("vars.A != ''", { A: 'a' }, 't'), true);
    assert.equal(jobCondition("${{ vars.A != '' }}", {}, 't'), false);
    assert.equal(jobCondition("vars.A == 'a'", { A: 'a' }, 't'), true);
    assert.equal(jobCondition(undefined, {}, 't'), true);
    assert.throws(() => jobCondition("github.ref == 'refs/heads/main'", {}, 't'), WorkflowTestError);
  });
  it('if: success() / failure() / always() only', () => {
    assert.equal(shouldRun(undefined, false, 't'), true);
    assert.equal(shouldRun(undefined, true, 't'), false);
    assert.equal(shouldRun('failure()', true, 't'), true);
    assert.equal(shouldRun('${{ always() }}', true, 't'), true);
    assert.throws(() => shouldRun("failure() && steps.smoke.outcome == 'failure'", true, 't'), WorkflowTestError);
  });
  it('command files: name=value and heredocs', () => {
    assert.deepEqual(parseCommandFile('a=1\nb<<EOF\nx\ny=z\nEOF\nc=\n'), { a: '1', b: 'x\ny=z', c: '' });
    assert.throws(() => parseCommandFile('b<<EOF\nx\n'), /unterminated/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The kubectl download step, run as written (curl and uname stand-ins)

describe('the kubectl step checks the pinned sha256', () => {
  const script = wf.jobs['build']?.steps.find((s) => s.id === 'kubectl')?.run ?? '';
  const runStep = async (arch: string, pins: { amd64: string; arm64: string }) => {
    const dir = mkdtempSync(join(work, 'kubectl-step-'));
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    // curl stand-in: records its URL and writes a small executable in place of kubectl.
    writeFileSync(
      join(bin, 'curl'),
      `#!/bin/bash\nout=""; url=""\nwhile [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2;; -*) shift;; *) url="$1"; shift;; esac; done\necho "$url" >"${dir}/url"\nprintf '#!/bin/sh\\necho fake kubectl "$@"\\n' >"$out"\n`,
    );
    writeFileSync(join(bin, 'uname'), `#!/bin/sh\necho ${arch}\n`);
    for (const f of ['curl', 'uname']) chmodSync(join(bin, f), 0o755);
    const temp = join(dir, 'temp');
    mkdirSync(temp);
    const files = {
      GITHUB_PATH: join(dir, 'path'),
      GITHUB_OUTPUT: join(dir, 'out'),
      GITHUB_ENV: join(dir, 'env'),
      GITHUB_STEP_SUMMARY: join(dir, 'sum'),
    };
    for (const f of Object.values(files)) writeFileSync(f, '');
    const env = {
      PATH: `${bin}:/usr/bin:/bin`,
      RUNNER_TEMP: temp,
      KUBECTL_VERSION: WORKFLOW_KUBECTL.version,
      KUBECTL_SHA256_AMD64: pins.amd64,
      KUBECTL_SHA256_ARM64: pins.arm64,
      ...files,
    };
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const c = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], { env, cwd: dir });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b));
      c.stderr.on('data', (b: Buffer) => (out += b));
      c.on('close', (code) => resolve({ code: code ?? 1, out }));
    });
    const url = existsSync(join(dir, 'url')) ? readFileSync(join(dir, 'url'), 'utf8').trim() : '';
    return { ...r, url, path: readFileSync(files.GITHUB_PATH, 'utf8').trim(), temp };
  };
  const fakeSum = createHash('sha256').update('#!/bin/sh\necho fake kubectl "$@"\n').digest('hex');

  it('the pinned sum of the architecture: downloaded from dl.k8s.io, on PATH', async () => {
    const r = await runStep('aarch64', { amd64: 'f'.repeat(64), arm64: fakeSum });
    assert.equal(r.code, 0, r.out);
    assert.equal(r.url, `${WORKFLOW_KUBECTL.baseUrl}/${WORKFLOW_KUBECTL.version}/bin/linux/arm64/kubectl`);
    assert.equal(r.path, join(r.temp, 'kubectl-bin'));
    assert.match(r.out, /fake kubectl version --client/);
  });
  it('another sum: the step fails and nothing goes on PATH', async () => {
    const r = await runStep('x86_64', { amd64: WORKFLOW_KUBECTL.sha256.x64, arm64: fakeSum });
    assert.equal(r.code, 1, r.out);
    assert.match(r.url, /\/linux\/amd64\/kubectl$/);
    assert.match(r.out, /::error::kubectl v[\d.]+ \(amd64\) does not match its pinned sha256/);
    assert.equal(r.path, '');
  });
  it('an architecture without a pin fails before any download', async () => {
    const r = await runStep('riscv64', { amd64: fakeSum, arm64: fakeSum });
    assert.equal(r.code, 1);
    assert.match(r.out, /no pinned kubectl for riscv64/);
    assert.equal(r.url, '');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The whole workflow against the doubles and the real app

describe('staging-deploy.yml executed against the kubectl double and the real app', { concurrency: false }, () => {
  let pg: Postgres;
  let fakes: string;
  let kubeconfig: string;
  let shimDir: string;
  let secret: string;
  let secretFile: string;
  let basePath: string;
  let app: AppProcess | undefined;

  const kubectl = (...args: string[]) => runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], { dir: fakes });
  const liveImage = () => {
    const r = kubectl('-n', STAGING_NS, 'get', 'deployment', NAMES.app, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as {
      spec: { template: { spec: { containers: Array<{ name: string; image: string }> } } };
    };
    return d.spec.template.spec.containers.find((c) => c.name === NAMES.appContainer)?.image;
  };
  const image = (gitSha: string) => pullRef(5000, appImageTag(gitSha));

  /** One run of the workflow at commit `gitSha`, with staging (the app) reporting `appVersion`. */
  async function deploy(
    gitSha: string,
    appVersion: string,
    wired = true,
  ): Promise<{ r: WorkflowResult; calls: ReturnType<typeof readCalls> }> {
    await app?.stop();
    app = await startAppProcess({ pg, secretFile, version: appVersion });
    const before = readCalls(fakes).length;
    const standIns: Record<string, StandIn> = {
      'actions/checkout': checkoutStandIn(REPO_ROOT),
      'actions/setup-node': ({ step, addPath }) => {
        assert.equal(step.with?.['node-version'], NODE.version);
        addPath(dirname(SERVER_NODE_BIN));
      },
      // The download itself is tested above; here the double takes kubectl's place.
      kubectl: ({ addPath }) => addPath(shimDir),
    };
    const r = await runWorkflow({
      file: WORKFLOW,
      vars: !wired
        ? {}
        : {
            CODEXK8S_RUNNER_SCALE_SET_NAME: SCALE_SET,
            CODEXK8S_STAGING_NAMESPACE: STAGING_NS,
            CODEXK8S_INTERNAL_REGISTRY: REGISTRY,
            CODEXK8S_ROLLOUT_TIMEOUT: '1m',
            CODEXK8S_STAGING_URL: app.url,
            CODEXK8S_MODE: 'local',
          },
      secrets: { CODEXK8S_WEBHOOK_SECRET: secret },
      github: {
        sha: gitSha,
        eventName: 'push',
        event: { repository: { pushed_at: Math.floor(Date.now() / 1000) - 7 } },
      },
      runnerEnv: {
        PATH: basePath,
        HOME: join(work, 'home'),
        RUNNER_NAME,
        KUBECONFIG: kubeconfig,
        CODEXK8S_FAKES_DIR: fakes,
        LANG: 'C.UTF-8',
      },
      standIns,
      workDir: work,
    });
    return { r, calls: readCalls(fakes).slice(before) };
  }

  const noSecret = (r: WorkflowResult) => {
    assert.ok(!r.log.includes(secret), 'the webhook secret is in the log');
    for (const j of Object.values(r.jobs)) {
      assert.ok(!j.summary.includes(secret), `the webhook secret is in the ${j.name} summary`);
      assert.ok(!JSON.stringify(j.outputs).includes(secret), `the webhook secret is in the ${j.name} outputs`);
    }
  };
  const words = (c: { argv: string[] }) =>
    c.argv.filter((a, i) => a !== '--kubeconfig' && c.argv[i - 1] !== '--kubeconfig').join(' ');

  before(async () => {
    pg = await startPostgres();
    mkdirSync(join(work, 'home'), { recursive: true });
    secret = randomBytes(32).toString('hex');
    secretFile = join(work, 'webhook-secret');
    writeFileSync(secretFile, secret + '\n', { mode: 0o600 });
    fakes = newStateDir();
    kubeconfig = seedCluster(fakes);
    shimDir = join(work, 'kubectl-shim');
    mkdirSync(shimDir);
    writeFileSync(
      join(shimDir, 'kubectl'),
      `#!/bin/sh\nexec '${SERVER_NODE_BIN}' '${join(FAKES_DIR, 'kubectl.mts')}' "$@"\n`,
    );
    chmodSync(join(shimDir, 'kubectl'), 0o755);
    basePath = runnerBin(work);
    // The cluster after 30 and 50: namespaces, registry, BuildKit, and staging on a first image that was built.
    const objects = [
      ...clusterObjects({
        mode: 'local',
        stagingNamespace: STAGING_NS,
        runnerNamespace: 'arc-runners',
        registryPort: 5000,
        letsencryptServer: 'staging',
      }),
      ...buildkitObjects(DEPLOY_SETTINGS, buildScriptText()),
    ];
    const seed = runDouble('kubectl', ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
      dir: fakes,
      stdin: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
    });
    assert.equal(seed.code, 0, seed.stderr);
    const tar = await new Promise<Buffer>((resolve) => {
      const c = spawn('tar', ['-C', join(REPO_ROOT, 'app'), '-c', '.']);
      const chunks: Buffer[] = [];
      c.stdout.on('data', (b: Buffer) => chunks.push(b));
      c.on('close', () => resolve(Buffer.concat(chunks)));
    });
    const first = await new Promise<{ code: number; out: string }>((resolve) => {
      const c = spawn(join(shimDir, 'kubectl'), ['--kubeconfig', kubeconfig, ...buildExecArgv(FIRST).slice(3)], {
        env: { ...process.env, CODEXK8S_FAKES_DIR: fakes },
      });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b));
      c.stderr.on('data', (b: Buffer) => (out += b));
      c.on('close', (code) => resolve({ code: code ?? 1, out }));
      c.stdin.end(tar);
    });
    assert.equal(first.code, 0, first.out);
    const appSeed = runDouble('kubectl', ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
      dir: fakes,
      stdin: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: appObjects(DEPLOY_SETTINGS, image(FIRST)) }),
    });
    assert.equal(appSeed.code, 0, appSeed.stderr);
    assert.equal(liveImage(), image(FIRST));
  });

  after(async () => {
    await app?.stop();
    pg?.stop();
    rmSync(work, { recursive: true, force: true });
    if (fakes) rmSync(fakes, { recursive: true, force: true });
  });

  it('green: builds and pushes the commit, rolls staging to it, the smoke checks pass against the app', async () => {
    const next = sha();
    const { r, calls } = await deploy(next, next);
    const jobs = r.jobs;
    assert.deepEqual(
      Object.values(jobs).map((j) => [j.name, j.result]),
      [
        ['build', 'success'],
        ['deploy', 'success'],
        ['smoke', 'success'],
      ],
      r.log,
    );
    assert.deepEqual(
      Object.values(jobs).map((j) => j.runsOn),
      [SCALE_SET, SCALE_SET, SCALE_SET],
    );
    assert.equal(jobs['build']?.outputs['tag'], appImageTag(next));
    assert.equal(jobs['deploy']?.outputs['changed'], 'true');
    // Real effects: the image is in the registry, built from app/ at this commit; the Deployment runs it.
    const pushed = readRegistry(fakes).find((i) => i.tag === appImageTag(next));
    assert.equal(pushed?.gitSha, next);
    assert.equal(liveImage(), image(next));
    const kinds = calls.map((c) => [
      words(c)
        .split(' ')
        .filter((w) => !w.startsWith('-') && w !== STAGING_NS && w !== NAMES.systemNamespace)
        .slice(0, 2)
        .join(' '),
      c.mutating,
    ]);
    assert.deepEqual(
      kinds.filter(([, m]) => m),
      [
        ['exec buildkitd-0', true],
        ['set image', true],
      ],
    );
    assert.ok(
      calls.some(
        (c) => words(c) === `-n ${STAGING_NS} rollout status deployment/codex-k8s --timeout 1m` && c.exitCode === 0,
      ),
    );
    assert.ok(!calls.some((c) => c.argv.includes('undo')), 'no rollback on a green run');
    // The smoke job signed a delivery that the app stored in PostgreSQL.
    assert.ok(Number(pg.psql('postgres', 'SELECT count(*) FROM github_deliveries')) >= 1);
    const smoke = jobs['smoke']?.summary ?? '';
    assert.match(smoke, /✓ smoke checks passed/);
    assert.match(smoke, /\| ✓ \| version \|/);
    assert.match(smoke, /\| ✓ \| runner \|/);
    assert.match(smoke, /\*\*push to live\*\*: \d+s/);
    for (const j of ['build', 'deploy', 'smoke'])
      assert.match(jobs[j]?.summary ?? '', new RegExp(`\\*\\*${j}\\*\\* took \\d+s \\(runner ${RUNNER_NAME}\\)`));
    assert.match(
      jobs['build']?.summary ?? '',
      /image: `pushed registry\.codex-k8s-system\.svc\.cluster\.local:5000\/codex-k8s:sha-[0-9a-f]{12}`/,
    );
    noSecret(r);
  });

  it('the same commit again: the build is unchanged, nothing is set, the smoke checks pass', async () => {
    const live = liveImage();
    const tag = live?.split(':').pop() ?? '';
    const commit = readRegistry(fakes).find((i) => i.tag === tag)?.gitSha ?? '';
    const { r, calls } = await deploy(commit, commit);
    assert.deepEqual(
      Object.values(r.jobs).map((j) => j.result),
      ['success', 'success', 'success'],
      r.log,
    );
    assert.equal(r.jobs['deploy']?.outputs['changed'], 'false');
    assert.deepEqual(
      calls.filter((c) => c.mutating),
      [],
      'a re-run changes nothing in the cluster',
    );
    assert.match(r.jobs['build']?.summary ?? '', /image: `unchanged /);
    noSecret(r);
  });

  it('smoke failure (staging reports another version): rollout undo, the run fails, the table is in the summary', async () => {
    const previous = liveImage();
    const next = sha();
    const { r, calls } = await deploy(next, FIRST);
    assert.deepEqual(
      Object.values(r.jobs).map((j) => [j.name, j.result]),
      [
        ['build', 'success'],
        ['deploy', 'success'],
        ['smoke', 'failure'],
      ],
      r.log,
    );
    const undo = calls.find((c) => words(c) === `-n ${STAGING_NS} rollout undo deployment/codex-k8s`);
    assert.ok(undo, `no rollout undo in calls.jsonl:\n${calls.map(words).join('\n')}`);
    assert.equal(undo.mutating, true);
    assert.ok(
      calls.indexOf(undo) > calls.findIndex((c) => c.argv.includes('set')),
      'the undo comes after the set image',
    );
    assert.equal(liveImage(), previous, 'staging is back on the image before this run');
    const steps = r.jobs['smoke']?.steps ?? [];
    assert.equal(steps.find((s) => s.id === 'smoke')?.outcome, 'failure');
    assert.equal(steps.find((s) => s.step.startsWith('Roll back'))?.outcome, 'success');
    const summary = r.jobs['smoke']?.summary ?? '';
    assert.match(summary, /✗ smoke checks failed/);
    assert.match(summary, /\| ✗ \| version \|/);
    assert.match(summary, /\| ✓ \| healthz \|/);
    assert.match(summary, /\*\*rolled back\*\*/);
    assert.match(summary, /\*\*smoke\*\* took \d+s/, 'the duration is printed on failure too');
    noSecret(r);
  });

  it('a smoke failure on a commit staging already ran is not "rolled back" to an older one', async () => {
    const live = liveImage();
    const commit = readRegistry(fakes).find((i) => i.tag === live?.split(':').pop())?.gitSha ?? '';
    const { r, calls } = await deploy(commit, sha());
    assert.equal(r.jobs['smoke']?.result, 'failure', r.log);
    assert.equal(r.jobs['deploy']?.outputs['changed'], 'false');
    assert.ok(!calls.some((c) => c.argv.includes('undo')));
    assert.equal(liveImage(), live);
    assert.match(r.log, /::warning::this run did not change the image/);
  });

  it('a rollout that does not become ready is undone in the deploy job; smoke is skipped', async () => {
    const previous = liveImage();
    writeFaults(fakes, {
      'kubectl rollout status deployment/codex-k8s': {
        exitCode: 1,
        stderr: 'error: timed out waiting for the condition\n',
        times: 1,
      },
    });
    try {
      const next = sha();
      const { r, calls } = await deploy(next, next);
      assert.deepEqual(
        Object.values(r.jobs).map((j) => j.result),
        ['success', 'failure', 'skipped'],
        r.log,
      );
      assert.ok(calls.some((c) => words(c) === `-n ${STAGING_NS} rollout undo deployment/codex-k8s` && c.mutating));
      assert.equal(liveImage(), previous);
      assert.match(r.log, /::error::deployment\/codex-k8s did not become ready/);
      assert.match(r.jobs['deploy']?.summary ?? '', /rolled back to /);
    } finally {
      writeFaults(fakes, {});
    }
  });

  it('a repository no staging has wired (no variables): every job is skipped, the cluster is not touched', async () => {
    const { r, calls } = await deploy(sha(), sha(), false);
    assert.deepEqual(
      Object.values(r.jobs).map((j) => j.result),
      ['skipped', 'skipped', 'skipped'],
    );
    assert.deepEqual(calls, []);
  });

  it('the smoke job reaches staging through the variable step 70 sets (local mode: Traefik in the cluster)', () => {
    const smoke = wf.jobs['smoke']?.steps.find((s) => s.id === 'smoke');
    assert.match(smoke?.run ?? '', /--url "\$STAGING_URL" --expect-version "\$GITHUB_SHA"/);
    assert.equal(LOCAL_STAGING_URL, 'http://traefik.kube-system.svc.cluster.local');
  });
});
