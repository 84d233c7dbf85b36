// Pods derived from their controllers: the fake cluster stores no pods for Deployments and StatefulSets, it shows
// the pods those would have, computed from the stored objects at read time (`kubectl get pods`, `wait pod`).
//
//   Deployment   spec.replicas pods of the current template, named <name>-<template hash>-<5 chars> with the
//                pod-template-hash label; Running and Ready, or Pending in ImagePullBackOff when the node cannot pull
//                an image (lib/registry.mts). While such a rollout is stuck, the old pods it keeps (status.replicas -
//                status.updatedReplicas) run the newest older revision whose images pull.
//   StatefulSet  <name>-0 .. <name>-(replicas-1), Running and Ready (buildkitd-0 is the pod `kubectl exec` reaches).
// Pods a chart effect stored (the ARC listener) are real stored objects, listed as before. A Deployment's derived
// pods cannot be deleted (`rollout restart` replaces them); a StatefulSet's can: it restarts at once (lib/store.mts).
// A container of rootless BuildKit the node's kernel refuses (lib/userns.mts): CrashLoopBackOff or CreateContainerError.
import crypto from 'node:crypto';
import type { K8sObject, KindInfo } from './kinds.mts';
import { at, isObj, kindByApiVersion } from './kinds.mts';
import type { RolloutRevision, Store } from './store.mts';
import { canonicalJson, clone } from './store.mts';
import { imagePullProblem } from './registry.mts';
import { podDenial } from './userns.mts';

/** Kubernetes' rand.SafeEncodeString alphabet (no vowels, no look-alikes), as in pod-template-hash values. */
const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function safeHash(text: string, length: number): string {
  const digest = crypto.createHash('sha256').update(text).digest();
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[(digest[i] as number) % ALPHABET.length];
  return out;
}

function kind(apiVersion: string, k: string): KindInfo {
  return kindByApiVersion(apiVersion, k) as KindInfo;
}

interface ContainerLike {
  name: string;
  image: string;
}

function containersOf(template: unknown): ContainerLike[] {
  const list = at(template, 'spec', 'containers');
  return Array.isArray(list)
    ? list.filter(isObj).map((c) => ({ name: String(c['name'] ?? ''), image: String(c['image'] ?? '') }))
    : [];
}

function podStatus(
  dir: string,
  template: unknown,
  since: string,
  pod: { namespace: string; name: string },
): Record<string, unknown> {
  const containers = containersOf(template);
  const images = [
    ...((at(template, 'spec', 'initContainers') as unknown[] | undefined) ?? [])
      .filter(isObj)
      .map((c) => String(c['image'] ?? '')),
    ...containers.map((c) => c.image),
  ];
  const blocked = images.some((i) => imagePullProblem(dir, i) !== undefined);
  // Rootless BuildKit on a kernel that restricts user namespaces (lib/userns.mts): crash loop or create error.
  const denied = blocked
    ? []
    : containers
        .map((c) => ({ c, d: podDenial(dir, pod.namespace, pod.name, c.name) }))
        .filter((x) => x.d !== undefined);
  const cond = (type: string, ok: boolean): Record<string, unknown> => ({
    type,
    status: ok ? 'True' : 'False',
    lastProbeTime: null,
    lastTransitionTime: since,
  });
  const ready = !blocked && denied.length === 0;
  return {
    phase: blocked || denied.some((x) => x.d?.kind === 'create') ? 'Pending' : 'Running',
    conditions: [
      cond('Initialized', !blocked),
      cond('Ready', ready),
      cond('ContainersReady', ready),
      cond('PodScheduled', true),
    ],
    containerStatuses: containers.map((c) => {
      const problem = imagePullProblem(dir, c.image);
      const d = denied.find((x) => x.c === c)?.d;
      if (d?.kind === 'crash') {
        return {
          name: c.name,
          image: c.image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 5,
          state: {
            waiting: { reason: 'CrashLoopBackOff', message: `back-off 2m40s restarting failed container=${c.name}` },
          },
          lastState: { terminated: { exitCode: 1, reason: 'Error', startedAt: since, finishedAt: since } },
        };
      }
      if (d?.kind === 'create') {
        return {
          name: c.name,
          image: c.image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: { waiting: { reason: 'CreateContainerError', message: d.message } },
        };
      }
      return {
        name: c.name,
        image: c.image,
        imageID: '',
        ready: !blocked,
        started: !blocked,
        restartCount: 0,
        state:
          problem !== undefined
            ? { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${c.image}": ${problem}` } }
            : blocked
              ? { waiting: { reason: 'PodInitializing' } }
              : { running: { startedAt: since } },
      };
    }),
    hostIP: '10.0.2.15',
    podIP: '10.42.0.10',
    startTime: since,
  };
}

function pod(
  store: Store,
  owner: K8sObject,
  ownerKind: string,
  name: string,
  template: unknown,
  labels: Record<string, string>,
): K8sObject {
  const since = owner.metadata.creationTimestamp ?? new Date().toISOString();
  const tplMeta = at(template, 'metadata');
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: owner.metadata.namespace ?? 'default',
      uid: crypto
        .createHash('sha256')
        .update(`${owner.metadata.uid ?? ''}/${name}`)
        .digest('hex')
        .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*$/, '$1-$2-$3-$4-$5'),
      creationTimestamp: since,
      labels: {
        ...(isObj(tplMeta) && isObj(tplMeta['labels']) ? (tplMeta['labels'] as Record<string, string>) : {}),
        ...labels,
      },
      ...(isObj(tplMeta) && isObj(tplMeta['annotations'])
        ? { annotations: clone(tplMeta['annotations'] as Record<string, string>) }
        : {}),
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: ownerKind,
          name: ownerKind === 'ReplicaSet' ? name.replace(/-[^-]+$/, '') : owner.metadata.name,
          uid: owner.metadata.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      ...clone((at(template, 'spec') as Record<string, unknown> | undefined) ?? {}),
      nodeName: store.cluster.nodeName,
    },
    status: podStatus(store.dir, template, since, { namespace: owner.metadata.namespace ?? 'default', name }),
  };
}

function deploymentPods(store: Store, d: K8sObject): K8sObject[] {
  const info = kind('apps/v1', 'Deployment');
  const template = at(d, 'spec', 'template');
  const replicas = typeof at(d, 'spec', 'replicas') === 'number' ? Number(at(d, 'spec', 'replicas')) : 1;
  const out: K8sObject[] = [];
  const add = (tpl: unknown, count: number): void => {
    const hash = safeHash(canonicalJson(tpl), 10);
    for (let i = 0; i < count; i++) {
      out.push(
        pod(store, d, 'ReplicaSet', `${d.metadata.name}-${hash}-${safeHash(`${hash}/${i}`, 5)}`, tpl, {
          'pod-template-hash': hash,
        }),
      );
    }
  };
  add(template, replicas);
  const old = Number(at(d, 'status', 'replicas') ?? 0) - Number(at(d, 'status', 'updatedReplicas') ?? 0);
  if (old > 0) {
    const key = canonicalJson(template);
    const hist: RolloutRevision[] = store.history(info, d.metadata.namespace, d.metadata.name);
    const previous = [...hist]
      .reverse()
      .find(
        (h) =>
          canonicalJson(h.template) !== key &&
          containersOf(h.template).every((c) => imagePullProblem(store.dir, c.image) === undefined),
      );
    if (previous !== undefined) add(previous.template, old);
  }
  return out;
}

function statefulSetPods(store: Store, s: K8sObject): K8sObject[] {
  const replicas = typeof at(s, 'spec', 'replicas') === 'number' ? Number(at(s, 'spec', 'replicas')) : 1;
  const rev = String(at(s, 'status', 'updateRevision') ?? `${s.metadata.name}-0`);
  return Array.from({ length: replicas }, (_, i) =>
    pod(store, s, 'StatefulSet', `${s.metadata.name}-${i}`, at(s, 'spec', 'template'), {
      'controller-revision-hash': rev,
      'statefulset.kubernetes.io/pod-name': `${s.metadata.name}-${i}`,
      'apps.kubernetes.io/pod-index': String(i),
    }),
  );
}

/** The pods the Deployments and StatefulSets of `namespace` (all namespaces when undefined) have. */
export function derivedPods(store: Store, namespace: string | undefined): K8sObject[] {
  return [
    ...store.list(kind('apps/v1', 'Deployment'), namespace).flatMap((d) => deploymentPods(store, d)),
    ...store.list(kind('apps/v1', 'StatefulSet'), namespace).flatMap((s) => statefulSetPods(store, s)),
  ];
}
