// The one renderer of the Kubernetes manifests under manifests/<component>/.
//
// Templates are plain YAML with placeholders `${NAME}` (upper case). Each placeholder stands for a whole YAML
// scalar and is replaced by the JSON form of its value ("text" quoted, 7 unquoted), so a value can never break
// the YAML around it or inject keys. A placeholder inside a longer scalar (`foo-${X}`), one without a value, and
// a value that no template of the component uses are all errors: a typo fails the run, it never ships.
// Shell scripts inside templates must therefore write their own variables as `$var` or `${lower_case}`.
//
// Files: `*.yaml` apply in both modes, `*.server.yaml` only in server mode, `*.local.yaml` only in local mode.
// Files are read in name order; every document must be a Kubernetes object (apiVersion, kind, metadata.name).
//
// On the server the tree lives at /opt/codex-k8s-bootstrap/manifests (uploaded next to bootstrap/); the path is
// found relative to this file, so the same code works in the repository and in the uploaded copy.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { OperationError } from './errors.mts';

export const MANIFESTS_DIR = fileURLToPath(new URL('../../manifests/', import.meta.url));

export type Mode = 'local' | 'server';

/** A Kubernetes object as rendered (only the fields every object has are typed). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export type PlaceholderValue = string | number | boolean;

export interface Rendered {
  component: string;
  mode: Mode;
  /** The files used, in order (relative to the manifests dir). */
  files: string[];
  objects: KubeObject[];
  /** All documents as one multi-document YAML text (what `kubectl apply -f -` gets). */
  yaml: string;
}

/** Names that other steps and the runbook refer to. Change them here only. */
export const NAMES = {
  systemNamespace: 'codex-k8s-system',
  registryService: 'registry',
  registryDeployment: 'registry',
  /** In-cluster address for pods (BuildKit pushes here). */
  registryInCluster: 'registry.codex-k8s-system.svc.cluster.local:5000',
  clusterIssuer: 'letsencrypt',
  traefikConfig: 'traefik',
  networkPolicy: 'baseline',
  postgresStatefulSet: 'postgres',
  postgresService: 'postgres',
  postgresSecret: 'postgres-credentials',
  /** The data PVC the StatefulSet's volumeClaimTemplate `data` creates for pod 0. Never deleted by any script. */
  postgresDataPvc: 'data-postgres-0',
  postgresBackupPvc: 'postgres-backups',
  postgresBackupCronJob: 'postgres-backup',
  /** The runners' ServiceAccount (runner namespace) and its Role/RoleBinding (staging namespace): manifests/runner. */
  runnerServiceAccount: 'codex-k8s-runner',
  runnerRole: 'codex-k8s-deployer',
  runnerRoleBinding: 'codex-k8s-runner-deployer',
  /** The nightly backup's Role (staging namespace, manifests/runner): exec into postgres-0, nothing else. */
  backupRole: 'codex-k8s-backup',
  backupRoleBinding: 'codex-k8s-runner-backup',
  /** Secret (runner namespace) with key github_token that ARC reads (chart value githubConfigSecret). */
  runnerGitHubSecret: 'codex-k8s-runner-github',
  /** The codex-k8s staging service (manifests/app, 50_deploy_codex_k8s): Deployment, Service and Ingress share it. */
  app: 'codex-k8s',
  /** The app's container in the Deployment (what `kubectl set image deployment/codex-k8s app=...` names). */
  appContainer: 'app',
  /** The app's image repository in the in-cluster registry; tags are `sha-<12 hex>` (appImageTag). */
  appImageRepo: 'codex-k8s',
  /** The app's runtime Secret (staging namespace), created once by 50_deploy_codex_k8s, key github-webhook-secret. */
  appRuntimeSecret: 'codex-k8s-runtime',
  /** The TLS Secret cert-manager fills for the Ingress (server mode). */
  appTlsSecret: 'codex-k8s-tls',
  /** BuildKit (manifests/buildkit, system namespace): StatefulSet with one pod, buildkitd-0, container buildkitd. */
  buildkitStatefulSet: 'buildkitd',
  buildkitPod: 'buildkitd-0',
  buildkitContainer: 'buildkitd',
  /** ConfigMap with the build script, mounted in buildkitd-0 at buildkitScriptPath. */
  buildkitScripts: 'buildkit-scripts',
  buildkitScriptPath: '/opt/codex-k8s-build/build.sh',
  /** Role (system namespace) letting the runner ServiceAccount exec into buildkitd-0 only, and its RoleBinding. */
  builderRole: 'codex-k8s-builder',
  builderRoleBinding: 'codex-k8s-runner-builder',
} as const;

/** The image tag of a git commit: `sha-` and the first 12 hex digits (what the deploy workflow computes too). */
export function appImageTag(gitSha: string): string {
  if (!/^[0-9a-f]{40}$/.test(gitSha))
    throw new OperationError(`not a full git commit SHA: "${gitSha}" (want 40 lower-case hex digits)`);
  return `sha-${gitSha.slice(0, 12)}`;
}

export const ACME_SERVERS = {
  production: 'https://acme-v02.api.letsencrypt.org/directory',
  staging: 'https://acme-staging-v02.api.letsencrypt.org/directory',
} as const;

const PLACEHOLDER = /\$\{([A-Z][A-Z0-9_]*)\}/g;

/** The files of a component that apply in `mode`, in name order. */
export function componentFiles(component: string, mode: Mode, root: string = MANIFESTS_DIR): string[] {
  const dir = join(root, component);
  if (!existsSync(dir)) throw new OperationError(`no manifests for component "${component}" (${dir} does not exist)`);
  const other = mode === 'server' ? '.local.yaml' : '.server.yaml';
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && !f.endsWith(other))
    .sort()
    .map((f) => `${component}/${f}`);
}

/** Placeholders used by a template text. */
export function placeholdersIn(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1] as string))];
}

/**
 * Replaces each `${NAME}` by the JSON form of values[NAME]. Throws when a placeholder has no value or is not a
 * whole scalar (after `key: `, `- `, `[`, `{` or `, `, and followed by the end of the line, `,`, `]`, `}` or ` #`).
 */
export function substitute(text: string, values: Readonly<Record<string, PlaceholderValue>>, where: string): string {
  const problems: string[] = [];
  const out = text.replace(PLACEHOLDER, (match, name: string, offset: number) => {
    const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
    const lineEnd = text.indexOf('\n', offset) === -1 ? text.length : text.indexOf('\n', offset);
    const before = text.slice(lineStart, offset);
    const after = text.slice(offset + match.length, lineEnd);
    const line = text.slice(0, offset).split('\n').length;
    if (!/(^|:\s+|-\s+|\[\s*|\{\s*|,\s*)$/.test(before) || !/^\s*($|,|\]|\}|\s#)/.test(after)) {
      problems.push(
        `${where}:${line}: ${match} must be a whole YAML value (not part of a longer string); compute the full value in code`,
      );
      return match;
    }
    const v = values[name];
    if (v === undefined) {
      problems.push(`${where}:${line}: ${match} has no value`);
      return match;
    }
    if (typeof v === 'number' && !Number.isFinite(v)) {
      problems.push(`${where}:${line}: ${match} is not a finite number`);
      return match;
    }
    return JSON.stringify(v);
  });
  if (problems.length > 0) throw new OperationError(`manifest template error:\n${problems.join('\n')}`);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Parses multi-document YAML into objects; every document must be a Kubernetes object. */
export function parseObjects(text: string, where: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0)
      throw new OperationError(`${where}: not valid YAML: ${doc.errors[0]?.message ?? 'parse error'}`);
    const v = doc.toJS() as unknown;
    if (v === null || v === undefined) continue;
    if (
      !isObject(v) ||
      typeof v['apiVersion'] !== 'string' ||
      typeof v['kind'] !== 'string' ||
      !isObject(v['metadata']) ||
      typeof v['metadata']['name'] !== 'string'
    ) {
      throw new OperationError(
        `${where}: a document is not a Kubernetes object (apiVersion, kind and metadata.name are required)`,
      );
    }
    out.push(v as KubeObject);
  }
  return out;
}

/**
 * Renders one component for one mode. `values` must cover exactly the placeholders its files use: a missing one
 * and an unused one are both errors.
 */
export function render(
  component: string,
  mode: Mode,
  values: Readonly<Record<string, PlaceholderValue>>,
  root: string = MANIFESTS_DIR,
): Rendered {
  const files = componentFiles(component, mode, root);
  const used = new Set<string>();
  const objects: KubeObject[] = [];
  const texts: string[] = [];
  for (const f of files) {
    const raw = readFileSync(join(root, f), 'utf8');
    for (const p of placeholdersIn(raw)) used.add(p);
    const text = substitute(raw, values, f);
    objects.push(...parseObjects(text, f));
    texts.push(`# Source: manifests/${f}\n${text.trim()}\n`);
  }
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length > 0)
    throw new OperationError(
      `manifests/${component} (${mode} mode) uses no placeholder ${unused.map((u) => '${' + u + '}').join(', ')}: a value was given for nothing`,
    );
  return { component, mode, files, objects, yaml: texts.join('---\n') };
}

/** Objects back to one multi-document YAML text (JSON documents: valid YAML, nothing to escape). */
export function toYamlStream(objects: readonly KubeObject[]): string {
  return objects.map((o) => JSON.stringify(o)).join('\n---\n') + '\n';
}

/** `Deployment codex-k8s-system/registry`, `Namespace codex-k8s-staging`: how drift lines name an object. */
export function describeObject(o: KubeObject): string {
  return `${o.kind} ${o.metadata.namespace !== undefined ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
}

/** The app.kubernetes.io labels every object of the bootstrap carries. */
export function recommendedLabels(name: string, component: string, instance = name): Record<string, string> {
  return {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/instance': instance,
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/part-of': 'codex-k8s',
    'app.kubernetes.io/managed-by': 'codex-k8s-bootstrap',
  };
}
