// kubectl test double (codex-k8s sandbox). NOT the real kubectl: a strict, stateful stand-in that runs where there
// is no cluster. State lives in ${CODEXK8S_FAKES_DIR:-/var/lib/codex-k8s-fakes} (see lib/store.mts); every call is
// recorded in calls.jsonl (lib/recorder.mts); faults.json can make a given call fail.
//
// Supports (output and errors shaped like kubectl 1.31):
//   global   --kubeconfig F, -n/--namespace NS, --context C, --request-timeout D
//   apply    -f FILE|DIR|- (repeatable; multi-document YAML or JSON; List kinds), --server-side, --field-manager,
//            --force-conflicts, --dry-run=none|client|server, -o name, --validate=strict|true
//   get      KIND[/NAME] [NAME...], -o json|yaml|name|wide|jsonpath=TEMPLATE (lib/jsonpath.mts), -l k=v[,k=v]
//            (equality only), -A/--all-namespaces, --ignore-not-found
//   delete   KIND NAME... | KIND/NAME... | -f FILE, -l k=v, --ignore-not-found, --wait, --timeout
//   wait     --for=condition=C[=V] | --for=delete | --for=jsonpath='{.path}'=V  KIND/NAME... | KIND -l k=v | KIND --all
//            --timeout D (default 30s). The fake never waits: not met now = "timed out".
//   rollout  status deployment|statefulset|daemonset/NAME --timeout D (required: real status waits forever)
//            undo deployment/NAME [--to-revision N] | restart KIND/NAME | history deployment/NAME
//            A Deployment whose image is in the in-cluster registry but was never pushed never becomes available
//            (lib/registry.mts: ImagePullBackOff): status prints kubectl's "Waiting for ..." and times out.
//   set      image deployment|statefulset|daemonset/NAME (or KIND NAME) CONTAINER=IMAGE... (`*=IMAGE`: all);
//            prints `deployment.apps/NAME image updated`, nothing when the image is already that (not mutating);
//            a change is a new rollout revision (`rollout undo` goes back). --record is refused (deprecated).
//   exec     [-i] buildkitd-0 -c buildkitd -- /opt/codex-k8s-build/build.sh exists TAG | build TAG GIT_SHA, in
//            codex-k8s-system only (lib/buildkit.mts: the build.sh protocol, the stdin tar checked, pushes kept in
//            registry.json); and into postgres-0 -c postgres of a StatefulSet postgres in -n NS, exactly
//              printenv NAME... (the container's env from the pod spec, secretKeyRef resolved) |
//              -i psql -X -q -At -v ON_ERROR_STOP=1 -U USER -d DB | pg_dump -Fc -U USER -d DB [--snapshot=ID] |
//              -i pg_restore --exit-on-error --single-transaction [--clean [--if-exists]] --no-owner --no-privileges
//              -U USER -d DB
//            (flags in any order; USER/DB = POSTGRES_USER/POSTGRES_DB of the Secret postgres-credentials, else the
//            real "FATAL:  role/database ... does not exist"): lib/postgres-exec.mts runs the REAL binary against
//            the PostgreSQL named by postgres.json in the state dir, stdin/stdout streamed, after the state lock is
//            released (a psql session stays open while pg_dump runs). The remote exit code is kubectl's ("command
//            terminated with exit code N"). -t is refused, and so are psql/pg_restore without -i, pg_dump with it.
//            Any other pod, container, command or flag is refused with what is supported (lib/exec-targets.mts
//            SUPPORTED_EXEC). calls.jsonl `detail.exec` has the words; stdin only as stdinSha256.
//   create   namespace NAME
//   diff     -f FILE|DIR|- : compares each object with the stored one the way apply would (so apply then diff is
//            clean); exit 0 no differences, 1 differences (a unified diff per object on stdout, in sections
//            `diff -u -N /tmp/LIVE-x/NAME /tmp/MERGED-x/NAME` like the real one; Secret values shown as ***),
//            >1 on any error (validation, unknown kind, missing namespace: the real one's server dry run fails).
//   version  [--client] [-o json|yaml]      cluster-info
//   logs     job/NAME [--tail=N]: the install Jobs of k3s' helm-controller (lib/helm-controller.mts), which reacts to an
//            applied HelmChartConfig at once: values Secret updated, Job re-run, Failed when the chart's schema refuses.
//            pod/NAME [-c C] [--previous]: only a rootless BuildKit container the node's kernel refuses (lib/userns.mts).
// Behaviour: objects are validated strictly (lib/validate.mts: kubernetes-models 1.36 schemas + unknown fields +
// API-server rules); created/configured/unchanged like client-side apply; metadata uid/resourceVersion/generation/
// creationTimestamp maintained; Deployments/StatefulSets/DaemonSets/Jobs/CRDs get a "ready" status at once
// (KindInfo.status); Secrets: data must be base64, stringData is merged into data; Secret data appears only in
// `get -o json|yaml|jsonpath`. A namespaced object needs its namespace. The cluster must be "up" (cluster.json,
// written by the k3s install double) and a kubeconfig must exist, or you get "connection refused".
// Refuses (exit 1, clear message): apply --prune, -k/kustomize, --validate=false, http(s) -f URLs, label selectors
// other than equality, JSONPath beyond simple paths, unknown verbs/flags/kinds, CR kinds whose CRD isn't installed.
// Pods of Deployments and StatefulSets are derived from them at read time (lib/pods.mts: get/wait see them, delete
// refuses a Deployment's; a StatefulSet's is "recreated" at once, its owner's readiness re-evaluated); a Deployment pod
// whose internal image was never pushed shows ImagePullBackOff; rootless BuildKit on a kernel restricting user
// namespaces crash-loops (lib/userns.mts).
// Deliberately not simulated: events, real waiting, three-way merge (an apply replaces the user fields;
// only the restartedAt template annotation from `rollout restart` survives it), field ownership.
//
// To add a verb: add an entry to VERBS below (flags + run). To add a kind: lib/kinds.mts.
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import type { FlagTable, Outcome, ParsedArgs, ParseStyle, ToolIO, VerbContext, VerbSpec } from './lib/cli.mts';
import {
  DoubleError,
  emptyOutcome,
  flagBool,
  flagList,
  flagString,
  parseArgs,
  parseDuration,
  runDouble,
  runVerb,
} from './lib/cli.mts';
import type { K8sObject, KindInfo } from './lib/kinds.mts';
import {
  at,
  EXTENSION_KINDS,
  isObj,
  kindByApiVersion,
  kindByResourceArg,
  printName,
  resourceName,
} from './lib/kinds.mts';
import {
  clone,
  DEFAULT_K8S_VERSION,
  readCluster,
  requireCluster,
  sameObject,
  SERVER_METADATA,
  Store,
  userView,
} from './lib/store.mts';
import { validateObject } from './lib/validate.mts';
import { JsonPathError, renderJsonPath } from './lib/jsonpath.mts';
import { checkExecTarget, runBuildScript } from './lib/buildkit.mts';
import { POSTGRES, SUPPORTED_EXEC, terminated } from './lib/exec-targets.mts';
import { checkPostgresExec, postgresPrintenv, runPostgresExec } from './lib/postgres-exec.mts';
import { jobLog, reconcileHelmChartConfig } from './lib/helm-controller.mts';
import { podDenial } from './lib/userns.mts';

const GLOBAL_FLAGS: FlagTable = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  context: { type: 'string' },
  'request-timeout': { type: 'string' },
  help: { type: 'bool', short: 'h' },
};

interface Ctx extends VerbContext<Store> {
  /** -n was given. */
  readonly explicitNamespace: boolean;
  /** The words after `--` (exec's command); undefined without `--`. */
  readonly command: string[] | undefined;
}

type Verb = VerbSpec<Ctx>;

const say = (ctx: Ctx, line: string): void => {
  ctx.out.stdout += line + '\n';
};
const warn = (ctx: Ctx, line: string): void => {
  ctx.out.stderr += line + '\n';
};
const changed = (ctx: Ctx, what: string): void => {
  ctx.out.mutating = true;
  ctx.out.changes.push(what);
};

function styleFor(verb: string): ParseStyle {
  const see = verb === '' ? "See 'kubectl --help' for usage." : `See 'kubectl ${verb} --help' for usage.`;
  return {
    unknownFlag: (f) => `error: unknown flag: ${f}\n${see}`,
    badValue: (f, v, allowed) =>
      `error: invalid argument "${v}" for "${f}" flag: must be one of: ${allowed.join(', ')}\n${see}`,
    missingValue: (f) => `error: flag needs an argument: ${f}\n${see}`,
  };
}

function timeoutMs(p: ParsedArgs, fallback: string | undefined): number | undefined {
  const raw = flagString(p, 'timeout') ?? fallback;
  if (raw === undefined) return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined)
    throw new DoubleError(
      `error: invalid argument "${raw}" for "--timeout" flag: time: missing unit in duration "${raw}"`,
    );
  return ms;
}

// ---------------------------------------------------------------------------------------------------------------
// Manifests

interface Doc {
  readonly source: string;
  readonly obj: unknown;
}

function listFiles(p: string): string[] {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return [p];
  return fs
    .readdirSync(p)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => path.join(p, f));
}

/** Reads -f arguments into objects, expanding List kinds. YAML 1.1 like kubectl (yes/on are booleans). */
function loadManifests(ctx: Ctx, files: string[]): Doc[] {
  const docs: Doc[] = [];
  for (const f of files) {
    if (/^https?:\/\//.test(f))
      throw new DoubleError(
        `error: the fake kubectl refuses -f ${f}: the sandbox has no internet; ship the manifest and apply the local file`,
      );
    const sources: Array<{ source: string; text: string }> = [];
    if (f === '-') {
      sources.push({ source: 'STDIN', text: ctx.io.readStdin().toString('utf8') });
    } else {
      if (!fs.existsSync(f)) throw new DoubleError(`error: the path "${f}" does not exist`);
      for (const file of listFiles(f)) sources.push({ source: file, text: fs.readFileSync(file, 'utf8') });
    }
    for (const { source, text } of sources) {
      for (const d of parseAllDocuments(text, { version: '1.1' })) {
        if (d.errors.length > 0)
          throw new DoubleError(`error: error parsing ${source}: ${d.errors[0]?.message ?? 'invalid YAML'}`);
        const value = d.toJS() as unknown;
        if (value === null || value === undefined) continue;
        const expand = (v: unknown): void => {
          if (isObj(v) && typeof v['kind'] === 'string' && v['kind'].endsWith('List') && Array.isArray(v['items']))
            v['items'].forEach(expand);
          else docs.push({ source, obj: v });
        };
        expand(value);
      }
    }
  }
  return docs;
}

function mappingError(
  name: string,
  ns: string,
  source: string,
  kind: string,
  apiVersion: string,
  why: string | undefined,
): string {
  return (
    `error: resource mapping not found for name: "${name}" namespace: "${ns}" from "${source}": no matches for kind "${kind}" in version "${apiVersion}"\n` +
    'ensure CRDs are installed first' +
    (why !== undefined ? `\n(fake kubectl: ${why})` : '')
  );
}

interface Resolved {
  readonly source: string;
  readonly obj: K8sObject;
  readonly info: KindInfo;
}

/**
 * Resolves and validates every document before anything is applied (a bad object aborts the whole apply; the real
 * kubectl would apply the valid ones first). Sets metadata.namespace on namespaced objects.
 */
async function resolveAll(ctx: Ctx, docs: Doc[], store: Store): Promise<Resolved[]> {
  const out: Resolved[] = [];
  const errors: string[] = [];
  for (const { source, obj } of docs) {
    if (!isObj(obj) || typeof obj['apiVersion'] !== 'string' || typeof obj['kind'] !== 'string') {
      const missing = [
        !isObj(obj) || typeof obj['apiVersion'] !== 'string' ? 'apiVersion not set' : '',
        !isObj(obj) || typeof obj['kind'] !== 'string' ? 'kind not set' : '',
      ].filter((s) => s !== '');
      errors.push(`error: error validating "${source}": error validating data: [${missing.join(', ')}]`);
      continue;
    }
    const o = obj as K8sObject;
    const name = isObj(o.metadata) && typeof o.metadata.name === 'string' ? o.metadata.name : '';
    const info = kindByApiVersion(o.apiVersion, o.kind);
    const why = info === undefined ? undefined : store.unavailableReason(info);
    if (info === undefined || why !== undefined) {
      const metaNs = isObj(o.metadata) && typeof o.metadata.namespace === 'string' ? o.metadata.namespace : '';
      errors.push(
        mappingError(name, metaNs, source, o.kind, o.apiVersion, info === undefined ? crdHint(store, o) : why),
      );
      continue;
    }
    const problems = await validateObject(o, info);
    if (problems.length > 0) {
      errors.push(
        `error: error validating "${source}": ${o.kind} "${name}" is invalid:\n${problems.map((p) => `* ${p}`).join('\n')}`,
      );
      continue;
    }
    const copy = clone(o);
    if (info.namespaced) {
      const metaNs = copy.metadata.namespace;
      if (metaNs !== undefined && ctx.explicitNamespace && metaNs !== ctx.namespace()) {
        errors.push(
          `error: the namespace from the provided object "${metaNs}" does not match the namespace "${ctx.namespace()}". You must pass '--namespace=${metaNs}' to perform this operation.`,
        );
        continue;
      }
      copy.metadata.namespace = metaNs ?? ctx.namespace();
    } else {
      delete copy.metadata.namespace;
    }
    out.push({ source, obj: copy, info });
  }
  if (errors.length > 0) throw new DoubleError(errors.join('\n'));
  return out;
}

function crdHint(store: Store, o: K8sObject): string | undefined {
  const crd = kindByApiVersion('apiextensions.k8s.io/v1', 'CustomResourceDefinition') as KindInfo;
  const served = store.list(crd, undefined).find((c) => at(c, 'spec', 'names', 'kind') === o.kind);
  return served === undefined
    ? undefined
    : `CRD ${served.metadata.name} serves this kind, but the fake has no row for it: add it to EXTENSION_KINDS in test/fakes/lib/kinds.mts`;
}

/** What the API server stores for a submitted object: no status, no server fields, Secret stringData folded in. */
function normalize(info: KindInfo, obj: K8sObject): K8sObject {
  const o = clone(obj);
  delete o['status'];
  for (const f of SERVER_METADATA) delete o.metadata[f];
  if (info.kind === 'Secret') {
    const data: Record<string, string> = { ...((o['data'] as Record<string, string> | undefined) ?? {}) };
    const sd = o['stringData'];
    if (isObj(sd)) for (const [k, v] of Object.entries(sd)) data[k] = Buffer.from(String(v), 'utf8').toString('base64');
    delete o['stringData'];
    if (Object.keys(data).length > 0) o['data'] = data;
    o['type'] = o['type'] ?? 'Opaque';
  }
  return o;
}

const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';

/** Fields another actor set that a client-side apply would not remove (three-way merge keeps them). */
function preserveForeignFields(current: K8sObject, desired: K8sObject): void {
  const v = at(current, 'spec', 'template', 'metadata', 'annotations', RESTARTED_AT);
  const tpl = at(desired, 'spec', 'template');
  if (typeof v !== 'string' || !isObj(tpl)) return;
  const meta = (isObj(tpl['metadata']) ? tpl['metadata'] : (tpl['metadata'] = {})) as Record<string, unknown>;
  const ann = (isObj(meta['annotations']) ? meta['annotations'] : (meta['annotations'] = {})) as Record<
    string,
    unknown
  >;
  if (ann[RESTARTED_AT] === undefined) ann[RESTARTED_AT] = v;
}

// ---------------------------------------------------------------------------------------------------------------
// Selection helpers (get, delete, wait)

interface Target {
  readonly info: KindInfo;
  readonly name?: string;
}

function resolveKind(arg: string): KindInfo {
  if (arg.includes(','))
    throw new DoubleError(
      `error: the fake kubectl does not support several kinds in one argument ("${arg}"): call it once per kind`,
    );
  if (arg === 'all') throw new DoubleError('error: the fake kubectl does not support "all": name the kind');
  const info = kindByResourceArg(arg);
  if (info === undefined) throw new DoubleError(`error: the server doesn't have a resource type "${arg}"`);
  return info;
}

/** `KIND NAME...` or `KIND/NAME...`; a bare KIND gives one target without name. */
function parseTargets(pos: string[], store: Store): Target[] {
  if (pos.length === 0) throw new DoubleError('error: you must specify the type of resource to get.');
  const servedOrFail = (info: KindInfo, arg: string): KindInfo => {
    if (store.unavailableReason(info) !== undefined)
      throw new DoubleError(`error: the server doesn't have a resource type "${arg}"`);
    return info;
  };
  if ((pos[0] as string).includes('/')) {
    return pos.map((a) => {
      const slash = a.indexOf('/');
      if (slash === -1)
        throw new DoubleError(
          'error: there is no need to specify a resource type as a separate argument when passing arguments in resource/name form',
        );
      const kindArg = a.slice(0, slash);
      return { info: servedOrFail(resolveKind(kindArg), kindArg), name: a.slice(slash + 1) };
    });
  }
  const kindArg = pos[0] as string;
  const info = servedOrFail(resolveKind(kindArg), kindArg);
  if (pos.length === 1) return [{ info }];
  return pos.slice(1).map((name) => ({ info, name }));
}

function parseSelector(sel: string | undefined): Array<[string, string]> {
  if (sel === undefined) return [];
  return sel.split(',').map((term) => {
    const m = /^\s*([A-Za-z0-9._\/-]+)\s*==?\s*([A-Za-z0-9._-]*)\s*$/.exec(term);
    if (m === null)
      throw new DoubleError(
        `error: the fake kubectl supports equality label selectors only (k=v[,k=v]); got "${term}"`,
      );
    return [m[1] as string, m[2] as string];
  });
}

function matches(obj: K8sObject, sel: Array<[string, string]>): boolean {
  return sel.every(([k, v]) => obj.metadata.labels?.[k] === v);
}

function notFound(info: KindInfo, name: string): string {
  return `Error from server (NotFound): ${resourceName(info)} "${name}" not found`;
}

function nsFor(ctx: Ctx, info: KindInfo): string | undefined {
  return info.namespaced ? ctx.namespace() : undefined;
}

/** Objects for get/wait/delete: named ones (with NotFound errors) or all matching the selector. */
function select(
  ctx: Ctx,
  store: Store,
  targets: Target[],
  allNamespaces: boolean,
  sel: Array<[string, string]>,
  ignoreNotFound: boolean,
): { objs: Array<{ info: KindInfo; obj: K8sObject }>; errors: string[] } {
  const objs: Array<{ info: KindInfo; obj: K8sObject }> = [];
  const errors: string[] = [];
  for (const t of targets) {
    if (t.name === undefined) {
      for (const obj of store.list(t.info, allNamespaces ? undefined : nsFor(ctx, t.info)))
        if (matches(obj, sel)) objs.push({ info: t.info, obj });
      continue;
    }
    if (sel.length > 0) throw new DoubleError('error: name cannot be provided when a selector is specified');
    const obj = store.get(t.info, nsFor(ctx, t.info), t.name);
    if (obj !== undefined) objs.push({ info: t.info, obj });
    else if (!ignoreNotFound) errors.push(notFound(t.info, t.name));
  }
  return { objs, errors };
}

// ---------------------------------------------------------------------------------------------------------------
// Verbs

const OUTPUTS = ['json', 'yaml', 'name', 'wide'];

function checkOutput(o: string | undefined, allowed: readonly string[]): void {
  if (o === undefined || allowed.includes(o) || (allowed.includes('jsonpath') && /^jsonpath=/.test(o))) return;
  throw new DoubleError(
    `error: unable to match a printer suitable for the output format "${o}", allowed formats are: ${allowed.join(',')} (the fake kubectl supports these only)`,
  );
}

function toYaml(v: unknown): string {
  return stringify(v, { indentSeq: false, lineWidth: 0 });
}

function asList(items: K8sObject[]): Record<string, unknown> {
  return { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } };
}

function table(ctx: Ctx, rows: Array<{ info: KindInfo; obj: K8sObject }>, allNamespaces: boolean): void {
  const now = Date.now();
  const byKind = new Map<KindInfo, K8sObject[]>();
  for (const r of rows) byKind.set(r.info, [...(byKind.get(r.info) ?? []), r.obj]);
  const blocks: string[] = [];
  for (const [info, objs] of byKind) {
    const cols = info.columns ?? [
      { header: 'NAME', value: (o: K8sObject) => o.metadata.name },
      { header: 'AGE', value: () => '' },
    ];
    const header = [...(allNamespaces && info.namespaced ? ['NAMESPACE'] : []), ...cols.map((c) => c.header)];
    const lines = objs.map((o) => [
      ...(allNamespaces && info.namespaced ? [o.metadata.namespace ?? ''] : []),
      ...cols.map((c) => c.value(o, now)),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
    const fmt = (cells: string[]): string =>
      cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('');
    blocks.push([fmt(header), ...lines.map(fmt)].join('\n'));
  }
  if (blocks.length > 0) say(ctx, blocks.join('\n\n'));
}

const apply: Verb = {
  usage: 'apply -f FILE|DIR|- [--server-side] [--field-manager M] [--dry-run=none|client|server] [-o name]',
  flags: {
    filename: { type: 'list', short: 'f' },
    'server-side': { type: 'bool' },
    'field-manager': { type: 'string' },
    'force-conflicts': { type: 'bool' },
    'dry-run': { type: 'string', values: ['none', 'client', 'server'] },
    output: { type: 'string', short: 'o' },
    validate: { type: 'string' },
    prune: { type: 'bool' },
    kustomize: { type: 'string', short: 'k' },
    recursive: { type: 'bool', short: 'R' },
  },
  async run(ctx) {
    const p = ctx.args;
    if (p.flags.has('prune'))
      throw new DoubleError(
        'error: the fake kubectl does not support apply --prune (it deletes whatever the selector misses): delete objects explicitly',
      );
    if (p.flags.has('kustomize'))
      throw new DoubleError(
        'error: the fake kubectl does not support -k: render with `kubectl kustomize` on the host and apply the result with -f',
      );
    if (p.flags.has('recursive')) throw new DoubleError('error: the fake kubectl does not support -R: list the files');
    const validate = flagString(p, 'validate');
    if (validate !== undefined && validate !== 'strict' && validate !== 'true') {
      throw new DoubleError(
        `error: the fake kubectl refuses --validate=${validate}: manifests must pass strict validation`,
      );
    }
    const output = flagString(p, 'output');
    checkOutput(output, ['name']);
    const files = flagList(p, 'filename');
    if (files.length === 0)
      throw new DoubleError("error: must specify one of -f and -k\n\nSee 'kubectl apply --help' for usage.");
    if (ctx.pos.length > 0)
      throw new DoubleError(
        `error: Unexpected args: [${ctx.pos.join(' ')}]\nSee 'kubectl apply -h' for help and examples`,
      );
    const dryRun = flagString(p, 'dry-run') ?? 'none';
    const suffix = dryRun === 'client' ? ' (dry run)' : dryRun === 'server' ? ' (server dry run)' : '';
    const store = ctx.store();
    const resolved = await resolveAll(ctx, loadManifests(ctx, files), store);
    if (resolved.length === 0) throw new DoubleError('error: no objects passed to apply');
    const errors: string[] = [];
    for (const { source, obj, info } of resolved) {
      const ns = info.namespaced ? obj.metadata.namespace : undefined;
      if (ns !== undefined && dryRun !== 'client' && !store.namespaceExists(ns)) {
        errors.push(`Error from server (NotFound): error when creating "${source}": namespaces "${ns}" not found`);
        continue;
      }
      const desired = normalize(info, obj);
      const current = store.get(info, ns, obj.metadata.name);
      if (current !== undefined) preserveForeignFields(current, desired);
      const shown = printName(info, obj.metadata.name);
      let verdict: string;
      if (current === undefined) {
        verdict = 'created';
        if (dryRun === 'none') {
          store.create(info, desired);
          changed(ctx, `${shown} created`);
          controllersReact(ctx, store, info, desired);
        }
      } else if (sameObject(current, desired)) {
        verdict = 'unchanged';
      } else {
        verdict = 'configured';
        if (dryRun === 'none') {
          store.update(info, current, desired);
          changed(ctx, `${shown} configured`);
          controllersReact(ctx, store, info, desired);
        }
      }
      if (flagBool(p, 'server-side')) verdict = 'serverside-applied';
      say(ctx, output === 'name' ? shown : `${shown} ${verdict}${suffix}`);
    }
    if (errors.length > 0) throw new DoubleError(errors.join('\n'), 1);
  },
};

/** Controllers that act on a stored change at once (the fake never waits): k3s' helm-controller. */
function controllersReact(ctx: Ctx, store: Store, info: KindInfo, obj: K8sObject): void {
  if (info.group === 'helm.cattle.io' && info.kind === 'HelmChartConfig')
    for (const c of reconcileHelmChartConfig(store, obj)) changed(ctx, c);
}

const get: Verb = {
  usage: 'get KIND[/NAME] [NAME...] [-o json|yaml|name|wide|jsonpath=T] [-l k=v] [-A] [--ignore-not-found]',
  flags: {
    output: { type: 'string', short: 'o' },
    selector: { type: 'string', short: 'l' },
    'all-namespaces': { type: 'bool', short: 'A' },
    'ignore-not-found': { type: 'bool' },
    'show-labels': { type: 'bool' },
    'no-headers': { type: 'bool' },
    watch: { type: 'bool', short: 'w' },
  },
  async run(ctx) {
    const p = ctx.args;
    if (flagBool(p, 'watch'))
      throw new DoubleError(
        'error: the fake kubectl does not support get --watch (it would never end): use wait or rollout status',
      );
    if (flagBool(p, 'show-labels') || flagBool(p, 'no-headers'))
      throw new DoubleError(
        'error: the fake kubectl does not support --show-labels/--no-headers: use -o jsonpath or -o json',
      );
    const output = flagString(p, 'output');
    checkOutput(output, [...OUTPUTS, 'jsonpath']);
    const store = ctx.store();
    const targets = parseTargets(ctx.pos, store);
    const all = flagBool(p, 'all-namespaces');
    const { objs, errors } = select(
      ctx,
      store,
      targets,
      all,
      parseSelector(flagString(p, 'selector')),
      flagBool(p, 'ignore-not-found'),
    );
    const single = targets.length === 1 && targets[0]?.name !== undefined;
    const items = objs.map((o) => o.obj);
    if (output === 'json' || output === 'yaml') {
      if (!(single && items.length === 0)) {
        const data = single ? items[0] : asList(items);
        say(ctx, output === 'json' ? JSON.stringify(data, null, 4) : toYaml(data).trimEnd());
      }
    } else if (output === 'name') {
      for (const o of objs) say(ctx, printName(o.info, o.obj.metadata.name));
    } else if (output !== undefined && output.startsWith('jsonpath=')) {
      if (!(single && items.length === 0)) {
        try {
          ctx.out.stdout += renderJsonPath(output.slice('jsonpath='.length), single ? items[0] : asList(items));
        } catch (err) {
          if (err instanceof JsonPathError) throw new DoubleError(`error: ${err.message}`);
          throw err;
        }
      }
    } else {
      table(ctx, objs, all);
      if (objs.length === 0 && errors.length === 0 && !single) {
        const info = targets[0]?.info;
        warn(
          ctx,
          all || info?.namespaced !== true
            ? 'No resources found'
            : `No resources found in ${ctx.namespace()} namespace.`,
        );
      }
    }
    if (errors.length > 0) throw new DoubleError(errors.join('\n'));
  },
};

const del: Verb = {
  usage: 'delete KIND NAME... | KIND/NAME... | -f FILE [--ignore-not-found] [-l k=v]',
  flags: {
    filename: { type: 'list', short: 'f' },
    selector: { type: 'string', short: 'l' },
    'ignore-not-found': { type: 'bool' },
    wait: { type: 'bool' },
    timeout: { type: 'string' },
    'grace-period': { type: 'string' },
    now: { type: 'bool' },
    all: { type: 'bool' },
  },
  async run(ctx) {
    const p = ctx.args;
    timeoutMs(p, undefined);
    const store = ctx.store();
    const ignore = flagBool(p, 'ignore-not-found');
    let victims: Array<{ info: KindInfo; ns: string | undefined; name: string }> = [];
    const errors: string[] = [];
    const files = flagList(p, 'filename');
    if (files.length > 0) {
      if (ctx.pos.length > 0)
        throw new DoubleError(
          'error: when paths, URLs, or stdin is provided as input, you may not specify resource arguments as well',
        );
      for (const r of await resolveAll(ctx, loadManifests(ctx, files), store))
        victims.push({ info: r.info, ns: r.obj.metadata.namespace, name: r.obj.metadata.name });
    } else {
      const targets = parseTargets(ctx.pos, store);
      const sel = parseSelector(flagString(p, 'selector'));
      if (targets.some((t) => t.name === undefined) && sel.length === 0 && !flagBool(p, 'all')) {
        throw new DoubleError('error: resource(s) were provided, but no name was specified');
      }
      const found = select(ctx, store, targets, false, sel, true);
      victims = found.objs.map((o) => ({ info: o.info, ns: o.obj.metadata.namespace, name: o.obj.metadata.name }));
      for (const t of targets) {
        if (t.name !== undefined && !victims.some((v) => v.info === t.info && v.name === t.name) && !ignore)
          errors.push(notFound(t.info, t.name));
      }
    }
    for (const v of victims) {
      // The API server deletes every custom resource of a deleted CRD with it.
      if (v.info.kind === 'CustomResourceDefinition')
        for (const served of EXTENSION_KINDS.filter((x) => `${x.plural}.${x.group}` === v.name))
          for (const o of store.list(served, undefined)) store.remove(served, o.metadata.namespace, o.metadata.name);
      if (store.remove(v.info, v.ns, v.name)) {
        const k = v.info.kind.toLowerCase();
        say(ctx, `${v.info.group === '' ? k : `${k}.${v.info.group}`} "${v.name}" deleted`);
        changed(ctx, `${printName(v.info, v.name)} deleted`);
      } else if (!ignore) {
        errors.push(notFound(v.info, v.name));
      }
    }
    if (errors.length > 0) throw new DoubleError(errors.join('\n'));
  },
};

function conditionMet(obj: K8sObject, type: string, want: string): boolean {
  const conds = at(obj, 'status', 'conditions');
  if (!Array.isArray(conds)) return false;
  return conds.some(
    (c) =>
      isObj(c) &&
      String(c['type']).toLowerCase() === type.toLowerCase() &&
      String(c['status']).toLowerCase() === want.toLowerCase(),
  );
}

const wait: Verb = {
  usage: 'wait --for=condition=C[=V]|delete|jsonpath={.p}=V KIND/NAME... | KIND -l k=v | KIND --all [--timeout D]',
  flags: {
    for: { type: 'string' },
    timeout: { type: 'string' },
    selector: { type: 'string', short: 'l' },
    all: { type: 'bool' },
    'all-namespaces': { type: 'bool', short: 'A' },
  },
  async run(ctx) {
    const p = ctx.args;
    const forArg = flagString(p, 'for');
    if (forArg === undefined) throw new DoubleError('error: --for must be specified');
    timeoutMs(p, '30s');
    const timeout = flagString(p, 'timeout') ?? '30s';
    let check: (obj: K8sObject | undefined) => boolean;
    let m: RegExpExecArray | null;
    if (forArg === 'delete') check = (o) => o === undefined;
    else if ((m = /^condition=([^=]+)(?:=(.*))?$/.exec(forArg)) !== null) {
      const type = m[1] as string;
      const want = m[2] ?? 'True';
      check = (o) => o !== undefined && conditionMet(o, type, want);
    } else if ((m = /^jsonpath=(.*?)=([^=}]*)$/.exec(forArg)) !== null) {
      const expr = m[1] as string;
      const want = m[2] as string;
      check = (o) => o !== undefined && renderJsonPath(expr.replace(/^'|'$/g, ''), o) === want;
    } else {
      throw new DoubleError(
        `error: unrecognized condition: "${forArg}" (the fake kubectl supports condition=, delete, jsonpath=)`,
      );
    }
    const store = ctx.store();
    const targets = parseTargets(ctx.pos, store);
    const sel = parseSelector(flagString(p, 'selector'));
    if (targets.some((t) => t.name === undefined) && sel.length === 0 && !flagBool(p, 'all'))
      throw new DoubleError('error: resource(s) were provided, but no name was specified');
    const { objs, errors } = select(ctx, store, targets, flagBool(p, 'all-namespaces'), sel, forArg === 'delete');
    if (errors.length > 0) throw new DoubleError(errors.join('\n'));
    if (forArg === 'delete') {
      for (const t of targets)
        if (t.name !== undefined && !objs.some((o) => o.obj.metadata.name === t.name))
          say(ctx, `${printName(t.info, t.name)} condition met`);
    } else if (objs.length === 0) {
      throw new DoubleError('error: no matching resources found');
    }
    for (const { info, obj } of objs) {
      if (!check(obj)) {
        throw new DoubleError(
          `error: timed out waiting for the condition on ${info.plural}/${obj.metadata.name}` +
            `\n(fake kubectl: not met now, and nothing changes while waiting; --timeout=${timeout})`,
        );
      }
      say(ctx, `${printName(info, obj.metadata.name)} condition met`);
    }
  },
};

const ROLLOUT_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'];

function rolloutTarget(ctx: Ctx, store: Store, kinds: readonly string[]): { info: KindInfo; obj: K8sObject } {
  const targets = parseTargets(ctx.pos, store);
  if (targets.length !== 1 || targets[0]?.name === undefined)
    throw new DoubleError('error: the fake kubectl takes exactly one KIND/NAME for rollout');
  const t = targets[0];
  if (!kinds.includes(t.info.kind)) {
    throw new DoubleError(
      `error: no ${ctx.verb} has been implemented for {${t.info.group} ${t.info.kind}}` +
        ` (fake kubectl: rollout supports ${kinds.join(', ')})`,
    );
  }
  const obj = store.get(t.info, nsFor(ctx, t.info), t.name as string);
  if (obj === undefined) throw new DoubleError(notFound(t.info, t.name as string));
  return { info: t.info, obj };
}

function rolloutStatus(ctx: Ctx, store: Store): void {
  const p = ctx.args;
  const watch = p.flags.get('watch');
  if (flagString(p, 'timeout') === undefined && watch !== false) {
    throw new DoubleError(
      'error: the fake kubectl requires --timeout for rollout status (without it the real one can wait forever)',
    );
  }
  timeoutMs(p, undefined);
  const { info, obj } = rolloutTarget(ctx, store, ROLLOUT_KINDS);
  const name = obj.metadata.name;
  const gen = obj.metadata.generation ?? 1;
  const st = (k: string): number => Number(at(obj, 'status', k) ?? 0);
  const want = typeof at(obj, 'spec', 'replicas') === 'number' ? Number(at(obj, 'spec', 'replicas')) : 1;
  // Like kubectl: the last "Waiting for ..." line on stdout, the timeout on stderr.
  const fail = (waiting: string): never => {
    say(ctx, waiting);
    const pull = store.pullProblems(obj);
    throw new DoubleError(
      'error: timed out waiting for the condition' +
        (pull.length > 0 ? `\n(fake kubectl: the new pods cannot pull their image: ${pull.join('; ')})` : ''),
    );
  };
  if (st('observedGeneration') < gen) fail(`Waiting for ${info.kind.toLowerCase()} spec update to be observed...`);
  if (info.kind === 'Deployment') {
    // The order of kubectl's DeploymentStatusViewer.
    if (st('updatedReplicas') < want)
      fail(
        `Waiting for deployment "${name}" rollout to finish: ${st('updatedReplicas')} out of ${want} new replicas have been updated...`,
      );
    if (st('replicas') > st('updatedReplicas'))
      fail(
        `Waiting for deployment "${name}" rollout to finish: ${st('replicas') - st('updatedReplicas')} old replicas are pending termination...`,
      );
    if (st('availableReplicas') < st('updatedReplicas'))
      fail(
        `Waiting for deployment "${name}" rollout to finish: ${st('availableReplicas')} of ${st('updatedReplicas')} updated replicas are available...`,
      );
    say(ctx, `deployment "${name}" successfully rolled out`);
  } else if (info.kind === 'StatefulSet') {
    if (at(obj, 'spec', 'updateStrategy', 'type') === 'OnDelete')
      throw new DoubleError('error: rollout status is only available for RollingUpdate strategy type');
    if (st('readyReplicas') < want) fail(`Waiting for ${want - st('readyReplicas')} pods to be ready...`);
    say(
      ctx,
      `statefulset rolling update complete ${want} pods at revision ${String(at(obj, 'status', 'updateRevision'))}...`,
    );
  } else {
    if (st('numberAvailable') < st('desiredNumberScheduled'))
      fail(
        `Waiting for daemon set "${name}" rollout to finish: ${st('numberAvailable')} of ${st('desiredNumberScheduled')} updated pods are available...`,
      );
    say(ctx, `daemon set "${name}" successfully rolled out`);
  }
}

function rolloutUndo(ctx: Ctx, store: Store): void {
  const { info, obj } = rolloutTarget(ctx, store, ['Deployment']);
  const hist = store.history(info, obj.metadata.namespace, obj.metadata.name);
  const current = Number(
    obj.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? hist[hist.length - 1]?.revision ?? 0,
  );
  const toRaw = flagString(ctx.args, 'to-revision') ?? '0';
  if (!/^\d+$/.test(toRaw)) throw new DoubleError(`error: invalid argument "${toRaw}" for "--to-revision" flag`);
  const to = Number(toRaw);
  const target =
    to === 0 ? [...hist].reverse().find((h) => h.revision !== current) : hist.find((h) => h.revision === to);
  if (target === undefined) {
    throw new DoubleError(
      to === 0
        ? `error: no rollout history found for deployment "${obj.metadata.name}"`
        : `error: unable to find specified revision ${to} in history`,
    );
  }
  const shown = printName(info, obj.metadata.name);
  if (target.revision === current) {
    say(ctx, `${shown} skipped rollback (current template already matches revision ${current})`);
    return;
  }
  const desired = clone(obj);
  (desired['spec'] as Record<string, unknown>)['template'] = clone(target.template);
  store.update(info, obj, desired);
  say(ctx, `${shown} rolled back`);
  changed(ctx, `${shown} rolled back to revision ${target.revision}`);
}

function rolloutRestart(ctx: Ctx, store: Store): void {
  const { info, obj } = rolloutTarget(ctx, store, ROLLOUT_KINDS);
  const desired = clone(obj);
  const tpl = at(desired, 'spec', 'template') as Record<string, unknown>;
  const meta = (isObj(tpl['metadata']) ? tpl['metadata'] : (tpl['metadata'] = {})) as Record<string, unknown>;
  meta['annotations'] = {
    ...(isObj(meta['annotations']) ? meta['annotations'] : {}),
    [RESTARTED_AT]: new Date().toISOString(),
  };
  store.update(info, obj, desired);
  const shown = printName(info, obj.metadata.name);
  say(ctx, `${shown} restarted`);
  changed(ctx, `${shown} restarted`);
}

function rolloutHistory(ctx: Ctx, store: Store): void {
  const { info, obj } = rolloutTarget(ctx, store, ['Deployment']);
  const hist = store.history(info, obj.metadata.namespace, obj.metadata.name);
  say(
    ctx,
    `${printName(info, obj.metadata.name)} \nREVISION  CHANGE-CAUSE\n${hist.map((h) => `${String(h.revision).padEnd(10)}<none>`).join('\n')}\n`,
  );
}

const rollout: Verb = {
  usage:
    'rollout status KIND/NAME --timeout D | undo deployment/NAME [--to-revision N] | restart KIND/NAME | history deployment/NAME',
  subverbs: ['status', 'undo', 'restart', 'history'],
  flags: {
    timeout: { type: 'string' },
    watch: { type: 'bool', short: 'w' },
    'to-revision': { type: 'string' },
  },
  async run(ctx) {
    const store = ctx.store();
    const sub = ctx.verb.split(' ')[1];
    if (sub === 'status') rolloutStatus(ctx, store);
    else if (sub === 'undo') rolloutUndo(ctx, store);
    else if (sub === 'restart') rolloutRestart(ctx, store);
    else rolloutHistory(ctx, store);
  },
};

const setVerb: Verb = {
  usage:
    'set image deployment|statefulset|daemonset/NAME (or KIND NAME) CONTAINER=IMAGE... (`*=IMAGE` sets every container)',
  subverbs: ['image'],
  flags: { record: { type: 'bool' } },
  async run(ctx) {
    if (ctx.args.flags.has('record')) {
      throw new DoubleError(
        'error: the fake kubectl refuses --record (deprecated in kubectl, to be removed): set the kubernetes.io/change-cause annotation in the manifest instead',
      );
    }
    const resources: string[] = [];
    const pairs: Array<[string, string]> = [];
    for (const a of ctx.pos) {
      const eq = a.indexOf('=');
      if (eq === -1) {
        if (pairs.length > 0)
          throw new DoubleError(`error: all resources must be specified before image changes: ${a}`);
        resources.push(a);
        continue;
      }
      if (eq === 0 || eq === a.length - 1) throw new DoubleError(`error: invalid image format: ${a}`);
      pairs.push([a.slice(0, eq), a.slice(eq + 1)]);
    }
    const problems: string[] = [];
    if (resources.length === 0)
      problems.push('one or more resources must be specified as <resource> <name> or <resource>/<name>');
    if (pairs.length === 0) problems.push('at least one image update is required');
    else if (pairs.length > 1 && pairs.some(([c]) => c === '*'))
      problems.push(
        'all containers are already specified by *, but saw more than one container_name=container_image pairs',
      );
    if (problems.length > 0)
      throw new DoubleError(problems.length === 1 ? `error: ${problems[0] as string}` : `[${problems.join(', ')}]`);
    const store = ctx.store();
    const targets = parseTargets(resources, store);
    const errors: string[] = [];
    for (const t of targets) {
      if (t.name === undefined)
        throw new DoubleError(
          'error: the fake kubectl needs a name for set image (KIND/NAME or KIND NAME); it does not support --all or -l',
        );
      if (!ROLLOUT_KINDS.includes(t.info.kind))
        throw new DoubleError(
          `error: the fake kubectl supports set image on ${ROLLOUT_KINDS.join(', ')} only, not ${t.info.kind}`,
        );
      const obj = store.get(t.info, nsFor(ctx, t.info), t.name);
      if (obj === undefined) {
        errors.push(notFound(t.info, t.name));
        continue;
      }
      const desired = clone(obj);
      const podSpec = at(desired, 'spec', 'template', 'spec');
      for (const [container, image] of pairs) {
        let found = false;
        for (const list of [at(podSpec, 'initContainers'), at(podSpec, 'containers')]) {
          if (!Array.isArray(list)) continue;
          for (const c of list) {
            if (isObj(c) && (container === '*' || c['name'] === container)) {
              c['image'] = image;
              found = true;
            }
          }
        }
        // Like kubectl: the other pairs still apply; the call fails at the end.
        if (!found) errors.push(`error: unable to find container named "${container}"`);
      }
      if (sameObject(obj, desired)) continue; // kubectl sends no patch and prints nothing
      const invalid = await validateObject(userView(desired), t.info);
      if (invalid.length > 0)
        throw new DoubleError(`The ${t.info.kind} "${t.name}" is invalid:\n${invalid.map((p) => `* ${p}`).join('\n')}`);
      store.update(t.info, obj, desired);
      const shown = printName(t.info, t.name);
      say(ctx, `${shown} image updated`);
      changed(ctx, `${shown} image updated (${pairs.map(([c, i]) => `${c}=${i}`).join(' ')})`);
    }
    if (errors.length > 0) throw new DoubleError(errors.join('\n'));
  },
};

const exec: Verb = {
  usage: `exec [-i] POD -c CONTAINER -- COMMAND...   (only ${SUPPORTED_EXEC})`,
  flags: {
    stdin: { type: 'bool', short: 'i' },
    tty: { type: 'bool', short: 't' },
    container: { type: 'string', short: 'c' },
    quiet: { type: 'bool', short: 'q' },
    'pod-running-timeout': { type: 'string' },
  },
  async run(ctx) {
    const command = ctx.command;
    if (command === undefined) {
      throw new DoubleError(
        "error: exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead\nSee 'kubectl exec -h' for help and examples",
      );
    }
    const podArgs = ctx.pos.slice(0, ctx.pos.length - command.length);
    if (podArgs.length !== 1) {
      throw new DoubleError(
        "error: expected 'exec (POD | TYPE/NAME) [-c CONTAINER] [flags] -- COMMAND [args...]'.\nPOD or TYPE/NAME is a required argument for the exec command\nSee 'kubectl exec -h' for help and examples",
      );
    }
    if (command.length === 0) throw new DoubleError('error: you must specify at least one command for the container');
    const podArg = podArgs[0] as string;
    const slash = podArg.indexOf('/');
    if (slash !== -1 && !['pod', 'pods', 'po'].includes(podArg.slice(0, slash))) {
      throw new DoubleError(
        `error: the fake kubectl execs into pods by name only, not ${podArg}\n(fake kubectl supports exactly: ${SUPPORTED_EXEC})`,
      );
    }
    const pod = slash === -1 ? podArg : podArg.slice(slash + 1);
    const container = flagString(ctx.args, 'container');
    const withStdin = flagBool(ctx.args, 'stdin');
    ctx.out.detail = {
      exec: { namespace: ctx.namespace(), pod, container: container ?? null, stdin: withStdin, command },
    };
    if (flagBool(ctx.args, 'tty'))
      throw new DoubleError(
        'error: the fake kubectl does not support exec -t (automation has no terminal; a TTY would also mangle a binary stdin)',
      );
    const pt = flagString(ctx.args, 'pod-running-timeout');
    if (pt !== undefined && parseDuration(pt) === undefined)
      throw new DoubleError(`error: invalid argument "${pt}" for "--pod-running-timeout" flag`);
    const store = ctx.store();
    if (pod === POSTGRES.pod && command[0] === 'printenv') {
      const r = postgresPrintenv(store, ctx.namespace(), container, command, withStdin);
      ctx.out.stdout = r.stdout;
      if (r.exitCode !== 0) throw new DoubleError(terminated(r.exitCode), r.exitCode);
      return;
    }
    if (pod === POSTGRES.pod) {
      // Checked here, under the state lock; run after it is released: a psql session stays open while the
      // pg_dump of its snapshot (another kubectl call) runs.
      const plan = checkPostgresExec(store, ctx.io.dir, ctx.namespace(), container, command, withStdin);
      ctx.out.unlocked = (out) => runPostgresExec(plan, ctx.io, out);
      return;
    }
    checkExecTarget(store, ctx.namespace(), pod, container, command);
    // Read only when the script reads it (build with valid arguments): real kubectl ends as soon as the remote
    // process does, so an `exists -i` whose stdin is never closed must not hang here either.
    const r = runBuildScript(ctx.io.dir, store, command.slice(1), () =>
      withStdin ? ctx.io.readStdin() : Buffer.alloc(0),
    );
    ctx.out.stdout += r.stdout;
    ctx.out.stderr += r.stderr;
    if (r.pushed !== undefined) {
      changed(ctx, `pushed ${r.pushed.ref} (git ${r.pushed.gitSha}, context sha256 ${r.pushed.contextSha256})`);
      for (const c of store.refreshDeployments()) changed(ctx, c);
    }
    if (r.exitCode !== 0) throw new DoubleError(terminated(r.exitCode), r.exitCode);
  },
};

/** A minimal unified diff of two line lists: one hunk holding every line (context is the whole object). */
function unifiedHunk(a: readonly string[], b: readonly string[]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] =
        a[i] === b[j]
          ? ((lcs[i + 1] as number[])[j + 1] as number) + 1
          : Math.max((lcs[i + 1] as number[])[j] as number, row[j + 1] as number);
    }
  }
  const out: string[] = [`@@ -${n === 0 ? '0,0' : `1,${n}`} +${m === 0 ? '0,0' : `1,${m}`} @@`];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push(` ${a[i] as string}`);
      i++;
      j++;
    } else if (
      i < n &&
      (j >= m || ((lcs[i + 1] as number[])[j] as number) >= ((lcs[i] as number[])[j + 1] as number))
    ) {
      out.push(`-${a[i] as string}`);
      i++;
    } else {
      out.push(`+${b[j] as string}`);
      j++;
    }
  }
  return out;
}

/** What the real kubectl diff does to Secrets: values never shown; a changed value is marked before/after. */
function maskSecretPair(live: K8sObject | undefined, merged: K8sObject): [K8sObject | undefined, K8sObject] {
  if (merged.kind !== 'Secret') return [live, merged];
  const ld = (live?.['data'] ?? {}) as Record<string, string>;
  const md = (merged['data'] ?? {}) as Record<string, string>;
  const l: Record<string, string> = {};
  const m: Record<string, string> = {};
  for (const k of new Set([...Object.keys(ld), ...Object.keys(md)])) {
    const changedValue = ld[k] !== undefined && md[k] !== undefined && ld[k] !== md[k];
    if (ld[k] !== undefined) l[k] = changedValue ? '*** (before)' : '***';
    if (md[k] !== undefined) m[k] = changedValue ? '*** (after)' : '***';
  }
  const lo = live === undefined ? undefined : { ...live, ...(live['data'] !== undefined ? { data: l } : {}) };
  return [lo, { ...merged, ...(merged['data'] !== undefined ? { data: m } : {}) }];
}

/** kubectl diff's file name for an object: [group.]version.Kind.namespace.name */
function diffFileName(obj: K8sObject): string {
  const slash = obj.apiVersion.lastIndexOf('/');
  const group = slash === -1 ? '' : `${obj.apiVersion.slice(0, slash)}.`;
  return `${group}${obj.apiVersion.slice(slash + 1)}.${obj.kind}.${obj.metadata.namespace ?? ''}.${obj.metadata.name}`;
}

const diff: Verb = {
  usage: 'diff -f FILE|DIR|-   (exit 0: no differences, 1: differences, >1: error)',
  flags: { filename: { type: 'list', short: 'f' } },
  async run(ctx) {
    try {
      const files = flagList(ctx.args, 'filename');
      if (files.length === 0)
        throw new DoubleError("error: must specify one of -f and -k\n\nSee 'kubectl diff --help' for usage.");
      if (ctx.pos.length > 0) throw new DoubleError(`error: Unexpected args: [${ctx.pos.join(' ')}]`);
      const store = ctx.store();
      const resolved = await resolveAll(ctx, loadManifests(ctx, files), store);
      const tag = String(Math.floor(Math.random() * 1e9));
      const stamp = '2026-01-01 00:00:00.000000000 +0000';
      const sections: string[] = [];
      for (const { obj, info } of resolved) {
        const ns = info.namespaced ? obj.metadata.namespace : undefined;
        if (ns !== undefined && !store.namespaceExists(ns))
          throw new DoubleError(`Error from server (NotFound): namespaces "${ns}" not found`);
        const desired = normalize(info, obj);
        const current = store.get(info, ns, obj.metadata.name);
        if (current !== undefined) preserveForeignFields(current, desired);
        if (current !== undefined && sameObject(current, desired)) continue;
        const [live, merged] = maskSecretPair(current === undefined ? undefined : userView(current), userView(desired));
        const lines = (o: K8sObject | undefined): string[] => (o === undefined ? [] : toYaml(o).trimEnd().split('\n'));
        const name = diffFileName(desired);
        sections.push(
          [
            `diff -u -N /tmp/LIVE-${tag}/${name} /tmp/MERGED-${tag}/${name}`,
            `--- /tmp/LIVE-${tag}/${name}\t${stamp}`,
            `+++ /tmp/MERGED-${tag}/${name}\t${stamp}`,
            ...unifiedHunk(lines(live), lines(merged)),
          ].join('\n'),
        );
      }
      if (sections.length > 0) {
        say(ctx, sections.join('\n'));
        ctx.out.exitCode = 1;
      }
    } catch (err) {
      // Like kubectl's CheckDiffErr: an error exits with its code + 1, so 1 always means "differences".
      if (err instanceof DoubleError) throw new DoubleError(err.message, err.exitCode + 1);
      throw err;
    }
  },
};

const create: Verb = {
  usage: 'create namespace NAME',
  subverbs: ['namespace', 'ns'],
  flags: { 'dry-run': { type: 'string', values: ['none', 'client', 'server'] } },
  async run(ctx) {
    if (ctx.pos.length !== 1)
      throw new DoubleError('error: exactly one NAME is required, got ' + String(ctx.pos.length));
    const name = ctx.pos[0] as string;
    const store = ctx.store();
    const info = kindByApiVersion('v1', 'Namespace') as KindInfo;
    const obj: K8sObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
    const problems = await validateObject(obj, info);
    if (problems.length > 0) throw new DoubleError(`The Namespace "${name}" is invalid: ${problems.join(', ')}`);
    if (store.get(info, undefined, name) !== undefined)
      throw new DoubleError(`Error from server (AlreadyExists): namespaces "${name}" already exists`);
    const dry = flagString(ctx.args, 'dry-run') ?? 'none';
    if (dry === 'none') {
      store.create(info, obj);
      changed(ctx, `namespace/${name} created`);
    }
    say(
      ctx,
      `namespace/${name} created${dry === 'client' ? ' (dry run)' : dry === 'server' ? ' (server dry run)' : ''}`,
    );
  },
};

function versionInfo(v: string): Record<string, string> {
  const m = /^v(\d+)\.(\d+)/.exec(v);
  return {
    major: m?.[1] ?? '1',
    minor: m?.[2] ?? '0',
    gitVersion: v,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2026-01-01T00:00:00Z',
    goVersion: 'go1.23.4',
    compiler: 'gc',
    platform: 'linux/amd64',
  };
}

const version: Verb = {
  usage: 'version [--client] [-o json|yaml]',
  flags: { client: { type: 'bool' }, output: { type: 'string', short: 'o', values: ['json', 'yaml'] } },
  async run(ctx) {
    const cluster = readCluster(ctx.io.dir);
    const v = cluster?.version ?? ctx.io.env['CODEXK8S_FAKES_K8S_VERSION'] ?? DEFAULT_K8S_VERSION;
    const data: Record<string, unknown> = { clientVersion: versionInfo(v), kustomizeVersion: 'v5.4.2' };
    let serverError: string | undefined;
    if (!flagBool(ctx.args, 'client')) {
      try {
        data['serverVersion'] = versionInfo(ctx.store().cluster.version);
      } catch (err) {
        if (!(err instanceof DoubleError)) throw err;
        serverError = err.message;
      }
    }
    const o = flagString(ctx.args, 'output');
    if (o === 'json') say(ctx, JSON.stringify(data, null, 2));
    else if (o === 'yaml') say(ctx, toYaml(data).trimEnd());
    else {
      say(ctx, `Client Version: ${v}\nKustomize Version: v5.4.2`);
      if (data['serverVersion'] !== undefined) say(ctx, `Server Version: ${ctx.store().cluster.version}`);
    }
    if (serverError !== undefined) throw new DoubleError(serverError);
  },
};

/**
 * `logs pod/NAME` (or NAME): only a container the node's kernel will not start (lib/userns.mts) has a log, rootlesskit's
 * error; a crash loop shows it for the current and the --previous instance, a container never created has none.
 */
function podLogs(ctx: Ctx, store: Store, name: string): string[] {
  const ns = ctx.namespace();
  const pod = store.get(kindByApiVersion('v1', 'Pod') as KindInfo, ns, name);
  if (pod === undefined)
    throw new DoubleError(`error: error from server (NotFound): pods "${name}" not found in namespace "${ns}"`);
  const names = ((at(pod, 'spec', 'containers') as unknown[] | undefined) ?? [])
    .filter(isObj)
    .map((c) => String(c['name'] ?? ''));
  const container = flagString(ctx.args, 'container') ?? (names.length === 1 ? names[0] : undefined);
  if (container === undefined)
    throw new DoubleError(
      `error: a container name must be specified for pod ${name}, choose one of: [${names.join(' ')}]`,
    );
  if (!names.includes(container)) throw new DoubleError(`error: container ${container} is not valid for pod ${name}`);
  const denial = podDenial(store.dir, ns, name, container);
  if (denial?.kind === 'create')
    throw new DoubleError(`error: container "${container}" in pod "${name}" is waiting to start: CreateContainerError`);
  if (denial === undefined && flagBool(ctx.args, 'previous'))
    throw new DoubleError(`error: previous terminated container "${container}" in pod "${name}" not found`);
  if (denial === undefined)
    throw new DoubleError(
      `error: the fake kubectl has no log for pod/${name} container ${container} (only a container the kernel refuses to start logs: lib/userns.mts)`,
    );
  return denial.log;
}

const logs: Verb = {
  usage:
    'logs job/NAME | pod/NAME [-c CONTAINER] [--previous] [--tail=N]   (helm-controller Jobs: lib/helm-controller.mts; pods: lib/userns.mts)',
  flags: {
    tail: { type: 'string' },
    follow: { type: 'bool', short: 'f' },
    container: { type: 'string', short: 'c' },
    previous: { type: 'bool', short: 'p' },
  },
  async run(ctx) {
    if (flagBool(ctx.args, 'follow'))
      throw new DoubleError('error: the fake kubectl does not support logs -f (it would never end): use --tail');
    const target = ctx.pos[0];
    if (target === undefined || ctx.pos.length > 1)
      throw new DoubleError(
        'error: expected exactly one job/NAME or pod/NAME (fake kubectl supports: ' + logs.usage + ')',
      );
    const tailRaw = flagString(ctx.args, 'tail') ?? '-1';
    if (!/^-?\d+$/.test(tailRaw))
      throw new DoubleError(
        `error: invalid argument "${tailRaw}" for "--tail" flag: strconv.ParseInt: parsing "${tailRaw}": invalid syntax`,
      );
    const tail = Number(tailRaw);
    const pm = /^(?:(?:pod|pods|po)\/)?([a-z0-9][a-z0-9.-]*)$/.exec(target);
    if (pm !== null) {
      const lines = podLogs(ctx, ctx.store(), pm[1] as string);
      for (const l of tail < 0 ? lines : lines.slice(Math.max(0, lines.length - tail))) say(ctx, l);
      return;
    }
    const m = /^(?:job|jobs|job\.batch)\/([a-z0-9.-]+)$/.exec(target);
    if (m === null)
      throw new DoubleError(`error: the fake kubectl shows logs of job/NAME and pod/NAME only, not ${target}`);
    if (flagBool(ctx.args, 'previous'))
      throw new DoubleError('error: the fake kubectl does not support --previous for job/NAME');
    const ns = ctx.namespace();
    const store = ctx.store();
    const name = m[1] as string;
    if (store.get(kindByApiVersion('batch/v1', 'Job') as KindInfo, ns, name) === undefined)
      throw new DoubleError(`error: error from server (NotFound): jobs.batch "${name}" not found in namespace "${ns}"`);
    const text = jobLog(store, ns, name);
    if (text === undefined)
      throw new DoubleError(
        `error: the fake kubectl has no log for job/${name} (only helm-controller's install Jobs log)`,
      );
    const lines = text.replace(/\n$/, '').split('\n');
    for (const l of tail < 0 ? lines : lines.slice(Math.max(0, lines.length - tail))) say(ctx, l);
  },
};

const clusterInfo: Verb = {
  usage: 'cluster-info',
  flags: {},
  async run(ctx) {
    const store = ctx.store();
    const base = 'https://127.0.0.1:6443';
    say(ctx, `Kubernetes control plane is running at ${base}`);
    say(ctx, `CoreDNS is running at ${base}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy`);
    if (!store.cluster.disabled.includes('metrics-server'))
      say(
        ctx,
        `Metrics-server is running at ${base}/api/v1/namespaces/kube-system/services/https:metrics-server:https/proxy`,
      );
    say(ctx, "\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.");
  },
};

/** THE verb table. A verb's run() appends to ctx.out and calls changed() for every real state change. */
const VERBS: Readonly<Record<string, Verb>> = {
  apply,
  get,
  delete: del,
  wait,
  rollout,
  set: setVerb,
  exec,
  create,
  diff,
  version,
  logs,
  'cluster-info': clusterInfo,
};

function usage(): string {
  return [
    'kubectl (codex-k8s test double). Supported:',
    ...Object.values(VERBS).map((v) => `  kubectl ${v.usage}`),
    'Global flags: --kubeconfig F, -n/--namespace NS, --context C, --request-timeout D',
  ].join('\n');
}

/** Finds the verb: the first positional, skipping global flags and their values. */
function findVerb(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') return argv[i + 1];
    if (!a.startsWith('-') || a === '-') return a;
    const name = a.startsWith('--') ? a.slice(2) : undefined;
    const spec =
      name !== undefined ? GLOBAL_FLAGS[name] : Object.values(GLOBAL_FLAGS).find((s) => s.short === a.slice(1));
    if (spec !== undefined && spec.type !== 'bool' && !a.includes('=') && (name !== undefined || a.length === 2)) i++;
  }
  return undefined;
}

async function main(argv: string[], io: ToolIO): Promise<Outcome> {
  const out = emptyOutcome();
  const verbName = findVerb(argv);
  if (verbName === undefined || verbName === 'help') {
    if (argv.includes('-h') || argv.includes('--help') || verbName === 'help')
      return { ...out, stdout: usage() + '\n' };
    throw new DoubleError(`error: a command is required\n${usage()}`);
  }
  const verb = VERBS[verbName];
  if (verb === undefined)
    throw new DoubleError(
      `error: unknown command "${verbName}" for "kubectl"\n(fake kubectl supports: ${Object.keys(VERBS).join(', ')}; add verbs to VERBS in test/fakes/kubectl.mts)`,
    );
  const parsed = parseArgs(argv, { ...GLOBAL_FLAGS, ...verb.flags }, styleFor(verbName));
  if (flagBool(parsed, 'help')) return { ...out, stdout: `kubectl ${verb.usage}\n` };
  const pos = parsed.positionals.slice(parsed.positionals.indexOf(verbName) + 1);
  let fullVerb = verbName;
  if (verb.subverbs !== undefined) {
    const sub = pos.shift();
    if (sub === undefined || !verb.subverbs.includes(sub)) {
      throw new DoubleError(
        `error: unknown command "${sub ?? ''}" for "kubectl ${verbName}"\n(fake kubectl supports: ${verb.usage})`,
      );
    }
    fullVerb = `${verbName} ${sub}`;
  }
  const rt = flagString(parsed, 'request-timeout');
  if (rt !== undefined && !/^\d+$/.test(rt) && parseDuration(rt) === undefined)
    throw new DoubleError(`error: invalid argument "${rt}" for "--request-timeout" flag`);
  const nsFlag = flagString(parsed, 'namespace');
  if (nsFlag === '') throw new DoubleError('error: a namespace must not be empty');
  let store: Store | undefined;
  const ctx: Ctx = {
    verb: fullVerb,
    args: parsed,
    pos,
    io,
    out,
    explicitNamespace: nsFlag !== undefined,
    command: argv.includes('--') ? argv.slice(argv.indexOf('--') + 1) : undefined,
    namespace: () => nsFlag ?? 'default',
    store: () => {
      if (store === undefined) {
        const cluster = requireCluster(io.dir, io.env, flagString(parsed, 'kubeconfig'), (m) =>
          m.startsWith('The connection') ? m : `error: ${m}`,
        );
        store = new Store(io.dir, cluster);
      }
      return store;
    },
  };
  return runVerb(out, () => verb.run(ctx));
}

/** faults.json keys may name an exec by its command words: `kubectl exec /opt/codex-k8s-build/build.sh build`. */
function faultForms(argv: readonly string[]): string[][] {
  const dash = argv.indexOf('--');
  return findVerb([...argv]) === 'exec' && dash !== -1 ? [['exec', ...argv.slice(dash + 1)]] : [];
}

await runDouble({ tool: 'kubectl', globalFlags: GLOBAL_FLAGS, faultForms, run: main });
