#!/opt/codex-k8s-bootstrap/node/bin/node --
// 80_deploy_loop_check: proves the deploy loop end to end. It dispatches .github/workflows/staging-deploy.yml on the
// repository's default branch through the GitHub API (the same run a push to main starts: build in the cluster,
// rollout, smoke checks, rollback on failure), waits for it, bounded by CODEXK8S_DEPLOY_WAIT, and prints the run URL,
// its conclusion and each job's duration. A red run fails the step with the run URL. Then the smoke checks
// (lib/smoke.mts) run from the server against staging, expecting the commit the run deployed, with the webhook secret
// from the server and the runner health 60_runner_arc waits for (lib/runners.mts) as the runner check.
//
// Proven is journaled (state.json, section deployLoop) with the commit. check() reports drift unless the journal
// holds a proof for the newest commit GitHub ran staging-deploy.yml for on the default branch (every push to main
// starts one) AND staging still answers /version with that commit. So a second run is `unchanged`, and a new commit
// on main, or a staging rolled back or down, is drift that a run fixes by dispatching again.
// Why not the branch head itself: reading a commit needs "Contents: Read" on the token; the runs list needs only
// "Actions", which the dispatch needs anyway (docs/github.md).
import http from 'node:http';
import https from 'node:https';
import { runStep } from '../lib/step.mts';
import type { StepContext } from '../lib/step.mts';
import { OperationError } from '../lib/errors.mts';
import { run } from '../lib/exec.mts';
import { REMOTE } from '../lib/paths.mts';
import type { Mode } from '../lib/manifests.mts';
import { kubectlArgv } from '../lib/kube.mts';
import { clientFromConfig, repoRef, explainGitHubError, readOrCreateSecretFile, httpStatus } from '../lib/github.mts';
import type { GitHubClient, RepoRef } from '../lib/github.mts';
import { DEPLOY_WORKFLOW, defaultBranch, listRuns, runWorkflow, formatSeconds } from '../lib/actions.mts';
import type { RunInfo } from '../lib/actions.mts';
import { readJournal, writeJournal } from '../lib/state.mts';
import type { DeployLoopRecord } from '../lib/state.mts';
import { runSmokeWithRetries, formatResult, summaryLine } from '../lib/smoke.mts';
import { settingsFrom, runnerProbe } from '../lib/runners.mts';

/** Seconds between two looks at the run. */
export const POLL_SECONDS = 10;
/** How long a dispatched run may take to show up in the run list (older GitHub Enterprise Server only). */
const FIND_SECONDS = 60;
/** The smoke checks right after a green run: a few attempts cover Traefik switching endpoints. */
const SMOKE_ATTEMPTS = 3;
const SMOKE_RETRY_DELAY_MS = 5000;
const VERSION_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------------------------
// Where the server reaches staging

/**
 * Pure: the URL the smoke checks use from the server. CODEXK8S_SMOKE_URL wins; server mode: the public HTTPS name
 * (TLS checked as the world sees it); local mode: Traefik's ClusterIP, plain HTTP (the Ingress has no host rule, and
 * the cluster DNS name that the workflow uses does not resolve on the host).
 */
export function smokeUrl(o: { override?: string; mode: Mode; domain?: string; traefikClusterIp?: string }): string {
  if (o.override) return o.override.replace(/\/+$/, '');
  if (o.mode === 'server') {
    if (!o.domain) throw new OperationError('server mode without CODEXK8S_STAGING_DOMAIN: no URL to smoke-check');
    return `https://${o.domain}`;
  }
  const ip = o.traefikClusterIp?.trim() ?? '';
  if (!/^[0-9a-fA-F.:]+$/.test(ip) || ip === 'None') {
    throw new OperationError(`the Service kube-system/traefik has no ClusterIP (got ${JSON.stringify(ip)}): no local-mode URL to smoke-check`, {
      hint: 'is Traefik installed (k3s bundles it; 30_cluster_deps configures it)? Or set CODEXK8S_SMOKE_URL',
    });
  }
  return `http://${ip.includes(':') ? `[${ip}]` : ip}`;
}

export function traefikClusterIpArgv(): string[] {
  return kubectlArgv('--namespace', 'kube-system', 'get', 'service', 'traefik', '-o', 'jsonpath={.spec.clusterIP}');
}

async function resolveSmokeUrl(ctx: StepContext): Promise<string> {
  const cfg = ctx.cfg;
  const mode = cfg.get('CODEXK8S_MODE');
  const override = cfg.maybe('CODEXK8S_SMOKE_URL');
  if (override || mode === 'server') return smokeUrl({ override, mode, domain: cfg.maybe('CODEXK8S_STAGING_DOMAIN') });
  const r = await run(traefikClusterIpArgv(), { allowFail: true, timeoutSeconds: 60, log: ctx.log });
  if (r.exitCode !== 0) throw new OperationError('cannot read the ClusterIP of the Service kube-system/traefik', { detail: r.stderr.trim().slice(-2000), hint: 'or set CODEXK8S_SMOKE_URL' });
  return smokeUrl({ mode, traefikClusterIp: r.stdout });
}

/** GET <url>/version (TLS verified): the commit staging serves, or why it could not be read. */
export async function liveVersion(url: string, timeoutMs = VERSION_TIMEOUT_MS): Promise<{ version?: string; error?: string }> {
  const target = new URL('/version', url);
  const lib = target.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const req = lib.get(target, { timeout: timeoutMs, headers: { accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 65536) body += c;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve({ error: `${target.href} answered HTTP ${res.statusCode}` });
        try {
          const v = (JSON.parse(body) as { version?: unknown }).version;
          resolve(typeof v === 'string' ? { version: v } : { error: `${target.href} answered no version: ${body.slice(0, 200)}` });
        } catch {
          resolve({ error: `${target.href} answered no JSON: ${body.slice(0, 200)}` });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000}s`)));
    req.on('error', (e) => resolve({ error: `${target.href}: ${e.message}` }));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Drift (pure)

export interface LoopState {
  repo: string;
  branch: string;
  /** The newest staging-deploy run on the branch, or undefined when it never ran. */
  newest: RunInfo | undefined;
  record: DeployLoopRecord | undefined;
  /** What staging answers now at /version; asked only when the record proves the newest commit. */
  live?: { version?: string; error?: string };
}

/** Empty when the journal proves the loop for the newest commit deployed and staging still serves that commit. */
export function loopDrift(s: LoopState): string[] {
  // GitHub matches owner/name case-insensitively: a setting typed in another case names the same repository.
  const r = s.record && s.record.repo.toLowerCase() === s.repo.toLowerCase() && s.record.branch === s.branch ? s.record : undefined;
  const last = r ? ` (last proven: ${r.headSha.slice(0, 12)}, ${r.runUrl})` : '';
  if (!s.newest) return [`the deploy loop has not been proven yet: ${DEPLOY_WORKFLOW} has no run on ${s.branch} of ${s.repo}${last}`];
  const sha = s.newest.headSha;
  if (!r || r.headSha !== sha) return [`the deploy loop has not been proven for ${sha.slice(0, 12)}, the newest commit ${DEPLOY_WORKFLOW} ran for on ${s.branch}${last}`];
  if (s.live === undefined) return [];
  if (s.live.error !== undefined) return [`staging does not answer its version (${s.live.error}); the loop was proven for ${sha.slice(0, 12)}`];
  if (s.live.version !== sha) return [`staging serves version ${s.live.version ?? 'none'}, not ${sha.slice(0, 12)} for which the loop was proven (rolled back, or deployed by hand?)`];
  return [];
}

// ---------------------------------------------------------------------------------------------------------------
// The step

interface Gh {
  gh: GitHubClient;
  ref: RepoRef;
  repo: string;
}

function github(ctx: StepContext): Gh {
  const ref = repoRef(ctx.cfg);
  return { gh: clientFromConfig(ctx.cfg, ctx.log), ref, repo: `${ref.owner}/${ref.repo}` };
}

export function explainLoopError(e: unknown, what: string, repo: string, githubUrl: string): unknown {
  if (e instanceof OperationError) return e;
  if (httpStatus(e) === 404 && what.includes(DEPLOY_WORKFLOW)) {
    return new OperationError(`${what}: GitHub answered 404: ${repo} has no .github/workflows/${DEPLOY_WORKFLOW} on its default branch`, {
      hint: `push this repository's .github/workflows/${DEPLOY_WORKFLOW} to the default branch of ${repo}, then run this step again`,
    });
  }
  return explainGitHubError(e, what, repo, githubUrl);
}

async function check(ctx: StepContext): Promise<string[]> {
  const { gh, ref, repo } = github(ctx);
  let branch: string;
  let newest: RunInfo | undefined;
  try {
    branch = await defaultBranch(gh, ref);
  } catch (e) {
    throw explainLoopError(e, `reading ${repo}`, repo, ctx.cfg.get('CODEXK8S_GITHUB_URL'));
  }
  try {
    newest = (await listRuns(gh, ref, DEPLOY_WORKFLOW, { branch, perPage: 1 }))[0];
  } catch (e) {
    // No workflow file yet is drift (apply says what to push), not a broken check.
    if (httpStatus(e) === 404) return [`${repo} has no .github/workflows/${DEPLOY_WORKFLOW} on ${branch}: the deploy loop cannot run`];
    throw explainLoopError(e, `listing the ${DEPLOY_WORKFLOW} runs of ${repo}`, repo, ctx.cfg.get('CODEXK8S_GITHUB_URL'));
  }
  const record = readJournal(REMOTE.journal).deployLoop;
  const state: LoopState = { repo, branch, newest, record };
  // Staging is asked only when the journal proves the newest commit: otherwise the answer changes nothing.
  if (loopDrift(state).length === 0) state.live = await liveVersion(await resolveSmokeUrl(ctx));
  return loopDrift(state);
}

async function apply(ctx: StepContext): Promise<string[]> {
  const { cfg, log } = ctx;
  const { gh, ref, repo } = github(ctx);
  // The webhook secret the smoke checks sign with: 50_deploy_codex_k8s or 70_github_repo generated it.
  const secret = await readOrCreateSecretFile(REMOTE.webhookSecretFile, false);
  if (!secret) throw new OperationError(`the webhook secret ${REMOTE.webhookSecretFile} does not exist`, { hint: 'it is generated by 50_deploy_codex_k8s and 70_github_repo: run the launcher with --from 50' });

  // Before the dispatch: a URL that cannot be known would only fail after a whole run.
  const url = await resolveSmokeUrl(ctx);
  let branch: string;
  try {
    branch = await defaultBranch(gh, ref);
  } catch (e) {
    throw explainLoopError(e, `reading ${repo}`, repo, cfg.get('CODEXK8S_GITHUB_URL'));
  }
  let outcome;
  try {
    outcome = await runWorkflow(gh, ref, {
      workflow: DEPLOY_WORKFLOW,
      branch,
      waitSeconds: cfg.get('CODEXK8S_DEPLOY_WAIT'),
      pollSeconds: POLL_SECONDS,
      findSeconds: FIND_SECONDS,
      log,
    });
  } catch (e) {
    throw explainLoopError(e, `running ${DEPLOY_WORKFLOW} in ${repo}`, repo, cfg.get('CODEXK8S_GITHUB_URL'));
  }
  const { run: wr, jobs, via, seconds } = outcome;
  const changes = [
    `${DEPLOY_WORKFLOW} run #${wr.runNumber} on ${branch} (${wr.headSha.slice(0, 12)}) succeeded in ${formatSeconds(seconds)}: ${jobs.map((j) => `${j.name} ${formatSeconds(j.seconds)}`).join(', ')}; ${wr.htmlUrl}${via === 'run list' ? ' (found in the run list)' : ''}`,
  ];

  const runners = settingsFrom(ctx);
  log.info(`  smoke checks from the server against ${url}, expecting version ${wr.headSha.slice(0, 12)}:`);
  const smoke = await runSmokeWithRetries(
    { url, expectVersion: wr.headSha, webhookSecret: secret.value, runner: () => runnerProbe(runners, ctx), onResult: (r) => log.info(`    ${formatResult(r)}`) },
    { attempts: SMOKE_ATTEMPTS, delayMs: SMOKE_RETRY_DELAY_MS, onRetry: (n, of, failed) => log.info(`  .. ${failed.map((r) => r.name).join(', ')} failed (attempt ${n}/${of}); again in ${SMOKE_RETRY_DELAY_MS / 1000}s`) },
  );
  if (!smoke.ok) {
    throw new OperationError(`the ${DEPLOY_WORKFLOW} run was green (${wr.htmlUrl}), but the smoke checks from the server against ${url} failed: ${summaryLine(smoke.results)}`, {
      detail: smoke.results.filter((r) => !r.ok).map(formatResult).join('\n'),
      hint: `the run's own smoke job passed from inside the cluster: compare its summary (${wr.htmlUrl}) with this view from the server (firewall, DNS, TLS); CODEXK8S_SMOKE_URL sets the URL used here`,
    });
  }
  changes.push(`smoke checks from the server against ${url}: ${summaryLine(smoke.results)}`);

  const record: DeployLoopRecord = { repo, branch, headSha: wr.headSha, runId: wr.id, runUrl: wr.htmlUrl, smokeUrl: url, provenAt: new Date().toISOString() };
  writeJournal(REMOTE.journal, { ...readJournal(REMOTE.journal), deployLoop: record });
  changes.push(`the deploy loop is proven for ${wr.headSha.slice(0, 12)} (journal: deployLoop)`);
  return changes;
}

if (import.meta.filename === process.argv[1]) await runStep('80_deploy_loop_check', { check, apply });
