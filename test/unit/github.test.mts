// The GitHub side against the fake GitHub API (test/fakes/github): token preflight, repository wiring
// (variables, sealed secrets, webhook), ownership of names, retries and pagination. The fake validates every
// request body against GitHub's OpenAPI schemas and opens every sealed secret with libsodium; `problems` must
// stay empty in every test.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub, Permission } from '../fakes/github/server.mts';
import { loadConfig } from '../../bootstrap/lib/config.mts';
import type { Config } from '../../bootstrap/lib/config.mts';
import { CaptureLog } from '../capture-log.mts';
import { UsageError, OperationError } from '../../bootstrap/lib/errors.mts';
import {
  createGitHub,
  explainGitHubError,
  httpStatus,
  noAnswer,
  retryDelaySeconds,
  MAX_TRIES,
} from '../../bootstrap/lib/github/client.mts';
import { describeAccepted, PERMISSIONS, permissionLabel } from '../../bootstrap/lib/github/permissions.mts';
import { preflightToken, plannedTokenChecks } from '../../bootstrap/lib/github/preflight.mts';
import {
  snapshot,
  planWiring,
  applyWiring,
  githubJournal,
  describeAction,
  explainWiringError,
  readOrCreateSecretFile,
  webhookEvents,
} from '../../bootstrap/lib/github/wiring.mts';
import type { GitHubClient } from '../../bootstrap/lib/github/client.mts';
import type { Wanted } from '../../bootstrap/lib/github/wiring.mts';
import { parseJournal, recordStep, readJournal, writeJournal, emptyJournal } from '../../bootstrap/lib/state.mts';
import { wanted, wantedVariables } from '../../bootstrap/remote/70_github_repo.mts';
import { reportError } from '../../bootstrap/lib/cli.mts';
import { stepCliSpec } from '../../bootstrap/lib/step.mts';

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

/** A local port nothing listens on: listen, then close. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function refusal(p: Promise<unknown>): Promise<UsageError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  assert.fail('expected a UsageError');
}

describe('token preflight', () => {
  let gh: FakeGitHub;
  beforeEach(async () => {
    await gh?.close();
    gh = await startFakeGitHub({ token: TOKEN, repo: REPO });
  });
  after(async () => gh?.close());

  test('a token with every permission passes, with one probe per permission and no write', async () => {
    const log = new CaptureLog();
    const results = await preflightToken(config(gh.url, SERVER), log);
    assert.deepEqual(
      results.map((r) => [permissionLabel(r.need), r.ok]),
      PERMISSIONS.map((p) => [permissionLabel(p), true]),
    );
    assert.deepEqual(
      gh.calls.map((c) => `${c.method} ${c.path.replace(/\?.*/, '')}`),
      [
        `GET /repos/${REPO}`,
        `POST /repos/${REPO}/actions/runners/registration-token`,
        `GET /repos/${REPO}/actions/secrets/public-key`,
        `GET /repos/${REPO}/actions/variables`,
        `GET /repos/${REPO}/hooks`,
        `GET /repos/${REPO}/actions/workflows`,
      ],
    );
    assert.equal(gh.writes().length, 0, 'the registration token changes no repository state');
    assert.deepEqual(gh.problems, []);
    assert.ok(!log.lines.join('\n').includes(TOKEN));
    // Each line claims what its probe proved: write only where a write was sent (Administration's POST).
    assert.deepEqual(
      log.lines.filter((l) => /^ {2}(ok|read|FAIL) /.test(l)).map((l) => l.replace(/\s+/g, ' ').trim()),
      [
        `ok Metadata: Read-only GET /repos/${REPO}`,
        `ok Administration: Read and write POST /repos/${REPO}/actions/runners/registration-token`,
        `read Secrets: Read and write GET /repos/${REPO}/actions/secrets/public-key (read ok; write not provable before step 70)`,
        `read Variables: Read and write GET /repos/${REPO}/actions/variables (read ok; write not provable before step 70)`,
        `read Webhooks: Read and write GET /repos/${REPO}/hooks (read ok; write not provable before step 70)`,
        `read Actions: Read and write GET /repos/${REPO}/actions/workflows (read ok; write not provable before the dispatch in step 80)`,
      ],
    );
  });

  test('a token with Read-only Secrets, Variables and Webhooks passes, and the preflight says it proved read only', async () => {
    gh.permissions.secrets = 'read';
    gh.permissions.actions_variables = 'read';
    gh.permissions.repository_hooks = 'read';
    const log = new CaptureLog();
    await preflightToken(config(gh.url, SERVER), log);
    const out = log.lines.join('\n');
    for (const name of ['Secrets', 'Variables', 'Webhooks']) {
      assert.match(
        out,
        new RegExp(`^  read  ${name}: Read and write +GET \\S+ \\(read ok; write not provable before step 70\\)$`, 'm'),
      );
      assert.doesNotMatch(out, new RegExp(`^  ok +${name}`, 'm'), 'no "ok" beside a write access it did not prove');
    }
  });

  test('local mode does not ask for Webhooks', async () => {
    gh.permissions.repository_hooks = 'none';
    await preflightToken(config(gh.url), new CaptureLog());
    assert.ok(!gh.calls.some((c) => c.path.includes('/hooks')));
  });

  const single: Array<[Permission, string, 'none' | 'read']> = [
    ['administration', 'Administration: Read and write', 'read'],
    ['secrets', 'Secrets: Read and write', 'none'],
    ['actions_variables', 'Variables: Read and write', 'none'],
    ['repository_hooks', 'Webhooks: Read and write', 'none'],
    ['actions', 'Actions: Read and write', 'none'],
  ];
  for (const [perm, label, level] of single) {
    test(`a token without ${label} gets exactly that message`, async () => {
      gh.permissions[perm] = level;
      const e = await refusal(preflightToken(config(gh.url, SERVER), new CaptureLog()));
      const lacks = e.problems.filter((p) => p.includes('the token lacks'));
      assert.equal(lacks.length, 1, e.message);
      assert.match(lacks[0] ?? '', new RegExp(`lacks "${label}" on ${REPO}`));
      assert.match(
        lacks[0] ?? '',
        /answered 403 "Resource not accessible by personal access token" \(this request needs /,
      );
      assert.equal(e.exitCode, 2);
      assert.ok(!e.problems.some((p) => /not an admin|approved/.test(p)), 'no misleading hint');
    });
  }

  test('everything missing in an organization: all at once, with the approval hint', async () => {
    await gh.close();
    gh = await startFakeGitHub({
      token: TOKEN,
      repo: REPO,
      ownerType: 'Organization',
      permissions: {
        administration: 'none',
        secrets: 'none',
        actions_variables: 'none',
        repository_hooks: 'none',
        actions: 'none',
      },
    });
    const e = await refusal(preflightToken(config(gh.url, SERVER), new CaptureLog()));
    assert.equal(e.problems.filter((p) => p.includes('the token lacks')).length, 5, e.message);
    assert.ok(
      e.problems.some((p) => p.includes('has not approved yet') && p.includes('codex-k8s')),
      e.message,
    );
  });

  test('a token owner who is not a repository admin gets the hint', async () => {
    gh.admin = false;
    gh.permissions.administration = 'none';
    const e = await refusal(preflightToken(config(gh.url), new CaptureLog()));
    assert.ok(
      e.problems.some((p) => p.includes('is not an admin of codex-k8s/unit-repo')),
      e.message,
    );
  });

  test('a 401 token: its own message, one request', async () => {
    const cfg = config(gh.url, { CODEXK8S_GITHUB_PAT: `github_pat_11WRONG${'z'.repeat(60)}` });
    const e = await refusal(preflightToken(cfg, new CaptureLog()));
    assert.match(e.problems[0] ?? '', /refused the token: 401 "Bad credentials"\. It is wrong, expired or revoked/);
    assert.equal(gh.calls.length, 1);
  });

  test('a repository that does not exist: its own message, one request', async () => {
    const e = await refusal(
      preflightToken(config(gh.url, { CODEXK8S_GITHUB_REPO: 'codex-k8s/nope' }), new CaptureLog()),
    );
    assert.match(e.problems[0] ?? '', /codex-k8s\/nope was not found with this token .*404/);
    assert.match(e.problems[1] ?? '', /Repository access/);
    assert.equal(gh.calls.length, 1);
  });

  test('no answer (a closed port) is "cannot reach the GitHub API at URL (ECONNREFUSED)", never a token problem', async () => {
    const closed = await closedPort();
    const api = `http://127.0.0.1:${closed}`;
    const log = new CaptureLog();
    const slept: number[] = [];
    const client = createGitHub({ token: TOKEN, baseUrl: api, log, sleep: async (ms) => void slept.push(ms) });
    const e = await preflightToken(config(api, SERVER), log, client).then(
      () => assert.fail('expected a failure'),
      (x: unknown) => x,
    );
    assert.ok(e instanceof OperationError && !(e instanceof UsageError), String(e));
    assert.equal(e.message, `cannot reach the GitHub API at ${api} (ECONNREFUSED)`);
    assert.doesNotMatch(`${e.message} ${e.hint ?? ''}`, /token|_PAT\b|\b401\b|\b500\b/);
    assert.deepEqual(slept, [1000, 4000], 'three tries, after 1 s and 4 s');
    assert.ok(
      log.lines.some((l) =>
        /got no answer \(ECONNREFUSED\) on GET \/repos\/\{owner\}\/\{repo\}; retrying in 4s \(try 3\/3\)/.test(l),
      ),
      log.lines.join('\n'),
    );
    // The same request failure, as steps 70/80 explain it: no status, the URL and the code.
    const raw = await client.request('GET /repos/{owner}/{repo}', REF).then(
      () => assert.fail('expected a failure'),
      (x: unknown) => x,
    );
    assert.equal(httpStatus(raw), undefined);
    assert.deepEqual(noAnswer(raw), { code: 'ECONNREFUSED', baseUrl: api });
    assert.equal(
      explainGitHubError(raw, 'updating the repository', REPO, 'https://github.com').message,
      `updating the repository: cannot reach the GitHub API at ${api} (ECONNREFUSED)`,
    );
    // GitHub's own 500 (it answered) stays a status.
    const answered = Object.assign(new Error('Server Error'), {
      name: 'HttpError',
      status: 500,
      response: { headers: {}, data: { message: 'Server Error' } },
    });
    assert.equal(httpStatus(answered), 500);
    assert.equal(noAnswer(answered), undefined);
  });

  test('--dry-run lists the same probes without any request', () => {
    const lines = plannedTokenChecks(config(gh.url, SERVER));
    assert.equal(lines.length, PERMISSIONS.length);
    assert.match(
      lines[1] ?? '',
      /Administration: Read and write\s+POST \/repos\/codex-k8s\/unit-repo\/actions\/runners\/registration-token/,
    );
    assert.equal(gh.calls.length, 0);
  });
});

describe('repository wiring', () => {
  let gh: FakeGitHub;
  let client: GitHubClient;
  let dir: string;
  let journal: string;
  let log: CaptureLog;
  const SECRET = 'f'.repeat(64);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ck8s-gh-'));
  });
  after(async () => {
    await gh?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await gh?.close();
    gh = await startFakeGitHub({ token: TOKEN, repo: REPO });
    log = new CaptureLog();
    // Retry waits and write spacing are recorded, not slept: the policy itself is tested in 'one retry policy'.
    client = createGitHub({ token: TOKEN, baseUrl: gh.url, log, sleep: async () => undefined });
    journal = join(dir, `state-${Math.random().toString(36).slice(2)}.json`);
  });

  // `ref`: the repository as the setting spells it (GitHub, and the fake, match it case-insensitively).
  async function converge(w: Wanted, ref = REF): Promise<string[]> {
    const snap = await snapshot(client, ref, true);
    const actions = planWiring(w, snap, githubJournal(journal, snap.repo));
    return applyWiring(client, ref, actions, snap, journal, log);
  }
  async function drift(w: Wanted, ref = REF): Promise<string[]> {
    const snap = await snapshot(client, ref, true);
    return planWiring(w, snap, githubJournal(journal, snap.repo)).map((a) => describeAction(a, snap.repo.fullName));
  }

  test('first run creates everything; the second run makes no write call', async () => {
    const w = wanted(config(gh.url, SERVER), SECRET);
    const changes = await converge(w);
    assert.equal(changes.length, 7 + 1 + 1, changes.join('\n'));
    assert.equal(gh.variables.get('CODEXK8S_STAGING_DOMAIN')?.value, 'staging.example.com');
    assert.equal(gh.variables.get('CODEXK8S_INTERNAL_REGISTRY')?.value, 'registry.codex-k8s.internal:5000');
    assert.equal(
      gh.secretValue('CODEXK8S_WEBHOOK_SECRET'),
      SECRET,
      'tweetsodium output opens with libsodium crypto_box_seal_open',
    );
    const hooks = [...gh.hooks.values()];
    assert.equal(hooks.length, 1);
    assert.deepEqual(
      {
        url: hooks[0]?.config.url,
        ct: hooks[0]?.config.content_type,
        ssl: hooks[0]?.config.insecure_ssl,
        secret: hooks[0]?.config.secret,
        events: hooks[0]?.events,
      },
      {
        url: 'https://staging.example.com/webhooks/github',
        ct: 'json',
        ssl: '0',
        secret: SECRET,
        events: ['issue_comment', 'issues', 'pull_request', 'push'],
      },
    );
    const writes = gh.writes().length;
    assert.deepEqual(await drift(w), []);
    assert.deepEqual(await converge(w), []);
    assert.equal(gh.writes().length, writes, 'no write call on the second run');
    assert.deepEqual(gh.problems, []);
    const j = readJournal(journal);
    assert.equal(j.github?.repo, REPO);
    assert.ok(!readFileSync(journal, 'utf8').includes(SECRET), 'the journal holds no secret value');
    assert.equal(statSync(journal).mode & 0o777, 0o600);
  });

  test('a rotated secret value is written again (and a secret changed by hand too)', async () => {
    const cfg = config(gh.url);
    await converge(wanted(cfg, SECRET));
    const rotated = 'e'.repeat(64);
    assert.deepEqual(await drift(wanted(cfg, rotated)), ['secret CODEXK8S_WEBHOOK_SECRET: value changed']);
    const before = gh.writes().length;
    await converge(wanted(cfg, rotated));
    assert.equal(gh.writes().length - before, 1);
    assert.equal(gh.secretValue('CODEXK8S_WEBHOOK_SECRET'), rotated);
    gh.setSecretByHand('CODEXK8S_WEBHOOK_SECRET', 'typed-in-the-ui');
    assert.match((await drift(wanted(cfg, rotated)))[0] ?? '', /changed outside this tool/);
    await converge(wanted(cfg, rotated));
    assert.equal(gh.secretValue('CODEXK8S_WEBHOOK_SECRET'), rotated);
    gh.rotateKey();
    assert.deepEqual(await drift(wanted(cfg, rotated)), [], 'a new repository key alone does not rewrite secrets');
    assert.deepEqual(gh.problems, []);
  });

  test('a stale name created earlier is removed; a foreign name is left alone; an adopted name is updated but never deleted', async () => {
    const stamp = { created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z' };
    gh.variables.set('FOREIGN_VAR', { value: 'theirs', ...stamp });
    gh.variables.set('CODEXK8S_MODE', { value: 'something-else', ...stamp });
    gh.secrets.set('FOREIGN_SECRET', { value: 'theirs', ...stamp });
    const base = wanted(config(gh.url), SECRET);
    await converge({
      ...base,
      variables: { ...base.variables, OLD_VAR: 'x' },
      secrets: { ...base.secrets, OLD_SECRET: 'old-secret-value' },
    });
    assert.equal(gh.variables.get('CODEXK8S_MODE')?.value, 'local', 'adopted and updated');
    assert.deepEqual(
      readJournal(journal).github?.variables.includes('CODEXK8S_MODE'),
      false,
      'an adopted name is not ours',
    );
    const lines = await drift({ variables: {}, secrets: {} });
    assert.deepEqual(
      lines.sort(),
      [
        'secret CODEXK8S_WEBHOOK_SECRET was created by this tool and is no longer used',
        'secret OLD_SECRET was created by this tool and is no longer used',
        ...Object.keys(base.variables)
          .filter((n) => n !== 'CODEXK8S_MODE')
          .map((n) => `variable ${n} was created by this tool and is no longer used`),
        'variable OLD_VAR was created by this tool and is no longer used',
      ].sort(),
    );
    await converge(base);
    assert.equal(gh.variables.has('OLD_VAR'), false);
    assert.equal(gh.secrets.has('OLD_SECRET'), false);
    assert.equal(gh.variables.get('FOREIGN_VAR')?.value, 'theirs');
    assert.equal(gh.secrets.get('FOREIGN_SECRET')?.value, 'theirs');
    await converge({ variables: {}, secrets: {} });
    assert.equal(gh.variables.get('CODEXK8S_MODE')?.value, 'local', 'an adopted name stays when no longer wanted');
    assert.deepEqual([...gh.variables.keys()].sort(), ['CODEXK8S_MODE', 'FOREIGN_VAR']);
    assert.ok(!gh.calls.some((c) => c.method === 'DELETE' && /FOREIGN|CODEXK8S_MODE/.test(c.path)));
    assert.deepEqual(gh.problems, []);
  });

  test('more than 30 variables: every page is read, nothing is written twice', async () => {
    const stamp = { created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z' };
    for (let i = 0; i < 45; i++)
      gh.variables.set(`AAA_FOREIGN_${String(i).padStart(2, '0')}`, { value: String(i), ...stamp });
    const w = wanted(config(gh.url), SECRET);
    await converge(w);
    const pages = gh.calls.filter((c) => c.path.startsWith(`/repos/${REPO}/actions/variables?`));
    assert.deepEqual(
      pages.map((c) => new URL(c.path, 'http://x').searchParams.get('page') ?? '1'),
      ['1', '2'],
    );
    const snap = await snapshot(client, REF, false);
    assert.equal(snap.variables.size, 45 + Object.keys(w.variables).length);
    // Our names sort after the 45 foreign ones: they are on the last page, and seen as equal.
    const writes = gh.writes().length;
    await converge(w);
    assert.equal(gh.writes().length, writes);
    assert.deepEqual(gh.problems, []);
  });

  test('the webhook is upserted by URL: never duplicated, updated in place, removed in local mode', async () => {
    const server = config(gh.url, SERVER);
    gh.hooks.set(7, {
      id: 7,
      active: true,
      events: ['push'],
      config: { url: 'https://ci.example.net/hook', content_type: 'json', insecure_ssl: '0' },
      created_at: '2026-01-01T00:00:00Z',
      updated_at: '2026-01-01T00:00:00Z',
    });
    await converge(wanted(server, SECRET));
    await converge(wanted(server, SECRET));
    assert.equal(
      [...gh.hooks.values()].filter((h) => h.config.url.startsWith('https://staging.example.com')).length,
      1,
    );
    assert.equal(gh.calls.filter((c) => c.method === 'POST' && c.path.endsWith('/hooks')).length, 1);
    const events = wanted(config(gh.url, { ...SERVER, CODEXK8S_GITHUB_WEBHOOK_EVENTS: 'push' }), SECRET);
    await converge(events);
    assert.equal(
      gh.calls.filter((c) => c.method === 'POST' && c.path.endsWith('/hooks')).length,
      1,
      'an update is a PATCH',
    );
    assert.deepEqual([...gh.hooks.values()].find((h) => h.id !== 7)?.events, ['push']);
    // A hook with our URL that someone else made: adopted (secret set), never deleted.
    await converge(wanted(config(gh.url), SECRET));
    assert.deepEqual([...gh.hooks.keys()], [7], 'local mode removes our webhook, the foreign one stays');
    assert.deepEqual(gh.problems, []);
  });

  test('502 and a secondary rate limit are retried', async () => {
    gh.fault('GET /repos/{owner}/{repo}/actions/variables', { kind: 'bad-gateway', times: 2 });
    gh.fault('POST /repos/{owner}/{repo}/actions/variables', { kind: 'secondary-rate-limit', retryAfter: 1 });
    const w = wanted(config(gh.url), SECRET);
    await converge(w);
    assert.deepEqual(
      gh.calls.filter((c) => c.fault).map((c) => `${c.method} ${c.status} ${c.fault}`),
      ['GET 502 bad-gateway', 'GET 502 bad-gateway', 'POST 403 secondary-rate-limit'],
    );
    assert.equal(gh.variables.size, Object.keys(w.variables).length);
    assert.ok(
      log.lines.some((l) => /secondary rate limit \(403\) on POST .* retrying in 1s \(try 2\/3\)/.test(l)),
      log.lines.join('\n'),
    );
  });

  test("a permission refused during the run names it in the token page's words", async () => {
    gh.permissions.secrets = 'read';
    try {
      await converge(wanted(config(gh.url), SECRET));
      assert.fail('expected a 403');
    } catch (e) {
      const err = explainGitHubError(e, 'updating the repository', REPO, 'https://github.com');
      assert.ok(err instanceof OperationError);
      assert.match(
        err.message,
        /403 "Resource not accessible by personal access token"; the token needs Secrets: Read and write/,
      );
    }
  });

  test("the repository setting in another case is the same repository (journal keyed on GitHub's id): unchanged, no second webhook", async () => {
    const server = wanted(config(gh.url, SERVER), SECRET);
    await converge(server);
    const writes = gh.writes().length;
    const recased = { owner: 'Codex-K8s', repo: 'Unit-REPO' };
    assert.deepEqual(await drift(server, recased), []);
    assert.deepEqual(await converge(server, recased), []);
    assert.equal(gh.writes().length, writes, 'no write call');
    assert.equal(gh.hooks.size, 1, 'no second webhook');
    assert.deepEqual(
      { repo: readJournal(journal).github?.repo, id: readJournal(journal).github?.repoId },
      { repo: REPO, id: 1296269 },
      'canonical full_name and id',
    );
    // Still ours: in local mode (same spelling) the webhook and the variable this tool created are removed.
    await converge(wanted(config(gh.url), SECRET), recased);
    assert.equal(gh.hooks.size, 0, 'no stale webhook left behind');
    assert.equal(gh.variables.has('CODEXK8S_STAGING_DOMAIN'), false);
    assert.deepEqual(gh.problems, []);
  });

  test("a journal of the previous format (keyed on the setting's string) is found case-insensitively and migrated; another id is another repository", async () => {
    const server = wanted(config(gh.url, SERVER), SECRET);
    await converge(server);
    const current = readJournal(journal);
    const { repoId: _id, ...legacy } = current.github ?? assert.fail('no github section');
    writeJournal(journal, { ...current, github: { ...legacy, repo: 'CODEX-K8S/Unit-Repo' } });
    const writes = gh.writes().length;
    assert.deepEqual(await drift(server), []);
    assert.deepEqual(await converge(server), []);
    assert.equal(gh.writes().length, writes);
    const migrated = readJournal(journal).github;
    assert.deepEqual(
      migrated,
      { ...legacy, repo: REPO, repoId: 1296269 },
      'same names, secrets and webhooks; id and canonical name added',
    );
    const other = new CaptureLog();
    const fresh = githubJournal(journal, { id: 42, fullName: REPO }, other);
    assert.deepEqual(
      { variables: fresh.variables, webhooks: fresh.webhooks, repoId: fresh.repoId },
      { variables: [], webhooks: [], repoId: 42 },
      'a repository re-created under the same name is not ours',
    );
    assert.match(other.lines.join('\n'), /belong to codex-k8s\/unit-repo, not codex-k8s\/unit-repo/);
  });

  test('a secret whose read-back fails stays journaled as ours (written first); the next run writes and confirms it', async () => {
    const w = wanted(config(gh.url), SECRET);
    gh.fault('GET /repos/{owner}/{repo}/actions/secrets/{secret_name}', { kind: 'not-found' });
    await assert.rejects(
      converge(w),
      /GET \/repos\/codex-k8s\/unit-repo\/actions\/secrets\/CODEXK8S_WEBHOOK_SECRET -> 404/,
    );
    assert.equal(gh.secretValue('CODEXK8S_WEBHOOK_SECRET'), SECRET, 'the PUT itself went through');
    assert.deepEqual(readJournal(journal).github?.secrets['CODEXK8S_WEBHOOK_SECRET'], {
      fingerprint: readJournal(journal).github?.secrets['CODEXK8S_WEBHOOK_SECRET']?.fingerprint,
      created: true,
      pending: true,
    });
    assert.deepEqual(await drift(w), [
      'secret CODEXK8S_WEBHOOK_SECRET: the last write was not confirmed (the run stopped before reading it back)',
    ]);
    await converge(w);
    const rec = readJournal(journal).github?.secrets['CODEXK8S_WEBHOOK_SECRET'];
    assert.deepEqual(
      { created: rec?.created, pending: rec?.pending, updatedAt: rec?.updatedAt },
      { created: true, pending: undefined, updatedAt: gh.secrets.get('CODEXK8S_WEBHOOK_SECRET')?.updated_at },
    );
    assert.deepEqual(await drift(w), []);
    await converge({ ...w, secrets: {} });
    assert.equal(
      gh.secrets.has('CODEXK8S_WEBHOOK_SECRET'),
      false,
      'created by this tool, so removed when no longer wanted',
    );
    // A refused PUT wrote nothing: the intent is taken back, the journal does not claim a secret GitHub never had.
    gh.fault('PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}', { kind: 'missing-permission' });
    await assert.rejects(
      converge(w),
      /PUT \/repos\/codex-k8s\/unit-repo\/actions\/secrets\/CODEXK8S_WEBHOOK_SECRET -> 403/,
    );
    assert.equal(readJournal(journal).github?.secrets['CODEXK8S_WEBHOOK_SECRET'], undefined);
    assert.deepEqual(gh.problems, []);
  });

  test('a create whose answer is lost (the retry is refused as a duplicate) stays ours: adopted as created next run, removed when unused', async () => {
    const server = config(gh.url, SERVER);
    const url = 'https://staging.example.com/webhooks/github';
    gh.fault('POST /repos/{owner}/{repo}/hooks', { kind: 'lost-answer' });
    gh.fault('POST /repos/{owner}/{repo}/actions/variables', { kind: 'lost-answer' });
    await assert.rejects(
      converge(wanted(server, SECRET)),
      /POST \/repos\/codex-k8s\/unit-repo\/actions\/variables -> 409/,
    );
    const first = readJournal(journal).github;
    assert.equal(gh.variables.size, 1, 'the first try created the variable, its retry got 409');
    assert.deepEqual(first?.variables, [...gh.variables.keys()], 'a 4xx after a retry does not take the intent back');
    await assert.rejects(converge(wanted(server, SECRET)), /POST \/repos\/codex-k8s\/unit-repo\/hooks -> 422/);
    assert.equal(gh.hooks.size, 1, 'the first try created the hook, its retry got 422 "Hook already exists"');
    assert.deepEqual(readJournal(journal).github?.pendingWebhooks, [url], 'the create is journaled before it is sent');
    const id = [...gh.hooks.keys()][0];
    assert.deepEqual(await drift(wanted(server, SECRET)), [
      `webhook ${url} (id ${id}) differs: created by this tool, but the answer to the create was lost`,
    ]);
    await converge(wanted(server, SECRET));
    const j = readJournal(journal).github;
    assert.deepEqual([j?.webhooks.map((h) => [h.id, h.created]), j?.pendingWebhooks], [[[id, true]], undefined]);
    assert.deepEqual(await drift(wanted(server, SECRET)), []);
    await converge(wanted(config(gh.url), SECRET));
    assert.equal(gh.hooks.size, 0, 'created by this tool, so local mode removes it');
    assert.deepEqual(
      gh.calls.filter((c) => c.method === 'POST' && c.path.endsWith('/hooks')).map((c) => c.status),
      [502, 422],
      'one create that took effect, one refused retry, never a second hook',
    );
    assert.deepEqual(
      gh.problems.filter((p) => !/unknown/.test(p)),
      [],
    );
  });

  test('a pending create that left nothing on GitHub is forgotten; one left behind in local mode is deleted', async () => {
    const url = 'https://staging.example.com/webhooks/github';
    const cfg = config(gh.url);
    await converge(wanted(cfg, SECRET));
    const seed = readJournal(journal);
    writeJournal(journal, { ...seed, github: { ...seed.github!, pendingWebhooks: [url] } });
    assert.deepEqual(await drift(wanted(cfg, SECRET)), [
      `webhook ${url}: a create whose answer was lost left nothing in ${REPO}; the journal forgets it`,
    ]);
    await converge(wanted(cfg, SECRET));
    assert.equal(readJournal(journal).github?.pendingWebhooks, undefined);
    gh.hooks.set(9, {
      id: 9,
      active: true,
      events: ['push'],
      config: { url, content_type: 'json', insecure_ssl: '0' },
      created_at: '2026-01-01T00:00:00Z',
      updated_at: '2026-01-01T00:00:00Z',
    });
    const again = readJournal(journal);
    writeJournal(journal, { ...again, github: { ...again.github!, pendingWebhooks: [url] } });
    await converge(wanted(cfg, SECRET));
    assert.equal(gh.hooks.has(9), false, 'the hook of an unanswered create is ours: removed when not wanted');
    assert.equal(readJournal(journal).github?.pendingWebhooks, undefined);
  });

  test('a failed step 70 prints the failing request (method, path, status) and the writes made before it', async () => {
    gh.fault('POST /repos/{owner}/{repo}/hooks', { kind: 'missing-permission' });
    const w = wanted(config(gh.url, SERVER), SECRET);
    const failure = await converge(w).then(
      () => assert.fail('expected a 403'),
      (e: unknown) => e,
    );
    const err = explainWiringError(failure, REPO, 'https://github.com');
    assert.equal(
      err.message,
      'updating codex-k8s/unit-repo: POST /repos/codex-k8s/unit-repo/hooks -> 403: GitHub answered 403 "Resource not accessible by personal access token"; the token needs Webhooks: Read and write',
    );
    const out = new CaptureLog();
    reportError(stepCliSpec('70_github_repo'), out, err);
    const printed = out.lines.join('\n');
    assert.match(printed, /writes made before the failure \(8, journaled/);
    for (const [name, value] of Object.entries(w.variables))
      assert.ok(printed.includes(`+ created variable ${name}=${JSON.stringify(value)}`), `${name} in:\n${printed}`);
    assert.ok(printed.includes('+ created secret CODEXK8S_WEBHOOK_SECRET (missing in the repository)'), printed);
    assert.match(printed, /next: edit the token at https:\/\/github.com\/settings\/personal-access-tokens/);
    assert.ok(!printed.includes(SECRET));
    assert.deepEqual(
      readJournal(journal).github?.variables,
      Object.keys(w.variables).sort(),
      'the writes made are journaled',
    );
  });
});

describe('one retry policy (at most 3 tries; rate limits wait as GitHub says)', () => {
  let gh: FakeGitHub;
  let client: GitHubClient;
  let log: CaptureLog;
  let slept: number[];
  const VARS = 'GET /repos/{owner}/{repo}/actions/variables';
  const list = () => client.request(VARS, REF);
  const tries = () => gh.calls.filter((c) => c.route === VARS).length;
  beforeEach(async () => {
    await gh?.close();
    gh = await startFakeGitHub({ token: TOKEN, repo: REPO });
    log = new CaptureLog();
    slept = [];
    client = createGitHub({ token: TOKEN, baseUrl: gh.url, log, sleep: async (ms) => void slept.push(ms) });
  });
  after(async () => gh?.close());

  test('a persistent 429: exactly 3 tries, each after its retry-after; then the 429 itself', async () => {
    gh.fault(VARS, { kind: 'too-many-requests', retryAfter: 7, times: 100 });
    const e = await list().then(
      () => assert.fail('expected a 429'),
      (x: unknown) => x,
    );
    assert.equal(httpStatus(e), 429);
    assert.equal(tries(), 3);
    assert.deepEqual(slept, [7000, 7000]);
    assert.match(log.lines.join('\n'), /secondary rate limit \(429\) on GET .*: giving up after 3 tries/);
    assert.match(
      explainGitHubError(e, 'reading variables', REPO, 'https://github.com').message,
      /GitHub answered 429 "You have exceeded a secondary rate limit/,
    );
  });

  test('a 429 once: the second try succeeds after retry-after', async () => {
    gh.fault(VARS, { kind: 'too-many-requests', retryAfter: 2 });
    assert.equal((await list()).status, 200);
    assert.deepEqual({ tries: tries(), slept }, { tries: 2, slept: [2000] });
  });

  test('a primary rate limit waits until x-ratelimit-reset; one that lifts after more than 2 minutes fails at once', async () => {
    gh.fault(VARS, { kind: 'primary-rate-limit', retryAfter: 30 });
    await list();
    assert.equal(slept.length, 1);
    assert.ok((slept[0] ?? 0) >= 30000 && (slept[0] ?? 0) <= 32000, String(slept));
    gh.fault(VARS, { kind: 'primary-rate-limit', retryAfter: 3600, times: 100 });
    const before = tries();
    await assert.rejects(list(), (e: unknown) => httpStatus(e) === 403);
    assert.equal(tries() - before, 1);
    assert.match(
      log.lines.join('\n'),
      /rate limit \(403\) on GET .*: it lifts in 36\d\ds, longer than the 120s a run waits/,
    );
  });

  test('a persistent 502: 3 tries after 1 s and 4 s; a refusal (403, 404) is final at once', async () => {
    gh.fault(VARS, { kind: 'bad-gateway', times: 100 });
    await assert.rejects(list(), (e: unknown) => httpStatus(e) === 502);
    assert.deepEqual({ tries: tries(), slept }, { tries: 3, slept: [1000, 4000] });
    for (const kind of ['missing-permission', 'not-found'] as const) {
      gh.fault(VARS, { kind, times: 100 });
      slept.length = 0;
      const before = tries();
      await assert.rejects(list());
      assert.deepEqual({ kind, tries: tries() - before, slept }, { kind, tries: 1, slept: [] });
    }
  });

  test('writes are spaced a second apart', async () => {
    await client.request('POST /repos/{owner}/{repo}/actions/variables', { ...REF, name: 'A_VAR', value: '1' });
    await client.request('POST /repos/{owner}/{repo}/actions/variables', { ...REF, name: 'B_VAR', value: '2' });
    assert.equal(slept.length, 1, String(slept));
    assert.ok((slept[0] ?? 0) > 800 && (slept[0] ?? 0) <= 1000, String(slept));
    assert.deepEqual(gh.problems, []);
  });
});

test('retryDelaySeconds: the whole policy as a table (status undefined = no answer)', () => {
  const NOW = 1_800_000_000_000;
  const reset = (s: number) => String(NOW / 1000 + s);
  const rows: Array<[number | undefined, Record<string, string>, number, string, number | undefined]> = [
    [undefined, {}, 1, '', 1],
    [undefined, {}, 2, '', 4],
    [undefined, {}, 3, '', undefined],
    [500, {}, 1, '', 1],
    [502, {}, 2, '', 4],
    [503, { 'retry-after': '5' }, 1, '', 5],
    [503, {}, 3, '', undefined],
    [429, { 'retry-after': '7' }, 1, '', 7],
    [429, { 'retry-after': '7' }, 2, '', 7],
    [429, { 'retry-after': '7' }, 3, '', undefined],
    [429, { 'retry-after': new Date(NOW + 9000).toUTCString() }, 1, '', 9],
    [429, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset(20) }, 1, '', 21],
    [429, {}, 1, '', 60],
    [403, { 'retry-after': '3' }, 1, 'You have exceeded a secondary rate limit', 3],
    [403, {}, 1, 'You have exceeded a secondary rate limit', 60],
    [403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset(10) }, 1, 'API rate limit exceeded', 11],
    [403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset(-5) }, 1, 'API rate limit exceeded', 1],
    [403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset(3600) }, 1, 'API rate limit exceeded', undefined],
    [429, { 'retry-after': '121' }, 1, '', undefined],
    [
      403,
      { 'x-accepted-github-permissions': 'secrets=write' },
      1,
      'Resource not accessible by personal access token',
      undefined,
    ],
    [403, { 'x-ratelimit-remaining': '4999' }, 1, 'Resource not accessible by personal access token', undefined],
    [401, {}, 1, 'Bad credentials', undefined],
    [404, {}, 1, 'Not Found', undefined],
    [409, {}, 1, '', undefined],
    [422, { 'retry-after': '1' }, 1, 'Validation Failed', undefined],
  ];
  for (const [status, headers, attempt, message, want] of rows) {
    assert.equal(
      retryDelaySeconds(status, headers, attempt, NOW, message),
      want,
      JSON.stringify({ status, headers, attempt, message }),
    );
  }
  assert.equal(MAX_TRIES, 3);
});

test('describeAccepted: GitHub names -> token page names; sets separated by ";", members by ","', () => {
  assert.equal(describeAccepted('administration=write'), 'Administration: Read and write');
  assert.equal(describeAccepted('actions_variables=read'), 'Variables: Read-only');
  assert.equal(
    describeAccepted('repository_hooks=write; secrets=read,actions=read'),
    'Webhooks: Read and write or Secrets: Read-only and Actions: Read-only',
  );
});

test('step 70 wants: local mode has no domain and no webhook; server mode has both', () => {
  const local = config('https://api.github.com');
  assert.deepEqual(wantedVariables(local), {
    CODEXK8S_MODE: 'local',
    CODEXK8S_STAGING_NAMESPACE: 'codex-k8s-staging',
    CODEXK8S_RUNNER_SCALE_SET_NAME: 'codex-k8s-staging',
    CODEXK8S_INTERNAL_REGISTRY: 'registry.codex-k8s.internal:5000',
    CODEXK8S_ROLLOUT_TIMEOUT: '5m',
    CODEXK8S_STAGING_URL: 'http://traefik.kube-system.svc.cluster.local',
  });
  assert.equal(wanted(local, 'x'.repeat(64)).webhook, undefined);
  const server = wanted(config('https://api.github.com', SERVER), 'x'.repeat(64));
  assert.equal(server.variables['CODEXK8S_STAGING_DOMAIN'], 'staging.example.com');
  assert.equal(server.variables['CODEXK8S_STAGING_URL'], 'https://staging.example.com');
  assert.equal(server.webhook?.url, 'https://staging.example.com/webhooks/github');
  assert.throws(
    () => webhookEvents(config('https://api.github.com', { CODEXK8S_GITHUB_WEBHOOK_EVENTS: 'push, Pull-Request' })),
    /CODEXK8S_GITHUB_WEBHOOK_EVENTS: .* \(Pull-Request\)/,
  );
});

test('the webhook secret file: created once 0600 in a 0700 dir, read back after; check never creates it', async () => {
  if (process.getuid?.() !== 0) return; // writeFileAtomic chowns to root
  const d = mkdtempSync(join(tmpdir(), 'ck8s-sec-'));
  const path = join(d, 'secrets', 'github-webhook-secret');
  assert.equal(await readOrCreateSecretFile(path, false), undefined);
  const a = await readOrCreateSecretFile(path, true);
  assert.equal(a?.created, true);
  assert.match(a?.value ?? '', /^[0-9a-f]{64}$/);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(join(d, 'secrets')).mode & 0o777, 0o700);
  const b = await readOrCreateSecretFile(path, true);
  assert.deepEqual(b, { value: a?.value, created: false });
  writeFileSync(path, 'short\n');
  await assert.rejects(readOrCreateSecretFile(path, false), /holds 5 characters/);
  rmSync(d, { recursive: true, force: true });
});

test('journal: a v1 journal without a github section stays readable; recordStep keeps the section', () => {
  const old = parseJournal(JSON.stringify({ version: 1, steps: {}, history: [] }));
  assert.equal(old.github, undefined);
  const g = { repo: REPO, salt: 'ab', variables: ['A'], secrets: {}, webhooks: [] };
  const j = recordStep({ ...emptyJournal(), github: g }, '70_github_repo', {
    status: 'ok',
    startedAt: 'x',
    changes: [],
    configHash: 'h',
    runId: 'r',
  });
  assert.deepEqual(j.github, g);
  const d = mkdtempSync(join(tmpdir(), 'ck8s-j-'));
  writeJournal(join(d, 's.json'), j);
  assert.deepEqual(readJournal(join(d, 's.json')).github, g);
  assert.throws(() => parseJournal(JSON.stringify({ version: 1, steps: {}, github: { repo: 1 } })), /github section/);
  rmSync(d, { recursive: true, force: true });
});
