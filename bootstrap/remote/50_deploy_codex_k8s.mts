#!/opt/codex-k8s-bootstrap/node/bin/node --
// 50_deploy_codex_k8s: the codex-k8s staging service, and the in-cluster image builder the deploy loop uses.
//
//   1. the runtime Secret codex-k8s-runtime (staging namespace, key github-webhook-secret): made once from
//      REMOTE.webhookSecretFile (generated there on first use, shared with 70_github_repo), then compared with
//      that file on every run; a file rotated by hand (docs/runbook.md) is copied into the Secret.
//   2. BuildKit (manifests/buildkit, system namespace), after its user namespace is allowed (lib/userns.mts,
//      CODEXK8S_BUILDKIT_USERNS; refused with exit 2 on a restricting kernel without it): the StatefulSet buildkitd, the ConfigMap buildkit-scripts
//      made from manifests/buildkit/build.sh, and the Role that lets the runners exec into buildkitd-0 only. A
//      crash-looping buildkitd-0 fails the step at once, with buildkitd's own last log lines and the fix.
//   3. the image. Only while the Deployment does not exist: the uploaded app/ is streamed as a tar to build.sh in
//      buildkitd-0 (`kubectl exec -i`), tagged sha-<12> from source.json, pushed to the in-cluster registry.
//      Once the Deployment exists its image belongs to the staging-deploy workflow: this step applies the live
//      image again, so re-running the bootstrap never rolls staging back to the laptop's commit.
//   4. manifests/app (Deployment, Service, Ingress for the mode), then a bounded wait for the rollout and a check
//      that the pods run the wanted image.
// A converged re-run only reads (kubectl diff/get): no build, no apply, no rollout.
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStep, changeList } from '../lib/step.mts';
import { pollUntil } from '../lib/poll.mts';
import type { StepContext } from '../lib/step.mts';
import type { Logger } from '../lib/log.mts';
import { OperationError } from '../lib/errors.mts';
import { run } from '../lib/exec.mts';
import { mask, registerSecret } from '../lib/redact.mts';
import { render, NAMES, recommendedLabels, appImageTag, describeObject } from '../lib/manifests.mts';
import type { KubeObject, Mode, PlaceholderValue } from '../lib/manifests.mts';
import {
  objectsDrift, applyObjects, getJson, existingNamespaces, readSecret, rolloutStatus, kubectlArgv, podLogsArgv, rolloutStatusArgv, KUBECONFIG,
} from '../lib/kube.mts';
import {
  APPARMOR_PROFILE, applyUsernsRemedy, isRestricted, readUsernsFacts, usernsDrift, usernsFixText, usernsRefusal, USERNS_SYSCTL,
} from '../lib/userns.mts';
import type { UsernsRemedy } from '../lib/userns.mts';
import { IMAGES } from '../lib/versions.mts';
import { REMOTE } from '../lib/paths.mts';
import { readOrCreateSecretFile } from '../lib/github.mts';
import {
  buildExecArgv, buildScriptText, buildScriptsConfigMap, chooseImage, contextTarArgv, parseBuildOutput, parseSourceJson, pushRef, sha256Hex,
} from '../lib/build.mts';
import type { BuildOutcome, SourceInfo } from '../lib/build.mts';

/** The key of the runtime Secret, and so the file name under /var/run/secrets/codex-k8s in the pod. */
export const WEBHOOK_SECRET_KEY = 'github-webhook-secret';

export interface DeploySettings {
  mode: Mode;
  stagingNamespace: string;
  runnerNamespace: string;
  registryPort: number;
  domain?: string;
  rolloutTimeout: number;
  buildTimeout: number;
  /** CODEXK8S_BUILDKIT_USERNS: apparmor puts buildkitd-0 under our Localhost profile. */
  userns?: UsernsRemedy;
}

export function settingsFrom(ctx: StepContext): DeploySettings {
  const c = ctx.cfg;
  const mode = c.get('CODEXK8S_MODE');
  return {
    mode,
    stagingNamespace: c.get('CODEXK8S_STAGING_NAMESPACE'),
    runnerNamespace: c.get('CODEXK8S_RUNNER_NAMESPACE'),
    registryPort: c.get('CODEXK8S_INTERNAL_REGISTRY_PORT'),
    domain: mode === 'server' ? c.get('CODEXK8S_STAGING_DOMAIN') : undefined,
    rolloutTimeout: c.get('CODEXK8S_ROLLOUT_TIMEOUT'),
    buildTimeout: c.get('CODEXK8S_BUILD_TIMEOUT'),
    userns: c.maybe('CODEXK8S_BUILDKIT_USERNS'),
  };
}

export function buildkitValues(s: DeploySettings, script: string): Record<string, PlaceholderValue> {
  return { BUILDKIT_IMAGE: IMAGES.buildkit, BUILD_SCRIPT_SHA256: sha256Hex(script), REGISTRY_IN_CLUSTER: NAMES.registryInCluster, RUNNER_NAMESPACE: s.runnerNamespace };
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
    c['securityContext'] = { ...c['securityContext'], appArmorProfile: { type: 'Localhost', localhostProfile: APPARMOR_PROFILE } };
  }
  return [buildScriptsConfigMap(script), ...objects];
}

interface ContainerStatusLike {
  name?: string;
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string; message?: string }; running?: unknown; terminated?: { exitCode?: number; reason?: string } };
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
  pod: { status?: { containerStatuses?: ContainerStatusLike[] } } | undefined, maxRestarts = BUILDKIT_MAX_RESTARTS,
): { problem: string; previous: boolean } | undefined {
  const c = pod?.status?.containerStatuses?.find((x) => x.name === NAMES.buildkitContainer);
  if (c === undefined || c.ready === true) return undefined;
  const restarts = c.restartCount ?? 0;
  const last = c.lastState?.terminated;
  const lastText = last !== undefined ? `; last exit code ${last.exitCode ?? '?'}${last.reason ? ` (${last.reason})` : ''}` : '';
  const waiting = c.state?.waiting?.reason;
  if (waiting !== undefined && START_FAILURES.includes(waiting)) {
    const message = c.state?.waiting?.message ? `: ${c.state.waiting.message}` : '';
    return { problem: `is in ${waiting} (${restarts} restart(s)${lastText})${message}`, previous: restarts > 0 && last !== undefined };
  }
  const term = c.state?.terminated;
  if (term !== undefined && (term.exitCode ?? 0) !== 0) {
    return { problem: `terminated with exit code ${term.exitCode}${term.reason ? ` (${term.reason})` : ''} after ${restarts} restart(s)`, previous: false };
  }
  if (restarts > maxRestarts) {
    return { problem: `restarted ${restarts} times without becoming ready${lastText}`, previous: c.state?.running === undefined && last !== undefined };
  }
  return undefined;
}

export function appValues(s: DeploySettings, image: string): Record<string, PlaceholderValue> {
  const v: Record<string, PlaceholderValue> = { STAGING_NAMESPACE: s.stagingNamespace, APP_IMAGE: image };
  if (s.mode === 'server') {
    if (s.domain === undefined) throw new Error('server mode needs CODEXK8S_STAGING_DOMAIN (the config schema requires it)');
    v['STAGING_DOMAIN'] = s.domain;
  }
  return v;
}

export function appObjects(s: DeploySettings, image: string): KubeObject[] {
  return render('app', s.mode, appValues(s, image)).objects;
}

/** The runtime Secret, value base64-encoded in `data` (what `get -o json` returns, so a read-back compares). */
export function runtimeSecret(namespace: string, webhookSecret: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: NAMES.appRuntimeSecret,
      namespace,
      labels: recommendedLabels(NAMES.app, 'web'),
      annotations: { 'codex-k8s.io/source': `${REMOTE.webhookSecretFile} on the server (50_deploy_codex_k8s copies it here; rotate the file, then run the step)` },
    },
    type: 'Opaque',
    data: { [WEBHOOK_SECRET_KEY]: Buffer.from(webhookSecret, 'utf8').toString('base64') },
  };
}

/** Drift of the runtime Secret against the file; `fileValue` undefined: the file does not exist yet. */
export function runtimeSecretDrift(namespace: string, fileValue: string | undefined, secret: Readonly<Record<string, string>> | undefined): string[] {
  const id = `Secret ${namespace}/${NAMES.appRuntimeSecret}`;
  const out: string[] = [];
  if (fileValue === undefined) out.push(`${REMOTE.webhookSecretFile} does not exist (the webhook secret is generated once)`);
  if (secret === undefined) out.push(`${id} does not exist`);
  else if (fileValue !== undefined && secret[WEBHOOK_SECRET_KEY] !== fileValue) out.push(`${id}: ${WEBHOOK_SECRET_KEY} differs from ${REMOTE.webhookSecretFile}`);
  return out;
}

interface DeploymentLike extends KubeObject {
  spec?: { replicas?: number };
  status?: { observedGeneration?: number; replicas?: number; updatedReplicas?: number; availableReplicas?: number; readyReplicas?: number };
}

/** Whether a live Deployment has finished rolling out its current template (what `rollout status` waits for). */
export function deploymentHealth(d: DeploymentLike): string[] {
  const want = d.spec?.replicas ?? 1;
  const st = d.status ?? {};
  const id = `Deployment ${d.metadata.namespace ?? ''}/${d.metadata.name}`;
  const gen = (d.metadata as { generation?: number }).generation ?? 0;
  if ((st.observedGeneration ?? 0) < gen) return [`${id}: the controller has not seen generation ${gen} yet`];
  const updated = st.updatedReplicas ?? 0;
  const available = st.availableReplicas ?? 0;
  const total = st.replicas ?? 0;
  if (updated < want || available < want || total > updated) return [`${id} is not rolled out (${updated}/${want} updated, ${available}/${want} available, ${total - updated} old pod(s) left)`];
  return [];
}

interface PodLike {
  metadata: { name: string; deletionTimestamp?: string };
  spec?: { containers?: Array<{ name?: string; image?: string }> };
  status?: { containerStatuses?: Array<{ name?: string; ready?: boolean }> };
}

/** Pods of the Deployment that do not run `image` (ready) in the app container; terminating pods are ignored. */
export function podImageDrift(pods: readonly PodLike[], image: string): string[] {
  const out: string[] = [];
  for (const p of pods) {
    if (p.metadata.deletionTimestamp !== undefined) continue;
    const c = p.spec?.containers?.find((x) => x.name === NAMES.appContainer);
    if (c?.image !== image) out.push(`pod ${p.metadata.name} runs ${c?.image ?? 'no app container'}, want ${image}`);
    else if (p.status?.containerStatuses?.find((x) => x.name === NAMES.appContainer)?.ready !== true) out.push(`pod ${p.metadata.name} runs ${image} but is not ready`);
  }
  return out;
}

export function appPodsArgv(namespace: string): string[] {
  return kubectlArgv('--namespace', namespace, 'get', 'pods', '-l', `app.kubernetes.io/name=${NAMES.app},app.kubernetes.io/instance=${NAMES.app}`, '-o', 'json');
}

export function buildkitPodDeleteArgv(): string[] {
  return kubectlArgv('--namespace', NAMES.systemNamespace, 'delete', 'pod', NAMES.buildkitPod, '--timeout=60s');
}

// ---------------------------------------------------------------------------------------------------------------

/** The refusal (exit 2) when the kernel restricts user namespaces and no remedy is chosen, else the remedy's drift. */
function usernsCheck(s: DeploySettings): string[] {
  const facts = readUsernsFacts();
  const refusal = usernsRefusal(facts, s.userns);
  if (refusal) throw refusal;
  return usernsDrift(facts, s.userns);
}

/** The error for a buildkitd-0 that will not start: buildkitd's own last log lines, and the fix. */
async function buildkitCrashError(problem: { problem: string; previous: boolean }, log: Logger): Promise<OperationError> {
  const ns = NAMES.systemNamespace;
  const r = await run(podLogsArgv(ns, NAMES.buildkitPod, NAMES.buildkitContainer, 30, problem.previous), { allowFail: true, timeoutSeconds: 60, log });
  const logs = r.exitCode === 0 ? r.stdout.trim() : `(no log: ${(r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? ''})`;
  const facts = readUsernsFacts();
  const kernel = facts.restrict === undefined ? `${USERNS_SYSCTL} does not exist on this kernel` : `${USERNS_SYSCTL} is ${facts.restrict}`;
  const hint = isRestricted(facts) || /user namespace|newuidmap|operation not permitted|permission denied/i.test(logs)
    ? `${kernel}: ${usernsFixText()}`
    : `${kernel}; see the log above and docs/runbook.md; kubectl --kubeconfig ${KUBECONFIG} -n ${ns} describe pod ${NAMES.buildkitPod}`;
  return new OperationError(`${ns}/${NAMES.buildkitPod} ${problem.problem}`, {
    detail: `buildkitd's last log lines (kubectl logs ${NAMES.buildkitPod}${problem.previous ? ' --previous' : ''}):\n${mask(logs)}`, hint,
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
  return pollUntil<string[]>(async () => {
    lookStarted = Date.now();
    const pod = await getJson<KubeObject & { status?: { containerStatuses?: [] } }>('pod', NAMES.buildkitPod, ns, log);
    // A terminating pod (the one deleted below, on its way out) says nothing about its replacement.
    const problem = (pod?.metadata as { deletionTimestamp?: string } | undefined)?.deletionTimestamp !== undefined ? undefined : buildkitPodProblem(pod);
    if (problem !== undefined) {
      const sts = await getJson<KubeObject & { status?: { updateRevision?: string } }>('statefulset', NAMES.buildkitStatefulSet, ns, log);
      const stale = pod?.metadata.labels?.['controller-revision-hash'] !== sts?.status?.updateRevision;
      if (restarted || !(remedyChanged || stale)) throw await buildkitCrashError(problem, log);
      log.info(`  .. ${NAMES.buildkitPod} ${problem.problem}; it started before this fix: deleting it once so the StatefulSet starts it again`);
      // kubectl waits until the pod is gone (--timeout bounds it), so the next look sees its replacement.
      await run(buildkitPodDeleteArgv(), { timeoutSeconds: 90, log });
      changes.push(`pod ${ns}/${NAMES.buildkitPod} deleted: it crash-looped from before (the StatefulSet recreates it)`);
      restarted = true;
    }
    const left = Math.ceil((deadline - Date.now()) / 1000);
    const slice = Math.max(1, Math.min(10, left));
    const r = await run(rolloutStatusArgv('statefulset', NAMES.buildkitStatefulSet, ns, slice), { allowFail: true, timeoutSeconds: slice + 30, log });
    if (r.exitCode === 0) return { done: changes };
    return { waiting: mask((r.stdout.trim().split('\n').slice(-1)[0] ?? '') || r.stderr.trim()) };
  }, {
    timeoutSeconds: s.rolloutTimeout,
    // kubectl returns at once when it cannot wait (an error): the next look comes 3 s after this one began.
    intervalSeconds: () => Math.max(0, 3000 - (Date.now() - lookStarted)) / 1000,
    what: `statefulset ${ns}/${NAMES.buildkitStatefulSet}`,
    onWait: (attempt, last) => {
      if (attempt % 3 === 0) log.info(`  .. waiting for ${ns}/${NAMES.buildkitPod} (${Math.ceil((deadline - Date.now()) / 1000)}s left): ${last}`);
    },
    onTimeout: (last) => new OperationError(`statefulset ${ns}/${NAMES.buildkitStatefulSet} did not become ready within ${s.rolloutTimeout}s (last: ${last})`, {
      hint: `kubectl --kubeconfig ${KUBECONFIG} -n ${ns} describe pod ${NAMES.buildkitPod}; ` +
        `kubectl --kubeconfig ${KUBECONFIG} -n ${ns} logs ${NAMES.buildkitPod} --tail=50`,
    }),
  });
}

async function requireNamespaces(s: DeploySettings, ctx: StepContext): Promise<void> {
  const want = [NAMES.systemNamespace, s.stagingNamespace];
  const have = await existingNamespaces(want, ctx.log);
  const missing = want.filter((n) => !have.has(n));
  if (missing.length > 0) throw new OperationError(`namespace ${missing.join(' and ')} does not exist`, { hint: 'it is created by 30_cluster_deps: run the launcher with --from 30' });
}

function readSource(): SourceInfo {
  if (!existsSync(REMOTE.sourceFile)) {
    throw new OperationError(`${REMOTE.sourceFile} does not exist: the first image is tagged with the commit the uploaded app/ comes from`, {
      hint: 'run the launcher from a clean git checkout (it writes the file with the upload), then this step again',
    });
  }
  return parseSourceJson(readFileSync(REMOTE.sourceFile, 'utf8'), REMOTE.sourceFile);
}

async function podsDrift(s: DeploySettings, image: string, ctx: StepContext): Promise<string[]> {
  const r = await run(appPodsArgv(s.stagingNamespace), { allowFail: true, timeoutSeconds: 60, log: ctx.log });
  if (r.exitCode !== 0) throw new OperationError(`cannot list the pods of Deployment ${s.stagingNamespace}/${NAMES.app}`, { detail: mask(r.stderr.trim()) });
  const list = JSON.parse(r.stdout) as { items?: PodLike[] };
  return podImageDrift(list.items ?? [], image).map((d) => `Deployment ${s.stagingNamespace}/${NAMES.app}: ${d}`);
}

/** Builds and pushes the uploaded app/ at `gitSha` in buildkitd-0 (a no-op when the tag is in the registry). */
async function buildImage(s: DeploySettings, gitSha: string, ctx: StepContext): Promise<BuildOutcome> {
  const tag = appImageTag(gitSha);
  if (!existsSync(join(REMOTE.app, 'Dockerfile'))) {
    throw new OperationError(`${REMOTE.app}/Dockerfile does not exist: nothing to build the first image from`, { hint: 'run the launcher: it uploads app/ with the tree' });
  }
  const dir = mkdtempSync(join(tmpdir(), 'codex-k8s-context-'));
  try {
    const tar = join(dir, 'context.tar');
    await run(contextTarArgv(REMOTE.app, tar), { timeoutSeconds: 120, log: ctx.log });
    ctx.log.info(`  .. building ${pushRef(tag)} in ${NAMES.systemNamespace}/${NAMES.buildkitPod} (up to ${s.buildTimeout}s; --verbose shows BuildKit's progress)`);
    const r = await run(buildExecArgv(gitSha), {
      input: createReadStream(tar),
      allowFail: true,
      timeoutSeconds: s.buildTimeout,
      log: ctx.log,
      onStderrLine: (line) => ctx.log.detail(`  | ${line}`),
    });
    if (r.exitCode !== 0) {
      throw new OperationError(`the build of ${tag} in ${NAMES.buildkitPod} failed (build.sh exited ${r.exitCode})`, {
        detail: mask(r.stderr.trim().split('\n').slice(-25).join('\n')),
        hint: `kubectl --kubeconfig ${KUBECONFIG} -n ${NAMES.systemNamespace} logs ${NAMES.buildkitPod} --tail=50; fix app/ (or the registry, 30_cluster_deps), then run this step again`,
      });
    }
    return parseBuildOutput(r.stdout, tag);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function check(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  const drift: string[] = usernsCheck(s);
  await requireNamespaces(s, ctx);

  // A file others can read is drift (apply tightens it to 0600), not an error that would stop the step here.
  const mode = existsSync(REMOTE.webhookSecretFile) ? statSync(REMOTE.webhookSecretFile).mode & 0o777 : undefined;
  const secret = await readSecret(s.stagingNamespace, NAMES.appRuntimeSecret, [WEBHOOK_SECRET_KEY], ctx.log);
  if (mode !== undefined && (mode & 0o077) !== 0) {
    drift.push(`${REMOTE.webhookSecretFile} is readable by other users (mode 0${mode.toString(8)}), want 0600`);
    if (secret === undefined) drift.push(`Secret ${s.stagingNamespace}/${NAMES.appRuntimeSecret} does not exist`);
  } else {
    const file = await readOrCreateSecretFile(REMOTE.webhookSecretFile, false);
    drift.push(...runtimeSecretDrift(s.stagingNamespace, file?.value, secret));
  }

  const bk = await objectsDrift(buildkitObjects(s, buildScriptText()), ctx.log);
  drift.push(...bk);
  if (!bk.some((d) => d.startsWith(`StatefulSet ${NAMES.systemNamespace}/${NAMES.buildkitStatefulSet} `))) {
    const sts = await getJson<KubeObject & { status?: { readyReplicas?: number } }>('statefulset', NAMES.buildkitStatefulSet, NAMES.systemNamespace, ctx.log);
    if (sts !== undefined && (sts.status?.readyReplicas ?? 0) < 1) drift.push(`StatefulSet ${NAMES.systemNamespace}/${NAMES.buildkitStatefulSet} is not ready (0/1)`);
  }

  const live = await getJson<DeploymentLike>('deployment', NAMES.app, s.stagingNamespace, ctx.log);
  const choice = chooseImage(live, s.registryPort, live === undefined ? readSource().gitSha : undefined);
  const objects = appObjects(s, choice.image);
  const appDrift = await objectsDrift(objects, ctx.log);
  if (live === undefined) {
    const dep = objects.find((o) => o.kind === 'Deployment') as KubeObject;
    drift.push(...appDrift.map((d) => (d.startsWith(`${describeObject(dep)} `) ? `${d} (${choice.why})` : d)));
  } else {
    drift.push(...appDrift);
    if (!appDrift.some((d) => d.startsWith(`Deployment ${s.stagingNamespace}/${NAMES.app} `))) {
      const health = deploymentHealth(live);
      drift.push(...health);
      if (health.length === 0) drift.push(...(await podsDrift(s, choice.image, ctx)));
    }
  }
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  usernsCheck(s);
  await requireNamespaces(s, ctx);
  const changes = changeList(ctx);
  const secretId = `Secret ${s.stagingNamespace}/${NAMES.appRuntimeSecret}`;

  // 1. The runtime Secret, from the one webhook secret file.
  const looseMode = existsSync(REMOTE.webhookSecretFile) ? statSync(REMOTE.webhookSecretFile).mode & 0o077 : 0;
  const file = await readOrCreateSecretFile(REMOTE.webhookSecretFile, true);
  if (file === undefined) throw new Error('readOrCreateSecretFile(create) returned nothing');
  if (looseMode !== 0) changes.push(`${REMOTE.webhookSecretFile} made 0600 (it was readable by other users)`);
  registerSecret(file.value);
  if (file.created) changes.push(`${REMOTE.webhookSecretFile} generated (0600; the webhook secret, kept from now on)`);
  const secret = await readSecret(s.stagingNamespace, NAMES.appRuntimeSecret, [WEBHOOK_SECRET_KEY], ctx.log);
  if (secret === undefined || secret[WEBHOOK_SECRET_KEY] !== file.value) {
    await applyObjects([runtimeSecret(s.stagingNamespace, file.value)], ctx.log, { what: secretId, serverSide: true });
    changes.push(secret === undefined
      ? `${secretId} created from ${REMOTE.webhookSecretFile}`
      : `${secretId} updated: ${WEBHOOK_SECRET_KEY} now matches ${REMOTE.webhookSecretFile} (the file was rotated); the service re-reads it within a minute, no restart`);
  }

  // 2. BuildKit, ready before anything is built: its user namespace allowed first (the pod names the AppArmor profile).
  const userns = await applyUsernsRemedy(s.userns, ctx.log);
  changes.push(...userns);
  changes.push(...(await applyObjects(buildkitObjects(s, buildScriptText()), ctx.log)));
  changes.push(...(await waitForBuildkit(s, ctx.log, userns.length > 0)));

  // 3. The image: built only for a Deployment that does not exist yet.
  const live = await getJson<DeploymentLike>('deployment', NAMES.app, s.stagingNamespace, ctx.log);
  const source = live === undefined ? readSource() : undefined;
  const choice = chooseImage(live, s.registryPort, source?.gitSha);
  if (choice.build && source !== undefined) {
    const outcome = await buildImage(s, source.gitSha, ctx);
    if (outcome.status === 'pushed') changes.push(`image ${outcome.ref} built from the uploaded app/ (git ${source.gitSha.slice(0, 12)}) and pushed`);
    else ctx.log.info(`  = image ${outcome.ref} is already in the registry (not rebuilt)`);
  } else {
    ctx.log.info(`  = image ${choice.image}: ${choice.why}`);
  }

  // 4. The service, then a bounded wait and the pods' image.
  changes.push(...(await applyObjects(appObjects(s, choice.image), ctx.log)));
  await rolloutStatus('deployment', NAMES.app, s.stagingNamespace, s.rolloutTimeout, ctx.log);
  const pods = await podsDrift(s, choice.image, ctx);
  if (pods.length > 0) {
    throw new OperationError(`the rollout finished but ${pods.join('; ')}`, {
      hint: `kubectl --kubeconfig ${KUBECONFIG} -n ${s.stagingNamespace} get pods -l app.kubernetes.io/name=${NAMES.app} -o wide; kubectl --kubeconfig ${KUBECONFIG} -n ${s.stagingNamespace} describe deployment ${NAMES.app}`,
    });
  }
  return changes;
}

if (import.meta.filename === process.argv[1]) await runStep('50_deploy_codex_k8s', { check, apply });
