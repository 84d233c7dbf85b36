// Runner freshness: ARC runners never update themselves, and GitHub stops queueing jobs to a runner 30 days after a
// newer actions/runner release. The decision is pure; the check reads the releases from the fake GitHub API, which
// serves them as GitHub's OpenAPI description says (test/fakes/github/openapi-fixture.json).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub, RunnerRelease } from '../fakes/github/server.mts';
import { loadConfig } from '../../bootstrap/lib/config.mts';
import { createGitHub } from '../../bootstrap/lib/github/client.mts';
import { UsageError } from '../../bootstrap/lib/errors.mts';
import { IMAGES, IMAGE_PROVENANCE } from '../../bootstrap/lib/versions.mts';
import {
  runnerFreshness,
  runnerImageVersion,
  withRunnerVersion,
  compareVersions,
  checkRunnerFreshness,
  RUNNER_UPDATE_LIMIT_DAYS,
} from '../../bootstrap/lib/runners.mts';
import type { ReleaseLike } from '../../bootstrap/lib/runners.mts';
import { CaptureLog } from '../capture-log.mts';

const TOKEN = `github_pat_11UNIT${'f0E1d2C3'.repeat(8)}`;
const REPO = 'codex-k8s/unit-repo';
const PUBKEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl operator@laptop';
const DAY = 86_400_000;
const NOW = Date.parse('2026-12-07T12:00:00Z');
const daysAgo = (n: number) => new Date(NOW - n * DAY).toISOString();
const rel = (tag: string, at: string, extra: Partial<ReleaseLike> = {}): ReleaseLike => ({
  tag_name: tag,
  published_at: at,
  draft: false,
  prerelease: false,
  ...extra,
});

test('runner image versions: read from the tag (a digest may follow), compared numerically', () => {
  assert.equal(
    runnerImageVersion(IMAGES.arcRunner),
    IMAGE_PROVENANCE.arcRunner.source.replace(/.*\/v/, ''),
    'the pin and its provenance name one version',
  );
  assert.equal(runnerImageVersion(`ghcr.io/actions/actions-runner:2.337.1@sha256:${'a'.repeat(64)}`), '2.337.1');
  assert.equal(runnerImageVersion('ghcr.io/actions/actions-runner:latest'), undefined);
  assert.equal(
    withRunnerVersion(`mirror.example:5000/actions-runner:2.336.0@sha256:${'b'.repeat(64)}`, '2.340.0'),
    'mirror.example:5000/actions-runner:2.340.0',
  );
  assert.ok(compareVersions('2.336.0', '2.99.9') > 0, '336 > 99, not as strings');
  assert.equal(compareVersions('2.336.0', '2.336.0'), 0);
});

test('freshness: the clock starts at the first newer release, not the newest; 30 days is the limit', () => {
  assert.deepEqual(runnerFreshness('2.336.0', [rel('v2.336.0', daysAgo(100)), rel('v2.335.1', daysAgo(150))], NOW), {
    kind: 'current',
    version: '2.336.0',
  });
  const behind = runnerFreshness(
    '2.336.0',
    [rel('v2.338.0', daysAgo(2)), rel('v2.337.0', daysAgo(20)), rel('v2.336.0', daysAgo(60))],
    NOW,
  );
  assert.deepEqual(behind, {
    kind: 'behind',
    version: '2.336.0',
    latest: '2.338.0',
    firstNewer: '2.337.0',
    firstNewerAt: daysAgo(20).slice(0, 10),
    deadline: new Date(NOW + 10 * DAY).toISOString().slice(0, 10),
    days: 10,
  });
  const edge = runnerFreshness('2.336.0', [rel('v2.337.0', daysAgo(RUNNER_UPDATE_LIMIT_DAYS))], NOW);
  assert.equal(edge.kind, 'expired', 'on the 30th day GitHub no longer queues');
  const expired = runnerFreshness('2.336.0', [rel('v2.339.0', daysAgo(1)), rel('v2.337.0', daysAgo(45))], NOW);
  assert.ok(
    expired.kind === 'expired' &&
      expired.days === 15 &&
      expired.latest === '2.339.0' &&
      expired.firstNewer === '2.337.0',
  );
});

test('freshness: drafts, pre-releases, non-release tags and unpublished entries are not available updates', () => {
  const releases = [
    rel('v2.340.0', daysAgo(90), { draft: true }),
    rel('v2.339.0', daysAgo(90), { prerelease: true }),
    rel('v2.338.0-rc1', daysAgo(90)),
    rel('v2.337.0', null as unknown as string),
    rel('nightly', daysAgo(90)),
    rel('v2.335.0', daysAgo(400)),
  ];
  assert.equal(runnerFreshness('2.336.0', releases, NOW).kind, 'current');
});

describe('the launcher check against the fake GitHub API', () => {
  let gh: FakeGitHub;
  before(async () => {
    gh = await startFakeGitHub({ token: TOKEN, repo: REPO });
  });
  after(async () => gh?.close());

  const run = async (releases: RunnerRelease[] | undefined, enforce: boolean, extra: Record<string, string> = {}) => {
    if (releases) gh.runnerReleases = releases;
    const r = loadConfig({
      side: 'host',
      strict: false,
      env: {
        CODEXK8S_GITHUB_REPO: REPO,
        CODEXK8S_GITHUB_PAT: TOKEN,
        CODEXK8S_GITHUB_API_URL: gh.url,
        OPERATOR_SSH_PUBKEY: PUBKEY,
        TARGET_HOST: '10.0.0.1',
        ...extra,
      },
    });
    assert.deepEqual(
      r.problems.filter((p) => !/SSH_KEY|PUBKEY/.test(p)),
      [],
    );
    const log = new CaptureLog();
    const client = createGitHub({ baseUrl: gh.url, token: TOKEN, log, sleep: async () => {} });
    const out = await checkRunnerFreshness(r.config, log, client, enforce, NOW).then(
      (f) => ({ f }),
      (e: unknown) => ({ e }),
    );
    return { ...out, log: log.lines.join('\n') };
  };

  test('the pinned runner is current: one GET of actions/runner releases, schema-valid, and an ok line', async () => {
    const before = gh.calls.length;
    const r = await run(undefined, true);
    assert.ok('f' in r && r.f?.kind === 'current', r.log);
    assert.match(
      r.log,
      new RegExp(`ok +runner image ${IMAGES.arcRunner.replace(/[.]/g, '\\.')}: no newer actions/runner release`),
    );
    assert.deepEqual(
      gh.calls.slice(before).map((c) => `${c.method} ${c.path} ${c.status}`),
      ['GET /repos/actions/runner/releases?per_page=100 200'],
    );
    assert.deepEqual(gh.problems, []);
  });

  test('within the limit: a warning with the days left and how to bump, and the run goes on', async () => {
    const r = await run([{ tag: 'v2.999.0', publishedAt: daysAgo(12) }], true);
    assert.ok('f' in r && r.f?.kind === 'behind', r.log);
    assert.match(r.log, /GitHub stops queueing jobs to \S+ on \d{4}-\d\d-\d\d \(18 day\(s\) left\)/);
    assert.match(
      r.log,
      /set CODEXK8S_RUNNER_IMAGE=ghcr\.io\/actions\/actions-runner:2\.999\.0 \(or bump IMAGES\.arcRunner in bootstrap\/lib\/versions\.mts\)/,
    );
  });

  test('past the limit: exit 2 naming CODEXK8S_RUNNER_IMAGE when runners are installed or used; a warning otherwise', async () => {
    const releases = [
      { tag: 'v2.999.1', publishedAt: daysAgo(3) },
      { tag: 'v2.999.0', publishedAt: daysAgo(41) },
    ];
    const r = await run(releases, true);
    assert.ok('e' in r && r.e instanceof UsageError, r.log);
    assert.equal(r.e.exitCode, 2);
    assert.match(
      r.e.problems[0] ?? '',
      /^CODEXK8S_RUNNER_IMAGE: \S+ is past GitHub's 30-day limit: runner \S+ is behind actions\/runner 2\.999\.1; 2\.999\.0, the first newer release, came out on \S+, so since \S+ GitHub queues no jobs/,
    );
    assert.match(
      r.e.problems[1] ?? '',
      /hint: set CODEXK8S_RUNNER_IMAGE=ghcr\.io\/actions\/actions-runner:2\.999\.1 .*docs\/runbook\.md "Deploys stay queued: runner too old"; nothing was changed$/,
    );
    const lenient = await run(releases, false);
    assert.ok('f' in lenient && lenient.f?.kind === 'expired', lenient.log);
    assert.match(lenient.log, /warning: CODEXK8S_RUNNER_IMAGE: .* past GitHub's 30-day limit/);
  });

  test('an override that is current passes, and the check reads its version', async () => {
    const r = await run([{ tag: 'v2.999.0', publishedAt: daysAgo(41) }], true, {
      CODEXK8S_RUNNER_IMAGE: 'mirror.example:5000/actions/actions-runner:2.999.0',
    });
    assert.ok('f' in r && r.f?.kind === 'current', r.log);
  });

  test('releases that cannot be read (404 on GitHub Enterprise Server, a 502) give a warning, not a refusal', async () => {
    gh.fault('GET /repos/{owner}/{repo}/releases', { kind: 'not-found' });
    const missing = await run([{ tag: 'v2.999.0', publishedAt: daysAgo(41) }], true);
    assert.ok('f' in missing && missing.f === undefined, missing.log);
    assert.match(
      missing.log,
      /warning: runner freshness not checked: GET http:\S+\/repos\/actions\/runner\/releases gave 404 .*check https:\/\/github\.com\/actions\/runner\/releases by hand/,
    );
    gh.fault('GET /repos/{owner}/{repo}/releases', { kind: 'bad-gateway', times: 5 });
    const down = await run(undefined, true);
    assert.ok('f' in down && down.f === undefined, down.log);
    assert.match(down.log, /runner freshness not checked: .* gave 502/);
  });
});

test('CODEXK8S_RUNNER_IMAGE: a fully qualified reference with a version tag, or refused by name', () => {
  for (const bad of [
    'actions-runner:2.336.0',
    'ghcr.io/actions/actions-runner',
    'ghcr.io/actions/actions-runner:latest',
    'ghcr.io/actions/actions-runner:2.336.0 --privileged',
    'ghcr.io/Actions/runner:2.336.0',
  ]) {
    const r = loadConfig({
      side: 'host',
      strict: false,
      env: { CODEXK8S_GITHUB_REPO: REPO, TARGET_HOST: '10.0.0.1', CODEXK8S_RUNNER_IMAGE: bad },
    });
    assert.ok(
      r.problems.some((p) =>
        p.startsWith(
          `CODEXK8S_RUNNER_IMAGE: "${bad}" is not an image reference with a version tag; expected REGISTRY/REPOSITORY:X.Y.Z`,
        ),
      ),
      `${bad}: ${r.problems.join('\n')}`,
    );
  }
  const ok = loadConfig({ side: 'host', strict: false, env: { CODEXK8S_GITHUB_REPO: REPO, TARGET_HOST: '10.0.0.1' } });
  assert.equal(ok.config.get('CODEXK8S_RUNNER_IMAGE'), IMAGES.arcRunner);
});
