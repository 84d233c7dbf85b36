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
import type { StepContext, Teardown } from '../lib/step.mts';
import { OperationError } from '../lib/errors.mts';
import { run } from '../lib/exec.mts';
import { mask, registerSecret } from '../lib/redact.mts';
import { NAMES, appImageTag, describeObject } from '../lib/manifests.mts';
import type { KubeObject } from '../lib/manifests.mts';
import {
  objectsDrift,
  applyObjects,
  getJson,
  existingNamespaces,
  readSecret,
  rolloutStatus,
  deleteArgv,
  KUBECONFIG,
} from '../lib/kube.mts';
import { applyUsernsRemedy, readUsernsFacts, removeUsernsRemedy, usernsLeftovers } from '../lib/userns.mts';
import { clusterAnswers } from '../lib/teardown.mts';
import { REMOTE } from '../lib/paths.mts';
import { readOrCreateSecretFile } from '../lib/github/wiring.mts';
import {
  buildExecArgv,
  buildScriptText,
  chooseImage,
  contextTarArgv,
  parseBuildOutput,
  parseSourceJson,
  pushRef,
} from '../lib/build.mts';
import type { BuildOutcome, SourceInfo } from '../lib/build.mts';
import {
  WEBHOOK_SECRET_KEY,
  appObjects,
  appPodsArgv,
  deploymentHealth,
  podImageDrift,
  runtimeSecret,
  runtimeSecretDrift,
  settingsFrom,
} from '../lib/service.mts';
import type { DeploySettings, DeploymentLike, PodLike } from '../lib/service.mts';
import { buildkitObjects, usernsCheck, waitForBuildkit } from '../lib/buildkit.mts';

// ---- check / apply --------------------------------------------------------------------------------------------------

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
    const sts = await getJson<KubeObject & { status?: { readyReplicas?: number } }>(
      'statefulset',
      NAMES.buildkitStatefulSet,
      NAMES.systemNamespace,
      ctx.log,
    );
    if (sts !== undefined && (sts.status?.readyReplicas ?? 0) < 1)
      drift.push(`StatefulSet ${NAMES.systemNamespace}/${NAMES.buildkitStatefulSet} is not ready (0/1)`);
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
    changes.push(
      secret === undefined
        ? `${secretId} created from ${REMOTE.webhookSecretFile}`
        : `${secretId} updated: ${WEBHOOK_SECRET_KEY} now matches ${REMOTE.webhookSecretFile} (the file was rotated); the service re-reads it within a minute, no restart`,
    );
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
    if (outcome.status === 'pushed')
      changes.push(`image ${outcome.ref} built from the uploaded app/ (git ${source.gitSha.slice(0, 12)}) and pushed`);
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

// ---- --uninstall: stop serving, then the host files; the rest of the cluster goes with k3s (20_install_k3s) ------

const teardown: Teardown = {
  async check(ctx) {
    const s = settingsFrom(ctx);
    const left: string[] = [];
    if (await clusterAnswers(ctx.log))
      for (const [kind, id] of await servingObjects(s, ctx))
        left.push(`${kind} ${s.stagingNamespace}/${id} (stops serving first)`);
    return [...left, ...usernsLeftovers(readUsernsFacts())];
  },
  async apply(ctx) {
    const s = settingsFrom(ctx);
    const changes = changeList(ctx);
    if (await clusterAnswers(ctx.log)) {
      const there = await servingObjects(s, ctx);
      if (there.length > 0) {
        const r = await run(
          deleteArgv(
            s.stagingNamespace,
            there.map(([kind, name]) => `${kind.toLowerCase()}/${name}`),
            s.rolloutTimeout,
          ),
          { allowFail: true, timeoutSeconds: s.rolloutTimeout + 30, log: ctx.log },
        );
        if (r.exitCode !== 0)
          throw new OperationError(
            `cannot delete the service's ${there.map(([k]) => k).join(' and ')} in ${s.stagingNamespace}`,
            {
              detail: mask((r.stderr || r.stdout).trim().split('\n').slice(-10).join('\n')),
              hint: `kubectl --kubeconfig ${KUBECONFIG} -n ${s.stagingNamespace} get ingress,deployment; then --uninstall again`,
            },
          );
        for (const [kind, name] of there) changes.push(`${kind} ${s.stagingNamespace}/${name} deleted`);
      }
    }
    changes.push(...(await removeUsernsRemedy(ctx.log)));
    return changes;
  },
};

/** The Ingress (first: no more traffic to a going service) and the Deployment, those of them that exist. */
async function servingObjects(s: DeploySettings, ctx: StepContext): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const kind of ['Ingress', 'Deployment'])
    if ((await getJson(kind.toLowerCase(), NAMES.app, s.stagingNamespace, ctx.log)) !== undefined)
      out.push([kind, NAMES.app]);
  return out;
}

// ---- how they read and change the server ---------------------------------------------------------------------------

async function requireNamespaces(s: DeploySettings, ctx: StepContext): Promise<void> {
  const want = [NAMES.systemNamespace, s.stagingNamespace];
  const have = await existingNamespaces(want, ctx.log);
  const missing = want.filter((n) => !have.has(n));
  if (missing.length > 0)
    throw new OperationError(`namespace ${missing.join(' and ')} does not exist`, {
      hint: 'it is created by 30_cluster_deps: run the launcher with --from 30',
    });
}

function readSource(): SourceInfo {
  if (!existsSync(REMOTE.sourceFile)) {
    throw new OperationError(
      `${REMOTE.sourceFile} does not exist: the first image is tagged with the commit the uploaded app/ comes from`,
      {
        hint: 'run the launcher from a clean git checkout (it writes the file with the upload), then this step again',
      },
    );
  }
  return parseSourceJson(readFileSync(REMOTE.sourceFile, 'utf8'), REMOTE.sourceFile);
}

async function podsDrift(s: DeploySettings, image: string, ctx: StepContext): Promise<string[]> {
  const r = await run(appPodsArgv(s.stagingNamespace), { allowFail: true, timeoutSeconds: 60, log: ctx.log });
  if (r.exitCode !== 0)
    throw new OperationError(`cannot list the pods of Deployment ${s.stagingNamespace}/${NAMES.app}`, {
      detail: mask(r.stderr.trim()),
    });
  const list = JSON.parse(r.stdout) as { items?: PodLike[] };
  return podImageDrift(list.items ?? [], image).map((d) => `Deployment ${s.stagingNamespace}/${NAMES.app}: ${d}`);
}

/** Builds and pushes the uploaded app/ at `gitSha` in buildkitd-0 (a no-op when the tag is in the registry). */
async function buildImage(s: DeploySettings, gitSha: string, ctx: StepContext): Promise<BuildOutcome> {
  const tag = appImageTag(gitSha);
  if (!existsSync(join(REMOTE.app, 'Dockerfile'))) {
    throw new OperationError(`${REMOTE.app}/Dockerfile does not exist: nothing to build the first image from`, {
      hint: 'run the launcher: it uploads app/ with the tree',
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'codex-k8s-context-'));
  try {
    const tar = join(dir, 'context.tar');
    await run(contextTarArgv(REMOTE.app, tar), { timeoutSeconds: 120, log: ctx.log });
    ctx.log.info(
      `  .. building ${pushRef(tag)} in ${NAMES.systemNamespace}/${NAMES.buildkitPod} (up to ${s.buildTimeout}s; --verbose shows BuildKit's progress)`,
    );
    const r = await run(buildExecArgv(gitSha), {
      input: createReadStream(tar),
      allowFail: true,
      timeoutSeconds: s.buildTimeout,
      log: ctx.log,
      progress: `the image build in ${NAMES.buildkitPod}`,
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

if (import.meta.filename === process.argv[1]) await runStep('50_deploy_codex_k8s', { check, apply, teardown });
