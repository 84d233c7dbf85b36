// Images of the codex-k8s service: where they are built (BuildKit in the cluster, manifests/buildkit), how they are
// named, which commit they come from, and who decides which one staging runs. Pure helpers (argv builders, parsers,
// the image ownership rule) for 50_deploy_codex_k8s and the launcher; they run nothing themselves.
//
//   build context   the uploaded app/ (REMOTE.app), streamed as a tar to build.sh on the exec's stdin
//   commit          source.json {"gitSha"} (REMOTE.sourceFile), written by the launcher from `git rev-parse HEAD`
//                   only when app/ has no uncommitted change, so the tag names exactly what is built
//   tag             sha-<first 12 hex> (appImageTag in lib/manifests.mts), the same as the deploy workflow's
//   push            <NAMES.registryInCluster>/codex-k8s:TAG (BuildKit, through the registry Service)
//   pull            registry.codex-k8s.internal:<CODEXK8S_INTERNAL_REGISTRY_PORT>/codex-k8s:TAG (containerd on the
//                   node, through registries.yaml from 20_install_k3s); both names reach the same registry
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OperationError } from './errors.mts';
import { kubectlArgv } from './kube.mts';
import { MANIFESTS_DIR, NAMES, appImageTag, recommendedLabels } from './manifests.mts';
import type { KubeObject } from './manifests.mts';

/** The host name containerd resolves through registries.yaml (20_install_k3s REGISTRY_HOSTNAME; a test keeps them equal). */
export const PULL_REGISTRY_HOST = 'registry.codex-k8s.internal';

/** build.sh, the file in the repository; 50_deploy_codex_k8s ships its text as the ConfigMap buildkit-scripts. */
export const BUILD_SCRIPT_FILE = join(MANIFESTS_DIR, 'buildkit', 'build.sh');

/** Exit code of `build.sh exists` when the tag is not in the registry (any other non-zero code is an error). */
export const EXIT_ABSENT = 3;

const TAG = /^sha-[0-9a-f]{12}$/;
const GIT_SHA = /^[0-9a-f]{40}$/;

export function pushRef(tag: string): string {
  return `${NAMES.registryInCluster}/${NAMES.appImageRepo}:${tag}`;
}

/** What the Deployment names: the registry as the node's containerd reaches it. */
export function pullRef(registryPort: number, tag: string): string {
  return `${PULL_REGISTRY_HOST}:${registryPort}/${NAMES.appImageRepo}:${tag}`;
}

/** The tag of an image reference of the service in the in-cluster registry (either host form), else undefined. */
export function internalTag(image: string): string | undefined {
  const m = /^(?:[a-z0-9.-]+:\d{1,5})\/([a-z0-9._/-]+):(sha-[0-9a-f]{12})$/.exec(image);
  return m !== null && m[1] === NAMES.appImageRepo ? m[2] : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The build script and its ConfigMap

export function buildScriptText(file: string = BUILD_SCRIPT_FILE): string {
  return readFileSync(file, 'utf8');
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The ConfigMap mounted at /opt/codex-k8s-build in buildkitd-0: build.sh, byte for byte the file in the repository. */
export function buildScriptsConfigMap(script: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: NAMES.buildkitScripts,
      namespace: NAMES.systemNamespace,
      labels: recommendedLabels('buildkitd', 'image-builder'),
      annotations: {
        'codex-k8s.io/source':
          'manifests/buildkit/build.sh (50_deploy_codex_k8s writes it; edit the file, not this object)',
      },
    },
    data: { 'build.sh': script },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// argv builders (the exec is the protocol of build.sh, the same for step 50 and the workflow)

function execArgv(words: readonly string[], stdin: boolean): string[] {
  return kubectlArgv(
    '-n',
    NAMES.systemNamespace,
    'exec',
    ...(stdin ? ['-i'] : []),
    NAMES.buildkitPod,
    '-c',
    NAMES.buildkitContainer,
    '--',
    NAMES.buildkitScriptPath,
    ...words,
  );
}

function checkTag(tag: string): void {
  if (!TAG.test(tag)) throw new OperationError(`not an image tag of the service: "${tag}" (want sha-<12 hex digits>)`);
}

/** `build.sh build TAG GIT_SHA`, the context tar on stdin. */
export function buildExecArgv(gitSha: string): string[] {
  const tag = appImageTag(gitSha);
  return execArgv(['build', tag, gitSha], true);
}

/** `build.sh exists TAG`: exit 0 present, 3 absent. */
export function existsExecArgv(tag: string): string[] {
  checkTag(tag);
  return execArgv(['exists', tag], false);
}

/** The build context: a tar of everything in `dir` (the uploaded app/), written to `out`. */
export function contextTarArgv(dir: string, out: string): string[] {
  return ['tar', '--create', '--file', out, '--numeric-owner', '--owner=0', '--group=0', '--directory', dir, '.'];
}

export interface BuildOutcome {
  status: 'pushed' | 'unchanged';
  ref: string;
}

/** The result line of `build.sh build` (its last stdout line); anything else is an error. */
export function parseBuildOutput(stdout: string, tag: string): BuildOutcome {
  const lines = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const last = lines[lines.length - 1] ?? '';
  const m = /^(pushed|unchanged) (\S+)$/.exec(last);
  if (m === null)
    throw new OperationError(
      `build.sh printed no result line ("pushed REF" or "unchanged REF"); its stdout ended with: ${last || '(nothing)'}`,
    );
  const ref = m[2] as string;
  if (ref !== pushRef(tag)) throw new OperationError(`build.sh reported ${ref}, want ${pushRef(tag)}`);
  return { status: m[1] as BuildOutcome['status'], ref };
}

// ---------------------------------------------------------------------------------------------------------------
// source.json: which commit the uploaded app/ is

export interface SourceInfo {
  gitSha: string;
}

export function sourceJson(gitSha: string): string {
  if (!GIT_SHA.test(gitSha)) throw new OperationError(`not a full git commit SHA: "${gitSha}"`);
  return JSON.stringify({ gitSha }) + '\n';
}

export function parseSourceJson(text: string, where: string): SourceInfo {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new OperationError(`${where} is not JSON (${(e as Error).message})`, {
      hint: 'run the launcher again: it writes this file with every upload',
    });
  }
  const sha =
    v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)['gitSha'] : undefined;
  if (typeof sha !== 'string' || !GIT_SHA.test(sha)) {
    throw new OperationError(`${where} has no gitSha of 40 lower-case hex digits`, {
      hint: 'run the launcher again from a clean git checkout: it writes this file with every upload',
    });
  }
  return { gitSha: sha };
}

/** `git rev-parse HEAD` in the repository (the launcher, on the laptop). */
export function gitHeadArgv(repoRoot: string): string[] {
  return ['git', '-C', repoRoot, 'rev-parse', '--verify', 'HEAD'];
}

/** Uncommitted changes under app/, untracked files included (ignored ones, such as node_modules, are not). */
export function gitAppStatusArgv(repoRoot: string): string[] {
  return ['git', '-C', repoRoot, 'status', '--porcelain', '--untracked-files=all', '--', 'app'];
}

/**
 * Why the uploaded app/ cannot be named by a commit (undefined when it can). `head`: exit code and stdout of
 * gitHeadArgv; `status`: of gitAppStatusArgv.
 */
export function appSourceProblem(
  head: { exitCode: number; stdout: string; stderr: string },
  status: { exitCode: number; stdout: string; stderr: string } | undefined,
): string | undefined {
  if (head.exitCode !== 0 || !GIT_SHA.test(head.stdout.trim())) {
    return (
      `this directory is not a git checkout with a commit (git rev-parse HEAD: ${(head.stderr || head.stdout).trim().split('\n')[0] || `exit ${head.exitCode}`}); ` +
      'the first image is tagged with the commit it is built from'
    );
  }
  if (status === undefined || status.exitCode !== 0)
    return `git status of app/ failed: ${(status?.stderr ?? '').trim().split('\n')[0] ?? ''}`;
  const changed = status.stdout.split('\n').filter((l) => l.trim() !== '');
  if (changed.length > 0) {
    const shown = changed
      .slice(0, 10)
      .map((l) => l.trim())
      .join(', ');
    return (
      `app/ has uncommitted changes (${shown}${changed.length > 10 ? `, and ${changed.length - 10} more` : ''}); ` +
      `the image would carry the tag of commit ${head.stdout.trim().slice(0, 12)} without being that commit: commit or stash them first`
    );
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Who owns the image

export interface ImageChoice {
  image: string;
  /** True when the step builds (and then pushes) the image first: only when the Deployment does not exist yet. */
  build: boolean;
  why: string;
}

interface ContainerLike {
  name?: unknown;
  image?: unknown;
}

/** The image of the app container in a live Deployment, or undefined when the container is not there. */
export function liveAppImage(deployment: KubeObject): string | undefined {
  const containers =
    (deployment['spec'] as { template?: { spec?: { containers?: ContainerLike[] } } } | undefined)?.template?.spec
      ?.containers ?? [];
  const c = containers.find((x) => x.name === NAMES.appContainer);
  return typeof c?.image === 'string' ? c.image : undefined;
}

/**
 * The image ownership rule. No Deployment yet: build the uploaded commit and deploy it. A Deployment exists: its
 * image belongs to the deploy workflow (and to `kubectl rollout undo`), so the live image is applied again as it is,
 * whatever the laptop's commit; a re-run of the bootstrap never rolls staging back.
 */
export function chooseImage(
  live: KubeObject | undefined,
  registryPort: number,
  gitSha: string | undefined,
): ImageChoice {
  if (live !== undefined) {
    const image = liveAppImage(live);
    if (image === undefined) {
      throw new OperationError(
        `the live Deployment ${live.metadata.namespace ?? ''}/${live.metadata.name} has no container "${NAMES.appContainer}"`,
        {
          hint: `someone changed it by hand; kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml -n ${live.metadata.namespace ?? ''} get deployment ${live.metadata.name} -o yaml`,
        },
      );
    }
    return {
      image,
      build: false,
      why: 'the live image is kept (the deploy workflow owns the tag once the Deployment exists)',
    };
  }
  if (gitSha === undefined)
    throw new OperationError('no commit for the first image: source.json is missing', {
      hint: 'run the launcher (it uploads app/ and source.json)',
    });
  const tag = appImageTag(gitSha);
  return {
    image: pullRef(registryPort, tag),
    build: true,
    why: `first deploy: the uploaded app/ at ${gitSha.slice(0, 12)} is built as ${tag}`,
  };
}
