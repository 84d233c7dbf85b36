// The runners of the ARC scale set as the bootstrap sees them: settings, and their health read from the cluster and
// GitHub. 60_runner_arc installs them and waits until they are healthy; 80_deploy_loop_check reuses the same reading
// as the smoke checks' runner probe (lib/smoke.mts), run from the server.
import type { StepContext } from './step.mts';
import { OperationError, UsageError } from './errors.mts';
import { run } from './exec.mts';
import type { KubeObject, Mode } from './manifests.mts';
import { getJson, kubectlArgv, KUBECONFIG } from './kube.mts';
import {
  clientFromConfig,
  repoRef,
  explainGitHubError,
  noAnswer,
  httpStatus,
  githubMessage,
} from './github/client.mts';
import type { GitHubClient } from './github/client.mts';
import type { Config } from './config.mts';
import type { Logger } from './log.mts';
import { ARC_CONTROLLER_CHART, IMAGES } from './versions.mts';

export interface RunnerSettings {
  mode: Mode;
  stagingNamespace: string;
  runnerNamespace: string;
  scaleSetName: string;
  /** CODEXK8S_RUNNER_MIN / MAX as configured (server mode uses them; local mode keeps 1/1). */
  min: number;
  max: number;
  githubUrl: string;
  /** owner/name */
  repo: string;
  /** The runner container's image (CODEXK8S_RUNNER_IMAGE, by default IMAGES.arcRunner). */
  image: string;
}

export function settingsFrom(ctx: StepContext): RunnerSettings {
  const c = ctx.cfg;
  return {
    mode: c.get('CODEXK8S_MODE'),
    stagingNamespace: c.get('CODEXK8S_STAGING_NAMESPACE'),
    runnerNamespace: c.get('CODEXK8S_RUNNER_NAMESPACE'),
    scaleSetName: c.get('CODEXK8S_RUNNER_SCALE_SET_NAME'),
    min: c.get('CODEXK8S_RUNNER_MIN'),
    max: c.get('CODEXK8S_RUNNER_MAX'),
    githubUrl: c.get('CODEXK8S_GITHUB_URL'),
    repo: c.get('CODEXK8S_GITHUB_REPO'),
    image: c.get('CODEXK8S_RUNNER_IMAGE'),
  };
}

/** ARC's registration URL for a repository-level scale set: https://github.com/OWNER/REPO (GHES: its web URL). */
export function githubConfigUrl(githubUrl: string, repo: string): string {
  return `${githubUrl.replace(/\/+$/, '')}/${repo}`;
}

export function listenerSelector(scaleSetName: string): string {
  return `app.kubernetes.io/component=runner-scale-set-listener,actions.github.com/scale-set-name=${scaleSetName}`;
}

export function listenerPodsArgv(scaleSetName: string): string[] {
  return kubectlArgv(
    '--namespace',
    ARC_CONTROLLER_CHART.namespace,
    'get',
    'pods',
    '-l',
    listenerSelector(scaleSetName),
    '-o',
    'json',
  );
}

interface PodLike {
  metadata: { name: string };
  status?: {
    phase?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ state?: { waiting?: { reason?: string } } }>;
  };
}

export interface Health {
  /** The AutoscalingRunnerSet, or undefined when the chart has not created it. */
  scaleSet?: { annotations: Record<string, string>; phase?: string };
  listenerPods: PodLike[];
  /** Local mode only: runners GitHub lists for the repository. */
  runners?: Array<{ name: string; status: string; labels: string[] }>;
}

export const SCALE_SET_ID_ANNOTATION = 'runner-scale-set-id';

/**
 * The CRDs ARC's controller chart ships in crds/ (at ARC_VERSION; test/fixtures/upstream/.../crds.json). helm
 * creates them at install when absent and never upgrades or deletes them, so a controller upgraded by helm would run
 * on the previous version's CRDs: ARC's documented upgrade deletes them between the controller's uninstall and its
 * install (60_runner_arc arcUpgrade, docs/runners.md "Upgrades").
 */
export const ARC_CRDS = [
  'autoscalinglisteners.actions.github.com',
  'autoscalingrunnersets.actions.github.com',
  'ephemeralrunners.actions.github.com',
  'ephemeralrunnersets.actions.github.com',
] as const;

export function podReady(p: PodLike): boolean {
  return (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** ARC names a runner `<scale set>-<hash>-runner-<suffix>` and labels it with the scale set name. */
export function isRunnerOf(r: { name: string; labels: string[] }, scaleSetName: string): boolean {
  return r.labels.includes(scaleSetName) || r.name.startsWith(`${scaleSetName}-`);
}

/** What the cluster side lacks (scale set, its GitHub ID, the listener), one line each; empty when all is there. */
export function clusterProblems(s: RunnerSettings, h: Health): string[] {
  const ns = s.runnerNamespace;
  const ctl = ARC_CONTROLLER_CHART.namespace;
  if (h.scaleSet === undefined)
    return [`the AutoscalingRunnerSet ${ns}/${s.scaleSetName} does not exist (the scale-set chart creates it)`];
  const problems: string[] = [];
  if (!h.scaleSet.annotations[SCALE_SET_ID_ANNOTATION]) {
    problems.push(
      `the scale set ${s.scaleSetName} is not registered in GitHub: the controller has not written the ${SCALE_SET_ID_ANNOTATION} annotation on AutoscalingRunnerSet ${ns}/${s.scaleSetName}`,
    );
  }
  if (!h.listenerPods.some(podReady)) {
    const seen = h.listenerPods.map((p) => {
      const waiting = p.status?.containerStatuses?.[0]?.state?.waiting?.reason;
      return `${p.metadata.name} ${p.status?.phase ?? 'unknown'}${waiting ? ` (${waiting})` : ''}`;
    });
    problems.push(
      `the listener pod of ${s.scaleSetName} in ${ctl} is not Ready (${seen.length === 0 ? 'no listener pod' : seen.join(', ')})`,
    );
  }
  return problems;
}

/**
 * What is not there yet, in the order ARC gets there; empty when the runners are ready. Server mode: the scale set
 * registered in GitHub (GitHub's REST API has no repository-level listing of scale sets, so the proof is the ID
 * GitHub returned, which the controller writes on the AutoscalingRunnerSet) and its listener Ready (it holds a
 * message session with GitHub). Local mode also: one runner of the set online in GitHub's runner list.
 */
export function healthProblems(s: RunnerSettings, h: Health): string[] {
  const problems = clusterProblems(s, h);
  if (s.mode === 'local' && problems.length === 0) {
    const mine = (h.runners ?? []).filter((r) => isRunnerOf(r, s.scaleSetName));
    if (!mine.some((r) => r.status === 'online')) {
      problems.push(
        `no runner of the scale set ${s.scaleSetName} is online in GitHub (${s.repo}: ${mine.length === 0 ? 'none registered' : mine.map((r) => `${r.name} ${r.status}`).join(', ')})`,
      );
    }
  }
  return problems;
}

export function healthHint(s: RunnerSettings): string {
  const k = `kubectl --kubeconfig ${KUBECONFIG}`;
  const ctl = ARC_CONTROLLER_CHART.namespace;
  return [
    `listener: ${k} -n ${ctl} logs -l app.kubernetes.io/component=runner-scale-set-listener --tail=50`,
    `controller: ${k} -n ${ctl} logs deployment/${ARC_CONTROLLER_CHART.release}-gha-rs-controller --tail=50`,
    `runners: ${k} -n ${s.runnerNamespace} get autoscalingrunnersets,ephemeralrunners,pods`,
    `a 401/403 in those logs means CODEXK8S_GITHUB_PAT is invalid or lacks "Administration: Read and write" on ${s.repo} (docs/github.md)`,
    `GitHub's view: ${githubConfigUrl(s.githubUrl, s.repo)}/settings/actions/runners`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the cluster and GitHub

/** The cluster's and (local mode) GitHub's view of the runners, as healthProblems() evaluates it. */
export async function readHealth(s: RunnerSettings, ctx: Pick<StepContext, 'cfg' | 'log'>): Promise<Health> {
  const ars = await getJson<KubeObject & { status?: { phase?: string } }>(
    'autoscalingrunnersets.actions.github.com',
    s.scaleSetName,
    s.runnerNamespace,
    ctx.log,
  );
  const r = await run(listenerPodsArgv(s.scaleSetName), { allowFail: true, timeoutSeconds: 60, log: ctx.log });
  if (r.exitCode !== 0)
    throw new OperationError(`cannot list the listener pods in ${ARC_CONTROLLER_CHART.namespace}`, {
      detail: r.stderr.trim().slice(-2000),
    });
  const pods = (JSON.parse(r.stdout || '{"items":[]}') as { items?: PodLike[] }).items ?? [];
  const h: Health = { listenerPods: pods };
  if (ars !== undefined) h.scaleSet = { annotations: ars.metadata.annotations ?? {}, phase: ars.status?.phase };
  // GitHub is asked only once the cluster side is there: before that, "no runner" says nothing new.
  if (s.mode === 'local' && clusterProblems(s, h).length === 0) h.runners = await listRunners(s, ctx);
  return h;
}

export async function listRunners(
  s: RunnerSettings,
  ctx: Pick<StepContext, 'cfg' | 'log'>,
): Promise<NonNullable<Health['runners']>> {
  const gh = clientFromConfig(ctx.cfg, ctx.log);
  try {
    const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/runners', { ...repoRef(ctx.cfg), per_page: 100 });
    return all.map((r) => ({ name: r.name, status: r.status, labels: r.labels.map((l) => l.name) }));
  } catch (e) {
    throw explainGitHubError(e, `listing the self-hosted runners of ${s.repo}`, s.repo, s.githubUrl);
  }
}

/** The runner probe of the smoke checks: healthy runners are a pass, otherwise the first problem is the reason. */
export async function runnerProbe(
  s: RunnerSettings,
  ctx: Pick<StepContext, 'cfg' | 'log'>,
): Promise<{ ok: boolean; reason: string }> {
  const problems = healthProblems(s, await readHealth(s, ctx));
  if (problems.length > 0) return { ok: false, reason: problems.join('; ') };
  return {
    ok: true,
    reason:
      s.mode === 'local'
        ? `scale set ${s.scaleSetName} registered in GitHub, listener Ready, a runner online`
        : `scale set ${s.scaleSetName} registered in GitHub, listener Ready`,
  };
}

// --- runner freshness (the launcher, while the laptop is online) -------------------------------------------
// ARC registers its runners with self-update disabled. GitHub stops queueing jobs to a runner that has not taken an
// available update for 30 days: from then on every deploy and 80_deploy_loop_check wait in the queue forever. The
// clock starts at the first release newer than ours (the update that became available), not at the newest one.

export const RUNNER_UPDATE_LIMIT_DAYS = 30;
export const RUNNER_RELEASES_REPO = { owner: 'actions', repo: 'runner' } as const;
const DAY_MS = 86_400_000;

const RUNNER_TAG = /:(\d+)\.(\d+)\.(\d+)(?:@sha256:[a-f0-9]{64})?$/;

/** The runner version in an image reference's tag (`...actions-runner:2.336.0`, optionally `@sha256:...`). */
export function runnerImageVersion(image: string): string | undefined {
  const m = RUNNER_TAG.exec(image);
  return m ? `${m[1]}.${m[2]}.${m[3]}` : undefined;
}

/** The same image reference with another version tag (a digest is dropped: it belonged to the old tag). */
export function withRunnerVersion(image: string, version: string): string {
  return image.replace(RUNNER_TAG, `:${version}`);
}

function versionParts(v: string): number[] {
  return v.split('.').map(Number);
}

export function compareVersions(a: string, b: string): number {
  const [x, y] = [versionParts(a), versionParts(b)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

export interface ReleaseLike {
  tag_name: string;
  published_at: string | null;
  draft: boolean;
  prerelease: boolean;
}

export type RunnerFreshness =
  | { kind: 'current'; version: string }
  | {
      kind: 'behind' | 'expired';
      version: string;
      latest: string;
      firstNewer: string;
      firstNewerAt: string;
      deadline: string;
      days: number;
    };

/**
 * Pure: is `version` still served by GitHub at `nowMs`? `days` is the days left (behind) or the days since the
 * deadline (expired). Drafts, pre-releases and tags that are not vX.Y.Z do not count as available updates.
 */
export function runnerFreshness(version: string, releases: readonly ReleaseLike[], nowMs: number): RunnerFreshness {
  const newer = releases
    .filter((r) => !r.draft && !r.prerelease && r.published_at && /^v\d+\.\d+\.\d+$/.test(r.tag_name))
    .map((r) => ({ version: r.tag_name.slice(1), at: Date.parse(r.published_at as string) }))
    .filter((r) => Number.isFinite(r.at) && compareVersions(r.version, version) > 0);
  if (newer.length === 0) return { kind: 'current', version };
  const first = newer.reduce((a, b) => (b.at < a.at ? b : a));
  const latest = newer.reduce((a, b) => (compareVersions(b.version, a.version) > 0 ? b : a));
  const deadlineMs = first.at + RUNNER_UPDATE_LIMIT_DAYS * DAY_MS;
  const expired = nowMs >= deadlineMs;
  return {
    kind: expired ? 'expired' : 'behind',
    version,
    latest: latest.version,
    firstNewer: first.version,
    firstNewerAt: new Date(first.at).toISOString().slice(0, 10),
    deadline: new Date(deadlineMs).toISOString().slice(0, 10),
    days: expired ? Math.floor((nowMs - deadlineMs) / DAY_MS) : Math.ceil((deadlineMs - nowMs) / DAY_MS),
  };
}

/** How to move to `latest`: the setting for this run, the pin for everyone. */
export function runnerBumpHint(image: string, latest: string): string {
  return `set CODEXK8S_RUNNER_IMAGE=${withRunnerVersion(image, latest)} (or bump IMAGES.arcRunner in bootstrap/lib/versions.mts), then run --only 60_runner_arc; see docs/runbook.md "Deploys stay queued: runner too old"`;
}

/**
 * The launcher's check, before the server is touched. `enforce` (the run installs or uses the runners): a runner
 * past GitHub's limit is a setting to fix, exit 2. Otherwise, and for a runner still within the limit, a warning.
 * When the releases cannot be read (GitHub Enterprise Server without actions/runner, the network), it says so and
 * goes on: the check protects the deploy loop, it must not block a run that GitHub itself would serve.
 */
export async function checkRunnerFreshness(
  cfg: Config,
  log: Logger,
  gh: GitHubClient,
  enforce: boolean,
  nowMs = Date.now(),
): Promise<RunnerFreshness | undefined> {
  const image = cfg.get('CODEXK8S_RUNNER_IMAGE');
  const version = runnerImageVersion(image);
  const where = `${cfg.get('CODEXK8S_GITHUB_API_URL')}/repos/${RUNNER_RELEASES_REPO.owner}/${RUNNER_RELEASES_REPO.repo}/releases`;
  if (!version)
    throw new UsageError(
      `CODEXK8S_RUNNER_IMAGE: ${image} has no X.Y.Z version tag; expected an actions-runner image such as ${IMAGES.arcRunner}`,
    );
  let releases: ReleaseLike[];
  try {
    releases = (await gh.request('GET /repos/{owner}/{repo}/releases', { ...RUNNER_RELEASES_REPO, per_page: 100 }))
      .data as ReleaseLike[];
  } catch (e) {
    const none = noAnswer(e);
    const why = none ? `no answer (${none.code})` : `${httpStatus(e) ?? '?'} ${githubMessage(e)}`;
    log.warn(
      `runner freshness not checked: GET ${where} gave ${why}. GitHub stops queueing jobs to runner ${version} ${RUNNER_UPDATE_LIMIT_DAYS} days after a newer release; check https://github.com/actions/runner/releases by hand`,
    );
    return undefined;
  }
  const f = runnerFreshness(version, releases, nowMs);
  if (f.kind === 'current') {
    log.info(`  ok    runner image ${image}: no newer actions/runner release`);
    return f;
  }
  const facts = `runner ${f.version} is behind actions/runner ${f.latest}; ${f.firstNewer}, the first newer release, came out on ${f.firstNewerAt}`;
  if (f.kind === 'behind') {
    log.warn(
      `runner image ${image}: ${facts}; GitHub stops queueing jobs to ${f.version} on ${f.deadline} (${f.days} day(s) left). To bump: ${runnerBumpHint(image, f.latest)}`,
    );
    return f;
  }
  const message = `CODEXK8S_RUNNER_IMAGE: ${image} is past GitHub's ${RUNNER_UPDATE_LIMIT_DAYS}-day limit: ${facts}, so since ${f.deadline} GitHub queues no jobs to runner ${f.version} and every deploy would wait forever`;
  if (!enforce) {
    log.warn(`${message}. To bump: ${runnerBumpHint(image, f.latest)}`);
    return f;
  }
  throw new UsageError([
    `${message}; expected ${withRunnerVersion(image, f.latest)}`,
    `hint: ${runnerBumpHint(image, f.latest)}; nothing was changed`,
  ]);
}
