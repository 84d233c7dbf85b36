// The codex-k8s staging service as 50_deploy_codex_k8s deploys it: its settings, the runtime Secret, the
// Deployment and its health, read from objects the step fetched. Pure builders and parsers.
import type { StepContext } from './step.mts';
import { render, NAMES, recommendedLabels } from './manifests.mts';
import type { KubeObject, Mode, PlaceholderValue } from './manifests.mts';
import { kubectlArgv } from './kube.mts';
import type { UsernsRemedy } from './userns.mts';
import { REMOTE } from './paths.mts';

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

export function appValues(s: DeploySettings, image: string): Record<string, PlaceholderValue> {
  const v: Record<string, PlaceholderValue> = { STAGING_NAMESPACE: s.stagingNamespace, APP_IMAGE: image };
  if (s.mode === 'server') {
    if (s.domain === undefined)
      throw new Error('server mode needs CODEXK8S_STAGING_DOMAIN (the config schema requires it)');
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
      annotations: {
        'codex-k8s.io/source': `${REMOTE.webhookSecretFile} on the server (50_deploy_codex_k8s copies it here; rotate the file, then run the step)`,
      },
    },
    type: 'Opaque',
    data: { [WEBHOOK_SECRET_KEY]: Buffer.from(webhookSecret, 'utf8').toString('base64') },
  };
}

/** Drift of the runtime Secret against the file; `fileValue` undefined: the file does not exist yet. */
export function runtimeSecretDrift(
  namespace: string,
  fileValue: string | undefined,
  secret: Readonly<Record<string, string>> | undefined,
): string[] {
  const id = `Secret ${namespace}/${NAMES.appRuntimeSecret}`;
  const out: string[] = [];
  if (fileValue === undefined)
    out.push(`${REMOTE.webhookSecretFile} does not exist (the webhook secret is generated once)`);
  if (secret === undefined) out.push(`${id} does not exist`);
  else if (fileValue !== undefined && secret[WEBHOOK_SECRET_KEY] !== fileValue)
    out.push(`${id}: ${WEBHOOK_SECRET_KEY} differs from ${REMOTE.webhookSecretFile}`);
  return out;
}

export interface DeploymentLike extends KubeObject {
  spec?: { replicas?: number };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    readyReplicas?: number;
  };
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
  if (updated < want || available < want || total > updated)
    return [
      `${id} is not rolled out (${updated}/${want} updated, ${available}/${want} available, ${total - updated} old pod(s) left)`,
    ];
  return [];
}

export interface PodLike {
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
    else if (p.status?.containerStatuses?.find((x) => x.name === NAMES.appContainer)?.ready !== true)
      out.push(`pod ${p.metadata.name} runs ${image} but is not ready`);
  }
  return out;
}

export function appPodsArgv(namespace: string): string[] {
  return kubectlArgv(
    '--namespace',
    namespace,
    'get',
    'pods',
    '-l',
    `app.kubernetes.io/name=${NAMES.app},app.kubernetes.io/instance=${NAMES.app}`,
    '-o',
    'json',
  );
}
