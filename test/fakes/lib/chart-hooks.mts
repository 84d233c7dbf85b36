// Values validators for the fake helm, referenced by name from charts.json ("hooks": ["secrets-by-reference"]).
// A hook gets the merged user-supplied values of an upgrade and returns problems as "path: message" lines
// (never the values themselves: they may be secrets). ADD HOOKS HERE. Chart EFFECTS (objects an install
// creates, standing in for the chart's templates and the controllers reacting to them) are further down.

import type { K8sObject } from './kinds.mts';
import { readUpstream } from './upstream.mts';

export type ValuesHook = (
  values: Record<string, unknown>,
  /** install: no revision of the release exists yet (helm's install path, which alone installs a chart's crds/). */
  release: { name: string; namespace: string; chart: string; version: string; install?: boolean },
) => string[];

const SECRET_KEY = /(^|[_-])(token|password|passwd|secret|private[_-]?key|api[_-]?key)$/i;

function walk(v: unknown, p: string, visit: (path: string, key: string, value: unknown) => void): void {
  if (v === null || typeof v !== 'object') return;
  for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
    const cp = p === '' ? k : Array.isArray(v) ? `${p}[${k}]` : `${p}.${k}`;
    visit(cp, k, child);
    walk(child, cp, visit);
  }
}

export const CHART_HOOKS: Readonly<Record<string, ValuesHook>> = {
  /**
   * Secret material must reach a chart by reference (an existing Secret's name), never inline in values:
   * helm stores values in the release and prints them with `helm get values`.
   * Rejects any non-empty string under a key named like token/password/secret/privateKey/apiKey.
   */
  'secrets-by-reference': (values) => {
    const problems: string[] = [];
    walk(values, '', (p, key, value) => {
      if (typeof value === 'string' && value !== '' && SECRET_KEY.test(key)) {
        problems.push(`${p}: inline secret value in chart values (pass the name of an existing Secret instead)`);
      }
    });
    return problems;
  },
  /**
   * cert-manager: the CRDs must come with the release (crds.enabled=true; the ClusterIssuer needs them), and the
   * deprecated installCRDs must not be used alongside (the chart refuses both set). Resource values must be maps.
   */
  'cert-manager': (values) => {
    const problems: string[] = [];
    const crds = values['crds'];
    const enabled =
      crds !== null && typeof crds === 'object' ? (crds as Record<string, unknown>)['enabled'] : undefined;
    if (enabled !== true) problems.push('crds.enabled: must be true (boolean): the CRDs are installed by this release');
    if (values['installCRDs'] !== undefined) problems.push('installCRDs: deprecated; use crds.enabled');
    for (const part of ['', 'webhook', 'cainjector', 'startupapicheck']) {
      const holder = part === '' ? values : (values[part] as Record<string, unknown> | undefined);
      const r = holder?.['resources'];
      if (r !== undefined && (r === null || typeof r !== 'object' || Array.isArray(r)))
        problems.push(`${part === '' ? '' : part + '.'}resources: must be a map`);
    }
    return problems;
  },
  /** ARC controller: the chart refuses the ServiceAccount name "default" (it would run with the namespace's default SA). */
  'arc-controller': (values) => {
    const sa = values['serviceAccount'];
    return isObject(sa) && sa['name'] === 'default'
      ? ["serviceAccount.name: cannot be set to 'default' (the chart fails)"]
      : [];
  },
  /**
   * ARC scale set (gha-runner-scale-set 0.14.x templates): what the chart itself refuses, plus what makes ARC fail
   * later: the registration URL, a token by Secret name (the chart would otherwise create a Secret from inline
   * values), min <= max, a scale set name of at most 45 characters, a `runner` container with an image, and
   * controllerServiceAccount with both fields.
   */
  'arc-scale-set': (values, release) => {
    const problems: string[] = [];
    const url = values['githubConfigUrl'];
    if (typeof url !== 'string' || !/^https?:\/\/[^/\s]+\/[^/\s]+(\/[^/\s]+)?\/?$/.test(url)) {
      problems.push(
        'githubConfigUrl: must be https://HOST/ORG or https://HOST/OWNER/REPO (ARC registers the scale set there)',
      );
    }
    if (typeof values['githubConfigSecret'] !== 'string' || values['githubConfigSecret'] === '') {
      problems.push(
        'githubConfigSecret: must name an existing Secret (key github_token); inline credentials end up in the helm release',
      );
    }
    const name = values['runnerScaleSetName'] ?? release.name;
    if (typeof name !== 'string' || name.length === 0 || name.length > 45)
      problems.push('runnerScaleSetName: Name must have up to 45 characters (chart fail)');
    const min = values['minRunners'];
    const max = values['maxRunners'];
    for (const [k, v] of [
      ['minRunners', min],
      ['maxRunners', max],
    ] as const) {
      if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0))
        problems.push(`${k}: must be a non-negative integer`);
    }
    if (typeof min === 'number' && typeof max === 'number' && min > max)
      problems.push('maxRunners: maxRunners has to be greater or equal to minRunners (chart fail)');
    const mode = isObject(values['containerMode']) ? values['containerMode']['type'] : undefined;
    if (mode !== undefined && !['dind', 'kubernetes', 'kubernetes-novolume'].includes(String(mode)))
      problems.push(`containerMode.type: unknown "${String(mode)}"`);
    const spec =
      isObject(values['template']) && isObject(values['template']['spec']) ? values['template']['spec'] : undefined;
    const containers = spec?.['containers'];
    const runner = Array.isArray(containers)
      ? containers.find((c) => isObject(c) && c['name'] === 'runner')
      : undefined;
    if (!isObject(runner))
      problems.push('template.spec.containers: a container named "runner" is required (ARC runs the runner in it)');
    else if (typeof runner['image'] !== 'string' || runner['image'] === '' || /:latest$/.test(runner['image']))
      problems.push('template.spec.containers[runner].image: a pinned image is required');
    const csa = values['controllerServiceAccount'];
    if (
      csa !== undefined &&
      (!isObject(csa) || typeof csa['name'] !== 'string' || typeof csa['namespace'] !== 'string')
    ) {
      problems.push('controllerServiceAccount: needs both name and namespace');
    }
    return problems;
  },
  // ---- ADD VALUES HOOKS HERE ----
};

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Effects: what installing a chart creates in the cluster, referenced from charts.json ("effects": [...]).
// The helm double renders no templates; an effect stands in for the chart's objects AND for the controllers that
// react to them, as far as the steps look at them. `preflight` runs before the release is written (a problem
// fails the install, like the real helm would); `apply` runs after, and returns change lines; `remove` runs at
// `helm uninstall`.

/** What an effect may do to the fake cluster (helm.mts builds it on the kubectl double's store). */
export interface ClusterAccess {
  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): K8sObject | undefined;
  list(apiVersion: string, kind: string, namespace: string | undefined): K8sObject[];
  /** Creates or replaces the object; a status given on the object is kept for kinds without a fake controller. */
  put(obj: K8sObject): void;
  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): void;
  /** undefined when the kind is served, otherwise why not. */
  unavailable(apiVersion: string, kind: string): string | undefined;
  /** Namespace of the deployed release of a chart, if any. */
  releaseNamespace(chart: string): string | undefined;
}

export type ReleaseInfo = Parameters<ValuesHook>[1];

export interface ChartEffect {
  preflight(values: Record<string, unknown>, release: ReleaseInfo, cluster: ClusterAccess): string[];
  apply(values: Record<string, unknown>, release: ReleaseInfo, cluster: ClusterAccess): string[];
  /** `helm uninstall`: what goes with the release's objects (and what the controllers then do); change lines. */
  remove?(values: Record<string, unknown>, release: ReleaseInfo, cluster: ClusterAccess): string[];
}

const ARC_PART_OF = { 'app.kubernetes.io/part-of': 'gha-rs' };

function readyPodStatus(container: string, image: string): Record<string, unknown> {
  const t = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const cond = (type: string) => ({ type, status: 'True', lastProbeTime: null, lastTransitionTime: t });
  return {
    phase: 'Running',
    conditions: [cond('Initialized'), cond('Ready'), cond('ContainersReady'), cond('PodScheduled')],
    containerStatuses: [
      {
        name: container,
        image,
        imageID: '',
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: t } },
      },
    ],
    startTime: t,
  };
}

/** ARC's listener name: `<scale set>-<hash of namespace, runner group, URL>-listener` (the hash here is ours). */
function listenerName(name: string, namespace: string, group: string, url: string): string {
  let h = 0;
  for (const c of `${namespace}|${group}|${url}`) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `${name}-${h.toString(36).slice(0, 6).padStart(6, '0')}-listener`;
}

/** The controller chart's Deployment and ServiceAccount names (its fullname template, the serviceAccount.name value). */
function controllerNames(values: Record<string, unknown>, release: ReleaseInfo): { fullname: string; sa: string } {
  const fullname = release.name.includes('gha-rs-controller') ? release.name : `${release.name}-gha-rs-controller`;
  const sa =
    isObject(values['serviceAccount']) &&
    typeof values['serviceAccount']['name'] === 'string' &&
    values['serviceAccount']['name'] !== ''
      ? values['serviceAccount']['name']
      : fullname;
  return { fullname, sa };
}

/** The scale set's name: runnerScaleSetName, else the release name (the chart's default). */
function scaleSetName(values: Record<string, unknown>, release: ReleaseInfo): string {
  return typeof values['runnerScaleSetName'] === 'string' && values['runnerScaleSetName'] !== ''
    ? values['runnerScaleSetName']
    : release.name;
}

/** Annotation of the fake's ARC CRDs: `<chart>-<version>` they were installed with (the real ones carry none). */
export const CRD_FROM_CHART = 'codex-k8s-fakes/from-chart';

interface UpstreamCrd {
  name: string;
  kind: string;
  plural: string;
}

/** ARC's CRDs at our pin (test/fixtures/upstream/arc-0.14.2/gha-runner-scale-set-controller/crds.json). */
export function arcCrds(): UpstreamCrd[] {
  return (JSON.parse(readUpstream('arc-0.14.2/gha-runner-scale-set-controller/crds.json')) as { crds: UpstreamCrd[] })
    .crds;
}

function installCrds(release: ReleaseInfo, cluster: ClusterAccess): string[] {
  const out: string[] = [];
  for (const c of arcCrds()) {
    if (cluster.get('apiextensions.k8s.io/v1', 'CustomResourceDefinition', undefined, c.name) !== undefined) continue;
    const [plural, ...group] = c.name.split('.');
    cluster.put({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: c.name, annotations: { [CRD_FROM_CHART]: `${release.chart}-${release.version}` } },
      spec: {
        group: group.join('.'),
        names: { kind: c.kind, plural, singular: c.kind.toLowerCase(), listKind: `${c.kind}List` },
        scope: 'Namespaced',
        versions: [{ name: 'v1alpha1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object' } } }],
      },
    });
    out.push(
      `customresourcedefinition.apiextensions.k8s.io/${c.name} created (crds/ of ${release.chart} ${release.version})`,
    );
  }
  return out;
}

export const CHART_EFFECTS: Readonly<Record<string, ChartEffect>> = {
  /**
   * gha-runner-scale-set-controller: its CRDs and the controller Deployment with its ServiceAccount, in the release
   * namespace, Available at once. The CRDs come from the chart's crds/ as helm treats that directory: created at
   * install when absent, never upgraded, never deleted (ARC's own upgrade sequence deletes them by hand). Each
   * carries the chart version it came with (CRD_FROM_CHART), standing in for that version's CRD content.
   */
  'arc-controller': {
    preflight: () => [],
    apply(values, release, cluster) {
      const crds = release.install ? installCrds(release, cluster) : [];
      const { fullname, sa } = controllerNames(values, release);
      const labels = {
        'app.kubernetes.io/name': 'gha-rs-controller',
        'app.kubernetes.io/namespace': release.namespace,
        'app.kubernetes.io/instance': release.name,
      };
      cluster.put({
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: sa, namespace: release.namespace, labels },
      });
      cluster.put({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: {
          name: fullname,
          namespace: release.namespace,
          labels: { ...labels, 'app.kubernetes.io/part-of': 'gha-rs-controller' },
        },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              serviceAccountName: sa,
              containers: [
                { name: 'manager', image: `ghcr.io/actions/gha-runner-scale-set-controller:${release.version}` },
              ],
            },
          },
        },
      });
      return [
        ...crds,
        `deployment.apps/${fullname} and serviceaccount/${sa} in ${release.namespace} (fake ARC controller)`,
      ];
    },
    remove(values, release, cluster) {
      const { fullname, sa } = controllerNames(values, release);
      cluster.remove('apps/v1', 'Deployment', release.namespace, fullname);
      cluster.remove('v1', 'ServiceAccount', release.namespace, sa);
      return [
        `deployment.apps/${fullname} and serviceaccount/${sa} in ${release.namespace} deleted (fake ARC controller)`,
      ];
    },
  },
  /**
   * gha-runner-scale-set: the AutoscalingRunnerSet (its kind is served only once the controller chart is deployed,
   * like "no matches for kind" on a real cluster), and what the controller then does: with a Secret that holds
   * github_token, it registers the scale set (annotation runner-scale-set-id) and starts the listener pod, Ready,
   * in the controller's namespace; without one, neither happens (the real controller logs the missing secret and
   * retries). The fake cannot tell a valid token from an invalid one: the GitHub side of a test decides that.
   */
  'arc-scale-set': {
    /**
     * The AutoscalingRunnerSet goes with the release; the controller (while it runs) then deletes the scale set in
     * GitHub (the harness plays that side) and its listener pod.
     */
    remove(values, release, cluster) {
      const name = scaleSetName(values, release);
      const ns = release.namespace;
      if (cluster.unavailable('actions.github.com/v1alpha1', 'AutoscalingRunnerSet') !== undefined) return [];
      cluster.remove('actions.github.com/v1alpha1', 'AutoscalingRunnerSet', ns, name);
      const changes = [`autoscalingrunnerset.actions.github.com/${name} in ${ns} deleted (fake ARC)`];
      const ctlNs = cluster.releaseNamespace('gha-runner-scale-set-controller');
      if (ctlNs === undefined) return changes;
      for (const p of cluster.list('v1', 'Pod', ctlNs))
        if (
          p.metadata.labels?.['actions.github.com/scale-set-name'] === name &&
          p.metadata.labels['actions.github.com/scale-set-namespace'] === ns
        ) {
          cluster.remove('v1', 'Pod', ctlNs, p.metadata.name);
          changes.push(`pod/${p.metadata.name} in ${ctlNs} deleted (fake ARC controller)`);
        }
      return changes;
    },
    preflight(_values, _release, cluster) {
      const why = cluster.unavailable('actions.github.com/v1alpha1', 'AutoscalingRunnerSet');
      return why === undefined
        ? []
        : [
            `resource mapping not found for kind "AutoscalingRunnerSet" in version "actions.github.com/v1alpha1": ensure CRDs are installed first (${why})`,
          ];
    },
    apply(values, release, cluster) {
      const name = scaleSetName(values, release);
      const ns = release.namespace;
      const url = String(values['githubConfigUrl'] ?? '');
      const secretName = String(values['githubConfigSecret'] ?? '');
      const group = typeof values['runnerGroup'] === 'string' ? values['runnerGroup'] : 'default';
      const previous = cluster.get('actions.github.com/v1alpha1', 'AutoscalingRunnerSet', ns, name);
      const secret = cluster.get('v1', 'Secret', ns, secretName);
      const tokenB64 = isObject(secret?.['data']) ? secret['data']['github_token'] : undefined;
      const registered = typeof tokenB64 === 'string' && tokenB64 !== '';
      const min = typeof values['minRunners'] === 'number' ? values['minRunners'] : 0;
      const annotations: Record<string, string> = {};
      if (registered) {
        const known = previous?.metadata.annotations?.['runner-scale-set-id'];
        const ids = cluster
          .list('actions.github.com/v1alpha1', 'AutoscalingRunnerSet', undefined)
          .map((o) => Number(o.metadata.annotations?.['runner-scale-set-id'] ?? 0));
        annotations['runner-scale-set-id'] = known ?? String(Math.max(0, ...ids) + 1);
        annotations['actions.github.com/runner-group-name'] = group === 'default' ? 'Default' : group;
      }
      cluster.put({
        apiVersion: 'actions.github.com/v1alpha1',
        kind: 'AutoscalingRunnerSet',
        metadata: {
          name,
          namespace: ns,
          annotations,
          labels: {
            ...ARC_PART_OF,
            'app.kubernetes.io/component': 'autoscaling-runner-set',
            'app.kubernetes.io/instance': release.name,
            'app.kubernetes.io/version': release.version,
            'actions.github.com/scale-set-name': name,
            'actions.github.com/scale-set-namespace': ns,
          },
        },
        spec: {
          githubConfigUrl: url,
          githubConfigSecret: secretName,
          runnerScaleSetName: name,
          minRunners: values['minRunners'],
          maxRunners: values['maxRunners'],
          template: values['template'],
        },
        status: registered
          ? {
              phase: 'Running',
              currentRunners: min,
              pendingEphemeralRunners: 0,
              runningEphemeralRunners: min,
              failedEphemeralRunners: 0,
            }
          : { phase: 'Pending', currentRunners: 0 },
      });
      const changes = [`autoscalingrunnerset.actions.github.com/${name} in ${ns} (fake ARC)`];
      const ctlNs = cluster.releaseNamespace('gha-runner-scale-set-controller');
      if (ctlNs === undefined) return changes;
      // The controller replaces the listener whenever the scale set changes.
      for (const p of cluster.list('v1', 'Pod', ctlNs)) {
        if (
          p.metadata.labels?.['actions.github.com/scale-set-name'] === name &&
          p.metadata.labels['actions.github.com/scale-set-namespace'] === ns
        )
          cluster.remove('v1', 'Pod', ctlNs, p.metadata.name);
      }
      if (!registered)
        return [
          ...changes,
          `no listener: Secret ${ns}/${secretName} with github_token is missing (fake ARC controller)`,
        ];
      const image = `ghcr.io/actions/gha-runner-scale-set-controller:${release.version}`;
      const pod = listenerName(name, ns, group, url);
      cluster.put({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: pod,
          namespace: ctlNs,
          labels: {
            ...ARC_PART_OF,
            'app.kubernetes.io/component': 'runner-scale-set-listener',
            'app.kubernetes.io/version': release.version,
            'actions.github.com/scale-set-name': name,
            'actions.github.com/scale-set-namespace': ns,
          },
        },
        spec: {
          serviceAccountName: `${name}-gha-rs-listener`,
          restartPolicy: 'Never',
          containers: [{ name: 'listener', image, command: ['/ghalistener'] }],
        },
        status: readyPodStatus('listener', image),
      });
      return [...changes, `pod/${pod} in ${ctlNs}, Ready (fake ARC listener)`];
    },
  },
};
