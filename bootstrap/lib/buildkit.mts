// BuildKit, the in-cluster image builder (manifests/buildkit): its objects, the crash-loop verdict on buildkitd-0,
// and the bounded wait that fails fast on a crash loop with buildkitd's own log lines.
import { pollUntil } from './poll.mts';
import type { Logger } from './log.mts';
import { OperationError } from './errors.mts';
import { run } from './exec.mts';
import { mask } from './redact.mts';
import { render, NAMES } from './manifests.mts';
import type { KubeObject, PlaceholderValue } from './manifests.mts';
import { getJson, kubectlArgv, podLogsArgv, rolloutStatusArgv, KUBECONFIG } from './kube.mts';
import {
  APPARMOR_PROFILE,
  isRestricted,
  readUsernsFacts,
  usernsDrift,
  usernsFixText,
  usernsRefusal,
  USERNS_SYSCTL,
} from './userns.mts';
import { IMAGES } from './versions.mts';
import { buildScriptsConfigMap, sha256Hex } from './build.mts';
import type { DeploySettings } from './service.mts';

export function buildkitValues(s: DeploySettings, script: string): Record<string, PlaceholderValue> {
  return {
    BUILDKIT_IMAGE: IMAGES.buildkit,
    BUILD_SCRIPT_SHA256: sha256Hex(script),
    REGISTRY_IN_CLUSTER: NAMES.registryInCluster,
    RUNNER_NAMESPACE: s.runnerNamespace,
  };
}

/** The ConfigMap first: the StatefulSet's pod mounts it. */
export function buildkitObjects(s: DeploySettings, script: string): KubeObject[] {
  const objects = render('buildkit', s.mode, buildkitValues(s, script)).objects;
  if (s.userns === 'apparmor') {
    // The manifest's Unconfined is replaced by the profile this step loads on the node (loaded name = localhostProfile).
    type Sts = KubeObject & { spec: { template: { spec: { containers: Array<Record<string, any>> } } } };
    const sts = objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === NAMES.buildkitStatefulSet) as Sts;
    const c = sts.spec.template.spec.containers.find((x) => x['name'] === NAMES.buildkitContainer);
    if (c === undefined) throw new Error(`manifests/buildkit has no container ${NAMES.buildkitContainer}`);
    c['securityContext'] = {
      ...c['securityContext'],
      appArmorProfile: { type: 'Localhost', localhostProfile: APPARMOR_PROFILE },
    };
  }
  return [buildScriptsConfigMap(script), ...objects];
}

interface ContainerStatusLike {
  name?: string;
  ready?: boolean;
  restartCount?: number;
  state?: {
    waiting?: { reason?: string; message?: string };
    running?: unknown;
    terminated?: { exitCode?: number; reason?: string };
  };
  lastState?: { terminated?: { exitCode?: number; reason?: string } };
}

/** Restarts of a container that is not ready, above which buildkitd-0 counts as crash-looping. */
export const BUILDKIT_MAX_RESTARTS = 2;
const START_FAILURES = ['CrashLoopBackOff', 'CreateContainerError', 'CreateContainerConfigError', 'RunContainerError'];

/**
 * Pure: why buildkitd-0 will not become ready however long we wait (undefined: it may still). `previous` says
 * whether its log is that of the instance that ran before (the current one is waiting to be restarted).
 */
export function buildkitPodProblem(
  pod: { status?: { containerStatuses?: ContainerStatusLike[] } } | undefined,
  maxRestarts = BUILDKIT_MAX_RESTARTS,
): { problem: string; previous: boolean } | undefined {
  const c = pod?.status?.containerStatuses?.find((x) => x.name === NAMES.buildkitContainer);
  if (c === undefined || c.ready === true) return undefined;
  const restarts = c.restartCount ?? 0;
  const last = c.lastState?.terminated;
  const lastText =
    last !== undefined ? `; last exit code ${last.exitCode ?? '?'}${last.reason ? ` (${last.reason})` : ''}` : '';
  const waiting = c.state?.waiting?.reason;
  if (waiting !== undefined && START_FAILURES.includes(waiting)) {
    const message = c.state?.waiting?.message ? `: ${c.state.waiting.message}` : '';
    return {
      problem: `is in ${waiting} (${restarts} restart(s)${lastText})${message}`,
      previous: restarts > 0 && last !== undefined,
    };
  }
  const term = c.state?.terminated;
  if (term !== undefined && (term.exitCode ?? 0) !== 0) {
    return {
      problem: `terminated with exit code ${term.exitCode}${term.reason ? ` (${term.reason})` : ''} after ${restarts} restart(s)`,
      previous: false,
    };
  }
  if (restarts > maxRestarts) {
    return {
      problem: `restarted ${restarts} times without becoming ready${lastText}`,
      previous: c.state?.running === undefined && last !== undefined,
    };
  }
  return undefined;
}

export function buildkitPodDeleteArgv(): string[] {
  return kubectlArgv('--namespace', NAMES.systemNamespace, 'delete', 'pod', NAMES.buildkitPod, '--timeout=60s');
}

/** The refusal (exit 2) when the kernel restricts user namespaces and no remedy is chosen, else the remedy's drift. */
export function usernsCheck(s: DeploySettings): string[] {
  const facts = readUsernsFacts();
  const refusal = usernsRefusal(facts, s.userns);
  if (refusal) throw refusal;
  return usernsDrift(facts, s.userns);
}

/** The error for a buildkitd-0 that will not start: buildkitd's own last log lines, and the fix. */
export async function buildkitCrashError(
  problem: { problem: string; previous: boolean },
  log: Logger,
): Promise<OperationError> {
  const ns = NAMES.systemNamespace;
  const r = await run(podLogsArgv(ns, NAMES.buildkitPod, NAMES.buildkitContainer, 30, problem.previous), {
    allowFail: true,
    timeoutSeconds: 60,
    log,
  });
  const logs =
    r.exitCode === 0 ? r.stdout.trim() : `(no log: ${(r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? ''})`;
  const facts = readUsernsFacts();
  const kernel =
    facts.restrict === undefined
      ? `${USERNS_SYSCTL} does not exist on this kernel`
      : `${USERNS_SYSCTL} is ${facts.restrict}`;
  const hint =
    isRestricted(facts) || /user namespace|newuidmap|operation not permitted|permission denied/i.test(logs)
      ? `${kernel}: ${usernsFixText()}`
      : `${kernel}; see the log above and docs/runbook.md; kubectl --kubeconfig ${KUBECONFIG} -n ${ns} describe pod ${NAMES.buildkitPod}`;
  return new OperationError(`${ns}/${NAMES.buildkitPod} ${problem.problem}`, {
    detail: `buildkitd's last log lines (kubectl logs ${NAMES.buildkitPod}${problem.previous ? ' --previous' : ''}):\n${mask(logs)}`,
    hint,
  });
}

/**
 * Bounded wait for buildkitd-0 that fails fast when it crash-loops instead of waiting out the timeout. A pod that
 * crash-looped before this run fixed its cause (the remedy changed something, or its revision is not the
 * StatefulSet's current one) is deleted once: the StatefulSet controller does not replace a broken pod by itself
 * (Kubernetes' "forced rollback"), and a crash loop's back-off would otherwise keep the old failure for minutes.
 */
export async function waitForBuildkit(s: DeploySettings, log: Logger, remedyChanged: boolean): Promise<string[]> {
  const ns = NAMES.systemNamespace;
  const deadline = Date.now() + s.rolloutTimeout * 1000;
  const changes: string[] = [];
  let restarted = false;
  let lookStarted = 0;
  return pollUntil<string[]>(
    async () => {
      lookStarted = Date.now();
      const pod = await getJson<KubeObject & { status?: { containerStatuses?: [] } }>(
        'pod',
        NAMES.buildkitPod,
        ns,
        log,
      );
      // A terminating pod (the one deleted below, on its way out) says nothing about its replacement.
      const problem =
        (pod?.metadata as { deletionTimestamp?: string } | undefined)?.deletionTimestamp !== undefined
          ? undefined
          : buildkitPodProblem(pod);
      if (problem !== undefined) {
        const sts = await getJson<KubeObject & { status?: { updateRevision?: string } }>(
          'statefulset',
          NAMES.buildkitStatefulSet,
          ns,
          log,
        );
        const stale = pod?.metadata.labels?.['controller-revision-hash'] !== sts?.status?.updateRevision;
        if (restarted || !(remedyChanged || stale)) throw await buildkitCrashError(problem, log);
        log.info(
          `  .. ${NAMES.buildkitPod} ${problem.problem}; it started before this fix: deleting it once so the StatefulSet starts it again`,
        );
        // kubectl waits until the pod is gone (--timeout bounds it), so the next look sees its replacement.
        await run(buildkitPodDeleteArgv(), { timeoutSeconds: 90, log });
        changes.push(
          `pod ${ns}/${NAMES.buildkitPod} deleted: it crash-looped from before (the StatefulSet recreates it)`,
        );
        restarted = true;
      }
      const left = Math.ceil((deadline - Date.now()) / 1000);
      const slice = Math.max(1, Math.min(10, left));
      const r = await run(rolloutStatusArgv('statefulset', NAMES.buildkitStatefulSet, ns, slice), {
        allowFail: true,
        timeoutSeconds: slice + 30,
        log,
      });
      if (r.exitCode === 0) return { done: changes };
      return { waiting: mask((r.stdout.trim().split('\n').slice(-1)[0] ?? '') || r.stderr.trim()) };
    },
    {
      timeoutSeconds: s.rolloutTimeout,
      // kubectl returns at once when it cannot wait (an error): the next look comes 3 s after this one began.
      intervalSeconds: () => Math.max(0, 3000 - (Date.now() - lookStarted)) / 1000,
      what: `statefulset ${ns}/${NAMES.buildkitStatefulSet}`,
      onWait: (attempt, last) => {
        if (attempt % 3 === 0)
          log.info(
            `  .. waiting for ${ns}/${NAMES.buildkitPod} (${Math.ceil((deadline - Date.now()) / 1000)}s left): ${last}`,
          );
      },
      onTimeout: (last) =>
        new OperationError(
          `statefulset ${ns}/${NAMES.buildkitStatefulSet} did not become ready within ${s.rolloutTimeout}s (last: ${last})`,
          {
            hint:
              `kubectl --kubeconfig ${KUBECONFIG} -n ${ns} describe pod ${NAMES.buildkitPod}; ` +
              `kubectl --kubeconfig ${KUBECONFIG} -n ${ns} logs ${NAMES.buildkitPod} --tail=50`,
          },
        ),
    },
  );
}
