// THE place for kinds. Every kind the kubectl double knows is one row here:
//   BUILTIN_KINDS    Kubernetes' own kinds, validated with kubernetes-models (Kubernetes 1.36 schemas) + strictness.
//   EXTENSION_KINDS  custom resources (CRDs). Only kinds listed there are accepted, and only once their CRD is
//                    "installed" (see `providedBy`), like a real cluster answers "no matches for kind" before that.
// A row may also carry:
//   check(obj)    API-server rules the schema cannot express (selector vs template labels, base64 ...); returns
//                 error lines "path: message".
//   status(obj)   the status the fake controllers write right after an apply (Deployments are Available at once).
//   columns       the default `kubectl get` table.
//
// To add a built-in kind: add a row to BUILTIN_KINDS (kubernetes-models must have the model: look in
// node_modules/kubernetes-models/<group>/<version>/<Kind>.d.ts). To add a CRD kind: add a row to EXTENSION_KINDS
// (the "ADD CRD KINDS HERE" marker), with its provider and, ideally, a `check`.

import { crdSchemaProblems } from './crd-schema.mts';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  [key: string]: unknown;
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** Who installs a CRD-backed kind. */
export type Provider =
  /** k3s ships the CRD (helm-controller, traefik): available once the cluster is up. */
  | { readonly k3s: true; readonly unlessDisabled?: string }
  /**
   * A Helm chart installs the CRD: available once a deployed release of that chart exists (and `when` holds). With
   * `crdsDir`, the chart ships it in crds/: the CRD object itself decides (helm keeps it after an uninstall).
   */
  | {
      readonly chart: string;
      readonly crdsDir?: true;
      readonly when?: (values: Record<string, unknown>) => boolean;
      readonly whenText?: string;
    };

export interface Column {
  readonly header: string;
  value(obj: K8sObject, now: number): string;
}

export interface KindInfo {
  /** API group; '' for the core group. */
  readonly group: string;
  /** Served versions, preferred first. */
  readonly versions: readonly string[];
  readonly kind: string;
  /** Resource name: `kubectl get <plural>`, errors `<plural>.<group> "x" not found`. */
  readonly plural: string;
  readonly shortNames?: readonly string[];
  readonly namespaced: boolean;
  /** Only for EXTENSION_KINDS. */
  readonly providedBy?: Provider;
  /** Top-level fields allowed on a custom resource (built-ins: the schema decides). */
  readonly topLevel?: readonly string[];
  readonly check?: (obj: K8sObject) => string[];
  readonly status?: (obj: K8sObject) => Record<string, unknown> | undefined;
  readonly columns?: readonly Column[];
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers for checks/status

type Json = Record<string, unknown>;

export function isObj(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function at(obj: unknown, ...keys: (string | number)[]): unknown {
  let cur: unknown = obj;
  for (const k of keys) {
    if (typeof k === 'number') cur = Array.isArray(cur) ? cur[k] : undefined;
    else cur = isObj(cur) ? cur[k] : undefined;
  }
  return cur;
}

function replicasOf(obj: K8sObject): number {
  const r = at(obj, 'spec', 'replicas');
  return typeof r === 'number' ? r : 1;
}

function nowIso(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function condition(type: string, status: string, reason: string, message: string): Json {
  const t = nowIso();
  return { type, status, lastTransitionTime: t, lastUpdateTime: t, reason, message };
}

/** Workload rule: spec.selector.matchLabels must select spec.template.metadata.labels; containers need an image. */
function workloadCheck(obj: K8sObject): string[] {
  const errors: string[] = [];
  const matchLabels = at(obj, 'spec', 'selector', 'matchLabels');
  const tplLabels = at(obj, 'spec', 'template', 'metadata', 'labels');
  if (isObj(matchLabels)) {
    for (const [k, v] of Object.entries(matchLabels)) {
      if (!isObj(tplLabels) || tplLabels[k] !== v) {
        errors.push('spec.template.metadata.labels: Invalid value: selector does not match template labels');
        break;
      }
    }
  }
  const containers = at(obj, 'spec', 'template', 'spec', 'containers');
  if (Array.isArray(containers)) {
    if (containers.length === 0) errors.push('spec.template.spec.containers: Required value');
    containers.forEach((c, i) => {
      if (isObj(c) && (typeof c['image'] !== 'string' || c['image'] === ''))
        errors.push(`spec.template.spec.containers[${i}].image: Required value`);
    });
  }
  return errors;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function secretCheck(obj: K8sObject): string[] {
  const errors: string[] = [];
  const data = obj['data'];
  if (isObj(data)) {
    for (const [k, v] of Object.entries(data)) {
      // Never echo the value: it is a secret.
      if (typeof v !== 'string' || !BASE64.test(v))
        errors.push(`data[${JSON.stringify(k)}]: illegal base64 data (the value is not valid standard base64)`);
    }
  }
  const sd = obj['stringData'];
  if (isObj(sd)) {
    for (const [k, v] of Object.entries(sd))
      if (typeof v !== 'string') errors.push(`stringData[${JSON.stringify(k)}]: must be a string`);
  }
  return errors;
}

function deploymentStatus(obj: K8sObject): Json {
  const n = replicasOf(obj);
  const st: Json = { observedGeneration: obj.metadata.generation ?? 1, replicas: n, updatedReplicas: n };
  if (n > 0) Object.assign(st, { readyReplicas: n, availableReplicas: n });
  st['conditions'] = [
    condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.'),
    condition(
      'Progressing',
      'True',
      'NewReplicaSetAvailable',
      `ReplicaSet "${obj.metadata.name}" has successfully progressed.`,
    ),
  ];
  return st;
}

/**
 * A Deployment whose new pods cannot pull their image (ImagePullBackOff): the new ReplicaSet's pods never become
 * available; `oldAvailable` pods of the previous ReplicaSet keep running (maxUnavailable rounds down to 0 for small
 * replica counts, so the controller never scales them down). The image problem itself is only visible on pods,
 * which the double does not model: `rollout status` names it in a note.
 */
export function deploymentStuckStatus(obj: K8sObject, oldAvailable: number): Json {
  const n = replicasOf(obj);
  if (n === 0) return deploymentStatus(obj);
  const old = Math.max(0, Math.min(oldAvailable, n));
  const st: Json = {
    observedGeneration: obj.metadata.generation ?? 1,
    replicas: n + old,
    updatedReplicas: n,
    unavailableReplicas: n,
  };
  if (old > 0) Object.assign(st, { readyReplicas: old, availableReplicas: old });
  st['conditions'] = [
    old >= n
      ? condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.')
      : condition('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.'),
    condition('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${obj.metadata.name}" is progressing.`),
  ];
  return st;
}

function statefulSetStatus(obj: K8sObject): Json {
  const n = replicasOf(obj);
  const rev = `${obj.metadata.name}-${(obj.metadata.generation ?? 1).toString(16).padStart(10, '0')}`;
  // Like the real controller: no conditions on a StatefulSet (so `kubectl wait --for=condition=Ready sts/x` times out).
  const st: Json = {
    observedGeneration: obj.metadata.generation ?? 1,
    replicas: n,
    currentReplicas: n,
    updatedReplicas: n,
    currentRevision: rev,
    updateRevision: rev,
    collisionCount: 0,
  };
  if (n > 0) Object.assign(st, { readyReplicas: n, availableReplicas: n });
  return st;
}

function daemonSetStatus(obj: K8sObject): Json {
  // One node: one pod.
  return {
    observedGeneration: obj.metadata.generation ?? 1,
    desiredNumberScheduled: 1,
    currentNumberScheduled: 1,
    numberReady: 1,
    numberAvailable: 1,
    updatedNumberScheduled: 1,
    numberMisscheduled: 0,
  };
}

function age(obj: K8sObject, now: number): string {
  const t = Date.parse(obj.metadata.creationTimestamp ?? '');
  if (Number.isNaN(t)) return '<unknown>';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const col = (header: string, value: (o: K8sObject, now: number) => string): Column => ({ header, value });
const NAME = col('NAME', (o) => o.metadata.name);
const AGE = col('AGE', age);
const str = (v: unknown): string => (v === undefined || v === null ? '<none>' : String(v));

// ---------------------------------------------------------------------------------------------------------------
// Built-in kinds

export const BUILTIN_KINDS: readonly KindInfo[] = [
  // core
  {
    group: '',
    versions: ['v1'],
    kind: 'Namespace',
    plural: 'namespaces',
    shortNames: ['ns'],
    namespaced: false,
    status: () => ({ phase: 'Active' }),
    columns: [NAME, col('STATUS', (o) => str(at(o, 'status', 'phase'))), AGE],
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'ConfigMap',
    plural: 'configmaps',
    shortNames: ['cm'],
    namespaced: true,
    columns: [
      NAME,
      col('DATA', (o) => String(Object.keys({ ...(at(o, 'data') as Json), ...(at(o, 'binaryData') as Json) }).length)),
      AGE,
    ],
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'Secret',
    plural: 'secrets',
    namespaced: true,
    check: secretCheck,
    columns: [
      NAME,
      col('TYPE', (o) => str(o['type'] ?? 'Opaque')),
      col('DATA', (o) => String(Object.keys((at(o, 'data') as Json | undefined) ?? {}).length)),
      AGE,
    ],
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'Service',
    plural: 'services',
    shortNames: ['svc'],
    namespaced: true,
    columns: [NAME, col('TYPE', (o) => str(at(o, 'spec', 'type') ?? 'ClusterIP')), AGE],
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'ServiceAccount',
    plural: 'serviceaccounts',
    shortNames: ['sa'],
    namespaced: true,
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'Pod',
    plural: 'pods',
    shortNames: ['po'],
    namespaced: true,
    columns: [
      NAME,
      col('READY', (o) => {
        const cs = (at(o, 'status', 'containerStatuses') as Json[] | undefined) ?? [];
        return `${cs.filter((c) => c['ready'] === true).length}/${((at(o, 'spec', 'containers') as unknown[] | undefined) ?? []).length}`;
      }),
      col('STATUS', (o) => {
        const waiting = ((at(o, 'status', 'containerStatuses') as Json[] | undefined) ?? [])
          .map((c) => at(c, 'state', 'waiting', 'reason'))
          .find((r) => typeof r === 'string');
        return typeof waiting === 'string' ? waiting : str(at(o, 'status', 'phase'));
      }),
      col('RESTARTS', (o) =>
        String(
          ((at(o, 'status', 'containerStatuses') as Json[] | undefined) ?? []).reduce(
            (n, c) => n + Number(c['restartCount'] ?? 0),
            0,
          ),
        ),
      ),
      AGE,
    ],
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'PersistentVolumeClaim',
    plural: 'persistentvolumeclaims',
    shortNames: ['pvc'],
    namespaced: true,
    status: (o) => ({
      phase: 'Bound',
      accessModes: at(o, 'spec', 'accessModes'),
      capacity: at(o, 'spec', 'resources', 'requests'),
    }),
    columns: [NAME, col('STATUS', (o) => str(at(o, 'status', 'phase'))), AGE],
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'PersistentVolume',
    plural: 'persistentvolumes',
    shortNames: ['pv'],
    namespaced: false,
  },
  {
    group: '',
    versions: ['v1'],
    kind: 'Node',
    plural: 'nodes',
    shortNames: ['no'],
    namespaced: false,
    columns: [
      NAME,
      col('STATUS', (o) => {
        const c = (at(o, 'status', 'conditions') as Json[] | undefined)?.find((x) => x['type'] === 'Ready');
        return c?.['status'] === 'True' ? 'Ready' : 'NotReady';
      }),
      col(
        'ROLES',
        (o) =>
          Object.keys(o.metadata.labels ?? {})
            .filter((l) => l.startsWith('node-role.kubernetes.io/'))
            .map((l) => l.slice('node-role.kubernetes.io/'.length))
            .sort()
            .join(',') || '<none>',
      ),
      AGE,
      col('VERSION', (o) => str(at(o, 'status', 'nodeInfo', 'kubeletVersion'))),
    ],
  },
  { group: '', versions: ['v1'], kind: 'Endpoints', plural: 'endpoints', shortNames: ['ep'], namespaced: true },
  { group: '', versions: ['v1'], kind: 'Event', plural: 'events', shortNames: ['ev'], namespaced: true },
  { group: '', versions: ['v1'], kind: 'LimitRange', plural: 'limitranges', shortNames: ['limits'], namespaced: true },
  {
    group: '',
    versions: ['v1'],
    kind: 'ResourceQuota',
    plural: 'resourcequotas',
    shortNames: ['quota'],
    namespaced: true,
  },
  // apps
  {
    group: 'apps',
    versions: ['v1'],
    kind: 'Deployment',
    plural: 'deployments',
    shortNames: ['deploy'],
    namespaced: true,
    check: workloadCheck,
    status: deploymentStatus,
    columns: [
      NAME,
      col('READY', (o) => `${Number(at(o, 'status', 'readyReplicas') ?? 0)}/${replicasOf(o)}`),
      col('UP-TO-DATE', (o) => String(at(o, 'status', 'updatedReplicas') ?? 0)),
      col('AVAILABLE', (o) => String(at(o, 'status', 'availableReplicas') ?? 0)),
      AGE,
    ],
  },
  {
    group: 'apps',
    versions: ['v1'],
    kind: 'StatefulSet',
    plural: 'statefulsets',
    shortNames: ['sts'],
    namespaced: true,
    check: workloadCheck,
    status: statefulSetStatus,
    columns: [NAME, col('READY', (o) => `${Number(at(o, 'status', 'readyReplicas') ?? 0)}/${replicasOf(o)}`), AGE],
  },
  {
    group: 'apps',
    versions: ['v1'],
    kind: 'DaemonSet',
    plural: 'daemonsets',
    shortNames: ['ds'],
    namespaced: true,
    check: workloadCheck,
    status: daemonSetStatus,
  },
  {
    group: 'apps',
    versions: ['v1'],
    kind: 'ReplicaSet',
    plural: 'replicasets',
    shortNames: ['rs'],
    namespaced: true,
    check: workloadCheck,
  },
  { group: 'apps', versions: ['v1'], kind: 'ControllerRevision', plural: 'controllerrevisions', namespaced: true },
  // batch
  {
    group: 'batch',
    versions: ['v1'],
    kind: 'Job',
    plural: 'jobs',
    namespaced: true,
    status: () => ({
      succeeded: 1,
      ready: 0,
      active: 0,
      startTime: nowIso(),
      completionTime: nowIso(),
      conditions: [condition('Complete', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods')],
    }),
  },
  { group: 'batch', versions: ['v1'], kind: 'CronJob', plural: 'cronjobs', shortNames: ['cj'], namespaced: true },
  // networking
  {
    group: 'networking.k8s.io',
    versions: ['v1'],
    kind: 'Ingress',
    plural: 'ingresses',
    shortNames: ['ing'],
    namespaced: true,
  },
  { group: 'networking.k8s.io', versions: ['v1'], kind: 'IngressClass', plural: 'ingressclasses', namespaced: false },
  {
    group: 'networking.k8s.io',
    versions: ['v1'],
    kind: 'NetworkPolicy',
    plural: 'networkpolicies',
    shortNames: ['netpol'],
    namespaced: true,
  },
  { group: 'discovery.k8s.io', versions: ['v1'], kind: 'EndpointSlice', plural: 'endpointslices', namespaced: true },
  // rbac
  { group: 'rbac.authorization.k8s.io', versions: ['v1'], kind: 'Role', plural: 'roles', namespaced: true },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    kind: 'RoleBinding',
    plural: 'rolebindings',
    namespaced: true,
  },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    kind: 'ClusterRole',
    plural: 'clusterroles',
    namespaced: false,
  },
  {
    group: 'rbac.authorization.k8s.io',
    versions: ['v1'],
    kind: 'ClusterRoleBinding',
    plural: 'clusterrolebindings',
    namespaced: false,
  },
  // policy, storage, autoscaling, coordination, scheduling, node, admission, apiextensions
  {
    group: 'policy',
    versions: ['v1'],
    kind: 'PodDisruptionBudget',
    plural: 'poddisruptionbudgets',
    shortNames: ['pdb'],
    namespaced: true,
  },
  {
    group: 'storage.k8s.io',
    versions: ['v1'],
    kind: 'StorageClass',
    plural: 'storageclasses',
    shortNames: ['sc'],
    namespaced: false,
  },
  { group: 'storage.k8s.io', versions: ['v1'], kind: 'CSIDriver', plural: 'csidrivers', namespaced: false },
  {
    group: 'autoscaling',
    versions: ['v2', 'v1'],
    kind: 'HorizontalPodAutoscaler',
    plural: 'horizontalpodautoscalers',
    shortNames: ['hpa'],
    namespaced: true,
  },
  { group: 'coordination.k8s.io', versions: ['v1'], kind: 'Lease', plural: 'leases', namespaced: true },
  {
    group: 'scheduling.k8s.io',
    versions: ['v1'],
    kind: 'PriorityClass',
    plural: 'priorityclasses',
    shortNames: ['pc'],
    namespaced: false,
  },
  { group: 'node.k8s.io', versions: ['v1'], kind: 'RuntimeClass', plural: 'runtimeclasses', namespaced: false },
  {
    group: 'admissionregistration.k8s.io',
    versions: ['v1'],
    kind: 'ValidatingWebhookConfiguration',
    plural: 'validatingwebhookconfigurations',
    namespaced: false,
  },
  {
    group: 'admissionregistration.k8s.io',
    versions: ['v1'],
    kind: 'MutatingWebhookConfiguration',
    plural: 'mutatingwebhookconfigurations',
    namespaced: false,
  },
  {
    group: 'apiextensions.k8s.io',
    versions: ['v1'],
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    shortNames: ['crd', 'crds'],
    namespaced: false,
    check: (o) => {
      const want = `${String(at(o, 'spec', 'names', 'plural'))}.${String(at(o, 'spec', 'group'))}`;
      return o.metadata.name === want
        ? []
        : [`metadata.name: Invalid value: must be spec.names.plural+"."+spec.group ("${want}")`];
    },
    status: (o) => ({
      acceptedNames: at(o, 'spec', 'names'),
      storedVersions: ((at(o, 'spec', 'versions') as Json[] | undefined) ?? [])
        .filter((v) => v['storage'] === true)
        .map((v) => v['name']),
      conditions: [
        condition('NamesAccepted', 'True', 'NoConflicts', 'no conflicts found'),
        condition('Established', 'True', 'InitialNamesAccepted', 'the initial names have been accepted'),
      ],
    }),
  },
];

// ---------------------------------------------------------------------------------------------------------------
// Extension (CRD) kinds

/** HelmChartConfig: helm-controller v0.17.7's own CRD schema (lib/crd-schema.mts), as k3s v1.36 serves it. */
function helmChartConfigCheck(obj: K8sObject): string[] {
  return crdSchemaProblems('helm.cattle.io', 'v1', 'HelmChartConfig', obj);
}

function issuerCheck(obj: K8sObject): string[] {
  const spec = obj['spec'];
  if (!isObj(spec)) return ['spec: Required value'];
  const types = ['acme', 'ca', 'selfSigned', 'vault', 'venafi'];
  const present = Object.keys(spec).filter((k) => types.includes(k));
  const errors = Object.keys(spec)
    .filter((k) => !types.includes(k))
    .map((k) => `spec.${k}: unknown field`);
  if (present.length !== 1) errors.push(`spec: exactly one of ${types.join(', ')} is required (got ${present.length})`);
  const acme = spec['acme'];
  if (isObj(acme)) {
    if (typeof acme['server'] !== 'string') errors.push('spec.acme.server: Required value');
    if (!isObj(acme['privateKeySecretRef']) || typeof acme['privateKeySecretRef']['name'] !== 'string')
      errors.push('spec.acme.privateKeySecretRef.name: Required value');
  }
  return errors;
}

const certManagerCrds = (values: Record<string, unknown>): boolean =>
  at(values, 'crds', 'enabled') === true || values['installCRDs'] === true;

export const EXTENSION_KINDS: readonly KindInfo[] = [
  // k3s' helm-controller (always there) configures the bundled Traefik through HelmChartConfig.
  {
    group: 'helm.cattle.io',
    versions: ['v1'],
    kind: 'HelmChartConfig',
    plural: 'helmchartconfigs',
    namespaced: true,
    providedBy: { k3s: true },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
    check: helmChartConfigCheck,
  },
  {
    group: 'helm.cattle.io',
    versions: ['v1'],
    kind: 'HelmChart',
    plural: 'helmcharts',
    namespaced: true,
    providedBy: { k3s: true },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
  },
  // Traefik's CRDs come with the bundled Traefik (absent with --disable traefik).
  {
    group: 'traefik.io',
    versions: ['v1alpha1'],
    kind: 'Middleware',
    plural: 'middlewares',
    namespaced: true,
    providedBy: { k3s: true, unlessDisabled: 'traefik' },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
  },
  // cert-manager: its chart installs the CRDs only with crds.enabled=true (or the older installCRDs=true).
  {
    group: 'cert-manager.io',
    versions: ['v1'],
    kind: 'ClusterIssuer',
    plural: 'clusterissuers',
    namespaced: false,
    providedBy: { chart: 'cert-manager', when: certManagerCrds, whenText: 'crds.enabled=true' },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
    check: issuerCheck,
  },
  {
    group: 'cert-manager.io',
    versions: ['v1'],
    kind: 'Issuer',
    plural: 'issuers',
    namespaced: true,
    providedBy: { chart: 'cert-manager', when: certManagerCrds, whenText: 'crds.enabled=true' },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
    check: issuerCheck,
  },
  {
    group: 'cert-manager.io',
    versions: ['v1'],
    kind: 'Certificate',
    plural: 'certificates',
    shortNames: ['cert', 'certs'],
    namespaced: true,
    providedBy: { chart: 'cert-manager', when: certManagerCrds, whenText: 'crds.enabled=true' },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
  },
  // ARC: the controller chart ships the CRDs; the scale-set chart creates an AutoscalingRunnerSet.
  {
    group: 'actions.github.com',
    versions: ['v1alpha1'],
    kind: 'AutoscalingRunnerSet',
    plural: 'autoscalingrunnersets',
    namespaced: true,
    providedBy: { chart: 'gha-runner-scale-set-controller', crdsDir: true },
    topLevel: ['apiVersion', 'kind', 'metadata', 'spec'],
  },
  // ---- ADD CRD KINDS HERE: { group, versions, kind, plural, namespaced, providedBy, topLevel, check? } ----
];

export const ALL_KINDS: readonly KindInfo[] = [...BUILTIN_KINDS, ...EXTENSION_KINDS];

// ---------------------------------------------------------------------------------------------------------------
// Lookups

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.lastIndexOf('/');
  return i === -1
    ? { group: '', version: apiVersion }
    : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/** By apiVersion + kind, as in a manifest. Availability of extension kinds is checked by the caller. */
export function kindByApiVersion(apiVersion: string, kind: string): KindInfo | undefined {
  const { group, version } = splitApiVersion(apiVersion);
  return ALL_KINDS.find((k) => k.group === group && k.kind === kind && k.versions.includes(version));
}

/** By a kubectl resource argument: deployment, deployments, deploy, deployment.apps, Deployment ... */
export function kindByResourceArg(arg: string): KindInfo | undefined {
  const lower = arg.toLowerCase();
  return ALL_KINDS.find((k) => {
    const names = [k.plural, k.kind.toLowerCase(), ...(k.shortNames ?? [])];
    if (names.includes(lower)) return true;
    return k.group !== '' && (lower === `${k.plural}.${k.group}` || lower === `${k.kind.toLowerCase()}.${k.group}`);
  });
}

/** `deployments.apps`, `namespaces`: the name the API server uses in errors. */
export function resourceName(info: KindInfo): string {
  return info.group === '' ? info.plural : `${info.plural}.${info.group}`;
}

/** `deployment.apps/web`, `namespace/staging`: how kubectl prints an object. */
export function printName(info: KindInfo, name: string): string {
  const k = info.kind.toLowerCase();
  return `${info.group === '' ? k : `${k}.${info.group}`}/${name}`;
}
