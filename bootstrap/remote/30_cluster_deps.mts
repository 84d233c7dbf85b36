#!/opt/codex-k8s-bootstrap/node/bin/node --
// 30_cluster_deps: what the staging cluster needs before any workload: helm, cert-manager (with its CRDs),
// in server mode a Let's Encrypt ClusterIssuer, Traefik's settings, the namespaces with their baseline
// NetworkPolicy, and the in-cluster image registry. Traefik's settings count as applied only once k3s' helm-controller
// has re-run Traefik's install Job with them and it succeeded (lib/helmchartconfig.mts).
//
// Everything Kubernetes comes from manifests/cluster and manifests/registry (lib/manifests.mts renders them for
// the mode), compared with `kubectl diff` and applied with `kubectl apply` only when they differ. cert-manager is a
// pinned chart; helm writes a new revision on every upgrade, so the step upgrades only when the installed chart
// version or values differ from the pin (lib/kube.mts helmReleaseDrift).
import { existsSync, lstatSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runStep, changeList } from '../lib/step.mts';
import type { StepContext, Teardown } from '../lib/step.mts';
import { render, NAMES, ACME_SERVERS, describeObject } from '../lib/manifests.mts';
import type { KubeObject, Mode, PlaceholderValue } from '../lib/manifests.mts';
import {
  objectsDrift,
  applyObjects,
  getJson,
  rolloutStatus,
  helmReleaseState,
  helmReleaseDrift,
  helmUpgrade,
  appliedName,
} from '../lib/kube.mts';
import type { HelmReleaseState } from '../lib/kube.mts';
import { moved } from '../lib/log.mts';
import { helmDrift, installHelm, HELM_LINK, TOOLS_DIR } from '../lib/download.mts';
import { removeDirIfEmpty, removeFile } from '../lib/teardown.mts';
import { awaitHelmChartConfig, helmChartConfigDrift, readHelmChartState } from '../lib/helmchartconfig.mts';
import { CERT_MANAGER_CHART, IMAGES } from '../lib/versions.mts';

// ---- check / apply --------------------------------------------------------------------------------------------------

async function check(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  const drift: string[] = [];
  const helm = await helmDrift(ctx);
  drift.push(...helm);
  let certManagerReady = false;
  if (helm.length === 0) {
    const rel = helmReleaseDrift(
      CERT_MANAGER_CHART,
      await helmReleaseState(CERT_MANAGER_CHART, ctx.log),
      certManagerValues(),
    );
    drift.push(...rel);
    certManagerReady = rel.length === 0;
  } else {
    drift.push(
      `helm release ${CERT_MANAGER_CHART.namespace}/${CERT_MANAGER_CHART.release}: checked once helm is installed`,
    );
  }
  const objects = clusterObjects(s);
  const now = objects.filter((o) => certManagerReady || !needsCertManager(o));
  for (const o of objects.filter((x) => !now.includes(x)))
    drift.push(`${describeObject(o)}: applied once cert-manager ${CERT_MANAGER_CHART.version} is installed`);
  const objectDrift = await objectsDrift(now, ctx.log);
  drift.push(...objectDrift);
  // Accepted by the API server is not applied: k3s' helm-controller must have re-run Traefik's install with it.
  for (const c of objects.filter(isHelmChartConfig)) {
    if (!objectDrift.some((d) => d.startsWith(`${describeObject(c)} `)))
      drift.push(...helmChartConfigDrift(c, await readHelmChartState(c, ctx.log)));
  }
  if (!objectDrift.some((d) => d.startsWith(`Deployment ${NAMES.systemNamespace}/${NAMES.registryDeployment} `)))
    drift.push(...(await registryHealth(ctx)));
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const s = settingsFrom(ctx);
  const changes = changeList(ctx);
  const timeout = timeoutOf(ctx);

  if ((await helmDrift(ctx)).length > 0) changes.push(...(await installHelm(ctx)));

  const state = await helmReleaseState(CERT_MANAGER_CHART, ctx.log);
  const rel = helmReleaseDrift(CERT_MANAGER_CHART, state, certManagerValues());
  if (rel.length > 0) {
    // --wait: helm returns once cert-manager's Deployments (webhook included) are available, bounded by --timeout.
    await helmUpgrade(CERT_MANAGER_CHART, certManagerValues(), timeout, ctx.log);
    changes.push(certManagerChange(state, rel));
  }

  const objects = clusterObjects(s);
  const appliedAt = new Date().toISOString();
  const applied = await applyObjects(
    objects.filter((o) => !needsCertManager(o)),
    ctx.log,
  );
  changes.push(...applied);
  for (const c of objects.filter(isHelmChartConfig)) {
    // Changed now: only a Job created after this apply proves k3s used the new values.
    const changedNow = applied.some((l) => l.startsWith(`${appliedName(c)} `));
    changes.push(
      await awaitHelmChartConfig(c, {
        since: changedNow ? appliedAt : undefined,
        timeoutSeconds: timeout,
        log: ctx.log,
      }),
    );
  }
  const issuers = objects.filter(needsCertManager);
  // cert-manager's webhook validates the ClusterIssuer; right after an install it may need a few seconds more.
  changes.push(
    ...(await applyObjects(issuers, ctx.log, {
      retryOn: WEBHOOK_NOT_READY,
      attempts: 20,
      delaySeconds: 3,
      what: 'the ClusterIssuer',
    })),
  );

  await rolloutStatus('deployment', NAMES.registryDeployment, NAMES.systemNamespace, timeout, ctx.log);
  return changes;
}

// ---- --uninstall: helm, the one thing of this step on the host; its objects in the cluster go with k3s ---------

const teardown: Teardown = {
  async check() {
    const h = helmLeftovers();
    return [
      ...h.dirs.map((d) => `helm binary ${join(d, 'helm')} (${d})`),
      ...(h.link ? [`symlink ${HELM_LINK} -> ${h.link}`] : []),
    ];
  },
  async apply(ctx) {
    const changes = changeList(ctx);
    const h = helmLeftovers();
    // The link first: it never points at a removed binary.
    if (h.link && removeFile(HELM_LINK)) changes.push(`removed the symlink ${HELM_LINK} (-> ${h.link})`);
    for (const d of h.dirs) {
      rmSync(d, { recursive: true, force: true });
      changes.push(`removed helm ${d}`);
    }
    if (removeDirIfEmpty(TOOLS_DIR)) changes.push(`removed ${TOOLS_DIR} (empty)`);
    return changes;
  },
};

/** Our helm: the versions under TOOLS_DIR, and HELM_LINK only while it points into TOOLS_DIR (else it is not ours). */
export function helmLeftovers(): { dirs: string[]; link?: string } {
  const dirs = existsSync(TOOLS_DIR)
    ? readdirSync(TOOLS_DIR)
        .filter((n) => n.startsWith('helm-') || n.startsWith('.helm-'))
        .map((n) => join(TOOLS_DIR, n))
        .sort()
    : [];
  let link: string | undefined;
  try {
    if (lstatSync(HELM_LINK).isSymbolicLink()) {
      const to = readlinkSync(HELM_LINK);
      if (isOurs(to)) link = to;
    }
  } catch {
    // no such file
  }
  return { dirs, ...(link ? { link } : {}) };
}

/** Pure: a link target inside TOOLS_DIR is the one installHelm made. */
export function isOurs(target: string): boolean {
  return target.startsWith(`${TOOLS_DIR}/`);
}

// ---- how they read and change the server ---------------------------------------------------------------------------

export interface ClusterSettings {
  mode: Mode;
  stagingNamespace: string;
  runnerNamespace: string;
  registryPort: number;
  letsencryptEmail?: string;
  letsencryptServer: 'production' | 'staging';
}

export function settingsFrom(ctx: StepContext): ClusterSettings {
  const c = ctx.cfg;
  return {
    mode: c.get('CODEXK8S_MODE'),
    stagingNamespace: c.get('CODEXK8S_STAGING_NAMESPACE'),
    runnerNamespace: c.get('CODEXK8S_RUNNER_NAMESPACE'),
    registryPort: c.get('CODEXK8S_INTERNAL_REGISTRY_PORT'),
    letsencryptEmail: c.maybe('CODEXK8S_LETSENCRYPT_EMAIL'),
    letsencryptServer: c.get('CODEXK8S_LETSENCRYPT_SERVER'),
  };
}

/** Placeholder values of manifests/cluster for the mode (exactly the ones its files use). */
export function clusterValues(s: ClusterSettings): Record<string, PlaceholderValue> {
  const v: Record<string, PlaceholderValue> = {
    STAGING_NAMESPACE: s.stagingNamespace,
    RUNNER_NAMESPACE: s.runnerNamespace,
  };
  if (s.mode === 'server') {
    if (s.letsencryptEmail === undefined)
      throw new Error('server mode needs CODEXK8S_LETSENCRYPT_EMAIL (the config schema requires it)');
    v['LETSENCRYPT_EMAIL'] = s.letsencryptEmail;
    v['ACME_SERVER'] = ACME_SERVERS[s.letsencryptServer];
    v['ACME_ACCOUNT_SECRET'] = `letsencrypt-${s.letsencryptServer}-account`;
  }
  return v;
}

export function registryValues(s: ClusterSettings): Record<string, PlaceholderValue> {
  return { REGISTRY_IMAGE: IMAGES.registry, REGISTRY_PORT: s.registryPort };
}

/** All objects of the step, namespaces first (everything else lives in them). */
export function clusterObjects(s: ClusterSettings): KubeObject[] {
  const objs = [
    ...render('cluster', s.mode, clusterValues(s)).objects,
    ...render('registry', s.mode, registryValues(s)).objects,
  ];
  return [...objs.filter((o) => o.kind === 'Namespace'), ...objs.filter((o) => o.kind !== 'Namespace')];
}

/** Kinds served by cert-manager's CRDs: they can be diffed and applied only once cert-manager is installed. */
export function needsCertManager(o: KubeObject): boolean {
  return o.apiVersion.startsWith('cert-manager.io/');
}

const mebi = (n: number): string => `${n}Mi`;
const res = (cpu: string, memory: number, limit: number) => ({
  requests: { cpu, memory: mebi(memory) },
  limits: { memory: mebi(limit) },
});

/** The user-supplied values of the cert-manager release; a change here is an upgrade on the next run. */
export function certManagerValues(): Record<string, unknown> {
  return {
    // The ClusterIssuer needs the CRDs; `keep` leaves them (and so every Certificate) in place if the release is
    // ever uninstalled.
    crds: { enabled: true, keep: true },
    resources: res('10m', 64, 256),
    webhook: { resources: res('10m', 32, 128) },
    cainjector: { resources: res('10m', 64, 256) },
    startupapicheck: { resources: res('10m', 32, 128) },
  };
}

/**
 * Pure: the journal line of a cert-manager install or upgrade. A chart bump is a from/to line (the drift about the
 * version is then said by it); a values-only change names the drift.
 */
export function certManagerChange(state: HelmReleaseState | undefined, drift: readonly string[]): string {
  const pin = CERT_MANAGER_CHART;
  const id = `helm release ${pin.namespace}/${pin.release}`;
  if (state === undefined) return `cert-manager ${pin.version} installed (${id})`;
  if (state.version === pin.version) return `cert-manager ${pin.version} upgraded (${drift.join('; ')})`;
  const rest = drift.filter((d) => !d.startsWith(`${id} runs chart `));
  return moved('cert-manager', state.version, pin.version, [`${id} upgraded`, ...rest].join('; '));
}

const isHelmChartConfig = (o: KubeObject): boolean => o.kind === 'HelmChartConfig';

/** Errors of an admission webhook that is not serving yet (right after the cert-manager install). */
const WEBHOOK_NOT_READY =
  /failed calling webhook|no endpoints available for service|connection refused|context deadline exceeded/;

function timeoutOf(ctx: StepContext): number {
  return ctx.cfg.get('CODEXK8S_ROLLOUT_TIMEOUT');
}

async function registryHealth(ctx: StepContext): Promise<string[]> {
  const d = await getJson<KubeObject & { status?: { availableReplicas?: number } }>(
    'deployment',
    NAMES.registryDeployment,
    NAMES.systemNamespace,
    ctx.log,
  );
  if (d === undefined) return [];
  const ready = d.status?.availableReplicas ?? 0;
  return ready >= 1
    ? []
    : [`Deployment ${NAMES.systemNamespace}/${NAMES.registryDeployment} is not available (${ready}/1 ready)`];
}

if (import.meta.filename === process.argv[1]) await runStep('30_cluster_deps', { check, apply, teardown });
