// The fake in-cluster registry: the images `build.sh build` pushed (run through `kubectl exec` into buildkitd-0,
// see lib/buildkit.mts), and what that means for pulls (a Deployment whose image was never pushed never becomes
// available, like pods stuck in ImagePullBackOff).
//
// State: registry.json in the state dir:
//   {"images": {"codex-k8s:sha-0123456789ab": {"ref", "repository", "tag", "gitSha", "contextSha256", "digest",
//                                              "pushedAt"}}}
// Keys are `<repository>:<tag>`: every host form of the registry maps to the same store (pods pull through
// registry.codex-k8s.internal:<port> or 127.0.0.1:<port>, BuildKit pushes to the Service's cluster DNS name).
//
// This file must stay dependency-free (node: modules only): the sandbox runs it with plain Node 24.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

/**
 * Where BuildKit pushes: NAMES.registryInCluster of bootstrap/lib/manifests.mts (a unit test keeps them equal; the
 * doubles cannot import bootstrap/ because only test/fakes is copied into the sandbox).
 */
export const REGISTRY_IN_CLUSTER = 'registry.codex-k8s-system.svc.cluster.local:5000';

/**
 * Hosts the node's containerd pulls from: 20_install_k3s maps both to http://127.0.0.1:<port> in registries.yaml.
 * The port is not checked (the double has no registries.yaml); `localhost` is not mapped, so it is not here.
 */
const PULL_HOSTS = /^(registry\.codex-k8s\.internal|127\.0\.0\.1):\d{1,5}$/;

export interface PushedImage {
  /** The reference pushed, as BuildKit names it: `<REGISTRY_IN_CLUSTER>/<repository>:<tag>`. */
  ref: string;
  repository: string;
  tag: string;
  /** The GIT_SHA build argument. */
  gitSha: string;
  /** sha256 of the build context tar that came in on stdin. */
  contextSha256: string;
  /** A made-up manifest digest (sha256 of ref, context and git sha), stable for the same inputs. */
  digest: string;
  pushedAt: string;
}

interface RegistryFile {
  images: Record<string, PushedImage>;
}

function registryFile(dir: string): string {
  return path.join(dir, 'registry.json');
}

function load(dir: string): RegistryFile {
  let text: string;
  try {
    text = fs.readFileSync(registryFile(dir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { images: {} };
    throw err;
  }
  const raw = JSON.parse(text) as Partial<RegistryFile>;
  return { images: raw.images ?? {} };
}

/** Every pushed image, oldest first. A missing registry.json is an empty registry. */
export function readRegistry(dir: string): PushedImage[] {
  return Object.values(load(dir).images).sort(
    (a, b) => a.pushedAt.localeCompare(b.pushedAt) || a.ref.localeCompare(b.ref),
  );
}

export function findPushed(dir: string, repository: string, tag: string): PushedImage | undefined {
  return load(dir).images[`${repository}:${tag}`];
}

/** Records a push (the caller holds the state-dir lock, as every double does). */
export function recordPush(dir: string, image: Omit<PushedImage, 'ref' | 'digest' | 'pushedAt'>): PushedImage {
  const ref = `${REGISTRY_IN_CLUSTER}/${image.repository}:${image.tag}`;
  const digest =
    'sha256:' + crypto.createHash('sha256').update(`${ref}\n${image.contextSha256}\n${image.gitSha}`).digest('hex');
  const entry: PushedImage = { ref, ...image, digest, pushedAt: new Date().toISOString() };
  const reg = load(dir);
  reg.images[`${image.repository}:${image.tag}`] = entry;
  fs.writeFileSync(registryFile(dir), JSON.stringify(reg, null, 2) + '\n');
  return entry;
}

export interface ImageRef {
  /** Registry host[:port]; undefined for Docker Hub short names (nginx:1.27, library/x). */
  host: string | undefined;
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

/** Splits an image reference the way the container runtime does (a first component with . or : is a host). */
export function parseImageRef(image: string): ImageRef {
  let rest = image;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let host: string | undefined;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      host = first;
      rest = rest.slice(slash + 1);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon !== -1) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { host, repository: rest, tag, digest };
}

/**
 * Why the node could not pull `image`, or undefined when it can. Only the in-cluster registry is simulated: any
 * other image (docker.io, ghcr.io, rancher/...) is taken as pullable, as before.
 */
export function imagePullProblem(dir: string, image: string): string | undefined {
  const ref = parseImageRef(image);
  if (ref.host === REGISTRY_IN_CLUSTER.split(':')[0] || ref.host === REGISTRY_IN_CLUSTER) {
    return (
      `${image}: the node's containerd resolves names with the host's DNS, not the cluster's, so it cannot reach ` +
      `${REGISTRY_IN_CLUSTER}; pods must pull through registry.codex-k8s.internal:<port> (registries.yaml)`
    );
  }
  if (ref.host === undefined || !PULL_HOSTS.test(ref.host)) return undefined;
  if (ref.digest !== undefined) return `${image}: the fake registry knows tags only (pull by tag)`;
  const tag = ref.tag ?? 'latest';
  if (findPushed(dir, ref.repository, tag) === undefined) {
    return `${image}: ${ref.repository}:${tag} was never pushed to the in-cluster registry (Failed to pull image: not found; ImagePullBackOff)`;
  }
  return undefined;
}
