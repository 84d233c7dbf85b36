// Step 50 (the codex-k8s service and BuildKit) end to end: the real launcher, run from a snapshot of this repository
// committed as one commit (test/e2e/harness.mts snapshotRepo: a clean app/ with a known SHA), runs 00..50 against a
// sandbox server in local mode, then again, then plays the deploy workflow (a build through `kubectl exec` and
// `kubectl set image`) and runs 50 again from a NEWER laptop commit, then server mode, a rotated webhook secret, a
// dirty app/, and an image that was never pushed.
// Proven for real: the upload of app/ and source.json; the context tar built on the server from the uploaded app/ and
// streamed on the exec's stdin; the webhook secret generated once on the server and never printed; the manifests
// rendered on the server. Through the doubles (test/fakes): the cluster, the exec into buildkitd-0 (which validates
// the tar and the Dockerfile and records the push in its registry), `set image`, rollouts that fail on unpushed images.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTarget, footers, snapshotRepo } from './harness.mts';
import type { Target, DoubleCall } from './harness.mts';
import { accountCommands } from '../../bootstrap/lib/harden/operator.mts';

let t: Target;
let snap: Awaited<ReturnType<typeof snapshotRepo>>;
const ONLY = process.env['CODEXK8S_E2E_DEPLOY_STEPS'] ?? '00,10,20,30,40,50';
const STEP = '50_deploy_codex_k8s';
const NS = 'codex-k8s-staging';
const SYS = 'codex-k8s-system';
const K = '/etc/rancher/k3s/k3s.yaml';
const PUSH = 'registry.codex-k8s-system.svc.cluster.local:5000/codex-k8s';
const PULL = 'registry.codex-k8s.internal:5000/codex-k8s';
const SCRIPT = '/opt/codex-k8s-build/build.sh';
const SECRET_FILE = '/etc/codex-k8s-bootstrap/secrets/github-webhook-secret';

const tagOf = (sha: string) => `sha-${sha.slice(0, 12)}`;
const calls = () => t.doublesCalls();
const getJson = (...args: string[]) => t.kubeJson(...args);
const since = async (n: number): Promise<DoubleCall[]> => (await calls()).slice(n);
const execCalls = (cs: DoubleCall[]) => cs.filter((c) => c.tool === 'kubectl' && c.argv.includes('exec'));
const mutating = (cs: DoubleCall[]) =>
  cs.filter((c) => c.mutating).map((c) => `${c.tool} ${c.argv.join(' ')}: ${(c.changes ?? []).join('; ')}`);
const liveImage = async () =>
  (await getJson('-n', NS, 'deployment', 'codex-k8s'))['spec']['template']['spec']['containers'][0]['image'] as string;
const launch50 = (extraEnv: Record<string, string> = {}) =>
  t.launch(['--yes', '--only', '50'], extraEnv, { repoRoot: snap.root });

async function pushedTags(): Promise<Record<string, { gitSha: string }>> {
  const r = await t.sb.exec(['sh', '-c', 'cat /var/lib/codex-k8s-fakes/registry.json 2>/dev/null || echo "{}"']);
  const images = (JSON.parse(r.stdout) as { images?: Record<string, { tag: string; gitSha: string }> }).images ?? {};
  return Object.fromEntries(Object.values(images).map((i) => [i.tag, { gitSha: i.gitSha }]));
}

async function webhookSecret(): Promise<string> {
  return (await t.sb.exec(['cat', SECRET_FILE])).stdout.trim();
}

/** A small build context as the workflow streams it: a tar whose bytes are valid UTF-8 (sb.exec passes text). */
function contextTar(): string {
  const d = mkdtempSync(join(tmpdir(), 'ck8s-ctx-'));
  mkdirSync(join(d, 'src'));
  writeFileSync(
    join(d, 'Dockerfile'),
    'FROM docker.io/library/node:24.19.0-bookworm-slim\nCOPY src ./src\nARG GIT_SHA\n',
  );
  writeFileSync(join(d, 'src', 'server.mts'), 'console.log("v2");\n');
  const buf = execFileSync('tar', ['--create', '--format=ustar', '--file', '-', '--directory', d, '.']);
  const text = buf.toString('utf8');
  assert.ok(Buffer.from(text, 'utf8').equals(buf), 'the tar survives the text round trip');
  return text;
}

describe('50_deploy_codex_k8s against a sandbox server', { concurrency: false }, () => {
  let firstSha = '';
  let secretValue = '';

  before(async () => {
    t = await startTarget();
    snap = await snapshotRepo();
    firstSha = snap.sha;
    if (!ONLY.split(',').includes('10')) await t.sb.exec(accountCommands.create('codex'));
  });
  after(async () => {
    await t?.stop();
  });

  it('local mode: the first run builds the uploaded app/ in buildkitd-0, pushes sha-<12> and deploys it', async () => {
    const r = await t.launch(['--yes', '--only', ONLY], {}, { repoRoot: snap.root });
    assert.equal(r.code, 0, r.output);
    assert.match(footers(r.output)[STEP] ?? '', /^\+ changed \d+$/, r.output);
    const tag = tagOf(firstSha);
    assert.ok(
      r.output.includes(
        `+ image ${PUSH}:${tag} built from the uploaded app/ (git ${firstSha.slice(0, 12)}) and pushed`,
      ),
      r.output,
    );
    assert.ok(r.output.includes(`+ ${SECRET_FILE} generated (0600`), r.output);
    assert.ok(r.output.includes(`+ Secret ${NS}/codex-k8s-runtime created from ${SECRET_FILE}`), r.output);
    assert.match(r.output, /\+ deployment\.apps\/codex-k8s created/);
    assert.match(r.output, /\+ statefulset\.apps\/buildkitd created/);

    // The push: that commit, from a context whose Dockerfile and COPY sources the double checked.
    assert.deepEqual(await pushedTags(), { [tag]: { gitSha: firstSha } });
    const execs = execCalls(await calls());
    assert.equal(execs.length, 1, 'one build');
    assert.deepEqual(execs[0]?.argv, [
      '--kubeconfig',
      K,
      '-n',
      SYS,
      'exec',
      '-i',
      'buildkitd-0',
      '-c',
      'buildkitd',
      '--',
      SCRIPT,
      'build',
      tag,
      firstSha,
    ]);
    assert.equal(execs[0]?.exitCode, 0);
    assert.equal(execs[0]?.mutating, true);
    assert.ok(execs[0]?.stdinSha256, 'the context came on stdin');
    assert.equal(await liveImage(), `${PULL}:${tag}`);
  });

  it('the server holds what the step promises: app/ without tests, source.json, BuildKit, the app, the Secret from the file', async () => {
    const files = (await t.sb.exec(['sh', '-c', 'cd /opt/codex-k8s-bootstrap/app && find . -type f | sort'])).stdout
      .trim()
      .split('\n');
    assert.ok(
      files.includes('./Dockerfile') && files.includes('./package-lock.json') && files.includes('./src/server.mts'),
      files.join(' '),
    );
    assert.deepEqual(
      files.filter((f) => /node_modules|\.test\.|\/test\//.test(f)),
      [],
      'no node_modules, no tests',
    );
    assert.deepEqual(JSON.parse((await t.sb.exec(['cat', '/opt/codex-k8s-bootstrap/source.json'])).stdout), {
      gitSha: firstSha,
    });

    const cm = await getJson('-n', SYS, 'configmap', 'buildkit-scripts');
    assert.equal(cm['data']['build.sh'], readFileSync(join(snap.root, 'manifests/buildkit/build.sh'), 'utf8'));
    const sts = await getJson('-n', SYS, 'statefulset', 'buildkitd');
    assert.match(
      sts['spec']['template']['spec']['containers'][0]['image'],
      /^docker\.io\/moby\/buildkit:v[\d.]+-rootless$/,
    );
    const role = await getJson('-n', SYS, 'role', 'codex-k8s-builder');
    assert.deepEqual(
      role['rules'].map((x: any) => x.resourceNames),
      [['buildkitd-0'], ['buildkitd-0']],
    );
    const rb = await getJson('-n', SYS, 'rolebinding', 'codex-k8s-runner-builder');
    assert.deepEqual(rb['subjects'], [{ kind: 'ServiceAccount', name: 'codex-k8s-runner', namespace: 'arc-runners' }]);

    const ing = await getJson('-n', NS, 'ingress', 'codex-k8s');
    assert.equal(ing['spec']['tls'], undefined, 'local mode: plain HTTP');
    assert.equal(ing['spec']['rules'][0]['host'], undefined);
    assert.equal((await getJson('-n', NS, 'service', 'codex-k8s'))['spec']['ports'][0]['port'], 80);
    // What the step verified after the rollout: the pods run the image it set, Ready.
    const pods = await getJson(
      '-n',
      NS,
      'pods',
      '-l',
      'app.kubernetes.io/name=codex-k8s,app.kubernetes.io/instance=codex-k8s',
    );
    assert.deepEqual(
      pods['items'].map((p: any) => [p.spec.containers[0].image, p.status.containerStatuses[0].ready]),
      [[`${PULL}:${tagOf(firstSha)}`, true]],
    );

    const mode = (await t.sb.exec(['stat', '-c', '%a %U', SECRET_FILE])).stdout.trim();
    assert.equal(mode, '600 root');
    secretValue = await webhookSecret();
    assert.match(secretValue, /^[0-9a-f]{64}$/);
    const s = await getJson('-n', NS, 'secret', 'codex-k8s-runtime');
    assert.equal(Buffer.from(s['data']['github-webhook-secret'], 'base64').toString('utf8'), secretValue);
    const applies = (await calls()).filter(
      (c) => c.tool === 'kubectl' && c.argv.includes('apply') && c.argv.includes('--server-side'),
    );
    assert.ok(applies.length > 0, 'Secrets go server-side');
  });

  it('the second run reports every step unchanged, builds nothing and makes no mutating call', async () => {
    const n = (await calls()).length;
    const r = await t.launch(['--yes', '--only', ONLY], {}, { repoRoot: snap.root });
    assert.equal(r.code, 0, r.output);
    for (const [step, footer] of Object.entries(footers(r.output)))
      assert.equal(footer, '= unchanged', `${step}: ${footer}\n${r.output}`);
    assert.ok(Object.keys(footers(r.output)).includes(STEP));
    const after = await since(n);
    assert.deepEqual(mutating(after), []);
    assert.deepEqual(execCalls(after), [], 'no exec: nothing built, nothing even looked up');
    assert.ok(
      after.some((c) => c.argv.includes('diff')),
      'compared with kubectl diff',
    );
  });

  it('the workflow owns the tag: after a build + set image to another commit, a run from a newer laptop commit keeps it', async () => {
    // What the deploy workflow does: build its commit through the same exec, then point the Deployment at it.
    const workflowSha = 'fedcba9876543210fedcba9876543210fedcba98';
    const built = await t.sb.exec(
      [
        'kubectl',
        '--kubeconfig',
        K,
        '-n',
        SYS,
        'exec',
        '-i',
        'buildkitd-0',
        '-c',
        'buildkitd',
        '--',
        SCRIPT,
        'build',
        tagOf(workflowSha),
        workflowSha,
      ],
      { input: contextTar() },
    );
    assert.equal(built.stdout.trim(), `pushed ${PUSH}:${tagOf(workflowSha)}`, built.stderr);
    await t.kubectl('-n', NS, 'set', 'image', 'deployment/codex-k8s', `app=${PULL}:${tagOf(workflowSha)}`);
    assert.equal(await liveImage(), `${PULL}:${tagOf(workflowSha)}`);

    // Meanwhile the laptop moved on: a new commit in app/.
    appendFileSync(join(snap.root, 'app', 'src', 'server.mts'), '\n// a newer laptop commit\n');
    await snap.git('commit', '-q', '-am', 'newer laptop commit');
    const laptopSha = (await snap.git('rev-parse', 'HEAD')).trim();

    const n = (await calls()).length;
    const r = await launch50();
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /\+ tree uploaded/, 'the new commit was uploaded');
    assert.deepEqual(JSON.parse((await t.sb.exec(['cat', '/opt/codex-k8s-bootstrap/source.json'])).stdout), {
      gitSha: laptopSha,
    });
    assert.equal(footers(r.output)[STEP], '= unchanged', r.output);
    assert.equal(await liveImage(), `${PULL}:${tagOf(workflowSha)}`, 'staging is not rolled back to the laptop commit');
    const after = await since(n);
    assert.deepEqual(execCalls(after), []);
    assert.deepEqual(mutating(after), []);
    assert.equal((await pushedTags())[tagOf(laptopSha)], undefined, 'the laptop commit was not built');
  });

  it('server mode: TLS Ingress for the domain through cert-manager; a re-run changes nothing', async () => {
    const env = {
      CODEXK8S_STAGING_DOMAIN: 'staging.example.com',
      CODEXK8S_LETSENCRYPT_EMAIL: 'ops@example.com',
      CODEXK8S_LETSENCRYPT_SERVER: 'staging',
    };
    // Step 50 alone: the ClusterIssuer the Ingress names is 30's (cluster.test.mts covers it in server mode), and
    // 00_preflight would refuse a domain that does not resolve here.
    const r = await t.launch(['--yes', '--only', '50'], env, { repoRoot: snap.root });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /\+ ingress\.networking\.k8s\.io\/codex-k8s configured/);
    const ing = await getJson('-n', NS, 'ingress', 'codex-k8s');
    assert.equal(ing['metadata']['annotations']['cert-manager.io/cluster-issuer'], 'letsencrypt');
    assert.deepEqual(ing['spec']['tls'], [{ hosts: ['staging.example.com'], secretName: 'codex-k8s-tls' }]);
    assert.equal(ing['spec']['rules'][0]['host'], 'staging.example.com');
    const n = (await calls()).length;
    const again = await t.launch(['--yes', '--only', '50'], env, { repoRoot: snap.root });
    assert.equal(again.code, 0, again.output);
    assert.deepEqual(footers(again.output), { [STEP]: '= unchanged' }, again.output);
    assert.deepEqual(mutating(await since(n)), []);
    // Back to local mode for the cases below.
    const local = await t.launch(['--yes', '--only', '50'], {}, { repoRoot: snap.root });
    assert.equal(local.code, 0, local.output);
    assert.equal((await getJson('-n', NS, 'ingress', 'codex-k8s'))['spec']['tls'], undefined);
  });

  it('a webhook secret rotated in the file on the server is copied into the Secret, and said so', async () => {
    const rotated = 'a'.repeat(40) + 'b'.repeat(24);
    await t.sb.exec(['sh', '-c', `umask 077; printf '%s\\n' ${rotated} > ${SECRET_FILE}`]);
    const r = await launch50();
    assert.equal(r.code, 0, r.output);
    assert.match(
      r.output,
      /\+ Secret codex-k8s-staging\/codex-k8s-runtime updated: github-webhook-secret now matches .* \(the file was rotated\)/,
    );
    const s = await getJson('-n', NS, 'secret', 'codex-k8s-runtime');
    assert.equal(Buffer.from(s['data']['github-webhook-secret'], 'base64').toString('utf8'), rotated);
    const again = await launch50();
    assert.equal(footers(again.output)[STEP], '= unchanged', again.output);
    // A file someone made world-readable is drift that the step repairs, not an error.
    await t.sb.exec(['chmod', '644', SECRET_FILE]);
    const loose = await launch50();
    assert.equal(loose.code, 0, loose.output);
    assert.ok(
      loose.output.includes(`~ ${SECRET_FILE} is readable by other users (mode 0644), want 0600`),
      loose.output,
    );
    assert.ok(loose.output.includes(`+ ${SECRET_FILE} made 0600`), loose.output);
    assert.equal((await t.sb.exec(['stat', '-c', '%a', SECRET_FILE])).stdout.trim(), '600');
    // Every value the Secret ever had stays out of everything captured.
    for (const [where, text] of Object.entries(await t.capturedTexts())) {
      for (const v of [secretValue, rotated]) {
        assert.ok(!text.includes(v), `the webhook secret appears in ${where}`);
        assert.ok(!text.includes(Buffer.from(v).toString('base64')), `the base64 webhook secret appears in ${where}`);
      }
    }
  });

  it('step 50 from a dirty app/ (or no commit) stops before anything is contacted, exit 2', async () => {
    const sshBefore = readFileSync(t.sshArgvLog, 'utf8');
    writeFileSync(join(snap.root, 'app', 'src', 'uncommitted.mts'), 'export {};\n');
    try {
      const r = await launch50();
      assert.equal(r.code, 2, r.output);
      assert.match(
        r.output,
        /50_deploy_codex_k8s is selected, but app\/ has uncommitted changes \(\?\? app\/src\/uncommitted\.mts\)/,
      );
      assert.equal(readFileSync(t.sshArgvLog, 'utf8'), sshBefore, 'no ssh was started');
      // Other steps do not need the commit: they run, the upload just goes without a new source.json.
      const other = await t.launch(['--yes', '--only', '40'], {}, { repoRoot: snap.root });
      assert.equal(other.code, 0, other.output);
    } finally {
      execFileSync('rm', ['-f', join(snap.root, 'app', 'src', 'uncommitted.mts')]);
    }
  });

  it('an image that was never pushed: the rollout wait is bounded and the step fails naming what to look at', async () => {
    const keep = await liveImage();
    await t.kubectl('-n', NS, 'set', 'image', 'deployment/codex-k8s', `app=${PULL}:sha-000000000000`);
    const r = await launch50({ CODEXK8S_ROLLOUT_TIMEOUT: '10s' });
    assert.equal(r.code, 1, r.output);
    assert.equal(footers(r.output)[STEP], 'x failed', r.output);
    assert.match(r.output, /deployment codex-k8s-staging\/codex-k8s did not become ready within 10s/);
    assert.match(r.output, /--from 50_deploy_codex_k8s/);
    assert.equal(await liveImage(), `${PULL}:sha-000000000000`, 'the step does not pick an image of its own');
    // The workflow's rollback (rollout undo, or set image to the last good tag) heals it; the next run is clean.
    await t.kubectl('-n', NS, 'set', 'image', 'deployment/codex-k8s', `app=${keep}`);
    const healed = await launch50();
    assert.equal(healed.code, 0, healed.output);
    assert.equal(footers(healed.output)[STEP], '= unchanged', healed.output);
  });
});
