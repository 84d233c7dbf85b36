// GitHub REST access for the launcher (token preflight) and the remote steps 60/70 (repository wiring, runners).
// One Octokit (@octokit/rest 22) with ONE retry policy, a request hook (retryDelaySeconds): at most 3 tries; 5xx
// and no answer after 1 s and 4 s; rate limits (429, or 403 with retry-after / x-ratelimit-remaining: 0) after
// GitHub's retry-after or x-ratelimit-reset, up to 2 minutes; no other 4xx. Writes are spaced at least a second
// apart, as GitHub asks of integrations. (plugin-retry nested in plugin-throttling retried a 429 in both: 16 tries.)
// Octokit's own console logging goes through our Logger, so every line is masked; the token is a registered secret.
//
// The base URL is CODEXK8S_GITHUB_API_URL: api.github.com, a GitHub Enterprise Server's /api/v3, or the fake API of
// the tests (test/fakes/github). Nothing here knows which.
import { sleep as zxSleep } from 'zx';
import { Octokit } from '@octokit/rest';
import type { Config } from '../config.mts';
import type { Logger } from '../log.mts';
import { registerSecret } from '../redact.mts';
import { OperationError } from '../errors.mts';
import { describeAccepted } from './permissions.mts';

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
export function rateLimitWaitSeconds(
  status: number | undefined,
  headers: ResponseHeaders,
  nowMs: number,
  message = '',
): number | undefined {
  const retryAfter = retryAfterSeconds(headers['retry-after'], nowMs);
  const exhausted = String(headers['x-ratelimit-remaining'] ?? '') === '0';
  const limited =
    status === 429 || (status === 403 && (retryAfter !== undefined || exhausted || /rate limit/i.test(message)));
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
export function retryDelaySeconds(
  status: number | undefined,
  headers: ResponseHeaders,
  attempt: number,
  nowMs: number,
  message = '',
): number | undefined {
  if (attempt >= MAX_TRIES) return undefined;
  const limit = rateLimitWaitSeconds(status, headers, nowMs, message);
  const wait =
    limit ??
    (status === undefined || status >= 500
      ? (retryAfterSeconds(headers['retry-after'], nowMs) ?? attempt * attempt)
      : undefined);
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
        const kind = none
          ? `got no answer (${none.code})`
          : limit !== undefined
            ? `${/secondary/i.test(message) ? 'secondary rate limit' : 'rate limit'} (${status})`
            : `answered ${status}`;
        if (wait === undefined) {
          if (attempt > 1 && typeof e === 'object' && e !== null) retriedErrors.add(e);
          if (limit !== undefined && limit > MAX_WAIT_SECONDS)
            log.error(
              `GitHub ${kind} on ${what}: it lifts in ${limit}s, longer than the ${MAX_WAIT_SECONDS}s a run waits`,
            );
          else if (attempt >= MAX_TRIES) log.warn(`GitHub ${kind} on ${what}: giving up after ${attempt} tries`);
          if (!none || e instanceof GitHubUnreachable) throw e;
          const req = (e as { request?: { method?: string; url?: string } }).request;
          const unreachable = new GitHubUnreachable(
            baseUrl,
            none.code,
            { method: req?.method ?? String(options.method), url: req?.url ?? String(options.url) },
            e,
          );
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
export interface HttpErrorLike {
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
    const member = Array.isArray(x.errors)
      ? (x.errors as Array<{ code?: unknown }>).find((m) => typeof m?.code === 'string')?.code
      : undefined;
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

/**
 * A GitHub API failure as an OperationError that names the request, GitHub's answer and, for a 403, the
 * permission GitHub asks for in the token's own words.
 */
export function explainGitHubError(e: unknown, what: string, repo: string, githubUrl: string): OperationError {
  const status = httpStatus(e);
  const none = noAnswer(e);
  if (none)
    return new OperationError(`${what}: cannot reach the GitHub API at ${none.baseUrl} (${none.code})`, {
      hint: "check the server's outbound HTTPS and CODEXK8S_GITHUB_API_URL",
    });
  if (status === undefined) return new OperationError(`${what}: ${String((e as Error | undefined)?.message ?? e)}`);
  const accepted = acceptedPermissions(e);
  const msg = `${what}: GitHub answered ${status} ${JSON.stringify(githubMessage(e))}`;
  if (status === 401)
    return new OperationError(msg, {
      hint: 'the token is wrong, expired or revoked: put a new one in CODEXK8S_GITHUB_PAT and run the launcher again',
    });
  if (status === 403 && accepted)
    return new OperationError(`${msg}; the token needs ${describeAccepted(accepted)}`, {
      hint: `edit the token at ${githubUrl}/settings/personal-access-tokens for ${repo}, then run again`,
    });
  return new OperationError(msg);
}
