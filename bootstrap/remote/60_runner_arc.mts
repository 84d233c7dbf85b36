#!/opt/codex-k8s-bootstrap/node/bin/node --
// 60_runner_arc: GitHub Actions runners inside the cluster, with GitHub's Actions Runner Controller (ARC) in its
// "runner scale sets" mode (docs/runners.md):
//   - the controller chart (CRDs, controller, and the listener it starts per scale set) in arc-systems;
//   - one scale set (chart gha-runner-scale-set) in CODEXK8S_RUNNER_NAMESPACE, named CODEXK8S_RUNNER_SCALE_SET_NAME,
//     which is what workflows put in `runs-on`; local mode keeps one runner (min = max = 1), server mode autoscales
//     between CODEXK8S_RUNNER_MIN and CODEXK8S_RUNNER_MAX;
//   - the runners run as our ServiceAccount, bound to a Role in the staging namespace (manifests/runner);
//   - the token reaches ARC as the Secret codex-k8s-runner-github-<sha256 prefix of the token> (key github_token),
//     applied on kubectl's stdin. The name follows the token: a rotated token is a new Secret and a new chart value,
//     so the controller rebuilds the listener with it (ARC does not watch the Secret it was given). The Secrets of
//     earlier tokens are deleted once the runners are healthy on the new one.
// Both charts are pinned (lib/versions.mts); helm writes a new revision on every upgrade, so a release is upgraded
// only when its chart version or values differ (lib/kube.mts helmReleaseDrift).
// Verified, bounded: the listener pod is Ready and GitHub gave the scale set an ID (the controller writes it on the
// AutoscalingRunnerSet); in local mode one runner of the set is online in GitHub (REST: list self-hosted runners).
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { runStep, changeList } from '../lib/step.mts';
import { attemptsWithin, backOff, pollUntil } from '../lib/poll.mts';
import type { StepContext, Teardown } from '../lib/step.mts';
import { OperationError } from '../lib/errors.mts';
import { moved } from '../lib/log.mts';
import { readIfExists, writeFileAtomic } from '../lib/fsx.mts';
import { REMOTE } from '../lib/paths.mts';
import { run } from '../lib/exec.mts';
import { registerSecret } from '../lib/redact.mts';
import { render, NAMES, recommendedLabels } from '../lib/manifests.mts';
import type { KubeObject, PlaceholderValue } from '../lib/manifests.mts';
import {
  objectsDrift,
  applyObjects,
  getJson,
  existingNamespaces,
  helmReleaseState,
  helmReleaseDrift,
  helmUpgrade,
  kubectlArgv,
  getJsonArgv,
  KUBECONFIG,
} from '../lib/kube.mts';
import { ARC_CONTROLLER_CHART, ARC_SCALE_SET_CHART, ARC_VERSION } from '../lib/versions.mts';
import type { ChartPin } from '../lib/versions.mts';
import type { HelmReleaseState } from '../lib/kube.mts';
import {
  ARC_CRDS,
  settingsFrom,
  githubConfigUrl,
  healthProblems,
  healthHint,
  readHealth,
  isRunnerOf,
} from '../lib/runners.mts';
import { clientFromConfig, repoRef, explainGitHubError, httpStatus } from '../lib/github/client.mts';
import { clusterAnswers, helmReleaseInstalled, helmUninstall } from '../lib/teardown.mts';
import type { RunnerSettings } from '../lib/runners.mts';

// The runners' settings and health live in lib/runners.mts (80_deploy_loop_check reads the same health); re-exported
// here for this step's tests and for whoever reads the step as a whole.
export {
  settingsFrom,
  githubConfigUrl,
  listenerSelector,
  listenerPodsArgv,
  SCALE_SET_ID_ANNOTATION,
  podReady,
  isRunnerOf,
  clusterProblems,
  healthProblems,
  healthHint,
} from '../lib/runners.mts';

// ---- check / apply --------------------------------------------------------------------------------------------------

async function check(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  const ignored = runnerCounts(s).ignored;
  if (ignored) ctx.log.warn(ignored);
  await requireNamespaces(s, ctx);
  const t = token(ctx);
  const drift = [...tokenSecretDrift(await readTokenSecret(s, t, ctx), t, s.runnerNamespace)];
  drift.push(...(await objectsDrift(runnerObjects(s), ctx.log)));
  const controllerState = await helmReleaseState(ARC_CONTROLLER_CHART, ctx.log);
  drift.push(...helmReleaseDrift(ARC_CONTROLLER_CHART, controllerState, controllerValues()));
  const pin = scaleSetPin(s);
  const setState = await helmReleaseState(pin, ctx.log);
  const scaleSet = helmReleaseDrift(pin, setState, scaleSetValues(s, tokenSecretName(t)));
  drift.push(...scaleSet);
  const from = arcVersionMove(controllerState, setState);
  const interrupted = readArcUpgrade();
  if (from === undefined && interrupted)
    drift.push(
      `an ARC upgrade ${interrupted.from} -> ${interrupted.to} stopped half-way (${ARC_UPGRADE_FILE}): this run finishes it`,
    );
  if (from !== undefined)
    drift.push(
      `ARC ${from} -> ${ARC_VERSION} by ARC's upgrade sequence: the scale set and the controller are uninstalled, the CRDs deleted, both installed again (no runner meanwhile)`,
    );
  // The runners are verified once both releases are as wanted (before that, apply installs them and then waits).
  if (drift.length === 0) drift.push(...healthProblems(s, await readHealth(s, ctx)));
  for (const old of await staleTokenSecrets(s, t, ctx))
    drift.push(
      `Secret ${s.runnerNamespace}/${old} holds an earlier token (deleted once the runners use the current one)`,
    );
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  await requireNamespaces(s, ctx);
  const timeout = ctx.cfg.get('CODEXK8S_ROLLOUT_TIMEOUT');
  const changes = changeList(ctx);
  const t = token(ctx);
  const secretName = tokenSecretName(t);
  const secretId = `Secret ${s.runnerNamespace}/${secretName}`;
  const live = await readTokenSecret(s, t, ctx);
  if (tokenSecretDrift(live, t, s.runnerNamespace).length > 0) {
    // On stdin (applyObjects), never in argv; the value is registered for masking above.
    await applyObjects([tokenSecret(s.runnerNamespace, t)], ctx.log, { what: secretId, serverSide: true });
    changes.push(`${secretId} ${live === undefined ? 'created' : 'updated'} with the token (key ${TOKEN_KEY})`);
  }
  changes.push(...(await applyObjects(runnerObjects(s), ctx.log)));
  const before = {
    controller: await helmReleaseState(ARC_CONTROLLER_CHART, ctx.log),
    scaleSet: await helmReleaseState(scaleSetPin(s), ctx.log),
  };
  const runnerImageBefore = runnerImageOf(before.scaleSet?.values);
  const arcFrom = await arcUpgrade(s, before, timeout, ctx, changes);

  // Controller first: it brings the CRDs the scale set's AutoscalingRunnerSet needs.
  for (const [pin, values, what] of [
    [ARC_CONTROLLER_CHART, controllerValues(), 'ARC controller'],
    [scaleSetPin(s), scaleSetValues(s, secretName), `runner scale set ${s.scaleSetName}`],
  ] as const) {
    const state = await helmReleaseState(pin, ctx.log);
    const rel = helmReleaseDrift(pin, state, values);
    if (rel.length === 0) continue;
    await helmUpgrade(pin, values, timeout, ctx.log);
    changes.push(
      state === undefined
        ? `${what} installed (chart ${pin.chart} ${pin.version}, helm release ${pin.namespace}/${pin.release})`
        : `${what} upgraded (${rel.join('; ')})`,
    );
  }
  // The move is journaled once both releases run the pin; a sequence that failed half-way journaled its parts.
  if (arcFrom !== undefined) {
    changes.push(moved('ARC', arcFrom, ARC_VERSION, "by ARC's upgrade sequence"));
    rmSync(ARC_UPGRADE_FILE, { force: true });
  }
  if (runnerImageBefore !== undefined && runnerImageBefore !== s.image)
    changes.push(moved(`runner image of ${s.scaleSetName}`, runnerImageBefore, s.image));
  const { min, max } = runnerCounts(s);
  changes.push(...(await waitForRunners(s, ctx)).map((l) => `${l}; min ${min}, max ${max} runners`));
  // Only now, with the runners healthy on the current token, do the Secrets of earlier tokens go.
  for (const old of await staleTokenSecrets(s, t, ctx)) {
    await run(kubectlArgv('-n', s.runnerNamespace, 'delete', 'secret', old, '--ignore-not-found'), { log: ctx.log });
    changes.push(`Secret ${s.runnerNamespace}/${old} of an earlier token deleted (revoke that token in GitHub)`);
  }
  return changes;
}

// ---- --uninstall: the scale set first (its controller deregisters it from GitHub), then the controller ----------

const teardown: Teardown = {
  async check(ctx) {
    const s = settingsFrom(ctx);
    const left: string[] = [];
    let arsGone = true;
    if (await clusterAnswers(ctx.log)) {
      for (const [pin, what] of releases(s))
        if (await helmReleaseInstalled(pin, ctx.log))
          left.push(`helm release ${pin.namespace}/${pin.release} (${what})`);
      if (await scaleSetPresent(s, ctx)) {
        arsGone = false;
        left.push(
          `AutoscalingRunnerSet ${s.runnerNamespace}/${s.scaleSetName} (the scale set, registered in GitHub until it goes)`,
        );
      }
      for (const crd of await presentCrds(ctx))
        left.push(`CRD ${crd} (ARC's; helm keeps a chart's crds/ after uninstall)`);
    } else ctx.log.detail('the cluster does not answer: no helm release or scale set left in it to list');
    if (readIfExists(ARC_UPGRADE_FILE) !== undefined)
      left.push(`file ${ARC_UPGRADE_FILE} (the record of an ARC upgrade that stopped half-way)`);
    // While the scale set lives, its controller owns its runners in GitHub; once it is gone, any left are stale.
    if (arsGone)
      for (const r of await staleRunners(s, ctx))
        left.push(`GitHub runner ${r.name} (id ${r.id}) of the scale set ${s.scaleSetName} in ${s.repo}`);
    return left;
  },
  async apply(ctx) {
    const s = settingsFrom(ctx);
    const timeout = ctx.cfg.get('CODEXK8S_ROLLOUT_TIMEOUT');
    const changes = changeList(ctx);
    if (await clusterAnswers(ctx.log)) {
      const [[set, setWhat], [controller, controllerWhat]] = releases(s);
      if (await helmReleaseInstalled(set, ctx.log)) {
        await helmUninstall(set, timeout, ctx.log);
        changes.push(`helm release ${set.namespace}/${set.release} uninstalled (${setWhat})`);
      }
      if (await scaleSetPresent(s, ctx)) {
        await waitScaleSetGone(s, timeout, ctx);
        changes.push(
          `AutoscalingRunnerSet ${s.runnerNamespace}/${s.scaleSetName} gone (the controller deregistered the scale set from GitHub)`,
        );
      }
      if (await helmReleaseInstalled(controller, ctx.log)) {
        await helmUninstall(controller, timeout, ctx.log);
        changes.push(`helm release ${controller.namespace}/${controller.release} uninstalled (${controllerWhat})`);
      }
      changes.push(...(await deleteCrds(ctx)));
    }
    if (readIfExists(ARC_UPGRADE_FILE) !== undefined) {
      rmSync(ARC_UPGRADE_FILE, { force: true });
      changes.push(`removed ${ARC_UPGRADE_FILE}`);
    }
    for (const r of await staleRunners(s, ctx)) {
      await deleteRunner(s, r, ctx);
      changes.push(`GitHub runner ${r.name} (id ${r.id}) of the scale set ${s.scaleSetName} deleted from ${s.repo}`);
    }
    return changes;
  },
};

// ---- upgrades: ARC's own sequence, because helm never upgrades (or deletes) the CRDs in a chart's crds/ -------------

/** Pure: the ARC version either release runs when it is not the pin (undefined: no move, or nothing installed). */
export function arcVersionMove(
  controller: { version: string } | undefined,
  scaleSet: { version: string } | undefined,
): string | undefined {
  return [controller, scaleSet].find((r) => r !== undefined && r.version !== ARC_VERSION)?.version;
}

/**
 * ARC's documented upgrade ("Upgrading ARC", docs/runners.md): uninstall the scale set and wait until the controller
 * has removed it (from GitHub too), uninstall the controller, delete the CRDs; apply then installs both at the pin
 * and the controller's install brings the new CRDs. Each part looks at what is there, so a run killed half-way is
 * finished by the next: ARC's CRDs without a controller release (an upgrade killed after the controller's uninstall,
 * or CRDs someone left behind) are of an unknown version, and they go before the install, which would keep them.
 * Each part goes into `changes` (the step's changeList) as it is done, so a failure journals what was done.
 * Returns the version it upgrades from, if any.
 */
async function arcUpgrade(
  s: RunnerSettings,
  before: { controller: HelmReleaseState | undefined; scaleSet: HelmReleaseState | undefined },
  timeout: number,
  ctx: StepContext,
  changes: string[],
): Promise<string | undefined> {
  const set = scaleSetPin(s);
  const controllerState = before.controller;
  const moving = arcVersionMove(controllerState, before.scaleSet);
  // A sequence that stopped half-way left its record: the version it started from is known only there.
  const from = moving ?? readArcUpgrade()?.from;
  // The controller at the pin: nothing to take down (a record left means the run ended before its cleanup; apply
  // journals the move and removes it once both releases run the pin).
  if (moving === undefined && controllerState !== undefined) return from;
  if (moving !== undefined) {
    mkdirSync(REMOTE.stateDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(
      ARC_UPGRADE_FILE,
      JSON.stringify({ from: moving, to: ARC_VERSION, startedAt: new Date().toISOString() }) + '\n',
      { mode: 0o600, uid: 0, gid: 0 },
    );
    ctx.log.info(`  ARC ${from} -> ${ARC_VERSION}: ARC's upgrade sequence (no runner until it ends)`);
    if (await helmReleaseInstalled(set, ctx.log)) {
      await helmUninstall(set, timeout, ctx.log);
      changes.push(
        `ARC upgrade: helm release ${set.namespace}/${set.release} (runner scale set ${s.scaleSetName}) uninstalled`,
      );
    }
    if (await scaleSetPresent(s, ctx)) {
      await waitScaleSetGone(s, timeout, ctx);
      changes.push(
        `ARC upgrade: AutoscalingRunnerSet ${s.runnerNamespace}/${s.scaleSetName} gone (deregistered from GitHub)`,
      );
    }
    if (controllerState !== undefined) {
      await helmUninstall(ARC_CONTROLLER_CHART, timeout, ctx.log);
      changes.push(
        `ARC upgrade: helm release ${ARC_CONTROLLER_CHART.namespace}/${ARC_CONTROLLER_CHART.release} (ARC controller ${controllerState.version}) uninstalled`,
      );
    }
  } else if (await scaleSetPresent(s, ctx)) {
    // A controller gone, but a scale set on its CRDs: deleting the CRDs would wait forever on its finalizer.
    throw new OperationError(
      `AutoscalingRunnerSet ${s.runnerNamespace}/${s.scaleSetName} exists, but the ARC controller release ${ARC_CONTROLLER_CHART.namespace}/${ARC_CONTROLLER_CHART.release} does not: nothing can deregister it`,
      {
        hint: `someone removed the controller by hand; remove the scale set's release first (helm --kubeconfig ${KUBECONFIG} -n ${s.runnerNamespace} uninstall ${s.scaleSetName}), then run this step again`,
      },
    );
  }
  const deleted = await deleteCrds(ctx);
  changes.push(
    ...deleted.map((l) => (moving !== undefined ? `ARC upgrade: ${l}` : `${l} (left without a controller)`)),
  );
  return from;
}

/** Where an ARC upgrade records the version it started from, until both releases run the pin (0600, root). */
export const ARC_UPGRADE_FILE = `${REMOTE.stateDir}/arc-upgrade.json`;

function readArcUpgrade(): { from: string; to: string } | undefined {
  const text = readIfExists(ARC_UPGRADE_FILE);
  if (text === undefined) return undefined;
  try {
    const x = JSON.parse(text) as { from?: unknown; to?: unknown };
    return typeof x.from === 'string' && typeof x.to === 'string' ? { from: x.from, to: x.to } : undefined;
  } catch {
    return undefined; // a torn or foreign file says nothing: the CRD rule alone finishes the upgrade
  }
}

/** Pure: the image of the `runner` container in a scale set's values (scaleSetValues), if any. */
export function runnerImageOf(values: Record<string, unknown> | undefined): string | undefined {
  const containers = (values?.['template'] as { spec?: { containers?: { name?: string; image?: string }[] } })?.spec
    ?.containers;
  return Array.isArray(containers) ? containers.find((c) => c.name === 'runner')?.image : undefined;
}

/** ARC's CRDs present in the cluster (ARC_CRDS), by name. */
async function presentCrds(ctx: StepContext): Promise<string[]> {
  const r = await run(
    kubectlArgv('get', 'customresourcedefinitions', ...ARC_CRDS, '--ignore-not-found', '-o', 'name'),
    { allowFail: true, timeoutSeconds: 60, log: ctx.log },
  );
  if (r.exitCode !== 0)
    throw new OperationError("cannot list ARC's CRDs", {
      detail: r.stderr.trim().split('\n').slice(-10).join('\n'),
      hint: `kubectl --kubeconfig ${KUBECONFIG} get crds | grep actions.github.com`,
    });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().replace(/^customresourcedefinition(\.apiextensions\.k8s\.io)?\//, ''))
    .filter((l) => l !== '');
}

/** Deletes ARC's CRDs (and with them any custom resource left on them); a line per CRD deleted. */
async function deleteCrds(ctx: StepContext): Promise<string[]> {
  const present = await presentCrds(ctx);
  if (present.length === 0) return [];
  const r = await run(kubectlArgv('delete', 'customresourcedefinitions', ...present, '--ignore-not-found'), {
    allowFail: true,
    timeoutSeconds: 300,
    log: ctx.log,
  });
  if (r.exitCode !== 0)
    throw new OperationError(`deleting ARC's CRDs (${present.join(', ')}) failed (exit ${r.exitCode})`, {
      detail: r.stderr.trim().split('\n').slice(-10).join('\n'),
      hint: `run the step again: CRDs left without a controller are deleted before it is installed; by hand: kubectl --kubeconfig ${KUBECONFIG} delete crd ${present.join(' ')}`,
    });
  return present.map((c) => `CRD ${c} deleted`);
}

/** Both releases, in the order they go: the scale set, then the controller that deregisters it. */
function releases(s: RunnerSettings): [[ChartPin, string], [ChartPin, string]] {
  return [
    [scaleSetPin(s), `runner scale set ${s.scaleSetName}`],
    [ARC_CONTROLLER_CHART, 'ARC controller'],
  ];
}

const ARS_KIND = 'autoscalingrunnersets.actions.github.com';

/** Whether the AutoscalingRunnerSet exists; its CRD gone (the controller release took it) is "no". */
async function scaleSetPresent(s: RunnerSettings, ctx: StepContext): Promise<boolean> {
  const r = await run(getJsonArgv(ARS_KIND, s.scaleSetName, s.runnerNamespace), {
    allowFail: true,
    timeoutSeconds: 60,
    log: ctx.log,
  });
  if (r.exitCode === 0) return r.stdout.trim() !== '';
  if (/doesn't have a resource type|no matches for kind|could not find the requested resource/i.test(r.stderr))
    return false;
  throw new OperationError(`cannot read AutoscalingRunnerSet ${s.runnerNamespace}/${s.scaleSetName}`, {
    detail: r.stderr.trim().split('\n').slice(-10).join('\n'),
    hint: `kubectl --kubeconfig ${KUBECONFIG} -n ${s.runnerNamespace} get autoscalingrunnersets`,
  });
}

/** Bounded: the controller removes the scale set from GitHub, then its finalizer lets the object go. */
async function waitScaleSetGone(s: RunnerSettings, timeout: number, ctx: StepContext): Promise<void> {
  const interval = backOff(POLL_SECONDS);
  const attempts = attemptsWithin(timeout, interval);
  const id = `AutoscalingRunnerSet ${s.runnerNamespace}/${s.scaleSetName}`;
  await pollUntil<true>(
    async () => ((await scaleSetPresent(s, ctx)) ? { waiting: `${id} still exists` } : { done: true }),
    {
      attempts,
      intervalSeconds: interval,
      what: `${id} to go`,
      onWait: (i, _r, pause) =>
        ctx.log.info(`  .. waiting for ${id} to go (attempt ${i}/${attempts}, next look in ${pause}s)`),
      onTimeout: () =>
        new OperationError(
          `${id} is still there ${timeout}s (CODEXK8S_ROLLOUT_TIMEOUT) after its release was uninstalled: the controller has not deregistered it`,
          {
            hint: `${healthHint(s)}\nthe controller must still run for that: do not remove ${ARC_CONTROLLER_CHART.namespace}/${ARC_CONTROLLER_CHART.release} by hand; then --uninstall again`,
          },
        ),
    },
  );
}

interface GitHubRunner {
  id: number;
  name: string;
  labels: string[];
}

/** Runners of OUR scale set GitHub still lists (isRunnerOf); anyone else's are never touched. */
async function staleRunners(s: RunnerSettings, ctx: StepContext): Promise<GitHubRunner[]> {
  const gh = clientFromConfig(ctx.cfg, ctx.log);
  try {
    const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/runners', { ...repoRef(ctx.cfg), per_page: 100 });
    return all
      .map((r) => ({ id: r.id, name: r.name, labels: r.labels.map((l) => l.name) }))
      .filter((r) => isRunnerOf(r, s.scaleSetName));
  } catch (e) {
    throw explainGitHubError(e, `listing the self-hosted runners of ${s.repo}`, s.repo, s.githubUrl);
  }
}

async function deleteRunner(s: RunnerSettings, r: GitHubRunner, ctx: StepContext): Promise<void> {
  const gh = clientFromConfig(ctx.cfg, ctx.log);
  try {
    await gh.request('DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}', {
      ...repoRef(ctx.cfg),
      runner_id: r.id,
    });
  } catch (e) {
    if (httpStatus(e) === 404) return; // gone meanwhile: what we wanted
    throw explainGitHubError(e, `deleting the runner ${r.name} (id ${r.id}) of ${s.repo}`, s.repo, s.githubUrl);
  }
}

// ---- how they read and change the server ---------------------------------------------------------------------------

export type { RunnerSettings, Health } from '../lib/runners.mts';

/** The controller's ServiceAccount, named explicitly so the scale-set chart can bind its manager Role to it. */
export const CONTROLLER_SERVICE_ACCOUNT = 'arc-gha-rs-controller';
/** The key ARC reads a personal access token from (chart gha-runner-scale-set, "pre-defined secret"). */
export const TOKEN_KEY = 'github_token';
/** The chart refuses longer scale set names ("Name must have up to 45 characters"). */
export const MAX_SCALE_SET_NAME = 45;
/** The longest pause between two looks at the listener and the runner (the first come after 1, 2 and 4 s). */
const POLL_SECONDS = 5;

/** Local mode: one persistent runner, whatever MIN/MAX say (runners are ephemeral: "persistent" is min = max = 1). */
export function runnerCounts(s: RunnerSettings): { min: number; max: number; ignored?: string } {
  if (s.mode === 'server') return { min: s.min, max: s.max };
  const ignored =
    s.min !== 1 || s.max !== 1
      ? `local mode keeps exactly one runner: CODEXK8S_RUNNER_MIN=${s.min} / CODEXK8S_RUNNER_MAX=${s.max} are used in server mode only`
      : undefined;
  return { min: 1, max: 1, ...(ignored ? { ignored } : {}) };
}

export function scaleSetPin(s: RunnerSettings): ChartPin {
  return { ...ARC_SCALE_SET_CHART, release: s.scaleSetName, namespace: s.runnerNamespace };
}

const res = (cpu: string, memory: string, limit: string) => ({ requests: { cpu, memory }, limits: { memory: limit } });

/** The user-supplied values of the controller release; a change here is an upgrade on the next run. */
export function controllerValues(): Record<string, unknown> {
  return {
    serviceAccount: { create: true, name: CONTROLLER_SERVICE_ACCOUNT },
    resources: res('10m', '64Mi', '256Mi'),
  };
}

/**
 * The user-supplied values of the scale-set release. Container mode is left unset: the runner pod has the runner
 * container only, no docker-in-docker and nothing privileged; images are built by BuildKit running as a service in
 * the cluster (docs/runners.md). The token is referenced by Secret name, never put in values (helm keeps values in
 * the release and prints them with `helm get values`).
 */
/** The Secret that holds `token`: named after a short prefix of its sha256 (no use to anyone without the token). */
export function tokenSecretName(token: string): string {
  return `${NAMES.runnerGitHubSecret}-${sha256(token).slice(0, 10)}`;
}

export function scaleSetValues(s: RunnerSettings, secretName: string): Record<string, unknown> {
  if (s.scaleSetName.length > MAX_SCALE_SET_NAME) {
    throw new OperationError(
      `CODEXK8S_RUNNER_SCALE_SET_NAME "${s.scaleSetName}" has ${s.scaleSetName.length} characters; ARC allows at most ${MAX_SCALE_SET_NAME}`,
      { hint: 'choose a shorter name in .env and run again' },
    );
  }
  const { min, max } = runnerCounts(s);
  return {
    githubConfigUrl: githubConfigUrl(s.githubUrl, s.repo),
    githubConfigSecret: secretName,
    runnerScaleSetName: s.scaleSetName,
    minRunners: min,
    maxRunners: max,
    // Explicit, so the chart does not have to find the controller by looking around the cluster at install time.
    controllerServiceAccount: { namespace: ARC_CONTROLLER_CHART.namespace, name: CONTROLLER_SERVICE_ACCOUNT },
    template: {
      spec: {
        // Our ServiceAccount: the chart then creates none (its default one has no rights at all).
        serviceAccountName: NAMES.runnerServiceAccount,
        containers: [
          {
            name: 'runner',
            image: s.image,
            command: ['/home/runner/run.sh'],
            resources: res('100m', '256Mi', '2Gi'),
            // The runner image runs as its own non-root user; no sudo inside jobs, no added capabilities.
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          },
        ],
      },
    },
  };
}

export function rbacValues(s: RunnerSettings): Record<string, PlaceholderValue> {
  return { RUNNER_NAMESPACE: s.runnerNamespace, STAGING_NAMESPACE: s.stagingNamespace };
}

/** The runners' ServiceAccount, Role and RoleBinding (manifests/runner). */
export function runnerObjects(s: RunnerSettings): KubeObject[] {
  return render('runner', s.mode, rbacValues(s)).objects;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The Secret ARC reads the token from; `data` base64 like `get -o json` returns it. */
export function tokenSecret(namespace: string, token: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: tokenSecretName(token),
      namespace,
      labels: recommendedLabels(NAMES.runnerGitHubSecret, 'runners'),
      annotations: {
        'codex-k8s.io/source':
          '60_runner_arc from CODEXK8S_GITHUB_PAT; rotate: change it in .env and run the launcher (docs/github.md)',
      },
    },
    type: 'Opaque',
    data: { [TOKEN_KEY]: Buffer.from(token, 'utf8').toString('base64') },
  };
}

/** Drift of the live Secret (as `get -o json` returns it) against the token; compares hashes, prints no value. */
export function tokenSecretDrift(
  live: (KubeObject & { data?: Record<string, string> }) | undefined,
  token: string,
  namespace: string,
): string[] {
  const id = `Secret ${namespace}/${tokenSecretName(token)}`;
  if (live === undefined) return [`${id} does not exist (ARC reads the token from it)`];
  const stored = live.data?.[TOKEN_KEY];
  if (stored === undefined || stored === '') return [`${id} has no key ${TOKEN_KEY}`];
  return sha256(Buffer.from(stored, 'base64')) === sha256(token)
    ? []
    : [`${id}: ${TOKEN_KEY} is not the current CODEXK8S_GITHUB_PAT (sha256 differs)`];
}

async function requireNamespaces(s: RunnerSettings, ctx: StepContext): Promise<void> {
  const have = await existingNamespaces([s.runnerNamespace, s.stagingNamespace], ctx.log);
  const missing = [s.runnerNamespace, s.stagingNamespace].filter((n) => !have.has(n));
  if (missing.length > 0)
    throw new OperationError(`namespace ${missing.join(' and ')} does not exist`, {
      hint: 'the namespaces are created by 30_cluster_deps: run the launcher with --from 30',
    });
}

function token(ctx: StepContext): string {
  const t = ctx.cfg.get('CODEXK8S_GITHUB_PAT');
  registerSecret(t);
  return t;
}

async function readTokenSecret(s: RunnerSettings, t: string, ctx: StepContext) {
  return getJson<KubeObject & { data?: Record<string, string> }>(
    'secret',
    tokenSecretName(t),
    s.runnerNamespace,
    ctx.log,
  );
}

/** Token Secrets of earlier tokens (same name label, another name): deleted once the current one is in use. */
async function staleTokenSecrets(s: RunnerSettings, t: string, ctx: StepContext): Promise<string[]> {
  const r = await run(
    kubectlArgv(
      '-n',
      s.runnerNamespace,
      'get',
      'secret',
      '-l',
      `app.kubernetes.io/name=${NAMES.runnerGitHubSecret}`,
      '-o',
      'name',
    ),
    { allowFail: true, log: ctx.log },
  );
  if (r.exitCode !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.trim().replace(/^secret\//, ''))
    .filter((n) => n !== '' && n !== tokenSecretName(t));
}

// ---------------------------------------------------------------------------------------------------------------
// The step

async function waitForRunners(s: RunnerSettings, ctx: StepContext): Promise<string[]> {
  const timeout = ctx.cfg.get('CODEXK8S_ROLLOUT_TIMEOUT');
  const interval = backOff(POLL_SECONDS);
  const attempts = attemptsWithin(timeout, interval);
  const ready =
    s.mode === 'local'
      ? `listener Ready, a runner of ${s.scaleSetName} online in GitHub`
      : `listener Ready, scale set ${s.scaleSetName} registered in GitHub`;
  let problems: string[] = [];
  return pollUntil<string[]>(
    async (i) => {
      problems = healthProblems(s, await readHealth(s, ctx));
      return problems.length === 0
        ? { done: [`${ready} (attempt ${i}/${attempts})`] }
        : { waiting: problems.join('; ') };
    },
    {
      attempts,
      intervalSeconds: interval,
      what: `the runner scale set ${s.scaleSetName}`,
      onWait: (i, _reason, pause) =>
        ctx.log.info(`  .. waiting for the runners: ${problems[0]} (attempt ${i}/${attempts}, next look in ${pause}s)`),
      onTimeout: (last) =>
        new OperationError(
          `the runner scale set ${s.scaleSetName} is not ready after ${timeout}s (CODEXK8S_ROLLOUT_TIMEOUT): ${last}`,
          { hint: healthHint(s) },
        ),
    },
  );
}

if (import.meta.filename === process.argv[1]) await runStep('60_runner_arc', { check, apply, teardown });
