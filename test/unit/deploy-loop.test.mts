// 80_deploy_loop_check without a server: dispatch-and-wait (lib/actions.mts) against the fake GitHub API, whose
// dispatch, run and jobs operations are validated against GitHub's OpenAPI description like the others; the URL
// rule of the smoke checks; the drift rule that makes a second run `unchanged` and a new commit on main drift.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub } from '../fakes/github/server.mts';
import { createGitHub, explainGitHubError } from '../../bootstrap/lib/github/client.mts';
import type { GitHubClient } from '../../bootstrap/lib/github/client.mts';
import { CaptureLog } from '../capture-log.mts';
import { OperationError } from '../../bootstrap/lib/errors.mts';
import { DEPLOY_WORKFLOW, runWorkflow, listRuns, formatJobs, formatSeconds } from '../../bootstrap/lib/actions.mts';
import type { RunInfo } from '../../bootstrap/lib/actions.mts';
import { smokeUrl, loopDrift, pinsDrift, explainLoopError } from '../../bootstrap/remote/80_deploy_loop_check.mts';
import { pinVersions, PINS, K3S_VERSION, IMAGES } from '../../bootstrap/lib/versions.mts';
import { attemptsWithin, backOff } from '../../bootstrap/lib/poll.mts';
import type { DeployLoopRecord } from '../../bootstrap/lib/state.mts';
import { parseJournal } from '../../bootstrap/lib/state.mts';
import { PERMISSIONS } from '../../bootstrap/lib/github/permissions.mts';

const TOKEN = `github_pat_11UNIT${'e5F6g7H8'.repeat(8)}`;
const REPO = 'codex-k8s/loop-repo';
const REF = { owner: 'codex-k8s', repo: 'loop-repo' };

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  assert.fail('expected a failure');
}

describe('dispatch and wait against the fake GitHub API', { concurrency: false }, () => {
  let fake: FakeGitHub;
  let gh: GitHubClient;
  let log: CaptureLog;
  const opts = (extra: Partial<{ waitSeconds: number; pollSeconds: number; findSeconds: number }> = {}) => ({
    workflow: DEPLOY_WORKFLOW,
    branch: 'main',
    waitSeconds: 5,
    pollSeconds: 0.05,
    findSeconds: 1,
    log,
    ...extra,
  });

  before(async () => {
    fake = await startFakeGitHub({ token: TOKEN, repo: REPO });
  });
  beforeEach(() => {
    log = new CaptureLog();
    gh = createGitHub({ token: TOKEN, baseUrl: fake.url, log });
    fake.actions.dispatchRunDetails = 'returned';
    fake.actions.workflows = [
      { id: 161_335, path: '.github/workflows/staging-deploy.yml', name: 'staging-deploy', dispatch: true },
    ];
    fake.permissions.actions = 'write';
  });
  after(async () => fake?.close());

  it('success: the run named by the dispatch answer, waited for (bounded), with its URL, conclusion and job durations', async () => {
    fake.actions.headSha = randomBytes(20).toString('hex');
    fake.actions.nextRun = {
      conclusion: 'success',
      pollsUntilDone: 3,
      jobs: [
        { name: 'build', seconds: 95, conclusion: 'success' },
        { name: 'deploy', seconds: 21, conclusion: 'success' },
        { name: 'smoke', seconds: 9, conclusion: 'success' },
      ],
    };
    const out = await runWorkflow(gh, REF, opts());
    assert.equal(out.via, 'run details');
    assert.equal(out.run.conclusion, 'success');
    assert.equal(out.run.headSha, fake.actions.headSha, 'the run deployed the head of the default branch');
    assert.equal(out.run.event, 'workflow_dispatch');
    assert.deepEqual(
      out.jobs.map((j) => [j.name, j.conclusion, j.seconds]),
      [
        ['build', 'success', 95],
        ['deploy', 'success', 21],
        ['smoke', 'success', 9],
      ],
    );
    const text = log.lines.join('\n');
    assert.match(
      text,
      new RegExp(
        `dispatched staging-deploy\\.yml on main: run #\\d+ ${fake.url.replace(/[.]/g, '\\.')}/${REPO}/actions/runs/${out.run.id}`,
      ),
    );
    // The first look (right after the dispatch) saw it queued; then it runs for two looks of the bounded wait.
    assert.match(text, /run #\d+ is in_progress \(attempt 1\/\d+, next look in 0\.05s\)/);
    assert.match(text, /run #\d+ is in_progress \(attempt 2\/\d+/);
    assert.doesNotMatch(text, /attempt 3\//);
    assert.match(text, /run #\d+ success after \d+s: /);
    assert.match(text, /build\s+success\s+1m35s/);
    assert.match(text, /smoke\s+success\s+9s/);
    const dispatch = fake.calls.filter((c) => c.route.endsWith('/dispatches'));
    assert.deepEqual(
      dispatch.map((c) => [c.method, c.status, c.write]),
      [['POST', 200, true]],
    );
    assert.deepEqual(fake.problems, [], "every request matched GitHub's OpenAPI description");
  });

  it('failure: a red run fails with its URL and the failed job', async () => {
    fake.actions.nextRun = { conclusion: 'failure' };
    const e = await rejection(runWorkflow(gh, REF, opts()));
    assert.ok(e instanceof OperationError);
    const run = fake.actions.runs.at(-1);
    assert.match(
      e.message,
      new RegExp(
        `the staging-deploy\\.yml run #\\d+ concluded failure \\(smoke: failure\\): .*/actions/runs/${run?.id}$`,
      ),
    );
    assert.match(e.hint ?? '', /rolled the Deployment back/);
    assert.match(log.lines.join('\n'), /smoke\s+failure\s+12s/, 'the job durations are printed before the failure');
    assert.deepEqual(fake.problems, []);
  });

  it('timeout: a run that never completes fails at the bound, after a bounded number of looks', async () => {
    fake.actions.nextRun = { conclusion: 'never' };
    const e = await rejection(runWorkflow(gh, REF, opts({ waitSeconds: 0.3, pollSeconds: 0.1 })));
    assert.ok(e instanceof OperationError);
    assert.match(
      e.message,
      /the staging-deploy run .*\/actions\/runs\/\d+ did not finish within 0\.3s \(CODEXK8S_DEPLOY_WAIT\): it is in_progress; it is still running/,
    );
    const run = fake.actions.runs.at(-1);
    const looks = fake.calls.filter((c) => c.path === `/repos/${REPO}/actions/runs/${run?.id}`).length;
    const attempts = attemptsWithin(0.3, backOff(0.1));
    assert.equal(attempts, 4);
    assert.equal(looks, 1 + attempts, 'one look after the dispatch, then one per attempt');
    assert.match(log.lines.join('\n'), new RegExp(`attempt ${attempts - 1}/${attempts}`));
  });

  it('a server without return_run_details (204): the new workflow_dispatch run is found in the run list', async () => {
    fake.actions.nextRun = { conclusion: 'success' };
    await runWorkflow(gh, REF, opts()); // an older dispatched run, which must not be taken for ours
    fake.actions.push(randomBytes(20).toString('hex')); // and a push run
    fake.actions.dispatchRunDetails = 'ignored';
    const out = await runWorkflow(gh, REF, opts());
    assert.equal(out.via, 'run list');
    assert.equal(out.run.id, fake.actions.runs.at(-1)?.id, 'the run this dispatch created');
    assert.equal(out.run.event, 'workflow_dispatch');
    assert.deepEqual(
      fake.calls
        .filter((c) => c.route.endsWith('/dispatches'))
        .slice(-1)
        .map((c) => c.status),
      [204],
    );
    assert.deepEqual(fake.problems, []);
  });

  it('a server that refuses the return_run_details key (422): dispatched again without it, found in the run list', async () => {
    fake.actions.nextRun = { conclusion: 'success' };
    fake.actions.dispatchRunDetails = 'rejected';
    const before = fake.actions.runs.length;
    const out = await runWorkflow(gh, REF, opts());
    assert.equal(out.via, 'run list');
    assert.equal(fake.actions.runs.length, before + 1, 'one run, not two');
    assert.deepEqual(
      fake.calls
        .filter((c) => c.route.endsWith('/dispatches'))
        .slice(-2)
        .map((c) => c.status),
      [422, 204],
    );
  });

  it('no staging-deploy.yml on the default branch: a 404 that names the file to push', async () => {
    fake.actions.workflows = [];
    const e = await rejection(runWorkflow(gh, REF, opts()));
    const explained = explainLoopError(
      e,
      `running ${DEPLOY_WORKFLOW} in ${REPO}`,
      REPO,
      'https://github.com',
    ) as OperationError;
    assert.match(
      explained.message,
      /codex-k8s\/loop-repo has no \.github\/workflows\/staging-deploy\.yml on its default branch/,
    );
    assert.match(explained.hint ?? '', /push this repository's \.github\/workflows\/staging-deploy\.yml/);
  });

  it('a token with Actions: Read-only: the dispatch is refused and the message names the permission', async () => {
    fake.permissions.actions = 'read';
    const e = await rejection(runWorkflow(gh, REF, opts()));
    const explained = explainGitHubError(e, 'running staging-deploy.yml', REPO, 'https://github.com');
    assert.match(explained.message, /answered 403 .*the token needs Actions: Read and write/);
    assert.ok(
      PERMISSIONS.some((p) => p.key === 'actions' && p.level === 'Read and write'),
      'the preflight asks for it',
    );
  });

  it('the newest run on the branch, any event: what check() compares the journal with', async () => {
    const sha = randomBytes(20).toString('hex');
    fake.actions.push(sha);
    const [newest] = await listRuns(gh, REF, DEPLOY_WORKFLOW, { branch: 'main', perPage: 1 });
    assert.equal(newest?.headSha, sha);
    assert.equal(newest?.event, 'push');
    assert.deepEqual(fake.problems, []);
  });
});

describe('formatting', () => {
  it('durations and job lines', () => {
    assert.deepEqual(
      [formatSeconds(undefined), formatSeconds(9), formatSeconds(60), formatSeconds(95), formatSeconds(900)],
      ['-', '9s', '1m', '1m35s', '15m'],
    );
    assert.deepEqual(
      formatJobs([
        { name: 'build', status: 'completed', conclusion: 'success', seconds: 41, htmlUrl: '' },
        { name: 'smoke', status: 'in_progress', conclusion: null, seconds: undefined, htmlUrl: '' },
      ]),
      ['build  success    41s', 'smoke  in_progress  -'],
    );
  });
});

describe('the smoke URL from the server', () => {
  it("CODEXK8S_SMOKE_URL wins; server mode: the public HTTPS name; local mode: Traefik's ClusterIP over HTTP", () => {
    assert.equal(
      smokeUrl({ override: 'http://10.0.0.5:8080/', mode: 'server', domain: 'staging.example.com' }),
      'http://10.0.0.5:8080',
    );
    assert.equal(smokeUrl({ mode: 'server', domain: 'staging.example.com' }), 'https://staging.example.com');
    assert.equal(smokeUrl({ mode: 'local', traefikClusterIp: '10.43.12.7\n' }), 'http://10.43.12.7');
    assert.equal(smokeUrl({ mode: 'local', traefikClusterIp: 'fd00:43::1f' }), 'http://[fd00:43::1f]');
    assert.throws(() => smokeUrl({ mode: 'local', traefikClusterIp: '' }), /kube-system\/traefik has no ClusterIP/);
    assert.throws(() => smokeUrl({ mode: 'local', traefikClusterIp: 'None' }), /has no ClusterIP/);
    assert.throws(() => smokeUrl({ mode: 'server' }), /without CODEXK8S_STAGING_DOMAIN/);
  });
});

describe('check(): the drift rule', () => {
  const repo = 'codex-k8s/loop-repo';
  const a = 'a'.repeat(40);
  const b = 'b'.repeat(40);
  const run = (headSha: string): RunInfo => ({
    id: 7,
    runNumber: 3,
    htmlUrl: 'https://github.com/x/actions/runs/7',
    headSha,
    headBranch: 'main',
    event: 'push',
    status: 'completed',
    conclusion: 'success',
    createdAt: '2026-11-27T00:00:00Z',
  });
  const pins = { k3s: 'v1.36.2+k3s1', 'image:postgres': 'docker.io/pgvector/pgvector:0.8.6-pg17-bookworm' };
  // null: a record written before the pins were journaled (undefined would take the default).
  const rec = (headSha: string, r = repo, p: Record<string, string> | null = pins): DeployLoopRecord => ({
    repo: r,
    branch: 'main',
    headSha,
    runId: 5,
    runUrl: 'https://github.com/x/actions/runs/5',
    smokeUrl: 'http://10.43.0.9',
    provenAt: '2026-11-27T00:00:00Z',
    ...(p ? { pins: p } : {}),
  });

  it('never ran, or never proven: drift', () => {
    assert.match(
      loopDrift({ pins, repo, branch: 'main', newest: undefined, record: undefined })[0] ?? '',
      /has not been proven yet: staging-deploy\.yml has no run on main of codex-k8s\/loop-repo/,
    );
    assert.match(
      loopDrift({ pins, repo, branch: 'main', newest: run(a), record: undefined })[0] ?? '',
      /has not been proven for aaaaaaaaaaaa, the newest commit/,
    );
  });
  it('proven for the newest commit and staging serves it: no drift (the second run is unchanged)', () => {
    assert.deepEqual(
      loopDrift({ pins, repo, branch: 'main', newest: run(a), record: rec(a), live: { version: a } }),
      [],
    );
  });
  it('a new commit on main (a push run for it): drift naming both commits', () => {
    const d = loopDrift({ pins, repo, branch: 'main', newest: run(b), record: rec(a) });
    assert.equal(d.length, 1);
    assert.match(d[0] ?? '', /not been proven for bbbbbbbbbbbb.*last proven: aaaaaaaaaaaa/);
  });
  it('staging rolled back, or down: drift', () => {
    assert.match(
      loopDrift({ pins, repo, branch: 'main', newest: run(a), record: rec(a), live: { version: b } })[0] ?? '',
      /staging serves version b{40}, not aaaaaaaaaaaa/,
    );
    assert.match(
      loopDrift({
        pins,
        repo,
        branch: 'main',
        newest: run(a),
        record: rec(a),
        live: { error: 'connect ECONNREFUSED' },
      })[0] ?? '',
      /staging does not answer its version \(connect ECONNREFUSED\)/,
    );
  });
  it('a proof for another repository or branch does not count', () => {
    assert.equal(loopDrift({ pins, repo, branch: 'main', newest: run(a), record: rec(a, 'someone/else') }).length, 1);
    assert.equal(loopDrift({ pins, repo, branch: 'trunk', newest: run(a), record: rec(a) }).length, 1);
    assert.deepEqual(
      loopDrift({ pins, repo: repo.toUpperCase(), branch: 'main', newest: run(a), record: rec(a) }),
      [],
      'the same repository typed in another case',
    );
  });
  it('the journal keeps the deployLoop section, and refuses a broken one', () => {
    const j = parseJournal(JSON.stringify({ version: 1, steps: {}, history: [], deployLoop: rec(a) }));
    assert.deepEqual(j.deployLoop, rec(a));
    assert.throws(
      () => parseJournal(JSON.stringify({ version: 1, steps: {}, history: [], deployLoop: { repo } })),
      /deployLoop section/,
    );
  });

  it('the journal keeps the pins exactly, takes a record without them, and refuses pins of another shape', () => {
    const text = (d: unknown) => JSON.stringify({ version: 1, steps: {}, history: [], deployLoop: d });
    const withPins = rec(a, repo, pinVersions());
    assert.deepEqual(parseJournal(text(withPins)).deployLoop, withPins);
    assert.deepEqual(parseJournal(text(withPins)).deployLoop?.pins, pinVersions());
    assert.deepEqual(parseJournal(text(rec(a, repo, {}))).deployLoop, rec(a, repo, {}), 'no pins at all is kept');
    const older = parseJournal(text(rec(a, repo, null))).deployLoop;
    assert.deepEqual(older, rec(a, repo, null), 'a record from before the pins stays valid');
    assert.equal(older !== undefined && 'pins' in older, false, 'and gains no pins key');
    for (const bad of [['v1'], 'v1.36.2+k3s1', null, 7, { k3s: 1 }, { k3s: 'v1', helm: null }, { k3s: { v: 'v1' } }])
      assert.throws(
        () => parseJournal(text({ ...rec(a), pins: bad })),
        /the deployLoop section's pins is not an object of name: version strings/,
        JSON.stringify(bad),
      );
  });
});

describe('check(): the pins the loop was proven with', () => {
  const repo = 'codex-k8s/loop-repo';
  const a = 'a'.repeat(40);
  const now = {
    k3s: 'v1.36.2+k3s1',
    'image:postgres': 'docker.io/pgvector/pgvector:0.8.6-pg17-bookworm',
    'cert-manager': 'v1.21.2',
  };
  const run: RunInfo = {
    id: 7,
    runNumber: 3,
    htmlUrl: 'https://github.com/x/actions/runs/7',
    headSha: a,
    headBranch: 'main',
    event: 'push',
    status: 'completed',
    conclusion: 'success',
    createdAt: '2026-11-27T00:00:00Z',
  };
  const rec = (pins: Record<string, string> | undefined): DeployLoopRecord => ({
    repo,
    branch: 'main',
    headSha: a,
    runId: 5,
    runUrl: 'https://github.com/x/actions/runs/5',
    smokeUrl: 'http://10.43.0.9',
    provenAt: '2026-11-27T00:00:00Z',
    ...(pins ? { pins } : {}),
  });

  it('equal pins, in any key order: no drift', () => {
    assert.deepEqual(pinsDrift({ ...now }, now), []);
    assert.deepEqual(
      pinsDrift({ 'cert-manager': 'v1.21.2', 'image:postgres': now['image:postgres'], k3s: 'v1.36.2+k3s1' }, now),
      [],
    );
    assert.deepEqual(pinsDrift({}, {}), []);
  });
  it('moved pins: one line naming each, old -> new', () => {
    const d = pinsDrift(
      { ...now, k3s: 'v1.36.1+k3s1', 'image:postgres': 'docker.io/pgvector/pgvector:0.8.5-pg17-bookworm' },
      now,
    );
    assert.deepEqual(d, [
      'the deploy loop was proven with other pins (k3s v1.36.1+k3s1 -> v1.36.2+k3s1, image:postgres docker.io/pgvector/pgvector:0.8.5-pg17-bookworm -> docker.io/pgvector/pgvector:0.8.6-pg17-bookworm): prove it again after the upgrade',
    ]);
  });
  it('a new pin and a removed one count too', () => {
    const { 'cert-manager': _, ...without } = now;
    assert.deepEqual(pinsDrift(without, now), [
      'the deploy loop was proven with other pins (cert-manager new v1.21.2): prove it again after the upgrade',
    ]);
    assert.deepEqual(pinsDrift({ ...now, helm: 'v4.2.4' }, now), [
      'the deploy loop was proven with other pins (helm removed (was v4.2.4)): prove it again after the upgrade',
    ]);
    const both = pinsDrift({ ...without, k3s: 'v1.36.1+k3s1', helm: 'v4.2.4' }, now);
    assert.equal(both.length, 1, 'one line for all that moved');
    assert.match(
      both[0] ?? '',
      /\(k3s v1\.36\.1\+k3s1 -> v1\.36\.2\+k3s1, cert-manager new v1\.21\.2, helm removed \(was v4\.2\.4\)\)/,
    );
  });
  it('a record from before the pins were recorded: drift of its own', () => {
    assert.deepEqual(pinsDrift(undefined, now), [
      'the deploy loop was proven before the pins were recorded (journal: deployLoop has no pins): prove it again with the pins of this checkout',
    ]);
  });
  it('loopDrift: a proof for the newest commit with other pins, or none, is drift; with these pins it is not', () => {
    const s = { repo, branch: 'main', newest: run, pins: now, live: { version: a } };
    assert.deepEqual(loopDrift({ ...s, record: rec(now) }), []);
    assert.match(
      loopDrift({ ...s, record: rec({ ...now, k3s: 'v1.36.1+k3s1' }) }).join('\n'),
      /^the deploy loop was proven with other pins \(k3s v1\.36\.1\+k3s1 -> v1\.36\.2\+k3s1\)/,
    );
    assert.match(loopDrift({ ...s, record: rec(undefined) }).join('\n'), /proven before the pins were recorded/);
    // A stale commit and moved pins: both said, one line each.
    assert.equal(
      loopDrift({ ...s, newest: { ...run, headSha: 'b'.repeat(40) }, record: rec({ ...now, k3s: 'v0' }) }).length,
      2,
    );
    // No proof for this repository: the commit line alone, not a pins line about someone else's record.
    assert.equal(loopDrift({ ...s, record: { ...rec(undefined), repo: 'someone/else' } }).length, 1);
  });
  it('pinVersions maps every PINS row, so a bump of any pin moves it', () => {
    const v = pinVersions();
    assert.equal(Object.keys(v).length, PINS.length);
    for (const p of PINS) assert.equal(v[p.name], p.version, p.name);
    assert.equal(v['k3s'], K3S_VERSION);
    assert.equal(v['image:postgres'], IMAGES.postgres);
    assert.deepEqual(pinsDrift(pinVersions(), pinVersions()), [], 'a second run with the same checkout is unchanged');
  });
});
