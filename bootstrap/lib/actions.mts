// GitHub Actions runs, for 80_deploy_loop_check: dispatch a workflow on the default branch, find the run that
// dispatch created, wait for it (bounded, "attempt 3/90"), and read its jobs with their durations.
//
// Finding the run: api.github.com answers a dispatch with `return_run_details: true` with the run's id and URLs
// (added in 2026; @octokit/openapi 23 documents it). GitHub Enterprise Server up to 3.19 does not know the parameter:
// it answers 204 (or refuses the key with a 422, then we dispatch again without it), and the run is found by listing
// the workflow_dispatch runs of the branch and taking the oldest one that was not there before the dispatch. Runs
// are compared by id, never by time: the server's clock and GitHub's need not agree.
import type { GitHubClient, RepoRef } from './github/client.mts';
import { githubMessage, httpStatus } from './github/client.mts';
import { OperationError } from './errors.mts';
import { attemptsWithin, backOff, pollUntil } from './poll.mts';
import type { Logger } from './log.mts';

/** The deploy workflow (.github/workflows/staging-deploy.yml), by file name as the API accepts it. */
export const DEPLOY_WORKFLOW = 'staging-deploy.yml';

export interface RunInfo {
  id: number;
  runNumber: number;
  htmlUrl: string;
  headSha: string;
  headBranch: string;
  event: string;
  /** queued, in_progress, waiting, pending, requested, completed */
  status: string;
  /** success, failure, cancelled, timed_out, ... once completed; null before. */
  conclusion: string | null;
  createdAt: string;
}

export interface JobInfo {
  name: string;
  status: string;
  conclusion: string | null;
  /** completed_at - started_at, when both are known. */
  seconds: number | undefined;
  htmlUrl: string;
}

export interface WaitOptions {
  /** The bound (CODEXK8S_DEPLOY_WAIT). */
  waitSeconds: number;
  /** The longest pause between two looks; the first ones are shorter (backOff: 1 s, 2 s, 4 s, ...). */
  pollSeconds: number;
  log: Logger;
}

interface RawRun {
  id: number;
  run_number: number;
  html_url: string;
  head_sha: string;
  head_branch: string | null;
  event: string;
  status: string | null;
  conclusion: string | null;
  created_at: string;
}

function runInfo(r: RawRun): RunInfo {
  return {
    id: r.id,
    runNumber: r.run_number,
    htmlUrl: r.html_url,
    headSha: r.head_sha,
    headBranch: r.head_branch ?? '',
    event: r.event,
    status: r.status ?? 'unknown',
    conclusion: r.conclusion,
    createdAt: r.created_at,
  };
}

export async function defaultBranch(gh: GitHubClient, ref: RepoRef): Promise<string> {
  const r = await gh.request('GET /repos/{owner}/{repo}', ref);
  return r.data.default_branch;
}

/** Runs of `workflow`, newest first (one page: the newest `perPage`). */
export async function listRuns(
  gh: GitHubClient,
  ref: RepoRef,
  workflow: string,
  filter: { branch?: string; event?: string; perPage?: number } = {},
): Promise<RunInfo[]> {
  const r = await gh.request('GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs', {
    ...ref,
    workflow_id: workflow,
    per_page: filter.perPage ?? 30,
    ...(filter.branch !== undefined ? { branch: filter.branch } : {}),
    ...(filter.event !== undefined ? { event: filter.event } : {}),
  });
  return (r.data.workflow_runs as RawRun[]).map(runInfo).sort((a, b) => b.id - a.id);
}

export async function getRun(gh: GitHubClient, ref: RepoRef, runId: number): Promise<RunInfo> {
  const r = await gh.request('GET /repos/{owner}/{repo}/actions/runs/{run_id}', { ...ref, run_id: runId });
  return runInfo(r.data as RawRun);
}

export async function runJobs(gh: GitHubClient, ref: RepoRef, runId: number): Promise<JobInfo[]> {
  const jobs = await gh.paginate('GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs', {
    ...ref,
    run_id: runId,
    per_page: 100,
  });
  return jobs.map((j) => {
    const start = j.started_at ? Date.parse(j.started_at) : NaN;
    const end = j.completed_at ? Date.parse(j.completed_at) : NaN;
    return {
      name: j.name,
      status: j.status,
      conclusion: j.conclusion,
      seconds:
        Number.isFinite(start) && Number.isFinite(end) ? Math.max(0, Math.round((end - start) / 1000)) : undefined,
      htmlUrl: j.html_url ?? '',
    };
  });
}

export function formatSeconds(s: number | undefined): string {
  if (s === undefined) return '-';
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
}

/** One line per job, for the step's output: "build    success   41s". */
export function formatJobs(jobs: readonly JobInfo[]): string[] {
  const w = Math.max(4, ...jobs.map((j) => j.name.length));
  return jobs.map((j) => `${j.name.padEnd(w)}  ${(j.conclusion ?? j.status).padEnd(9)}  ${formatSeconds(j.seconds)}`);
}

export interface Dispatched {
  runId: number;
  /** How the run was found: the dispatch answer named it, or the run list (an older GitHub Enterprise Server). */
  via: 'run details' | 'run list';
}

/**
 * Dispatches `workflow` on `branch` and returns the run it created. `findSeconds` bounds the search in the run list
 * when the dispatch answer does not name the run (GitHub lists a new run within seconds).
 */
export async function dispatchRun(
  gh: GitHubClient,
  ref: RepoRef,
  opts: { workflow: string; branch: string; findSeconds: number; pollSeconds: number; log: Logger },
): Promise<Dispatched> {
  const { workflow, branch, log } = opts;
  const route = 'POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches' as const;
  // Runs that exist before the dispatch cannot be ours (only needed when the answer does not name the run).
  const before = new Set((await listRuns(gh, ref, workflow, { branch, event: 'workflow_dispatch' })).map((r) => r.id));
  let answer;
  try {
    answer = await gh.request(route, { ...ref, workflow_id: workflow, ref: branch, return_run_details: true });
  } catch (e) {
    if (httpStatus(e) !== 422 || !githubMessage(e).includes('return_run_details')) throw e;
    log.detail(`GitHub does not know return_run_details (${githubMessage(e)}); dispatching without it`);
    answer = await gh.request(route, { ...ref, workflow_id: workflow, ref: branch });
  }
  if (answer.status === 200 && answer.data && typeof answer.data.workflow_run_id === 'number') {
    return { runId: answer.data.workflow_run_id, via: 'run details' };
  }
  const interval = backOff(opts.pollSeconds);
  const attempts = attemptsWithin(opts.findSeconds, interval);
  return pollUntil<Dispatched>(
    async () => {
      const fresh = (await listRuns(gh, ref, workflow, { branch, event: 'workflow_dispatch' })).filter(
        (r) => !before.has(r.id),
      );
      const mine = fresh.sort((a, b) => a.id - b.id)[0];
      return mine ? { done: { runId: mine.id, via: 'run list' } } : { waiting: 'not listed yet' };
    },
    {
      attempts,
      intervalSeconds: interval,
      what: `the dispatched run of ${workflow}`,
      onWait: (i, _reason, pause) =>
        log.info(
          `  .. the dispatched run of ${workflow} is not listed yet (attempt ${i}/${attempts}, next look in ${pause}s)`,
        ),
      onTimeout: () =>
        new OperationError(
          `dispatched ${workflow} on ${branch}, but no new workflow_dispatch run appeared within ${opts.findSeconds}s`,
          {
            hint: `look at the Actions tab of ${ref.owner}/${ref.repo}: is the workflow disabled, or was the run filtered out?`,
          },
        ),
    },
  );
}

/** Looks at the run, backing off to every pollSeconds, until it is completed; a run still going at the bound is an error. */
export async function waitForRun(gh: GitHubClient, ref: RepoRef, runId: number, opts: WaitOptions): Promise<RunInfo> {
  const interval = backOff(opts.pollSeconds);
  const attempts = attemptsWithin(opts.waitSeconds, interval);
  let run: RunInfo | undefined;
  return pollUntil<RunInfo>(
    async () => {
      run = await getRun(gh, ref, runId);
      return run.status === 'completed' ? { done: run } : { waiting: run.status };
    },
    {
      attempts,
      intervalSeconds: interval,
      what: `run ${runId}`,
      onWait: (i, _reason, pause) =>
        opts.log.info(
          `  .. run #${run?.runNumber} is ${run?.status} (attempt ${i}/${attempts}, next look in ${pause}s): ${run?.htmlUrl}`,
        ),
      onTimeout: () => {
        const r = run as RunInfo;
        const why =
          r.status === 'queued' || r.status === 'waiting' || r.status === 'pending'
            ? 'no runner took it (is another staging-deploy run ahead of it in the concurrency group, or is the runner scale set offline?)'
            : 'it is still running';
        return new OperationError(
          `the staging-deploy run ${r.htmlUrl} did not finish within ${formatSeconds(opts.waitSeconds)} (CODEXK8S_DEPLOY_WAIT): it is ${r.status}; ${why}`,
          {
            hint: `open ${r.htmlUrl}; when it finishes green, run this step again (a longer CODEXK8S_DEPLOY_WAIT waits longer)`,
          },
        );
      },
    },
  );
}

export interface WorkflowOutcome {
  run: RunInfo;
  jobs: JobInfo[];
  via: Dispatched['via'];
  /** From the dispatch to the run's completion, as seen from here. */
  seconds: number;
}

/**
 * Dispatch, find, wait, read the jobs; prints the run URL, its conclusion and each job's duration. A run that does
 * not conclude `success` is an error naming the run URL and the failed jobs.
 */
export async function runWorkflow(
  gh: GitHubClient,
  ref: RepoRef,
  opts: {
    workflow: string;
    branch: string;
    waitSeconds: number;
    pollSeconds: number;
    findSeconds: number;
    log: Logger;
  },
): Promise<WorkflowOutcome> {
  const { log } = opts;
  const started = performance.now();
  const { runId, via } = await dispatchRun(gh, ref, opts);
  const first = await getRun(gh, ref, runId);
  log.info(
    `  dispatched ${opts.workflow} on ${opts.branch}: run #${first.runNumber} ${first.htmlUrl} (commit ${first.headSha.slice(0, 12)})`,
  );
  const run = await waitForRun(gh, ref, runId, opts);
  const seconds = Math.round((performance.now() - started) / 1000);
  const jobs = await runJobs(gh, ref, runId);
  log.info(`  run #${run.runNumber} ${run.conclusion ?? run.status} after ${formatSeconds(seconds)}: ${run.htmlUrl}`);
  for (const line of formatJobs(jobs)) log.info(`    ${line}`);
  if (run.conclusion !== 'success') {
    const failed = jobs.filter((j) => j.conclusion !== 'success' && j.conclusion !== 'skipped');
    const which =
      failed.length > 0 ? ` (${failed.map((j) => `${j.name}: ${j.conclusion ?? j.status}`).join(', ')})` : '';
    throw new OperationError(
      `the ${opts.workflow} run #${run.runNumber} concluded ${run.conclusion ?? run.status}${which}: ${run.htmlUrl}`,
      {
        hint: `open ${run.htmlUrl} for the failed job's log and summary (a failed smoke job has rolled the Deployment back); fix, push to ${opts.branch}, then run this step again`,
      },
    );
  }
  return { run, jobs, via, seconds };
}
