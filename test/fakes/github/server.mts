// A fake GitHub REST API for the tests: a local node:http server that keeps state (variables, secrets, webhooks,
// runners, one repository), checks the token and the fine-grained permissions the way GitHub answers, and records
// every call. It is strict:
//   - it serves only the operations in openapi-fixture.json (cut from GitHub's own OpenAPI description by
//     refresh-openapi.mts), and the API root (`GET|HEAD /`, which 00_preflight probes); any other route is a 404
//     AND an entry in `problems`;
//   - every request body is validated with ajv against that operation's schema (plus: no unknown top-level
//     properties), every query/path parameter against its schema; every 2xx answer of the fake itself against the
//     documented response schema where the fixture has it. A failure answers 422 and lands in `problems`;
//   - a secret's encrypted_value is opened with libsodium's crypto_box_seal_open (libsodium-wrappers, an
//     implementation independent of the tweetsodium the product uses) with the repository key pair; a value that
//     does not open is a 422. The plaintext is kept for assertions (`secretValue(name)`);
//   - variable and secret names follow GitHub's rules (letters, digits, _; not GITHUB_; not starting with a digit).
// Faults (`fault(route, spec)`): 502, a secondary rate limit (403 + retry-after, or 429 + retry-after), a primary
// rate limit (403, x-ratelimit-remaining: 0, x-ratelimit-reset), a missing permission (403 with GitHub's message
// and x-accepted-github-permissions), 401, 404 -- per route, a number of times.
// `calls`: { method, path, route, status, write, fault? }. `write` is true for requests that change repository
// state (POST/PATCH/PUT/DELETE), except the runner registration token, which only mints a token that expires in
// an hour (the preflight sends it to prove "Administration: Read and write").
// GitHub Actions (`actions`, for 80_deploy_loop_check): the workflow files on the default branch `main` (whose head
// commit is `actions.headSha`), dispatches, runs and their jobs. A dispatch creates a run on the branch head that
// follows `actions.nextRun` (the knobs: conclusion success|failure|cancelled, or `never` completing; how many looks
// it stays queued/in progress; its jobs and their durations). `actions.dispatchRunDetails` says what a dispatch with
// `return_run_details: true` answers: `returned` (200 with the run id and URLs, as api.github.com does since 2026),
// `ignored` (204, a server without the parameter that ignores it) or `rejected` (422 naming the key).
// `actions.push()` adds a run as a push to main would, completed at once.
// Artifacts (`addArtifact`, for --restore-from github:...): listed per repository and per run, newest first; the
// zip download answers 302 to a storage URL on this server (GET /_storage/artifacts/ID.zip, as GitHub hands out a
// short-lived blob URL) that serves the bytes without a token; a token sent there is a problem (it must not leak to
// the storage host). An expired artifact's download answers 410.
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import AjvModule from 'ajv';
import type { ValidateFunction } from 'ajv';
import sodium from 'libsodium-wrappers';
import type { Fixture, FixtureOperation } from './refresh-openapi.mts';
import { IMAGES, IMAGE_PROVENANCE } from '../../../bootstrap/lib/versions.mts';
import { runnerImageVersion } from '../../../bootstrap/lib/runners.mts';

const HERE = dirname(fileURLToPath(import.meta.url));
const Ajv = AjvModule.default ?? AjvModule;

export type Permission =
  'metadata' | 'administration' | 'secrets' | 'actions_variables' | 'repository_hooks' | 'actions';
export type Level = 'none' | 'read' | 'write';

/** lost-answer: the request takes effect, then the answer is a 502 (a proxy that timed out after GitHub wrote). */
export type FaultKind =
  | 'bad-gateway'
  | 'secondary-rate-limit'
  | 'too-many-requests'
  | 'primary-rate-limit'
  | 'missing-permission'
  | 'unauthorized'
  | 'not-found'
  | 'lost-answer';
export interface FaultSpec {
  kind: FaultKind;
  /** How many matching calls it hits (default 1). */
  times?: number;
  /** Seconds: retry-after of secondary-rate-limit and too-many-requests, the reset of primary-rate-limit (default 1). */
  retryAfter?: number;
}

export interface Call {
  method: string;
  /** The path as requested, with its query. */
  path: string;
  /** The route template from the fixture ("GET /repos/{owner}/{repo}/hooks"), or "" when none matched. */
  route: string;
  status: number;
  write: boolean;
  fault?: FaultKind;
}

export interface Hook {
  id: number;
  active: boolean;
  events: string[];
  config: { url: string; content_type: string; insecure_ssl: string; secret?: string };
  created_at: string;
  updated_at: string;
}

export interface Runner {
  id: number;
  name: string;
  os: string;
  status: 'online' | 'offline';
  busy: boolean;
  labels: string[];
}

/** A release of the public actions/runner repository, as the runner-freshness check reads it. */
export interface RunnerRelease {
  tag: string;
  publishedAt: string;
  draft?: boolean;
  prerelease?: boolean;
}

/** The public repository whose releases the launcher reads (any token may read it). */
export const RUNNER_REPO = 'actions/runner';

export type RunConclusion = 'success' | 'failure' | 'cancelled';

export interface FakeJobPlan {
  name: string;
  /** How long the job took (started_at -> completed_at). */
  seconds: number;
  conclusion: RunConclusion | 'skipped';
}

/** What a run created by the fake does. */
export interface RunPlan {
  /** `never`: the run stays in progress forever (the waiting side must time out). */
  conclusion: RunConclusion | 'never';
  /** How many looks (GET of the run) answer queued / in_progress before it is completed (default 0: done at once). */
  pollsUntilDone?: number;
  /** Its jobs, in order (default: build, deploy, smoke with the run's conclusion on smoke). */
  jobs?: FakeJobPlan[];
}

export interface WorkflowFile {
  id: number;
  /** .github/workflows/NAME.yml */
  path: string;
  name: string;
  /** Whether the file on the default branch has a workflow_dispatch trigger. */
  dispatch: boolean;
}

export interface FakeRun {
  id: number;
  runNumber: number;
  workflowId: number;
  event: 'push' | 'workflow_dispatch';
  headBranch: string;
  headSha: string;
  createdAt: string;
  plan: RunPlan;
  /** GETs of the run so far. */
  looks: number;
  /** While onRun's promise is pending, the run is in progress whatever its plan says. */
  pending: boolean;
}

export interface FakeActions {
  /** The head commit of the default branch (main); a dispatched run checks out this commit. */
  headSha: string;
  workflows: WorkflowFile[];
  /** What the next run (dispatched or pushed) does. */
  nextRun: RunPlan;
  dispatchRunDetails: 'returned' | 'ignored' | 'rejected';
  readonly runs: FakeRun[];
  /** A run as a push of `sha` to main creates (and main's head moves there), following `plan` (default: nextRun). */
  push(sha: string, plan?: RunPlan): FakeRun;
  /**
   * Called for every new run: a test can make its staging serve the run's commit. When it returns a promise, the run
   * stays in progress until the promise settles (a rejection is a problem and fails the run), as a deploy takes time.
   */
  onRun?: (run: FakeRun) => void | Promise<void>;
}

export const DEFAULT_BRANCH = 'main';

/** A workflow artifact: what actions/upload-artifact left, as a zip. */
export interface FakeArtifact {
  id: number;
  name: string;
  /** The run that uploaded it (a run of its own, not in `actions.runs`). */
  runId: number;
  headSha: string;
  createdAt: string;
  expired: boolean;
  zip: Buffer;
}

export function defaultJobs(conclusion: RunPlan['conclusion']): FakeJobPlan[] {
  const end: RunConclusion = conclusion === 'never' ? 'success' : conclusion;
  return [
    { name: 'build', seconds: 41, conclusion: 'success' },
    { name: 'deploy', seconds: 17, conclusion: 'success' },
    { name: 'smoke', seconds: 12, conclusion: end },
  ];
}

export interface FakeGitHubOptions {
  host?: string;
  port?: number;
  token: string;
  /** owner/name of the one repository. */
  repo: string;
  ownerType?: 'User' | 'Organization';
  /** permissions.admin of the token owner in GET /repos (default true). */
  admin?: boolean;
  /** Granted fine-grained permissions (default: all write, metadata read). */
  permissions?: Partial<Record<Permission, Level>>;
  /** actions/runner releases (default: one, the version of IMAGES.arcRunner, on its pinned release date). */
  runnerReleases?: RunnerRelease[];
}

export interface FakeGitHub {
  readonly url: string;
  readonly calls: Call[];
  /** Everything the fake refused as malformed or could not serve (should stay empty). */
  readonly problems: string[];
  readonly variables: Map<string, { value: string; created_at: string; updated_at: string }>;
  readonly secrets: Map<string, { value: string; created_at: string; updated_at: string }>;
  readonly hooks: Map<number, Hook>;
  readonly runners: Runner[];
  /** actions/runner releases, newest first as GitHub lists them (default: the pinned runner version only). */
  runnerReleases: RunnerRelease[];
  readonly actions: FakeActions;
  permissions: Record<Permission, Level>;
  admin: boolean;
  fault(route: string, spec: FaultSpec): void;
  /** The plaintext of a secret, opened with libsodium. */
  secretValue(name: string): string | undefined;
  /** Calls that changed repository state. */
  writes(): Call[];
  /** A new repository key pair (GitHub rotates them); a PUT with the old key_id is then refused. */
  rotateKey(): void;
  /** Another token that authenticates as the same owner (a rotated PAT; both work until the old one is revoked). */
  acceptToken(token: string): void;
  /** Sets a secret as if someone changed it in the GitHub UI. */
  setSecretByHand(name: string, value: string): void;
  readonly artifacts: FakeArtifact[];
  /** An artifact as a workflow run uploads it (a new run id unless given); `zip` is the archive GitHub serves. */
  addArtifact(name: string, zip: Buffer, opts?: { runId?: number; expired?: boolean }): FakeArtifact;
  close(): Promise<void>;
}

const FIXTURE: Fixture = JSON.parse(readFileSync(join(HERE, 'openapi-fixture.json'), 'utf8')) as Fixture;

/** The permission and level each route needs (GitHub's "Permissions required for fine-grained PATs"). */
const NEEDS: Readonly<Record<string, readonly [Permission, 'read' | 'write']>> = {
  'GET /repos/{owner}/{repo}': ['metadata', 'read'],
  'GET /repos/{owner}/{repo}/actions/variables': ['actions_variables', 'read'],
  'POST /repos/{owner}/{repo}/actions/variables': ['actions_variables', 'write'],
  'GET /repos/{owner}/{repo}/actions/variables/{name}': ['actions_variables', 'read'],
  'PATCH /repos/{owner}/{repo}/actions/variables/{name}': ['actions_variables', 'write'],
  'DELETE /repos/{owner}/{repo}/actions/variables/{name}': ['actions_variables', 'write'],
  'GET /repos/{owner}/{repo}/actions/secrets': ['secrets', 'read'],
  'GET /repos/{owner}/{repo}/actions/secrets/public-key': ['secrets', 'read'],
  'GET /repos/{owner}/{repo}/actions/secrets/{secret_name}': ['secrets', 'read'],
  'PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}': ['secrets', 'write'],
  'DELETE /repos/{owner}/{repo}/actions/secrets/{secret_name}': ['secrets', 'write'],
  'GET /repos/{owner}/{repo}/hooks': ['repository_hooks', 'read'],
  'POST /repos/{owner}/{repo}/hooks': ['repository_hooks', 'write'],
  'GET /repos/{owner}/{repo}/hooks/{hook_id}': ['repository_hooks', 'read'],
  'PATCH /repos/{owner}/{repo}/hooks/{hook_id}': ['repository_hooks', 'write'],
  'DELETE /repos/{owner}/{repo}/hooks/{hook_id}': ['repository_hooks', 'write'],
  'GET /repos/{owner}/{repo}/actions/workflows': ['actions', 'read'],
  'GET /repos/{owner}/{repo}/actions/runners': ['administration', 'read'],
  'POST /repos/{owner}/{repo}/actions/runners/registration-token': ['administration', 'write'],
  'DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}': ['administration', 'write'],
  'POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches': ['actions', 'write'],
  'GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs': ['actions', 'read'],
  'GET /repos/{owner}/{repo}/actions/runs/{run_id}': ['actions', 'read'],
  'GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs': ['actions', 'read'],
  'GET /repos/{owner}/{repo}/actions/artifacts': ['actions', 'read'],
  'GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts': ['actions', 'read'],
  'GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}': ['actions', 'read'],
  // Public repositories (actions/runner) are readable with any token; the configured repository's releases too.
  'GET /repos/{owner}/{repo}/releases': ['metadata', 'read'],
};

/** per_page maxima GitHub documents (variables: 30; the others 100). */
const MAX_PER_PAGE: Readonly<Record<string, number>> = {
  'GET /repos/{owner}/{repo}/actions/variables': 30,
};

const NAME_RULE = /^(?!GITHUB_)(?![0-9])[A-Za-z0-9_]+$/i;

class HttpAnswer {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Record<string, string>;
  constructor(status: number, body: unknown, headers: Record<string, string> = {}) {
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

interface CompiledOp {
  op: FixtureOperation;
  key: string;
  regex: RegExp;
  names: string[];
  body?: ValidateFunction;
  params: Map<string, ValidateFunction>;
  responses: Map<string, ValidateFunction>;
}

function compile(): CompiledOp[] {
  const ajv = new Ajv({ strict: false, allErrors: true, coerceTypes: false });
  ajv.addFormat('uri', (s: string) => {
    try {
      new URL(s);
      return true;
    } catch {
      return false;
    }
  });
  ajv.addFormat('date-time', (s: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(s));
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  return FIXTURE.operations.map((op) => {
    const names: string[] = [];
    const regex = new RegExp(
      '^' +
        op.path.replace(/\{([a-z_]+)\}/g, (_m, n: string) => {
          names.push(n);
          return '([^/]+)';
        }) +
        '$',
    );
    const params = new Map<string, ValidateFunction>();
    for (const p of op.parameters) params.set(`${p.in}:${p.name}`, ajv.compile(p.schema as object));
    const responses = new Map<string, ValidateFunction>();
    for (const [status, schema] of Object.entries(op.responses)) responses.set(status, ajv.compile(schema as object));
    return {
      op,
      key: `${op.method} ${op.path}`,
      regex,
      names,
      body: op.requestBody ? ajv.compile(op.requestBody.schema as object) : undefined,
      params,
      responses,
    };
  });
}

function stamp(t: number): string {
  return new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export async function startFakeGitHub(opts: FakeGitHubOptions): Promise<FakeGitHub> {
  await sodium.ready;
  const ops = compile();
  const [owner = '', repoName = ''] = opts.repo.split('/');
  const calls: Call[] = [];
  const problems: string[] = [];
  const faults = new Map<string, FaultSpec & { left: number }>();
  const variables = new Map<string, { value: string; created_at: string; updated_at: string }>();
  const secrets = new Map<string, { value: string; created_at: string; updated_at: string }>();
  const hooks = new Map<number, Hook>();
  const tokens = new Set<string>([opts.token]);
  const runners: Runner[] = [];
  const runs: FakeRun[] = [];
  const artifacts: FakeArtifact[] = [];
  let nextRunId = 18_000_000_001;
  let nextArtifactId = 4_100_000_001;
  let nextHookId = 500_000_001;
  // A clock that moves one second per write, so updated_at always changes on a write.
  let clock = Date.parse('2026-11-01T00:00:00Z');
  const tick = () => stamp((clock += 1000));
  let keys = sodium.crypto_box_keypair();
  let keyId = `${Date.now()}${randomBytes(2).readUInt16BE()}`;
  const permissions: Record<Permission, Level> = {
    metadata: 'read',
    administration: 'write',
    secrets: 'write',
    actions_variables: 'write',
    repository_hooks: 'write',
    actions: 'write',
    ...opts.permissions,
  };

  const newRun = (event: FakeRun['event'], sha: string, plan: RunPlan, workflowId: number): FakeRun => {
    const run: FakeRun = {
      id: nextRunId++,
      runNumber: runs.filter((r) => r.workflowId === workflowId).length + 1,
      workflowId,
      event,
      headBranch: DEFAULT_BRANCH,
      headSha: sha,
      // Real time: the waiting side prints durations, and correlates by id, never by the two clocks.
      createdAt: stamp(Date.now()),
      plan: { ...plan },
      looks: 0,
      pending: false,
    };
    runs.push(run);
    const hook = actions.onRun?.(run);
    if (hook instanceof Promise) {
      run.pending = true;
      hook.then(
        () => (run.pending = false),
        (e: unknown) => {
          problems.push(`onRun of run ${run.id} failed: ${(e as Error).stack ?? String(e)}`);
          run.plan = { ...run.plan, conclusion: 'failure' };
          run.pending = false;
        },
      );
    }
    return run;
  };
  const actions: FakeActions = {
    headSha: randomBytes(20).toString('hex'),
    workflows: [{ id: 161_335, path: '.github/workflows/staging-deploy.yml', name: 'staging-deploy', dispatch: true }],
    nextRun: { conclusion: 'success' },
    dispatchRunDetails: 'returned',
    runs,
    push(sha, plan) {
      const wf = actions.workflows.find((w) => w.path.endsWith('/staging-deploy.yml'));
      if (!wf) throw new Error('fake: no staging-deploy.yml workflow to run on push');
      actions.headSha = sha;
      return newRun('push', sha, plan ?? actions.nextRun, wf.id);
    },
  };

  const fake: FakeGitHub = {
    url: '',
    calls,
    problems,
    variables,
    secrets,
    hooks,
    runners,
    runnerReleases: opts.runnerReleases ?? [
      {
        tag: `v${runnerImageVersion(IMAGES.arcRunner)}`,
        publishedAt: `${IMAGE_PROVENANCE.arcRunner.released}T12:00:00Z`,
      },
    ],
    actions,
    permissions,
    admin: opts.admin ?? true,
    fault(route, spec) {
      if (!NEEDS[route])
        throw new Error(`fault on an unknown route ${route}; expected one of:\n${Object.keys(NEEDS).join('\n')}`);
      faults.set(route, { ...spec, left: spec.times ?? 1 });
    },
    secretValue: (name) => secrets.get(name)?.value,
    writes: () => calls.filter((c) => c.write),
    acceptToken(token: string) {
      tokens.add(token);
    },
    rotateKey() {
      keys = sodium.crypto_box_keypair();
      keyId = `${Number(keyId) + 1}`;
    },
    setSecretByHand(name, value) {
      const now = tick();
      secrets.set(name, { value, created_at: secrets.get(name)?.created_at ?? now, updated_at: now });
    },
    artifacts,
    addArtifact(name, zip, o = {}) {
      const a: FakeArtifact = {
        id: nextArtifactId++,
        name,
        runId: o.runId ?? nextRunId++,
        headSha: actions.headSha,
        createdAt: tick(),
        expired: o.expired ?? false,
        zip,
      };
      artifacts.push(a);
      return a;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };

  const base = () => fake.url;
  const artifactJson = (a: FakeArtifact) => ({
    id: a.id,
    node_id: `MDg6QXJ0aWZhY3Q${a.id}`,
    name: a.name,
    size_in_bytes: a.zip.length,
    url: `${base()}/repos/${opts.repo}/actions/artifacts/${a.id}`,
    archive_download_url: `${base()}/repos/${opts.repo}/actions/artifacts/${a.id}/zip`,
    expired: a.expired,
    created_at: a.createdAt,
    // GitHub's default retention: 90 days.
    expires_at: stamp(Date.parse(a.createdAt) + 90 * 86_400_000),
    updated_at: a.createdAt,
    workflow_run: { id: a.runId, head_branch: DEFAULT_BRANCH, head_sha: a.headSha },
  });
  /** Newest first, as GitHub lists them; `name` filters exactly. */
  const listArtifacts = (all: FakeArtifact[], url: URL, key: string) => {
    const named = url.searchParams.get('name');
    const list = all
      .filter((a) => !named || a.name === named)
      .sort((x, y) => y.id - x.id)
      .map(artifactJson);
    const p = page(list, url, key);
    return new HttpAnswer(200, { total_count: list.length, artifacts: p.slice }, p.headers);
  };
  const hookJson = (h: Hook) => ({
    type: 'Repository',
    id: h.id,
    name: 'web',
    active: h.active,
    events: h.events,
    // GitHub never shows a secret again: it answers "********" when one is set.
    config: {
      url: h.config.url,
      content_type: h.config.content_type,
      insecure_ssl: h.config.insecure_ssl,
      ...(h.config.secret ? { secret: '********' } : {}),
    },
    updated_at: h.updated_at,
    created_at: h.created_at,
    url: `${base()}/repos/${opts.repo}/hooks/${h.id}`,
    test_url: `${base()}/repos/${opts.repo}/hooks/${h.id}/test`,
    ping_url: `${base()}/repos/${opts.repo}/hooks/${h.id}/pings`,
    deliveries_url: `${base()}/repos/${opts.repo}/hooks/${h.id}/deliveries`,
    last_response: { code: null, status: 'unused', message: null },
  });

  function page<T>(items: T[], url: URL, route: string): { slice: T[]; headers: Record<string, string> } {
    const op = ops.find((o) => o.key === route);
    const def = Number(
      (op?.op.parameters.find((p) => p.name === 'per_page')?.schema as { default?: number } | undefined)?.default ?? 30,
    );
    const max = MAX_PER_PAGE[route] ?? 100;
    const perPage = Math.min(Number(url.searchParams.get('per_page') ?? def), max);
    const pageNo = Number(url.searchParams.get('page') ?? 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const links: string[] = [];
    const link = (p: number, rel: string) => {
      const u = new URL(url.toString());
      u.searchParams.set('per_page', String(perPage));
      u.searchParams.set('page', String(p));
      links.push(`<${base()}${u.pathname}${u.search}>; rel="${rel}"`);
    };
    if (pageNo < last) {
      link(pageNo + 1, 'next');
      link(last, 'last');
    }
    if (pageNo > 1) {
      link(1, 'first');
      link(pageNo - 1, 'prev');
    }
    return {
      slice: items.slice((pageNo - 1) * perPage, pageNo * perPage),
      headers: links.length ? { link: links.join(', ') } : {},
    };
  }

  const releaseJson = (r: RunnerRelease, i: number) => {
    const id = 250_000_000 + i;
    const api = `${base()}/repos/${RUNNER_REPO}/releases/${id}`;
    const user = `${base()}/users/github-actions%5Bbot%5D`;
    const author = {
      login: 'github-actions[bot]',
      id: 41_898_282,
      node_id: 'MDM6Qm90NDE4OTgyODI=',
      avatar_url: 'https://avatars.githubusercontent.com/in/15368?v=4',
      gravatar_id: '',
      url: user,
      html_url: 'https://github.com/apps/github-actions',
      followers_url: `${user}/followers`,
      following_url: `${user}/following{/other_user}`,
      gists_url: `${user}/gists{/gist_id}`,
      starred_url: `${user}/starred{/owner}{/repo}`,
      subscriptions_url: `${user}/subscriptions`,
      organizations_url: `${user}/orgs`,
      repos_url: `${user}/repos`,
      events_url: `${user}/events{/privacy}`,
      received_events_url: `${user}/received_events`,
      type: 'Bot',
      site_admin: false,
    };
    return {
      url: api,
      html_url: `https://github.com/${RUNNER_REPO}/releases/tag/${r.tag}`,
      assets_url: `${api}/assets`,
      upload_url: `https://uploads.github.com/repos/${RUNNER_REPO}/releases/${id}/assets{?name,label}`,
      tarball_url: `${base()}/repos/${RUNNER_REPO}/tarball/${r.tag}`,
      zipball_url: `${base()}/repos/${RUNNER_REPO}/zipball/${r.tag}`,
      id,
      node_id: `RE_fake${id}`,
      tag_name: r.tag,
      target_commitish: 'main',
      name: r.tag,
      body: '',
      draft: r.draft ?? false,
      prerelease: r.prerelease ?? false,
      created_at: r.publishedAt,
      published_at: r.publishedAt,
      author,
      assets: [],
    };
  };
  const notFound = (docs: string) =>
    new HttpAnswer(404, { message: 'Not Found', documentation_url: docs, status: '404' });
  const invalid = (msg: string) => {
    problems.push(msg);
    return new HttpAnswer(422, {
      message: `Invalid request.\n\n${msg}`,
      documentation_url: 'https://docs.github.com/rest',
      status: '422',
    });
  };
  const checkName = (name: string): HttpAnswer | undefined =>
    NAME_RULE.test(name) ? undefined : invalid(`name ${JSON.stringify(name)} breaks GitHub's naming rules`);

  function handle(
    c: CompiledOp,
    m: Record<string, string>,
    url: URL,
    body: Record<string, unknown> | undefined,
  ): HttpAnswer {
    const docs = c.op.docs;
    switch (c.key) {
      case 'GET /repos/{owner}/{repo}':
        return new HttpAnswer(200, {
          id: 1296269,
          name: repoName,
          full_name: opts.repo,
          private: true,
          owner: { login: owner, id: 1, type: opts.ownerType ?? 'User' },
          permissions: { admin: fake.admin, maintain: fake.admin, push: true, triage: true, pull: true },
          default_branch: DEFAULT_BRANCH,
        });
      case 'GET /repos/{owner}/{repo}/actions/variables': {
        const all = [...variables].sort(([a], [b]) => a.localeCompare(b)).map(([name, v]) => ({ name, ...v }));
        const p = page(all, url, c.key);
        return new HttpAnswer(200, { total_count: all.length, variables: p.slice }, p.headers);
      }
      case 'POST /repos/{owner}/{repo}/actions/variables': {
        const name = String(body?.['name']).toUpperCase();
        const bad = checkName(name);
        if (bad) return bad;
        if (variables.has(name))
          return new HttpAnswer(409, {
            message: 'Already exists - Variable already exists',
            documentation_url: docs,
            status: '409',
          });
        const now = tick();
        variables.set(name, { value: String(body?.['value']), created_at: now, updated_at: now });
        return new HttpAnswer(201, {});
      }
      case 'GET /repos/{owner}/{repo}/actions/variables/{name}': {
        const v = variables.get((m['name'] ?? '').toUpperCase());
        return v ? new HttpAnswer(200, { name: (m['name'] ?? '').toUpperCase(), ...v }) : notFound(docs);
      }
      case 'PATCH /repos/{owner}/{repo}/actions/variables/{name}': {
        const name = (m['name'] ?? '').toUpperCase();
        const v = variables.get(name);
        if (!v) return notFound(docs);
        const newName = body?.['name'] !== undefined ? String(body['name']).toUpperCase() : name;
        const bad = checkName(newName);
        if (bad) return bad;
        variables.delete(name);
        variables.set(newName, {
          value: body?.['value'] !== undefined ? String(body['value']) : v.value,
          created_at: v.created_at,
          updated_at: tick(),
        });
        return new HttpAnswer(204, undefined);
      }
      case 'DELETE /repos/{owner}/{repo}/actions/variables/{name}':
        return variables.delete((m['name'] ?? '').toUpperCase()) ? new HttpAnswer(204, undefined) : notFound(docs);
      case 'GET /repos/{owner}/{repo}/actions/secrets': {
        const all = [...secrets]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([name, s]) => ({ name, created_at: s.created_at, updated_at: s.updated_at }));
        const p = page(all, url, c.key);
        return new HttpAnswer(200, { total_count: all.length, secrets: p.slice }, p.headers);
      }
      case 'GET /repos/{owner}/{repo}/actions/secrets/public-key':
        return new HttpAnswer(200, {
          key_id: keyId,
          key: sodium.to_base64(keys.publicKey, sodium.base64_variants.ORIGINAL),
        });
      case 'GET /repos/{owner}/{repo}/actions/secrets/{secret_name}': {
        const name = (m['secret_name'] ?? '').toUpperCase();
        const s = secrets.get(name);
        return s ? new HttpAnswer(200, { name, created_at: s.created_at, updated_at: s.updated_at }) : notFound(docs);
      }
      case 'PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}': {
        const name = (m['secret_name'] ?? '').toUpperCase();
        const bad = checkName(name);
        if (bad) return bad;
        if (body?.['key_id'] !== keyId)
          return invalid(
            `secret ${name}: key_id ${JSON.stringify(body?.['key_id'])} is not the repository's current key ${keyId}`,
          );
        let plain: string;
        try {
          const sealed = sodium.from_base64(String(body?.['encrypted_value']), sodium.base64_variants.ORIGINAL);
          plain = sodium.to_string(sodium.crypto_box_seal_open(sealed, keys.publicKey, keys.privateKey));
        } catch (e) {
          return invalid(
            `secret ${name}: encrypted_value does not open with crypto_box_seal_open (${(e as Error).message})`,
          );
        }
        const now = tick();
        const existed = secrets.get(name);
        secrets.set(name, { value: plain, created_at: existed?.created_at ?? now, updated_at: now });
        return existed ? new HttpAnswer(204, undefined) : new HttpAnswer(201, {});
      }
      case 'DELETE /repos/{owner}/{repo}/actions/secrets/{secret_name}':
        return secrets.delete((m['secret_name'] ?? '').toUpperCase()) ? new HttpAnswer(204, undefined) : notFound(docs);
      case 'GET /repos/{owner}/{repo}/hooks': {
        const all = [...hooks.values()].sort((a, b) => a.id - b.id).map(hookJson);
        const p = page(all, url, c.key);
        return new HttpAnswer(200, p.slice, p.headers);
      }
      case 'POST /repos/{owner}/{repo}/hooks': {
        const config = (body?.['config'] ?? {}) as Record<string, unknown>;
        if (body?.['name'] !== undefined && body['name'] !== 'web')
          return invalid(`hook name ${JSON.stringify(body['name'])}: only "web" is accepted`);
        if (typeof config['url'] !== 'string') return invalid('hook config.url is required');
        for (const h of hooks.values())
          if (
            h.config.url === config['url'] &&
            JSON.stringify([...h.events].sort()) ===
              JSON.stringify([...((body?.['events'] as string[]) ?? ['push'])].sort())
          )
            return new HttpAnswer(422, {
              message: 'Validation Failed',
              errors: [{ resource: 'Hook', code: 'custom', message: 'Hook already exists on this repository' }],
              documentation_url: docs,
              status: '422',
            });
        const now = tick();
        const h: Hook = {
          id: nextHookId++,
          active: body?.['active'] !== false,
          events: [...new Set((body?.['events'] as string[] | undefined) ?? ['push'])],
          config: {
            url: config['url'],
            content_type: String(config['content_type'] ?? 'form'),
            insecure_ssl: String(config['insecure_ssl'] ?? '0'),
            ...(typeof config['secret'] === 'string' ? { secret: config['secret'] } : {}),
          },
          created_at: now,
          updated_at: now,
        };
        hooks.set(h.id, h);
        return new HttpAnswer(201, hookJson(h));
      }
      case 'GET /repos/{owner}/{repo}/hooks/{hook_id}': {
        const h = hooks.get(Number(m['hook_id']));
        return h ? new HttpAnswer(200, hookJson(h)) : notFound(docs);
      }
      case 'PATCH /repos/{owner}/{repo}/hooks/{hook_id}': {
        const h = hooks.get(Number(m['hook_id']));
        if (!h) return notFound(docs);
        const config = body?.['config'] as Record<string, unknown> | undefined;
        if (config) {
          // GitHub replaces the whole config: what is not sent is dropped (the secret too).
          if (typeof config['url'] !== 'string') return invalid('hook config.url is required when config is sent');
          h.config = {
            url: config['url'],
            content_type: String(config['content_type'] ?? 'form'),
            insecure_ssl: String(config['insecure_ssl'] ?? '0'),
            ...(typeof config['secret'] === 'string' ? { secret: config['secret'] } : {}),
          };
        }
        if (Array.isArray(body?.['events'])) h.events = [...new Set(body['events'] as string[])];
        if (typeof body?.['active'] === 'boolean') h.active = body['active'];
        h.updated_at = tick();
        return new HttpAnswer(200, hookJson(h));
      }
      case 'DELETE /repos/{owner}/{repo}/hooks/{hook_id}':
        return hooks.delete(Number(m['hook_id'])) ? new HttpAnswer(204, undefined) : notFound(docs);
      case 'GET /repos/{owner}/{repo}/actions/workflows': {
        const all = actions.workflows.map(workflowJson);
        const p = page(all, url, c.key);
        return new HttpAnswer(200, { total_count: all.length, workflows: p.slice }, p.headers);
      }
      case 'POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches': {
        const wf = findWorkflow(m['workflow_id'] ?? '');
        if (!wf) return notFound(docs);
        const ref = String(body?.['ref'] ?? '').replace(/^refs\/heads\//, '');
        if (ref !== DEFAULT_BRANCH)
          return new HttpAnswer(422, {
            message: `No ref found for: ${body?.['ref']}`,
            documentation_url: docs,
            status: '422',
          });
        if (!wf.dispatch)
          return new HttpAnswer(422, {
            message: "Workflow does not have 'workflow_dispatch' trigger",
            documentation_url: docs,
            status: '422',
          });
        const asked = body?.['return_run_details'] === true;
        if (body?.['return_run_details'] !== undefined && actions.dispatchRunDetails === 'rejected') {
          return new HttpAnswer(422, {
            message: 'Invalid request.\n\n"return_run_details" is not a permitted key.',
            documentation_url: docs,
            status: '422',
          });
        }
        const run = newRun('workflow_dispatch', actions.headSha, actions.nextRun, wf.id);
        if (!asked || actions.dispatchRunDetails !== 'returned') return new HttpAnswer(204, undefined);
        return new HttpAnswer(200, {
          workflow_run_id: run.id,
          run_url: `${base()}/repos/${opts.repo}/actions/runs/${run.id}`,
          html_url: runHtmlUrl(run),
        });
      }
      case 'GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs': {
        const wf = findWorkflow(m['workflow_id'] ?? '');
        if (!wf) return notFound(docs);
        const q = (k: string) => url.searchParams.get(k);
        const all = runs
          .filter((r) => r.workflowId === wf.id)
          .filter((r) => !q('branch') || r.headBranch === q('branch'))
          .filter((r) => !q('event') || r.event === q('event'))
          .filter((r) => !q('head_sha') || r.headSha === q('head_sha'))
          .map((r) => runJson(r, false))
          .filter((r) => !q('status') || r.status === q('status') || r.conclusion === q('status'))
          .sort((a, b) => b.id - a.id);
        const p = page(all, url, c.key);
        return new HttpAnswer(200, { total_count: all.length, workflow_runs: p.slice }, p.headers);
      }
      case 'GET /repos/{owner}/{repo}/actions/runs/{run_id}': {
        const run = runs.find((r) => r.id === Number(m['run_id']));
        return run ? new HttpAnswer(200, runJson(run, true)) : notFound(docs);
      }
      case 'GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs': {
        const run = runs.find((r) => r.id === Number(m['run_id']));
        if (!run) return notFound(docs);
        const all = jobsJson(run);
        const p = page(all, url, c.key);
        return new HttpAnswer(200, { total_count: all.length, jobs: p.slice }, p.headers);
      }
      case 'GET /repos/{owner}/{repo}/actions/artifacts':
        return listArtifacts(artifacts, url, c.key);
      case 'GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts':
        return listArtifacts(
          artifacts.filter((a) => a.runId === Number(m['run_id'])),
          url,
          c.key,
        );
      case 'GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}': {
        const a = artifacts.find((x) => x.id === Number(m['artifact_id']));
        if (!a || m['archive_format'] !== 'zip') return notFound(docs);
        if (a.expired)
          return new HttpAnswer(410, { message: 'Artifact has expired', documentation_url: docs, status: '410' });
        return new HttpAnswer(302, undefined, {
          location: `${base()}/_storage/artifacts/${a.id}.zip?sig=${randomBytes(8).toString('hex')}`,
        });
      }
      case 'GET /repos/{owner}/{repo}/releases': {
        if (`${m['owner']}/${m['repo']}`.toLowerCase() !== RUNNER_REPO) return new HttpAnswer(200, []);
        const { slice, headers } = page(fake.runnerReleases.map(releaseJson), url, c.key);
        return new HttpAnswer(200, slice, headers);
      }
      case 'GET /repos/{owner}/{repo}/actions/runners': {
        const named = url.searchParams.get('name');
        const all = runners
          .filter((r) => !named || r.name === named)
          .map((r) => ({
            id: r.id,
            name: r.name,
            os: r.os,
            status: r.status,
            busy: r.busy,
            labels: r.labels.map((l, i) => ({ id: i + 1, name: l, type: 'custom' as const })),
          }));
        const p = page(all, url, c.key);
        return new HttpAnswer(200, { total_count: all.length, runners: p.slice }, p.headers);
      }
      case 'DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}': {
        const i = runners.findIndex((r) => r.id === Number(m['runner_id']));
        if (i < 0) return notFound(docs);
        runners.splice(i, 1);
        return new HttpAnswer(204, undefined);
      }
      case 'POST /repos/{owner}/{repo}/actions/runners/registration-token':
        return new HttpAnswer(201, {
          token: `AABF${randomBytes(12).toString('hex').toUpperCase()}`,
          expires_at: stamp(Date.now() + 3600_000),
        });
    }
    problems.push(`no handler for ${c.key}`);
    return new HttpAnswer(500, { message: 'fake: no handler' });
  }

  function findWorkflow(idOrFile: string): WorkflowFile | undefined {
    return actions.workflows.find((w) => String(w.id) === idOrFile || w.path.split('/').pop() === idOrFile);
  }

  function workflowJson(w: WorkflowFile) {
    return {
      id: w.id,
      node_id: `W_${w.id}`,
      name: w.name,
      path: w.path,
      state: 'active' as const,
      created_at: '2026-11-01T00:00:00Z',
      updated_at: '2026-11-01T00:00:00Z',
      url: `${base()}/repos/${opts.repo}/actions/workflows/${w.id}`,
      html_url: `${base()}/${opts.repo}/blob/${DEFAULT_BRANCH}/${w.path}`,
      badge_url: `${base()}/${opts.repo}/workflows/${w.name}/badge.svg`,
    };
  }

  const runHtmlUrl = (r: FakeRun) => `${base()}/${opts.repo}/actions/runs/${r.id}`;

  /** Where the run is now; `look` counts a GET of the run (the knob pollsUntilDone is in looks). */
  function runState(
    r: FakeRun,
    look: boolean,
  ): { status: 'queued' | 'in_progress' | 'completed'; conclusion: RunConclusion | null } {
    const seen = r.looks;
    if (look) r.looks++;
    if (r.pending || r.plan.conclusion === 'never' || seen < (r.plan.pollsUntilDone ?? 0))
      return { status: seen === 0 ? 'queued' : 'in_progress', conclusion: null };
    return { status: 'completed', conclusion: r.plan.conclusion };
  }

  function runJson(r: FakeRun, look: boolean) {
    const wf = actions.workflows.find((w) => w.id === r.workflowId);
    const { status, conclusion } = runState(r, look);
    return {
      id: r.id,
      name: wf?.name ?? 'workflow',
      node_id: `WFR_${r.id}`,
      head_branch: r.headBranch,
      head_sha: r.headSha,
      path: wf?.path ?? '',
      display_title: r.event === 'push' ? 'a push to main' : (wf?.name ?? ''),
      run_number: r.runNumber,
      run_attempt: 1,
      event: r.event,
      status,
      conclusion,
      workflow_id: r.workflowId,
      url: `${base()}/repos/${opts.repo}/actions/runs/${r.id}`,
      html_url: runHtmlUrl(r),
      jobs_url: `${base()}/repos/${opts.repo}/actions/runs/${r.id}/jobs`,
      created_at: r.createdAt,
      updated_at: r.createdAt,
      run_started_at: r.createdAt,
    };
  }

  function jobsJson(r: FakeRun) {
    const { status } = runState(r, false);
    const plan = r.plan.jobs ?? defaultJobs(r.plan.conclusion);
    let t = Date.parse(r.createdAt);
    return plan.map((j, i) => {
      const started = stamp(t);
      t += j.seconds * 1000;
      const done = status === 'completed';
      return {
        id: r.id * 10 + i,
        run_id: r.id,
        run_url: `${base()}/repos/${opts.repo}/actions/runs/${r.id}`,
        run_attempt: 1,
        node_id: `CR_${r.id}_${i}`,
        head_sha: r.headSha,
        url: `${base()}/repos/${opts.repo}/actions/jobs/${r.id * 10 + i}`,
        html_url: `${runHtmlUrl(r)}/job/${r.id * 10 + i}`,
        status: done ? ('completed' as const) : ('in_progress' as const),
        conclusion: done ? j.conclusion : null,
        created_at: started,
        started_at: started,
        completed_at: done ? stamp(t) : null,
        name: j.name,
        steps: [],
        check_run_url: `${base()}/repos/${opts.repo}/check-runs/${r.id * 10 + i}`,
        labels: ['codex-k8s-staging'],
        runner_id: 101,
        runner_name: `codex-k8s-staging-x7k2p-runner-${i}`,
        runner_group_id: 1,
        runner_group_name: 'Default',
        workflow_name: actions.workflows.find((w) => w.id === r.workflowId)?.name ?? null,
        head_branch: r.headBranch,
      };
    });
  }

  function faultAnswer(f: FaultSpec, route: string): HttpAnswer {
    switch (f.kind) {
      case 'lost-answer':
      case 'bad-gateway':
        return new HttpAnswer(502, { message: 'Server Error' });
      case 'secondary-rate-limit':
        return new HttpAnswer(
          403,
          {
            message:
              'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.',
            documentation_url:
              'https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits',
            status: '403',
          },
          { 'retry-after': String(f.retryAfter ?? 1) },
        );
      case 'too-many-requests':
        return new HttpAnswer(
          429,
          {
            message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
            documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
            status: '429',
          },
          { 'retry-after': String(f.retryAfter ?? 1) },
        );
      case 'primary-rate-limit':
        return new HttpAnswer(
          403,
          {
            message: 'API rate limit exceeded for user ID 1.',
            documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
            status: '403',
          },
          {
            'x-ratelimit-limit': '5000',
            'x-ratelimit-remaining': '0',
            'x-ratelimit-used': '5000',
            'x-ratelimit-resource': 'core',
            'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + (f.retryAfter ?? 1)),
          },
        );
      case 'missing-permission': {
        const [perm, level] = NEEDS[route] ?? ['metadata', 'read'];
        return refusal(perm, level);
      }
      case 'unauthorized':
        return new HttpAnswer(401, {
          message: 'Bad credentials',
          documentation_url: 'https://docs.github.com/rest',
          status: '401',
        });
      case 'not-found':
        return notFound('https://docs.github.com/rest');
    }
  }

  function refusal(perm: Permission, level: 'read' | 'write'): HttpAnswer {
    return new HttpAnswer(
      403,
      {
        message: 'Resource not accessible by personal access token',
        documentation_url: 'https://docs.github.com/rest',
        status: '403',
      },
      { 'x-accepted-github-permissions': `${perm}=${level}` },
    );
  }

  function route(
    req: IncomingMessage,
    url: URL,
    raw: string,
  ): { answer: HttpAnswer; route: string; write: boolean; fault?: FaultKind } {
    const method = req.method ?? 'GET';
    // The API root answers anyone, like api.github.com does: 00_preflight probes it for outbound reachability.
    if ((method === 'GET' || method === 'HEAD') && url.pathname === '/') {
      return {
        answer: new HttpAnswer(200, {
          current_user_url: `${url.origin}/user`,
          repository_url: `${url.origin}/repos/{owner}/{repo}`,
        }),
        route: `${method} /`,
        write: false,
      };
    }
    const c = ops.find((o) => o.op.method === method && o.regex.test(url.pathname));
    if (!c) {
      problems.push(`unknown route ${method} ${url.pathname}`);
      return { answer: notFound('https://docs.github.com/rest'), route: '', write: method !== 'GET' };
    }
    const write = method !== 'GET' && c.key !== 'POST /repos/{owner}/{repo}/actions/runners/registration-token';
    const auth = req.headers['authorization'] ?? '';
    const given = auth.replace(/^(token|Bearer) /, '');
    if (!/^(token|Bearer) /.test(auth) || !tokens.has(given))
      return { answer: faultAnswer({ kind: 'unauthorized' }, c.key), route: c.key, write };
    const f = faults.get(c.key);
    let lost = false;
    if (f && f.left > 0) {
      f.left--;
      if (f.kind === 'lost-answer') lost = true;
      else return { answer: faultAnswer(f, c.key), route: c.key, write, fault: f.kind };
    }
    const m: Record<string, string> = {};
    const hit = c.regex.exec(url.pathname) ?? [];
    c.names.forEach((n, i) => (m[n] = decodeURIComponent(hit[i + 1] ?? '')));
    const publicRunnerRepo =
      c.key === 'GET /repos/{owner}/{repo}/releases' && `${m['owner']}/${m['repo']}`.toLowerCase() === RUNNER_REPO;
    if (
      !publicRunnerRepo &&
      (m['owner']?.toLowerCase() !== owner.toLowerCase() || m['repo']?.toLowerCase() !== repoName.toLowerCase())
    )
      return { answer: notFound('https://docs.github.com/rest/repos/repos#get-a-repository'), route: c.key, write };
    const [perm, level] = NEEDS[c.key] ?? ['metadata', 'read'];
    const granted = permissions[perm];
    if (granted === 'none' || (level === 'write' && granted !== 'write'))
      return { answer: refusal(perm, level), route: c.key, write };

    for (const p of c.op.parameters) {
      const v = p.in === 'path' ? m[p.name] : p.in === 'query' ? url.searchParams.get(p.name) : undefined;
      if (v === undefined || v === null) {
        if (p.required)
          return { answer: invalid(`${c.key}: ${p.in} parameter ${p.name} is required`), route: c.key, write };
        continue;
      }
      const type = (p.schema as { type?: string }).type;
      const value = type === 'integer' ? (/^-?\d+$/.test(v) ? Number(v) : v) : v;
      const validate = c.params.get(`${p.in}:${p.name}`);
      if (validate && !validate(value))
        return {
          answer: invalid(`${c.key}: ${p.in} parameter ${p.name}=${v}: ${JSON.stringify(validate.errors)}`),
          route: c.key,
          write,
        };
    }
    let body: Record<string, unknown> | undefined;
    if (c.op.requestBody) {
      try {
        body = raw === '' ? undefined : (JSON.parse(raw) as Record<string, unknown>);
      } catch {
        return { answer: invalid(`${c.key}: the body is not JSON`), route: c.key, write };
      }
      if (body === undefined && c.op.requestBody.required)
        return { answer: invalid(`${c.key}: a body is required`), route: c.key, write };
      if (body !== undefined && c.body && !c.body(body))
        return {
          answer: invalid(`${c.key}: body fails the OpenAPI schema: ${JSON.stringify(c.body.errors)}`),
          route: c.key,
          write,
        };
      const known = Object.keys((c.op.requestBody.schema as { properties?: object }).properties ?? {});
      const unknown = Object.keys(body ?? {}).filter((k) => !known.includes(k));
      if (unknown.length)
        return {
          answer: invalid(`${c.key}: unknown body properties ${unknown.join(', ')} (known: ${known.join(', ')})`),
          route: c.key,
          write,
        };
    } else if (raw !== '') {
      return { answer: invalid(`${c.key}: takes no body, got ${raw.length} bytes`), route: c.key, write };
    }
    const answer = handle(c, m, url, body);
    const check = c.responses.get(String(answer.status));
    if (check && !check(answer.body))
      problems.push(
        `the fake's own ${answer.status} answer to ${c.key} fails the OpenAPI schema: ${JSON.stringify(check.errors)}`,
      );
    if (lost) return { answer: faultAnswer({ kind: 'bad-gateway' }, c.key), route: c.key, write, fault: 'lost-answer' };
    return { answer, route: c.key, write };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake.invalid');
      const stored = /^\/_storage\/artifacts\/(\d+)\.zip$/.exec(url.pathname);
      if (req.method === 'GET' && stored) {
        // The storage host: no token wanted (and none must be sent: it would leave GitHub).
        if (req.headers['authorization'] !== undefined)
          problems.push(`the artifact storage URL ${url.pathname} was sent an Authorization header`);
        const a = artifacts.find((x) => x.id === Number(stored[1]));
        calls.push({
          method: 'GET',
          path: url.pathname,
          route: 'GET (artifact storage)',
          status: a ? 200 : 404,
          write: false,
        });
        res.writeHead(a ? 200 : 404, { 'content-type': 'application/zip' });
        res.end(a?.zip);
        return;
      }
      let out: ReturnType<typeof route>;
      try {
        out = route(req, url, Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        problems.push(`internal error on ${req.method} ${url.pathname}: ${(e as Error).stack}`);
        out = { answer: new HttpAnswer(500, { message: 'fake internal error' }), route: '', write: false };
      }
      calls.push({
        method: req.method ?? 'GET',
        path: url.pathname + url.search,
        route: out.route,
        status: out.answer.status,
        write: out.write,
        ...(out.fault ? { fault: out.fault } : {}),
      });
      const headers: Record<string, string> = {
        'x-github-api-version-selected': '2022-11-28',
        'x-github-request-id': `FAKE:${calls.length}`,
        ...out.answer.headers,
      };
      if (out.answer.body === undefined) {
        res.writeHead(out.answer.status, headers);
        res.end();
      } else {
        res.writeHead(out.answer.status, { ...headers, 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify(out.answer.body));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  (fake as { url: string }).url =
    `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
  return fake;
}
