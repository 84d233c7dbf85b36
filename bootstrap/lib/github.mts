// GitHub REST access for the launcher (token preflight) and the remote steps 60/70 (repository wiring, runners).
// One Octokit (@octokit/rest 22) with ONE retry policy, a request hook (retryDelaySeconds): at most 3 tries; 5xx
// and no answer after 1 s and 4 s; rate limits (429, or 403 with retry-after / x-ratelimit-remaining: 0) after
// GitHub's retry-after or x-ratelimit-reset, up to 2 minutes; no other 4xx. Writes are spaced at least a second
// apart, as GitHub asks of integrations. (plugin-retry nested in plugin-throttling retried a 429 in both: 16 tries.)
// Octokit's own console logging goes through our Logger, so every line is masked; the token is a registered secret.
//
// The base URL is CODEXK8S_GITHUB_API_URL: api.github.com, a GitHub Enterprise Server's /api/v3, or the fake API of
// the tests (test/fakes/github). Nothing here knows which.
//
// Ownership rule (docs/github.md): the server journal (lib/state.mts, section `github`) lists the variables,
// secrets and webhooks this tool CREATED. Only those are ever deleted, and only when the configuration no longer
// wants them. A name that existed before the tool wanted it is updated when wanted, and never deleted.
import { sleep as zxSleep } from 'zx';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, chmodSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Octokit } from '@octokit/rest';
import tweetsodium from 'tweetsodium';
import type { Config } from './config.mts';
import type { Logger } from './log.mts';
import { registerSecret } from './redact.mts';
import { OperationError, UsageError } from './errors.mts';
import { writeFileAtomic } from './fsx.mts';
import { readJournal, writeJournal } from './state.mts';
import type { GitHubJournal, GitHubSecretRecord, GitHubWebhookRecord } from './state.mts';

export const GitHub = Octokit;
export type GitHubClient = InstanceType<typeof GitHub>;

// A type alias, not an interface: octokit's request parameters need an index signature.
export type RepoRef = { owner: string; repo: string };

export function repoRef(cfg: Config): RepoRef {
  const [owner = '', repo = ''] = cfg.get('CODEXK8S_GITHUB_REPO').split('/');
  return { owner, repo };
}

/** Tries per request, the first included (docs/github.md). */
export const MAX_TRIES = 3;
/** The longest wait for a rate limit; a longer one fails at once, saying when it lifts. */
export const MAX_WAIT_SECONDS = 120;
/** GitHub asks integrations to leave at least a second between writes (POST, PATCH, PUT, DELETE). */
const WRITE_SPACING_MS = 1000;

export type ResponseHeaders = Readonly<Record<string, string | number | undefined>>;

/** retry-after as seconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterSeconds(v: string | number | undefined, nowMs: number): number | undefined {
  if (v === undefined || String(v).trim() === '') return undefined;
  const n = Number(v);
  if (Number.isFinite(n)) return n >= 0 ? Math.ceil(n) : undefined;
  const at = Date.parse(String(v));
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/**
 * Pure: the seconds until a rate limit lifts, or undefined when the answer is no rate limit. GitHub's rules: a 429,
 * or a 403 with retry-after, x-ratelimit-remaining: 0 or a rate-limit message (a 403 without them is a refusal);
 * wait for retry-after, else until x-ratelimit-reset (plus a second) when nothing remains, else a minute.
 */
export function rateLimitWaitSeconds(status: number | undefined, headers: ResponseHeaders, nowMs: number, message = ''): number | undefined {
  const retryAfter = retryAfterSeconds(headers['retry-after'], nowMs);
  const exhausted = String(headers['x-ratelimit-remaining'] ?? '') === '0';
  const limited = status === 429 || (status === 403 && (retryAfter !== undefined || exhausted || /rate limit/i.test(message)));
  if (!limited) return undefined;
  if (retryAfter !== undefined) return retryAfter;
  const reset = Number(headers['x-ratelimit-reset']);
  if (exhausted && Number.isFinite(reset) && reset > 0) return Math.max(0, Math.ceil(reset - nowMs / 1000)) + 1;
  return 60;
}

/**
 * Pure, the whole retry policy: seconds to wait before trying again after try number `attempt` (1 = the first)
 * failed, or undefined for no further try. `status` undefined means no answer (noAnswer: refused, DNS, reset).
 * Rate limits wait as GitHub says (rateLimitWaitSeconds), up to MAX_WAIT_SECONDS; 5xx and no answer wait
 * retry-after when sent, else attempt² seconds (1, 4); any other status is final.
 */
export function retryDelaySeconds(status: number | undefined, headers: ResponseHeaders, attempt: number, nowMs: number, message = ''): number | undefined {
  if (attempt >= MAX_TRIES) return undefined;
  const limit = rateLimitWaitSeconds(status, headers, nowMs, message);
  const wait = limit ?? (status === undefined || status >= 500 ? retryAfterSeconds(headers['retry-after'], nowMs) ?? attempt * attempt : undefined);
  return wait !== undefined && wait <= MAX_WAIT_SECONDS ? wait : undefined;
}

export interface GitHubOptions {
  token: string;
  baseUrl: string;
  log: Logger;
  /** Waits between tries and between writes (tests pass one that records and returns at once). */
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/**
 * Errors of requests that were sent more than once. A 4xx after a retry does not prove that nothing was written:
 * the first try may have taken effect with its answer lost (then the retry of a create is refused as a duplicate).
 */
const retriedErrors = new WeakSet<object>();
export function wasRetried(e: unknown): boolean {
  return typeof e === 'object' && e !== null && retriedErrors.has(e);
}

/** The client every GitHub call goes through. */
export function createGitHub(opts: GitHubOptions): GitHubClient {
  registerSecret(opts.token);
  const { log } = opts;
  const sleep = opts.sleep ?? zxSleep;
  const now = opts.now ?? Date.now;
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const gh = new GitHub({
    auth: opts.token,
    baseUrl,
    userAgent: 'codex-k8s-staging-bootstrap',
    // Octokit prints through console by default; ours masks every line and writes the log file.
    log: {
      debug: (m: string) => log.fileOnly(`github: ${m}`),
      info: (m: string) => log.detail(`github: ${m}`),
      warn: (m: string) => log.warn(`github: ${m}`),
      // octokit logs every failed request here; the caller reports the failure itself, with a hint.
      error: (m: string) => log.detail(`github: ${m}`),
    },
  });
  let nextWriteAt = 0;
  gh.hook.wrap('request', async (request, options) => {
    const what = `${options.method} ${options.url}`;
    const write = !['GET', 'HEAD'].includes(String(options.method).toUpperCase());
    for (let attempt = 1; ; attempt++) {
      if (write) {
        // The slot is taken before waiting, so concurrent writes line up too.
        const at = Math.max(now(), nextWriteAt);
        nextWriteAt = at + WRITE_SPACING_MS;
        if (at > now()) await sleep(at - now());
      }
      try {
        return await request(options);
      } catch (e) {
        const none = noAnswer(e);
        const status = httpStatus(e);
        if (none === undefined && status === undefined) throw e; // not a request failure
        const headers = (e as HttpErrorLike).response?.headers ?? {};
        const message = none ? '' : githubMessage(e);
        const wait = retryDelaySeconds(status, headers, attempt, now(), message);
        const limit = rateLimitWaitSeconds(status, headers, now(), message);
        const kind = none ? `got no answer (${none.code})` : limit !== undefined ? `${/secondary/i.test(message) ? 'secondary rate limit' : 'rate limit'} (${status})` : `answered ${status}`;
        if (wait === undefined) {
          if (attempt > 1 && typeof e === 'object' && e !== null) retriedErrors.add(e);
          if (limit !== undefined && limit > MAX_WAIT_SECONDS) log.error(`GitHub ${kind} on ${what}: it lifts in ${limit}s, longer than the ${MAX_WAIT_SECONDS}s a run waits`);
          else if (attempt >= MAX_TRIES) log.warn(`GitHub ${kind} on ${what}: giving up after ${attempt} tries`);
          if (!none || e instanceof GitHubUnreachable) throw e;
          const req = (e as { request?: { method?: string; url?: string } }).request;
          const unreachable = new GitHubUnreachable(baseUrl, none.code, { method: req?.method ?? String(options.method), url: req?.url ?? String(options.url) }, e);
          if (attempt > 1) retriedErrors.add(unreachable);
          throw unreachable;
        }
        log.warn(`GitHub ${kind} on ${what}; retrying in ${wait}s (try ${attempt + 1}/${MAX_TRIES})`);
        await sleep(wait * 1000);
      }
    }
  });
  return gh;
}

export function clientFromConfig(cfg: Config, log: Logger): GitHubClient {
  return createGitHub({ token: cfg.get('CODEXK8S_GITHUB_PAT'), baseUrl: cfg.get('CODEXK8S_GITHUB_API_URL'), log });
}

/** What an Octokit RequestError carries that we use. */
interface HttpErrorLike {
  status?: number;
  message?: string;
  response?: { headers?: Record<string, string | undefined>; data?: unknown };
}

/** GitHub's answer status; undefined when there was no answer (see noAnswer) or the error is not a request's. */
export function httpStatus(e: unknown): number | undefined {
  if (noAnswer(e) !== undefined) return undefined;
  const s = (e as HttpErrorLike | undefined)?.status;
  return typeof s === 'number' ? s : undefined;
}

/**
 * A request that got no answer, as createGitHub's client throws it once it gives up: the API base URL and the
 * failure's code, so no caller has to guess from a status.
 */
export class GitHubUnreachable extends Error {
  readonly baseUrl: string;
  readonly code: string;
  /** method and URL, as on Octokit's RequestError (failedRequest reads them). */
  readonly request: { method: string; url: string };
  constructor(baseUrl: string, code: string, request: { method: string; url: string }, cause: unknown) {
    super(`cannot reach the GitHub API at ${baseUrl} (${code})`, { cause });
    this.name = 'GitHubUnreachable';
    this.baseUrl = baseUrl;
    this.code = code;
    this.request = request;
  }
}

/**
 * The one classifier of "no answer" (connection refused, DNS failure, reset, timeout). Octokit reports it as a
 * RequestError with status 500 and no `response` (fetch's TypeError in `cause`, the errno code in its `cause`):
 * not GitHub's 500, and nothing about the token. Returns the code (ECONNREFUSED, EAI_AGAIN, ENOTFOUND, ...) and the
 * base URL (exact from GitHubUnreachable, else the request's origin); undefined when GitHub answered.
 */
export function noAnswer(e: unknown): { code: string; baseUrl: string } | undefined {
  let c: unknown = e;
  for (let depth = 0; depth < 5 && typeof c === 'object' && c !== null; depth++, c = (c as { cause?: unknown }).cause) {
    if (c instanceof GitHubUnreachable) return { code: c.code, baseUrl: c.baseUrl };
    const x = c as HttpErrorLike & { name?: unknown; request?: { url?: unknown } };
    if (x.response !== undefined) return undefined;
    // Octokit's RequestError is named HttpError; a timeout is fetch's AbortError, rethrown with status 500.
    if (x.status === 500 && (x.name === 'HttpError' || x.name === 'AbortError')) {
      const url = typeof x.request?.url === 'string' ? x.request.url : '';
      return { code: errnoCode(c), baseUrl: URL.canParse(url) ? new URL(url).origin : 'its configured URL' };
    }
  }
  return undefined;
}

/** The deepest errno code in a cause chain (AggregateError: the first member's), else the deepest message. */
function errnoCode(e: unknown): string {
  let found: string | undefined;
  let message = '';
  let c: unknown = e;
  for (let depth = 0; depth < 6 && typeof c === 'object' && c !== null; depth++, c = (c as { cause?: unknown }).cause) {
    const x = c as { code?: unknown; errors?: unknown; name?: unknown; message?: unknown };
    if (x.name === 'AbortError' || x.name === 'TimeoutError') found = 'timed out';
    const member = Array.isArray(x.errors) ? (x.errors as Array<{ code?: unknown }>).find((m) => typeof m?.code === 'string')?.code : undefined;
    if (typeof x.code === 'string') found = x.code;
    else if (typeof member === 'string') found = member;
    if (typeof x.message === 'string' && x.message !== '') message = x.message;
  }
  return found ?? (message || 'no answer');
}

/** GitHub's message ("Resource not accessible by personal access token"), without octokit's " - https://docs..." tail. */
export function githubMessage(e: unknown): string {
  const data = (e as HttpErrorLike).response?.data as { message?: unknown } | undefined;
  if (data && typeof data.message === 'string') return data.message;
  return String((e as HttpErrorLike).message ?? e).replace(/ - https:\/\/\S+$/, '');
}

/** The x-accepted-github-permissions header of a refusal ("secrets=read"), when GitHub sent one. */
export function acceptedPermissions(e: unknown): string | undefined {
  return (e as HttpErrorLike).response?.headers?.['x-accepted-github-permissions'];
}

// ------------------------------------------------------------------------------------------------
// Fine-grained token permissions

export type PermissionKey = 'metadata' | 'administration' | 'secrets' | 'variables' | 'webhooks' | 'actions';

export interface PermissionNeed {
  readonly key: PermissionKey;
  /** As the token settings page names it. */
  readonly name: string;
  readonly level: 'Read-only' | 'Read and write';
  /** The names GitHub uses for it in x-accepted-github-permissions. */
  readonly apiNames: readonly string[];
  readonly why: string;
  /** The request that proves the permission (the preflight sends it). */
  readonly probe: { readonly method: 'GET' | 'POST'; readonly route: string };
  /**
   * For a read probe of a Read-and-write need: what it proves and where write access shows first. Printed after
   * it, with the status `read` instead of `ok`, so a line never claims more than was checked.
   */
  readonly probeLimit?: string;
  readonly serverModeOnly?: boolean;
}

// No write request proves these without writing: GitHub's answer to a write of a name that does not exist (403 or
// 404) is not documented to check the permission first. So the preflight says what it proved, and no more.
const STEP70_WRITE = 'read ok; write not provable before step 70';

/**
 * What the bootstrap needs of the token, and the request that proves each permission. All probes but one are reads.
 * Administration is probed with POST .../runners/registration-token: it needs exactly "Administration: Read and
 * write" (what ARC needs to register runners), and its only effect is a registration token that expires after an
 * hour and registers nothing. A GET of .../actions/runners would pass with Read-only, and the missing write access
 * would then only show minutes later as a 403 in the listener's logs, inside the cluster.
 */
export const PERMISSIONS: readonly PermissionNeed[] = [
  { key: 'metadata', name: 'Metadata', level: 'Read-only', apiNames: ['metadata'], why: 'find the repository (every fine-grained token has it)', probe: { method: 'GET', route: '/repos/{owner}/{repo}' } },
  { key: 'administration', name: 'Administration', level: 'Read and write', apiNames: ['administration'], why: 'the runner scale set registers runners (ARC)', probe: { method: 'POST', route: '/repos/{owner}/{repo}/actions/runners/registration-token' } },
  { key: 'secrets', name: 'Secrets', level: 'Read and write', apiNames: ['secrets'], why: 'Actions secrets of the deploy workflow (70_github_repo)', probe: { method: 'GET', route: '/repos/{owner}/{repo}/actions/secrets/public-key' }, probeLimit: STEP70_WRITE },
  { key: 'variables', name: 'Variables', level: 'Read and write', apiNames: ['actions_variables', 'variables'], why: 'repository variables of the deploy workflow (70_github_repo)', probe: { method: 'GET', route: '/repos/{owner}/{repo}/actions/variables' }, probeLimit: STEP70_WRITE },
  { key: 'webhooks', name: 'Webhooks', level: 'Read and write', apiNames: ['repository_hooks'], why: 'the codex-k8s webhook (70_github_repo, server mode)', probe: { method: 'GET', route: '/repos/{owner}/{repo}/hooks' }, probeLimit: STEP70_WRITE, serverModeOnly: true },
  { key: 'actions', name: 'Actions', level: 'Read and write', apiNames: ['actions'], why: 'dispatch the deploy workflow and read its runs (80_deploy_loop_check)', probe: { method: 'GET', route: '/repos/{owner}/{repo}/actions/workflows' }, probeLimit: 'read ok; write not provable before the dispatch in step 80' },
];

export function requiredPermissions(mode: string): PermissionNeed[] {
  return PERMISSIONS.filter((p) => !p.serverModeOnly || mode === 'server');
}

export function permissionLabel(p: PermissionNeed): string {
  return `${p.name}: ${p.level}`;
}

/** "administration=write" -> "Administration: Read and write"; unknown names are returned as GitHub wrote them. */
export function describeAccepted(header: string): string {
  return header
    .split(';')
    .map((set) =>
      set
        .split(',')
        .map((item) => {
          const [name = '', level = ''] = item.trim().split('=');
          const p = PERMISSIONS.find((x) => x.apiNames.includes(name));
          if (!p) return item.trim();
          return `${p.name}: ${level === 'write' || level === 'admin' ? 'Read and write' : 'Read-only'}`;
        })
        .join(' and '),
    )
    .join(' or ');
}

export interface ProbeResult {
  need: PermissionNeed;
  /** The request sent, e.g. "GET /repos/o/r/hooks". */
  request: string;
  ok: boolean;
  status: number;
  message?: string;
  accepted?: string;
}

export interface RepoFacts {
  fullName: string;
  private: boolean;
  ownerType: string;
  /** The token owner's role, as GET /repos reports it (undefined when GitHub sent none). */
  admin: boolean | undefined;
}

/** Pure: probe results -> the problems to report (all of them), with hints on the pattern. */
export function explainPreflight(repoName: string, repo: RepoFacts, results: readonly ProbeResult[], githubUrl: string): string[] {
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return [];
  const problems = failed.map((r) => {
    const asked = r.accepted ? ` (this request needs ${describeAccepted(r.accepted)})` : '';
    return `CODEXK8S_GITHUB_PAT: the token lacks "${permissionLabel(r.need)}" on ${repoName} (for: ${r.need.why}): ${r.request} answered ${r.status} ${JSON.stringify(r.message ?? '')}${asked}`;
  });
  const others = results.filter((r) => r.need.key !== 'metadata');
  if (repo.admin === false) {
    problems.push(
      `hint: the token's owner is not an admin of ${repoName} (GET /repos/${repoName} reports permissions.admin=false). A fine-grained token never has more rights than its owner: ` +
        `Administration, Secrets, Variables and Webhooks need a repository admin. Ask an admin to create the token, or to give you the admin role.`,
    );
  }
  if (repo.ownerType === 'Organization' && others.length > 0 && others.every((r) => !r.ok)) {
    problems.push(
      `hint: every permission probe was refused while the repository itself is visible. This is how a token that the organization ${repoName.split('/')[0]} has not approved yet behaves ` +
        `(it can read public resources only): ask an organization owner to approve it (${githubUrl}/organizations/${repoName.split('/')[0]}/settings/personal-access-token-requests).`,
    );
  }
  problems.push(`hint: edit the token at ${githubUrl}/settings/personal-access-tokens (Repository permissions), then run again; nothing was changed`);
  return problems;
}

/**
 * The launcher's token check, before the server is touched. Probes each permission the run needs, then reports
 * every missing one at once (UsageError, exit 2). A 401 or a missing repository stops at the first request.
 */
export async function preflightToken(cfg: Config, log: Logger, gh: GitHubClient = clientFromConfig(cfg, log)): Promise<ProbeResult[]> {
  const ref = repoRef(cfg);
  const name = `${ref.owner}/${ref.repo}`;
  const api = cfg.get('CODEXK8S_GITHUB_API_URL');
  const web = cfg.get('CODEXK8S_GITHUB_URL');
  let repo: RepoFacts;
  const meta = PERMISSIONS[0] as PermissionNeed;
  try {
    const r = await gh.request('GET /repos/{owner}/{repo}', ref);
    repo = { fullName: r.data.full_name, private: r.data.private, ownerType: r.data.owner.type, admin: r.data.permissions?.admin };
  } catch (e) {
    const status = httpStatus(e);
    if (status === 401) {
      throw new UsageError([
        `CODEXK8S_GITHUB_PAT: GitHub (${api}) refused the token: 401 ${JSON.stringify(githubMessage(e))}. It is wrong, expired or revoked.`,
        `hint: create a fine-grained token at ${web}/settings/personal-access-tokens/new for ${name} with ${requiredPermissions(cfg.get('CODEXK8S_MODE')).map(permissionLabel).join(', ')}, and put it in CODEXK8S_GITHUB_PAT; nothing was changed`,
      ]);
    }
    if (status === 404) {
      throw new UsageError([
        `CODEXK8S_GITHUB_REPO: ${name} was not found with this token (GET /repos/${name} answered 404). Either it does not exist, or the token cannot see it.`,
        `hint: check the name; check that the token's "Repository access" includes ${name} and that its "Resource owner" is ${ref.owner} (a token made under your personal account cannot see an organization's repositories); ` +
          `for an organization that requires approval, a pending token sees public repositories only; nothing was changed`,
      ]);
    }
    const none = noAnswer(e);
    if (none) throw new OperationError(`cannot reach the GitHub API at ${api} (${none.code})`, { hint: 'check the network and CODEXK8S_GITHUB_API_URL, then run again; nothing was changed' });
    if (status === undefined) throw e;
    throw new UsageError([`CODEXK8S_GITHUB_PAT: GET /repos/${name} answered ${status} ${JSON.stringify(githubMessage(e))}; expected 200 (needs ${permissionLabel(meta)})`]);
  }

  const results: ProbeResult[] = [];
  for (const need of requiredPermissions(cfg.get('CODEXK8S_MODE'))) {
    const probeText = `${need.probe.method} ${need.probe.route.replace('{owner}', ref.owner).replace('{repo}', ref.repo)}`;
    const base = { need, request: probeText };
    if (need.key === 'metadata') {
      results.push({ ...base, ok: true, status: 200 });
      continue;
    }
    try {
      // Lists ask for one item: the answer proves access, its content does not matter.
      const params = need.probe.method === 'GET' && need.probe.route.endsWith('s') ? { ...ref, per_page: 1 } : ref;
      const r = await gh.request(`${need.probe.method} ${need.probe.route}`, params);
      results.push({ ...base, ok: true, status: r.status });
    } catch (e) {
      const status = httpStatus(e);
      const none = noAnswer(e);
      if (none) throw new OperationError(`cannot reach the GitHub API at ${api} (${none.code})`, { hint: 'check the network, then run again; nothing was changed' });
      if (status === undefined) throw e;
      // 403 names the missing permission; GitHub answers 404 instead where it hides what the token may not see.
      if (status !== 403 && status !== 404) throw new OperationError(`${probeText} answered ${status} ${githubMessage(e)}`, { hint: 'GitHub may be having trouble (https://www.githubstatus.com); run again later' });
      results.push({ ...base, ok: false, status, message: githubMessage(e), accepted: acceptedPermissions(e) });
    }
  }
  for (const r of results) log.info(probeLine(r));
  const problems = explainPreflight(name, repo, results, web);
  if (problems.length > 0) {
    log.error(`the GitHub token cannot do everything this run needs (${results.filter((r) => !r.ok).length} permission(s) missing); nothing was changed:`);
    throw new UsageError(problems);
  }
  return results;
}

/** One preflight line: `ok` when the probe proved the level, `read` when it proved read access only, else FAIL. */
export function probeLine(r: ProbeResult): string {
  const status = !r.ok ? 'FAIL' : r.need.probeLimit ? 'read' : 'ok  ';
  return `  ${status}  ${permissionLabel(r.need).padEnd(32)} ${r.request}${r.ok && r.need.probeLimit ? ` (${r.need.probeLimit})` : ''}`;
}

/** What --dry-run prints for the token check (no network). */
export function plannedTokenChecks(cfg: Config): string[] {
  const ref = repoRef(cfg);
  return requiredPermissions(cfg.get('CODEXK8S_MODE')).map(
    (p) => `${permissionLabel(p).padEnd(32)} ${p.probe.method} ${p.probe.route.replace('{owner}', ref.owner).replace('{repo}', ref.repo)}${p.probeLimit ? ' (proves read only)' : ''}`,
  );
}

// ------------------------------------------------------------------------------------------------
// Webhook events setting and the generated webhook secret

export const WEBHOOK_EVENT = /^[a-z_]+$/;

export function webhookEvents(cfg: Config): string[] {
  const raw = cfg.get('CODEXK8S_GITHUB_WEBHOOK_EVENTS');
  const events = [...new Set(raw.split(',').map((x) => x.trim()).filter(Boolean))].sort();
  const bad = events.filter((e) => !WEBHOOK_EVENT.test(e) && e !== '*');
  if (events.length === 0 || bad.length > 0) {
    throw new UsageError(`CODEXK8S_GITHUB_WEBHOOK_EVENTS: ${JSON.stringify(raw)} is not a list of events${bad.length ? ` (${bad.join(', ')})` : ''}; expected GitHub event names separated by commas, e.g. push,pull_request`);
  }
  return events;
}

/**
 * A secret generated once on the server and read back on every later run (0600 file, directory 0700).
 * Rotation: delete the file and run again (docs/github.md). Returns undefined when absent and `create` is false,
 * so a read-only check() never creates it.
 */
export async function readOrCreateSecretFile(path: string, create: boolean): Promise<{ value: string; created: boolean } | undefined> {
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0) {
      if (!create) throw new OperationError(`${path} is readable by other users (mode 0${(st.mode & 0o777).toString(8)}); want 0600`);
      chmodSync(path, 0o600);
    }
    const value = readFileSync(path, 'utf8').trim();
    if (value.length < 32) throw new OperationError(`${path} holds ${value.length} characters; a generated secret has 64`, { hint: `delete it to generate a new one (then run again): rm ${path}` });
    registerSecret(value);
    return { value, created: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    if (!create) return undefined;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    chmodSync(dirname(path), 0o700);
    const value = randomBytes(32).toString('hex');
    registerSecret(value);
    await writeFileAtomic(path, value + '\n', { mode: 0o600, uid: 0, gid: 0 });
    return { value, created: true };
  }
}

// ------------------------------------------------------------------------------------------------
// Repository wiring: variables, secrets, webhook

export interface WebhookWanted {
  url: string;
  events: readonly string[];
  secret: string;
}

export interface Wanted {
  variables: Readonly<Record<string, string>>;
  secrets: Readonly<Record<string, string>>;
  /** undefined: no webhook (local mode); a webhook this tool created earlier is then removed. */
  webhook?: WebhookWanted;
}

export interface HookInfo {
  id: number;
  url: string;
  contentType: string;
  insecureSsl: string;
  events: string[];
  active: boolean;
}

/**
 * The repository as GitHub names it. The journal is keyed on the id, so a setting that differs only in case
 * (GitHub matches owner/name case-insensitively) or names the repository after a rename is the same repository.
 */
export interface RepoIdentity {
  id: number;
  /** Canonical owner/name, in GitHub's spelling. */
  fullName: string;
}

export interface RepoSnapshot {
  repo: RepoIdentity;
  variables: Map<string, string>;
  secrets: Map<string, { updatedAt: string }>;
  publicKey: { keyId: string; key: string };
  hooks: HookInfo[];
}

export type Action =
  | { kind: 'create-variable'; name: string; value: string }
  | { kind: 'update-variable'; name: string; value: string; adopted: boolean }
  | { kind: 'delete-variable'; name: string }
  | { kind: 'put-secret'; name: string; value: string; why: string; create: boolean }
  | { kind: 'delete-secret'; name: string }
  | { kind: 'create-webhook'; hook: WebhookWanted }
  | { kind: 'update-webhook'; id: number; hook: WebhookWanted; why: string; created: boolean }
  | { kind: 'delete-webhook'; id: number; url: string }
  | { kind: 'forget-webhook'; id: number; url: string }
  | { kind: 'forget-pending-webhook'; url: string };

export function emptyGitHubJournal(repo: RepoIdentity): GitHubJournal {
  return { repo: repo.fullName, repoId: repo.id, salt: randomBytes(16).toString('hex'), variables: [], secrets: {}, webhooks: [] };
}

/** HMAC (keyed with the journal's random salt) of what was written: the journal never holds a guessable hash. */
export function fingerprint(salt: string, ...parts: readonly string[]): string {
  return createHmac('sha256', salt).update(parts.join('\0')).digest('hex');
}

export function hookUrl(domain: string): string {
  return `https://${domain}/webhooks/github`;
}

/** Pure: the actions that bring the repository from `snap` to `wanted`, given what the journal says we own. */
export function planWiring(wanted: Wanted, snap: RepoSnapshot, j: GitHubJournal): Action[] {
  const actions: Action[] = [];
  const owned = new Set(j.variables);
  for (const [name, value] of Object.entries(wanted.variables)) {
    const current = snap.variables.get(name);
    if (current === undefined) actions.push({ kind: 'create-variable', name, value });
    else if (current !== value) actions.push({ kind: 'update-variable', name, value, adopted: !owned.has(name) });
  }
  for (const name of j.variables) if (!(name in wanted.variables) && snap.variables.has(name)) actions.push({ kind: 'delete-variable', name });

  for (const [name, value] of Object.entries(wanted.secrets)) {
    const rec = j.secrets[name];
    const remote = snap.secrets.get(name);
    let why: string | undefined;
    if (!remote) why = 'missing in the repository';
    else if (!rec) why = 'not written by this tool yet';
    else if (rec.pending) why = 'the last write was not confirmed (the run stopped before reading it back)';
    else if (rec.fingerprint !== fingerprint(j.salt, 'secret', name, value)) why = 'value changed';
    else if (rec.updatedAt !== undefined && rec.updatedAt !== remote.updatedAt) why = `changed outside this tool (updated ${remote.updatedAt})`;
    if (why) actions.push({ kind: 'put-secret', name, value, why, create: !remote });
  }
  for (const [name, rec] of Object.entries(j.secrets)) if (rec.created && !(name in wanted.secrets) && snap.secrets.has(name)) actions.push({ kind: 'delete-secret', name });

  const mine = new Map(j.webhooks.map((h) => [h.id, h]));
  if (wanted.webhook) {
    const w = wanted.webhook;
    const same = snap.hooks.filter((h) => h.url === w.url);
    // Prefer the hook we created; otherwise adopt the first one with the URL (upsert by URL: no duplicates).
    const target = same.find((h) => mine.has(h.id)) ?? same[0];
    // A create whose answer was lost: the hook with that URL is ours, though the journal has no id for it.
    const pendingCreate = (j.pendingWebhooks ?? []).includes(w.url);
    if (!target) actions.push({ kind: 'create-webhook', hook: w });
    else {
      const rec = mine.get(target.id);
      const reasons: string[] = [];
      if (target.contentType !== 'json') reasons.push(`content type ${target.contentType}`);
      if (target.insecureSsl !== '0') reasons.push('TLS verification off');
      if (!target.active) reasons.push('inactive');
      if ([...target.events].sort().join(',') !== [...w.events].sort().join(',')) reasons.push(`events ${target.events.join(',')}, want ${w.events.join(',')}`);
      if (!rec) reasons.push(pendingCreate ? 'created by this tool, but the answer to the create was lost' : 'secret not set by this tool');
      else if (rec.secretFingerprint !== fingerprint(j.salt, 'webhook', w.secret)) reasons.push('secret changed');
      if (reasons.length) actions.push({ kind: 'update-webhook', id: target.id, hook: w, why: reasons.join(', '), created: rec?.created ?? pendingCreate });
    }
    // Our own duplicates (same URL, another id) go; foreign hooks stay.
    for (const h of same) if (h !== target && mine.get(h.id)?.created) actions.push({ kind: 'delete-webhook', id: h.id, url: h.url });
  }
  for (const url of j.pendingWebhooks ?? []) {
    if (wanted.webhook?.url === url) continue;
    const orphans = snap.hooks.filter((h) => h.url === url && !mine.has(h.id));
    for (const h of orphans) actions.push({ kind: 'delete-webhook', id: h.id, url });
    if (orphans.length === 0) actions.push({ kind: 'forget-pending-webhook', url });
  }
  for (const rec of j.webhooks) {
    const live = snap.hooks.find((h) => h.id === rec.id);
    if (!live) {
      if (!wanted.webhook || rec.url !== wanted.webhook.url) actions.push({ kind: 'forget-webhook', id: rec.id, url: rec.url });
      continue;
    }
    if (wanted.webhook && live.url === wanted.webhook.url) continue;
    if (rec.created) actions.push({ kind: 'delete-webhook', id: rec.id, url: live.url });
    else actions.push({ kind: 'forget-webhook', id: rec.id, url: live.url });
  }
  return actions;
}

/** One drift line per action, for check(). Values of variables are shown; secrets never. */
export function describeAction(a: Action, repo: string): string {
  switch (a.kind) {
    case 'create-variable':
      return `variable ${a.name} is missing in ${repo}, want ${JSON.stringify(a.value)}`;
    case 'update-variable':
      return `variable ${a.name} differs, want ${JSON.stringify(a.value)}${a.adopted ? ' (it was not created by this tool; it is updated, and never deleted)' : ''}`;
    case 'delete-variable':
      return `variable ${a.name} was created by this tool and is no longer used`;
    case 'put-secret':
      return `secret ${a.name}: ${a.why}`;
    case 'delete-secret':
      return `secret ${a.name} was created by this tool and is no longer used`;
    case 'create-webhook':
      return `webhook ${a.hook.url} is missing (events ${a.hook.events.join(',')})`;
    case 'update-webhook':
      return `webhook ${a.hook.url} (id ${a.id}) differs: ${a.why}`;
    case 'delete-webhook':
      return `webhook ${a.url} (id ${a.id}) was created by this tool and is no longer used`;
    case 'forget-webhook':
      return `webhook ${a.url} (id ${a.id}) is no longer managed (${a.id} is gone or was not created by this tool); the journal forgets it`;
    case 'forget-pending-webhook':
      return `webhook ${a.url}: a create whose answer was lost left nothing in ${repo}; the journal forgets it`;
  }
}

/** Every variable, following pagination (GitHub serves at most 30 per page). */
export async function listVariables(gh: GitHubClient, ref: RepoRef): Promise<Map<string, string>> {
  const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/variables', { ...ref, per_page: 30 });
  return new Map(all.map((v) => [v.name, v.value]));
}

export async function listSecrets(gh: GitHubClient, ref: RepoRef): Promise<Map<string, { updatedAt: string }>> {
  const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/secrets', { ...ref, per_page: 100 });
  return new Map(all.map((s) => [s.name, { updatedAt: s.updated_at }]));
}

export async function listHooks(gh: GitHubClient, ref: RepoRef): Promise<HookInfo[]> {
  const all = await gh.paginate('GET /repos/{owner}/{repo}/hooks', { ...ref, per_page: 100 });
  return all.map((h) => ({
    id: h.id,
    url: h.config.url ?? '',
    contentType: h.config.content_type ?? 'form',
    insecureSsl: String(h.config.insecure_ssl ?? '0'),
    events: [...h.events],
    active: h.active,
  }));
}

export async function repoIdentity(gh: GitHubClient, ref: RepoRef): Promise<RepoIdentity> {
  const r = await gh.request('GET /repos/{owner}/{repo}', ref);
  return { id: Number(r.data.id), fullName: r.data.full_name };
}

/** What the repository has; `repo` saves the GET /repos when the caller already asked (it needed the journal first). */
export async function snapshot(gh: GitHubClient, ref: RepoRef, withHooks: boolean, repo?: RepoIdentity): Promise<RepoSnapshot> {
  const identity = repo ?? (await repoIdentity(gh, ref));
  const variables = await listVariables(gh, ref);
  const secrets = await listSecrets(gh, ref);
  const key = await gh.request('GET /repos/{owner}/{repo}/actions/secrets/public-key', ref);
  const hooks = withHooks ? await listHooks(gh, ref) : [];
  return { repo: identity, variables, secrets, publicKey: { keyId: key.data.key_id, key: key.data.key }, hooks };
}

/** tweetsodium (libsodium's sealed box) with the repository's public key, as GitHub's secrets API expects. */
export function sealSecret(value: string, publicKeyBase64: string): string {
  const sealed = tweetsodium.seal(Buffer.from(value, 'utf8'), Buffer.from(publicKeyBase64, 'base64'));
  return Buffer.from(sealed).toString('base64');
}

/**
 * The journal's github section for this repository, keyed on GitHub's id. A section written before the id was
 * journaled is matched by its name, case-insensitively as GitHub matches names, and comes back migrated (id and
 * canonical name; applyWiring saves it). A section of another repository is set aside (never acted on).
 */
export function githubJournal(journalPath: string, repo: RepoIdentity, log?: Logger): GitHubJournal {
  const j = readJournal(journalPath).github;
  if (j && sameRepository(j, repo)) {
    if (j.repo !== repo.fullName) log?.detail(`the journal's GitHub names of ${j.repo} belong to ${repo.fullName} (repository id ${repo.id})`);
    return { ...j, repo: repo.fullName, repoId: repo.id };
  }
  if (j) log?.warn(`the journal's GitHub names belong to ${j.repo}, not ${repo.fullName}: they are left as they are there, and ${repo.fullName} starts a new list`);
  return emptyGitHubJournal(repo);
}

function sameRepository(j: GitHubJournal, repo: RepoIdentity): boolean {
  if (j.repoId !== undefined) return j.repoId === repo.id;
  return j.repo.toLowerCase() === repo.fullName.toLowerCase();
}

function saveGitHubJournal(journalPath: string, g: GitHubJournal): void {
  writeJournal(journalPath, { ...readJournal(journalPath), github: g });
}

/**
 * applyWiring's failure: the request that failed, and the writes made (and journaled) before it. It reads as the
 * request's own error (status, response), so the GitHub error helpers explain it as they explain any request.
 */
export class WiringFailure extends Error {
  readonly failure: unknown;
  readonly request: string | undefined;
  readonly done: readonly string[];
  constructor(failure: unknown, request: string | undefined, done: readonly string[]) {
    super(`${request ?? 'GitHub wiring'} failed after ${done.length} write(s): ${(failure as Error | undefined)?.message ?? String(failure)}`, { cause: failure });
    this.name = 'WiringFailure';
    this.failure = failure;
    this.request = request;
    this.done = done;
  }
  get status(): number | undefined {
    return httpStatus(this.failure);
  }
  get response(): HttpErrorLike['response'] {
    return (this.failure as HttpErrorLike | undefined)?.response;
  }
}

/** "POST /repos/o/r/hooks -> 403" for an Octokit RequestError (path relative to the API base); undefined for no request. */
export function failedRequest(e: unknown, baseUrl: string): string | undefined {
  const req = (e as { request?: { method?: unknown; url?: unknown } } | undefined)?.request;
  if (typeof req?.method !== 'string' || typeof req.url !== 'string') return undefined;
  const path = (req.url.startsWith(baseUrl) ? req.url.slice(baseUrl.length) : req.url).replace(/\?.*$/, '');
  return `${req.method} ${path} -> ${httpStatus(e) ?? 'no answer'}`;
}

/** A failed step 70 as an OperationError: the failing request in the message, the writes made before it as detail. */
export function explainWiringError(e: unknown, repo: string, githubUrl: string): OperationError {
  if (!(e instanceof WiringFailure)) return explainGitHubError(e, `updating ${repo}`, repo, githubUrl);
  const base = explainGitHubError(e, `updating ${repo}${e.request ? `: ${e.request}` : ''}`, repo, githubUrl);
  const done = e.done.length > 0
    ? [`writes made before the failure (${e.done.length}, journaled; the next run keeps them and goes on):`, ...e.done.map((c) => `+ ${c}`)]
    : ['no write was made before the failure'];
  return new OperationError(base.message, { hint: base.hint, exitCode: base.exitCode, detail: done.join('\n') });
}

/**
 * Runs the plan, one request per action, and journals each write (before the request when its answer could be
 * lost), so an interrupted run keeps what it created (and a re-run neither duplicates nor forgets it). Returns one
 * change line per action; a failure is a WiringFailure naming the request and the writes made before it.
 */
export async function applyWiring(gh: GitHubClient, ref: RepoRef, actions: readonly Action[], snap: RepoSnapshot, journalPath: string, log: Logger): Promise<string[]> {
  const changes: string[] = [];
  try {
    await applyActions(gh, ref, actions, snap, journalPath, log, changes);
  } catch (e) {
    throw new WiringFailure(e, failedRequest(e, gh.request.endpoint.DEFAULTS.baseUrl), changes);
  }
  return changes;
}

/** applyWiring's loop: `changes` gets one line per write as soon as it is made, so a failure still has them. */
async function applyActions(gh: GitHubClient, ref: RepoRef, actions: readonly Action[], snap: RepoSnapshot, journalPath: string, log: Logger, changes: string[]): Promise<void> {
  let j = githubJournal(journalPath, snap.repo, log);
  const save = (next: GitHubJournal) => {
    j = next;
    saveGitHubJournal(journalPath, j);
  };
  // A write that can take effect although its answer is lost is journaled first; a 4xx to the first and only try
  // means GitHub wrote nothing.
  const intent = async <T,>(next: GitHubJournal, write: () => Promise<T>): Promise<T> => {
    const before = j;
    save(next);
    try {
      return await write();
    } catch (e) {
      const status = httpStatus(e);
      if (status !== undefined && status >= 400 && status < 500 && !wasRetried(e)) save(before);
      throw e;
    }
  };
  const stored = readJournal(journalPath).github;
  // A new list, or one migrated to the id and canonical name, is saved before the first write.
  if (stored?.repoId !== j.repoId || stored?.repo !== j.repo) save(j);
  for (const a of actions) {
    switch (a.kind) {
      case 'create-variable':
        await intent({ ...j, variables: [...new Set([...j.variables, a.name])].sort() }, () => gh.request('POST /repos/{owner}/{repo}/actions/variables', { ...ref, name: a.name, value: a.value }));
        changes.push(`created variable ${a.name}=${JSON.stringify(a.value)}`);
        break;
      case 'update-variable':
        await gh.request('PATCH /repos/{owner}/{repo}/actions/variables/{name}', { ...ref, name: a.name, value: a.value });
        changes.push(`updated variable ${a.name}=${JSON.stringify(a.value)}`);
        break;
      case 'delete-variable':
        await ignore404(gh.request('DELETE /repos/{owner}/{repo}/actions/variables/{name}', { ...ref, name: a.name }));
        save({ ...j, variables: j.variables.filter((n) => n !== a.name) });
        changes.push(`deleted variable ${a.name} (created by this tool, no longer used)`);
        break;
      case 'put-secret': {
        const encrypted_value = sealSecret(a.value, snap.publicKey.key);
        const prev: GitHubSecretRecord | undefined = j.secrets[a.name];
        const fp = fingerprint(j.salt, 'secret', a.name, a.value);
        const created = prev?.created ?? a.create;
        // Pending until read back: a lost answer or a failed read-back leaves it owned, and written again next run.
        await intent({ ...j, secrets: { ...j.secrets, [a.name]: { fingerprint: fp, created, pending: true } } }, () =>
          gh.request('PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}', { ...ref, secret_name: a.name, encrypted_value, key_id: snap.publicKey.keyId }));
        // GitHub's updated_at, read back, tells a later run whether someone changed the secret by hand.
        const after = await gh.request('GET /repos/{owner}/{repo}/actions/secrets/{secret_name}', { ...ref, secret_name: a.name });
        save({ ...j, secrets: { ...j.secrets, [a.name]: { fingerprint: fp, updatedAt: after.data.updated_at, created } } });
        changes.push(`${a.create ? 'created' : 'wrote'} secret ${a.name} (${a.why})`);
        break;
      }
      case 'delete-secret': {
        await ignore404(gh.request('DELETE /repos/{owner}/{repo}/actions/secrets/{secret_name}', { ...ref, secret_name: a.name }));
        const rest = { ...j.secrets };
        delete rest[a.name];
        save({ ...j, secrets: rest });
        changes.push(`deleted secret ${a.name} (created by this tool, no longer used)`);
        break;
      }
      case 'create-webhook': {
        // The id comes with the answer: until then the URL is journaled as pending (planWiring adopts it as ours).
        const pending = [...new Set([...(j.pendingWebhooks ?? []), a.hook.url])];
        const r = await intent({ ...j, pendingWebhooks: pending }, () => gh.request('POST /repos/{owner}/{repo}/hooks', { ...ref, name: 'web', active: true, events: [...a.hook.events], config: hookConfig(a.hook) }));
        const rec: GitHubWebhookRecord = { id: r.data.id, url: a.hook.url, secretFingerprint: fingerprint(j.salt, 'webhook', a.hook.secret), created: true };
        save(withoutPending({ ...j, webhooks: [...j.webhooks.filter((h) => h.id !== rec.id), rec] }, a.hook.url));
        changes.push(`created webhook ${a.hook.url} (id ${r.data.id}, events ${a.hook.events.join(',')})`);
        break;
      }
      case 'update-webhook': {
        await gh.request('PATCH /repos/{owner}/{repo}/hooks/{hook_id}', { ...ref, hook_id: a.id, active: true, events: [...a.hook.events], config: hookConfig(a.hook) });
        const rec: GitHubWebhookRecord = { id: a.id, url: a.hook.url, secretFingerprint: fingerprint(j.salt, 'webhook', a.hook.secret), created: a.created };
        save(withoutPending({ ...j, webhooks: [...j.webhooks.filter((h) => h.id !== a.id), rec] }, a.hook.url));
        changes.push(`updated webhook ${a.hook.url} (id ${a.id}: ${a.why})`);
        break;
      }
      case 'delete-webhook':
        await ignore404(gh.request('DELETE /repos/{owner}/{repo}/hooks/{hook_id}', { ...ref, hook_id: a.id }));
        save(withoutPending({ ...j, webhooks: j.webhooks.filter((h) => h.id !== a.id) }, a.url));
        changes.push(`deleted webhook ${a.url} (id ${a.id}, created by this tool, no longer used)`);
        break;
      case 'forget-webhook':
        save({ ...j, webhooks: j.webhooks.filter((h) => h.id !== a.id) });
        changes.push(`forgot webhook ${a.url} (id ${a.id})`);
        break;
      case 'forget-pending-webhook':
        save(withoutPending(j, a.url));
        changes.push(`forgot the unanswered create of webhook ${a.url} (GitHub has no such hook)`);
        break;
    }
  }
}

function withoutPending(j: GitHubJournal, url: string): GitHubJournal {
  const rest = (j.pendingWebhooks ?? []).filter((u) => u !== url);
  const { pendingWebhooks: _gone, ...base } = j;
  return rest.length ? { ...base, pendingWebhooks: rest } : base;
}

function hookConfig(h: WebhookWanted) {
  return { url: h.url, content_type: 'json', secret: h.secret, insecure_ssl: '0' };
}

async function ignore404<T>(p: Promise<T>): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (httpStatus(e) !== 404) throw e;
  }
}

/**
 * A GitHub API failure as an OperationError that names the request, GitHub's answer and, for a 403, the
 * permission GitHub asks for in the token's own words.
 */
export function explainGitHubError(e: unknown, what: string, repo: string, githubUrl: string): OperationError {
  const status = httpStatus(e);
  const none = noAnswer(e);
  if (none) return new OperationError(`${what}: cannot reach the GitHub API at ${none.baseUrl} (${none.code})`, { hint: 'check the server\'s outbound HTTPS and CODEXK8S_GITHUB_API_URL' });
  if (status === undefined) return new OperationError(`${what}: ${String((e as Error | undefined)?.message ?? e)}`);
  const accepted = acceptedPermissions(e);
  const msg = `${what}: GitHub answered ${status} ${JSON.stringify(githubMessage(e))}`;
  if (status === 401) return new OperationError(msg, { hint: 'the token is wrong, expired or revoked: put a new one in CODEXK8S_GITHUB_PAT and run the launcher again' });
  if (status === 403 && accepted) return new OperationError(`${msg}; the token needs ${describeAccepted(accepted)}`, { hint: `edit the token at ${githubUrl}/settings/personal-access-tokens for ${repo}, then run again` });
  return new OperationError(msg);
}
