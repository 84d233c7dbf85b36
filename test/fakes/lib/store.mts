// The fake cluster's state, as JSON files under the state dir:
//   cluster.json                          written by the k3s install double: {version, nodeName, disabled[], exec[]}.
//                                         Without it the "API server" is down (kubectl: connection refused).
//   objects/<plural[.group]>/<ns|_cluster>/<name>.json   one stored object each (what `get -o json` prints)
//   objects/.seeded                       the objects k3s itself creates were added (SEED_OBJECTS)
//   history/<plural.group>/<ns>/<name>.json   rollout history (pod templates by revision) for Deployments
//   rv                                    the cluster-wide resourceVersion counter
//   registry.json                         the in-cluster registry's pushed images (lib/registry.mts): a Deployment
//                                         whose internal image was never pushed gets a stuck status (refreshStatus)
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import crypto from 'node:crypto';
import type { K8sObject, KindInfo } from './kinds.mts';
import { ALL_KINDS, at, deploymentStuckStatus, isObj, kindByApiVersion, resourceName } from './kinds.mts';
import { deployedReleasesOfChart } from './helm-state.mts';
import { DoubleError } from './cli.mts';
import { imagePullProblem } from './registry.mts';
import { derivedPods } from './pods.mts';
import { podDenied, recordPodStarts } from './userns.mts';
import { seedBundledCharts } from './helm-controller.mts';

export const DEFAULT_K8S_VERSION = 'v1.31.4+k3s1';

export interface ClusterInfo {
  version: string;
  nodeName: string;
  /** k3s --disable values (traefik, metrics-server, ...). */
  disabled: string[];
}

/** Prefix for absolute "system" paths (kubeconfig), so unit tests can use a fake root. */
export function fakeRoot(env: NodeJS.ProcessEnv): string {
  return env['CODEXK8S_FAKES_ROOT'] ?? '';
}

export function readCluster(dir: string): ClusterInfo | undefined {
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(dir, 'cluster.json'), 'utf8')) as Partial<ClusterInfo>;
    return {
      version: typeof raw.version === 'string' ? raw.version : DEFAULT_K8S_VERSION,
      nodeName: typeof raw.nodeName === 'string' && raw.nodeName !== '' ? raw.nodeName : os.hostname(),
      disabled: Array.isArray(raw.disabled) ? raw.disabled.filter((d): d is string => typeof d === 'string') : [],
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export const CONNECTION_REFUSED =
  'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?';

/**
 * Like a client talking to the API server: needs a kubeconfig (the flag, else $KUBECONFIG, else ~/.kube/config,
 * else k3s' /etc/rancher/k3s/k3s.yaml as k3s' bundled kubectl does) and a running cluster (cluster.json).
 */
export function requireCluster(
  dir: string,
  env: NodeJS.ProcessEnv,
  kubeconfigFlag: string | undefined,
  format: (msg: string) => string,
): ClusterInfo {
  const root = fakeRoot(env);
  const rooted = (p: string): string => (path.isAbsolute(p) ? root + p : p);
  if (kubeconfigFlag !== undefined) {
    if (!fs.existsSync(rooted(kubeconfigFlag)))
      throw new DoubleError(format(`stat ${kubeconfigFlag}: no such file or directory`));
  } else {
    const candidates = [
      ...(env['KUBECONFIG'] ?? '').split(':').filter((p) => p !== ''),
      path.join(env['HOME'] ?? os.homedir(), '.kube', 'config'),
      '/etc/rancher/k3s/k3s.yaml',
    ];
    if (!candidates.some((p) => fs.existsSync(rooted(p)))) {
      throw new DoubleError(
        format('The connection to the server localhost:8080 was refused - did you specify the right host or port?'),
      );
    }
  }
  const cluster = readCluster(dir);
  if (cluster === undefined) throw new DoubleError(format(CONNECTION_REFUSED));
  return cluster;
}

// ---------------------------------------------------------------------------------------------------------------
// Server-managed fields

/** metadata fields the API server owns: never compared, never taken from a manifest. */
export const SERVER_METADATA = [
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'managedFields',
  'selfLink',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
] as const;
/** Annotations controllers own (kept across applies, ignored when comparing). */
export const SERVER_ANNOTATIONS = ['deployment.kubernetes.io/revision'] as const;

export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** The object without server-managed fields and status: what "unchanged" compares. */
export function userView(obj: K8sObject): K8sObject {
  const o = clone(obj);
  delete o['status'];
  for (const f of SERVER_METADATA) delete o.metadata[f];
  if (o.metadata.annotations !== undefined) {
    for (const a of SERVER_ANNOTATIONS) delete o.metadata.annotations[a];
    if (Object.keys(o.metadata.annotations).length === 0) delete o.metadata.annotations;
  }
  return o;
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (isObj(v))
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical(v[k])]),
    );
  return v;
}

export function canonicalJson(v: unknown): string {
  return JSON.stringify(canonical(v));
}

export function sameObject(a: K8sObject, b: K8sObject): boolean {
  return canonicalJson(userView(a)) === canonicalJson(userView(b));
}

/** Everything but metadata and status: a change here bumps metadata.generation. */
export function specView(obj: K8sObject): string {
  const o: Record<string, unknown> = { ...obj };
  delete o['metadata'];
  delete o['status'];
  return canonicalJson(o);
}

export function nowIso(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------------------------
// The store

export interface RolloutRevision {
  revision: number;
  template: unknown;
  at: string;
}

export class Store {
  readonly dir: string;
  readonly cluster: ClusterInfo;

  constructor(dir: string, cluster: ClusterInfo) {
    this.dir = dir;
    this.cluster = cluster;
    this.seedOnce();
  }

  private objectsRoot(): string {
    return path.join(this.dir, 'objects');
  }

  private file(info: KindInfo, namespace: string | undefined, name: string): string {
    return path.join(
      this.objectsRoot(),
      resourceName(info),
      info.namespaced ? (namespace ?? 'default') : '_cluster',
      `${name}.json`,
    );
  }

  get(info: KindInfo, namespace: string | undefined, name: string): K8sObject | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.file(info, namespace, name), 'utf8')) as K8sObject;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return info.kind === 'Pod' && info.group === ''
        ? derivedPods(this, namespace ?? 'default').find((p) => p.metadata.name === name)
        : undefined;
    }
  }

  /** Objects of a kind in one namespace, or in all namespaces when `namespace` is undefined. Sorted by ns, name. */
  list(info: KindInfo, namespace: string | undefined): K8sObject[] {
    const base = path.join(this.objectsRoot(), resourceName(info));
    if (!fs.existsSync(base) && info.kind !== 'Pod') return [];
    const nss = info.namespaced
      ? namespace !== undefined
        ? [namespace]
        : fs.existsSync(base)
          ? fs.readdirSync(base).sort()
          : []
      : ['_cluster'];
    const out: K8sObject[] = [];
    for (const ns of nss) {
      const d = path.join(base, ns);
      if (!fs.existsSync(d)) continue;
      for (const f of fs.readdirSync(d).sort())
        if (f.endsWith('.json')) out.push(JSON.parse(fs.readFileSync(path.join(d, f), 'utf8')) as K8sObject);
    }
    if (info.kind === 'Pod' && info.group === '') {
      // The pods of Deployments and StatefulSets are derived, not stored (lib/pods.mts).
      out.push(...derivedPods(this, namespace));
      out.sort(
        (a, b) =>
          (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') ||
          a.metadata.name.localeCompare(b.metadata.name),
      );
    }
    return out;
  }

  nextResourceVersion(): string {
    const f = path.join(this.dir, 'rv');
    let n = 1000;
    try {
      n = Number(fs.readFileSync(f, 'utf8')) || 1000;
    } catch {
      // first write
    }
    n += 1;
    fs.writeFileSync(f, String(n));
    return String(n);
  }

  /** Writes the object as is (the caller has set metadata); bumps resourceVersion. */
  put(info: KindInfo, obj: K8sObject): K8sObject {
    obj.metadata.resourceVersion = this.nextResourceVersion();
    const file = this.file(info, obj.metadata.namespace, obj.metadata.name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(obj, null, 2) + '\n');
    return obj;
  }

  /** Creates a new object: server fields and status filled in. */
  create(info: KindInfo, desired: K8sObject): K8sObject {
    const obj = clone(desired);
    obj.metadata = { ...obj.metadata, uid: crypto.randomUUID(), creationTimestamp: nowIso(), generation: 1 };
    if (info.kind === 'Deployment') this.recordTemplate(info, obj);
    this.refreshStatus(info, obj);
    return this.put(info, obj);
  }

  /** Replaces an existing object's user fields; keeps server fields, bumps generation on spec change. */
  update(info: KindInfo, current: K8sObject, desired: K8sObject): K8sObject {
    const obj = clone(desired);
    const keep: Record<string, unknown> = {};
    for (const f of SERVER_METADATA) if (current.metadata[f] !== undefined) keep[f] = current.metadata[f];
    obj.metadata = { ...obj.metadata, ...keep } as K8sObject['metadata'];
    for (const a of SERVER_ANNOTATIONS) {
      const v = current.metadata.annotations?.[a];
      if (v !== undefined) obj.metadata.annotations = { ...(obj.metadata.annotations ?? {}), [a]: v };
    }
    if (specView(obj) !== specView(current)) obj.metadata.generation = (current.metadata.generation ?? 1) + 1;
    if (info.status === undefined && current['status'] !== undefined) obj['status'] = current['status'];
    if (info.kind === 'Deployment') this.recordTemplate(info, obj);
    this.refreshStatus(info, obj, current);
    return this.put(info, obj);
  }

  /**
   * Lets the kind's fake controller (KindInfo.status) write the status; kinds without one keep theirs. A Deployment
   * whose pod template names an image the node cannot pull (lib/registry.mts) gets a stuck rollout instead, keeping
   * the pods that `previous` (the object before this change) had available.
   */
  refreshStatus(info: KindInfo, obj: K8sObject, previous?: K8sObject): void {
    const st = info.status?.(obj);
    if (st !== undefined) obj['status'] = st;
    if (info.kind === 'Deployment' && this.pullProblems(obj).length > 0) {
      // Recreate stops the old pods before starting new ones; RollingUpdate keeps them while the new ones fail.
      const recreate = at(obj, 'spec', 'strategy', 'type') === 'Recreate';
      obj['status'] = deploymentStuckStatus(
        obj,
        recreate ? 0 : Number(at(previous, 'status', 'availableReplicas') ?? 0),
      );
    }
    // The StatefulSet's pods (re)start now; those the kernel will not start (lib/userns.mts) never become ready.
    if (info.kind === 'StatefulSet' && isObj(obj['status'])) {
      const replicas = typeof at(obj, 'spec', 'replicas') === 'number' ? Number(at(obj, 'spec', 'replicas')) : 1;
      const pods = Array.from({ length: replicas }, (_, i) => `${obj.metadata.name}-${i}`);
      const ns = obj.metadata.namespace ?? 'default';
      const template = at(obj, 'spec', 'template');
      // Only a new or changed template (or a deleted pod: no `previous`) restarts them; otherwise the last verdict holds.
      const restart =
        previous === undefined || canonicalJson(at(previous, 'spec', 'template')) !== canonicalJson(template);
      if (restart ? recordPodStarts(this.dir, ns, pods, template) : pods.some((pod) => podDenied(this.dir, ns, pod))) {
        delete obj['status']['readyReplicas'];
        delete obj['status']['availableReplicas'];
      }
    }
  }

  /** Why the node cannot pull the images of a workload's pod template (containers and initContainers). */
  pullProblems(obj: K8sObject): string[] {
    const spec = at(obj, 'spec', 'template', 'spec');
    const images = ['initContainers', 'containers'].flatMap((k) => {
      const list = at(spec, k);
      return Array.isArray(list) ? list.map((c) => (isObj(c) && typeof c['image'] === 'string' ? c['image'] : '')) : [];
    });
    return images.map((i) => imagePullProblem(this.dir, i)).filter((p): p is string => p !== undefined);
  }

  /**
   * The Deployment controller after a push to the registry: a Deployment stuck on an image that is now pullable
   * rolls out. Returns what changed, in the words of calls.jsonl `changes`.
   */
  refreshDeployments(): string[] {
    const info = kindByApiVersion('apps/v1', 'Deployment') as KindInfo;
    const counts = (o: K8sObject): string =>
      canonicalJson(
        ['replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas', 'unavailableReplicas'].map(
          (k) => at(o, 'status', k) ?? 0,
        ),
      );
    const out: string[] = [];
    for (const obj of this.list(info, undefined)) {
      const next = clone(obj);
      this.refreshStatus(info, next, obj);
      if (counts(next) === counts(obj)) continue;
      this.put(info, next);
      out.push(
        `deployment.apps/${obj.metadata.name} in ${obj.metadata.namespace ?? 'default'} rolled out (its image is in the registry now)`,
      );
    }
    return out;
  }

  remove(info: KindInfo, namespace: string | undefined, name: string): boolean {
    const file = this.file(info, namespace, name);
    if (!fs.existsSync(file)) {
      const owner = info.kind === 'Pod' ? this.get(info, namespace, name)?.metadata['ownerReferences'] : undefined;
      if (Array.isArray(owner)) {
        const o = owner[0] as { kind?: string; name?: string } | undefined;
        if (o?.kind === 'StatefulSet' && o.name !== undefined) {
          // Its controller recreates it at once (same name), and the new pod's readiness is what the kernel allows now.
          const stsInfo = kindByApiVersion('apps/v1', 'StatefulSet') as KindInfo;
          const sts = this.get(stsInfo, namespace, o.name);
          if (sts !== undefined) {
            this.refreshStatus(stsInfo, sts);
            this.put(stsInfo, sts);
            return true;
          }
        }
        throw new DoubleError(
          `error: the fake kubectl cannot delete pod ${name}: its pods are derived from ${o?.kind ?? 'its controller'} ${o?.name ?? ''} ` +
            '(lib/pods.mts); use `kubectl rollout restart` to replace them',
        );
      }
      return false;
    }
    fs.rmSync(file);
    fs.rmSync(this.historyFile(info, namespace, name), { force: true });
    if (info.kind === 'Namespace') {
      // Namespace deletion takes everything in it.
      for (const k of ALL_KINDS) {
        if (!k.namespaced) continue;
        fs.rmSync(path.join(this.objectsRoot(), resourceName(k), name), { recursive: true, force: true });
        fs.rmSync(path.join(this.dir, 'history', resourceName(k), name), { recursive: true, force: true });
      }
      // Helm keeps its releases (Secrets) in the release's namespace: they go too.
      fs.rmSync(path.join(this.dir, 'helm', 'releases', name), { recursive: true, force: true });
    }
    return true;
  }

  namespaceExists(ns: string): boolean {
    const info = kindByApiVersion('v1', 'Namespace') as KindInfo;
    return this.get(info, undefined, ns) !== undefined;
  }

  // ---- rollout history (Deployments) -------------------------------------------------------------------------

  private historyFile(info: KindInfo, namespace: string | undefined, name: string): string {
    return path.join(this.dir, 'history', resourceName(info), namespace ?? 'default', `${name}.json`);
  }

  history(info: KindInfo, namespace: string | undefined, name: string): RolloutRevision[] {
    try {
      return JSON.parse(fs.readFileSync(this.historyFile(info, namespace, name), 'utf8')) as RolloutRevision[];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /**
   * Records the object's current pod template as the newest revision when it differs from the newest one
   * (a template equal to an older revision takes that revision's place, like a reused ReplicaSet); sets the
   * deployment.kubernetes.io/revision annotation. Returns the object's revision number.
   */
  recordTemplate(info: KindInfo, obj: K8sObject): number {
    const template = (obj['spec'] as Record<string, unknown> | undefined)?.['template'];
    let hist = this.history(info, obj.metadata.namespace, obj.metadata.name);
    const key = canonicalJson(template);
    const last = hist[hist.length - 1];
    let revision: number;
    if (last !== undefined && canonicalJson(last.template) === key) {
      revision = last.revision;
    } else {
      revision = (last?.revision ?? 0) + 1;
      hist = hist.filter((h) => canonicalJson(h.template) !== key);
      hist.push({ revision, template: clone(template), at: nowIso() });
      const file = this.historyFile(info, obj.metadata.namespace, obj.metadata.name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, JSON.stringify(hist, null, 2) + '\n');
    }
    obj.metadata.annotations = {
      ...(obj.metadata.annotations ?? {}),
      'deployment.kubernetes.io/revision': String(revision),
    };
    return revision;
  }

  // ---- seeding ------------------------------------------------------------------------------------------------

  private seedOnce(): void {
    const marker = path.join(this.objectsRoot(), '.seeded');
    if (fs.existsSync(marker)) return;
    for (const obj of seedObjects(this.cluster)) {
      const info = kindByApiVersion(obj.apiVersion, obj.kind);
      if (info === undefined) throw new Error(`seed object of unknown kind ${obj.apiVersion} ${obj.kind}`);
      if (this.get(info, obj.metadata.namespace, obj.metadata.name) === undefined) this.create(info, obj);
    }
    fs.mkdirSync(this.objectsRoot(), { recursive: true });
    fs.writeFileSync(marker, nowIso() + '\n');
  }

  // ---- kind availability --------------------------------------------------------------------------------------

  /** undefined when the kind is served; otherwise why not (for error messages). */
  unavailableReason(info: KindInfo): string | undefined {
    const p = info.providedBy;
    if (p === undefined) return undefined;
    if ('k3s' in p) {
      return p.unlessDisabled !== undefined && this.cluster.disabled.includes(p.unlessDisabled)
        ? `k3s runs with --disable ${p.unlessDisabled}`
        : undefined;
    }
    // A CRD applied by hand serves the kind too.
    const crdInfo = kindByApiVersion('apiextensions.k8s.io/v1', 'CustomResourceDefinition') as KindInfo;
    if (this.get(crdInfo, undefined, `${info.plural}.${info.group}`) !== undefined) return undefined;
    if (p.crdsDir)
      return `CRD ${info.plural}.${info.group} not found (chart ${p.chart} installs it from crds/ at install)`;
    const releases = deployedReleasesOfChart(this.dir, p.chart);
    if (releases.length === 0) return `no deployed helm release of chart ${p.chart} (which installs the CRD)`;
    if (p.when !== undefined && !releases.some((r) => p.when?.(r.values) === true))
      return `chart ${p.chart} is installed without ${p.whenText ?? 'the values that install its CRDs'}`;
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What a fresh k3s server has. Add objects here when a step relies on something k3s creates.

export function seedObjects(c: ClusterInfo): K8sObject[] {
  const ns = (name: string): K8sObject => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'kubernetes.io/metadata.name': name } },
  });
  const deploy = (name: string, app: string): K8sObject => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'kube-system', labels: { 'k8s-app': app } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { 'k8s-app': app } },
      template: {
        metadata: { labels: { 'k8s-app': app } },
        spec: { containers: [{ name: app, image: `rancher/fake-${app}:k3s` }] },
      },
    },
  });
  const out: K8sObject[] = [ns('default'), ns('kube-system'), ns('kube-public'), ns('kube-node-lease')];
  out.push({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: c.nodeName,
      labels: {
        'kubernetes.io/hostname': c.nodeName,
        'kubernetes.io/os': 'linux',
        'node-role.kubernetes.io/control-plane': 'true',
        'node-role.kubernetes.io/master': 'true',
      },
    },
    spec: { podCIDR: '10.42.0.0/24', podCIDRs: ['10.42.0.0/24'] },
    status: {
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
          lastHeartbeatTime: nowIso(),
          lastTransitionTime: nowIso(),
        },
      ],
      nodeInfo: {
        kubeletVersion: c.version,
        kubeProxyVersion: c.version,
        containerRuntimeVersion: 'containerd://fake',
        osImage: 'codex-k8s sandbox',
        operatingSystem: 'linux',
        architecture: 'amd64',
      },
    },
  });
  out.push(deploy('coredns', 'kube-dns'));
  if (!c.disabled.includes('local-storage')) {
    out.push(deploy('local-path-provisioner', 'local-path-provisioner'));
    out.push({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'local-path', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'rancher.io/local-path',
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'WaitForFirstConsumer',
    });
  }
  if (!c.disabled.includes('metrics-server')) out.push(deploy('metrics-server', 'metrics-server'));
  if (!c.disabled.includes('traefik')) {
    out.push(deploy('traefik', 'traefik'));
    out.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'IngressClass',
      metadata: { name: 'traefik', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } },
      spec: { controller: 'traefik.io/ingress-controller' },
    });
  }
  // helm-controller's HelmChart, values Secret and completed install Job per bundled chart (lib/helm-controller.mts).
  out.push(...seedBundledCharts(c));
  return out;
}
