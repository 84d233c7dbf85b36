// kubectl and helm for the remote steps: pure argv builders (unit-tested) and thin runners over lib/exec.mts.
//
// Everything talks to the local k3s through its admin kubeconfig (KUBECONFIG below). Objects always travel on
// stdin (`-f -`, `--values -`), never in argv and never through temp files, so a Secret's value cannot leak
// into a process listing.
//
// API (what a step uses):
//   objects (lib/manifests.mts renders them)
//     objectsDrift(objects, log)          read-only: drift lines ("Deployment ns/x differs from its manifest",
//                                         "... does not exist"). Uses `kubectl diff` (exit 0 same, 1 differs,
//                                         >1 error); objects whose namespace does not exist yet are reported
//                                         without asking the server (kubectl diff would fail on them).
//     applyObjects(objects, log, opts)    `kubectl apply -f -`; returns the lines that changed something
//                                         ("deployment.apps/x configured"), then one imageMoves line per
//                                         container of a workload whose image it changed; opts.retryOn retries,
//                                         bounded, on errors such as a webhook that is not serving yet.
//     imageMoves(live, want)              pure: "image of statefulset/x container c: OLD -> NEW" lines.
//     getJson(kind, name, ns, log)        one object as JSON, or undefined when it does not exist.
//     existingNamespaces(names, log)      which of these namespaces exist.
//     readSecret(ns, name, log, mask)     a Secret's data decoded; the keys in `mask` are registered as secrets.
//     rolloutStatus(kind, name, ns, s)    bounded wait for a Deployment/StatefulSet rollout; fails loudly.
//   helm releases (pinned charts, lib/versions.mts ChartPin)
//     helmReleaseState(pin, log)          installed chart version, status and user-supplied values, or undefined.
//     helmReleaseDrift(pin, state, want)  pure: drift lines; empty means "do not upgrade". Every helm upgrade
//                                         writes a new revision, so a step upgrades ONLY when this is non-empty.
//     helmUpgrade(pin, values, s, log)    `helm upgrade --install ... --values - --wait --timeout`.
//   argv builders: kubectlArgv, applyArgv, diffArgv, getJsonArgv, rolloutStatusArgv, jobLogsArgv, podLogsArgv, helmArgv,
//     helmUpgradeArgv, helmListArgv, helmGetValuesArgv, helmUninstallArgv, deleteArgv; parsers: parseHelmList, diffSections, diffName,
//     appliedName.
import { run } from './exec.mts';
import type { RunResult } from './exec.mts';
import { OperationError } from './errors.mts';
import { pollUntil } from './poll.mts';
import { registerSecret, mask } from './redact.mts';
import type { Logger } from './log.mts';
import { moved } from './log.mts';
import type { ChartPin } from './versions.mts';
import type { KubeObject } from './manifests.mts';
import { describeObject, toYamlStream } from './manifests.mts';

/** k3s' admin kubeconfig (root-only, mode 0600). */
export const KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';
/** Per-call limit for quick kubectl/helm calls (the API server answers in well under a second when healthy). */
const QUICK_SECONDS = 60;

// ---------------------------------------------------------------------------------------------------------------
// argv builders (pure)

export function kubectlArgv(...args: string[]): string[] {
  return ['kubectl', '--kubeconfig', KUBECONFIG, ...args];
}

/**
 * kubectl in a pod (the nightly backup on a runner): no kubeconfig file, so client-go falls back to the pod's
 * ServiceAccount, and the Role bound to it is all it may do.
 */
export function inClusterKubectlArgv(...args: string[]): string[] {
  return ['kubectl', ...args];
}

/**
 * `kubectl apply -f -`. With `serverSide` (used for Secrets): server-side apply keeps no
 * last-applied-configuration annotation, so a Secret's values are not stored a second time in it, and a value
 * rotated by hand is not shadowed by a stale copy there.
 */
export function applyArgv(opts: { serverSide?: boolean } = {}): string[] {
  return opts.serverSide
    ? kubectlArgv('apply', '--server-side', '--field-manager', FIELD_MANAGER, '--force-conflicts', '-f', '-')
    : kubectlArgv('apply', '-f', '-');
}

/** Who owns the fields this tool applies server-side. */
export const FIELD_MANAGER = 'codex-k8s-bootstrap';

export function diffArgv(): string[] {
  return kubectlArgv('diff', '-f', '-');
}

export function getJsonArgv(kind: string, name: string | readonly string[], namespace?: string): string[] {
  const names = typeof name === 'string' ? [name] : [...name];
  return kubectlArgv(
    ...(namespace !== undefined ? ['--namespace', namespace] : []),
    'get',
    kind,
    ...names,
    '-o',
    'json',
    '--ignore-not-found',
  );
}

export function rolloutStatusArgv(
  kind: 'deployment' | 'statefulset' | 'daemonset',
  name: string,
  namespace: string,
  timeoutSeconds: number,
): string[] {
  return kubectlArgv('--namespace', namespace, 'rollout', 'status', `${kind}/${name}`, `--timeout=${timeoutSeconds}s`);
}

/** The last `lines` log lines of a Job's pod (kubectl picks one of its pods). */
export function jobLogsArgv(namespace: string, job: string, lines: number): string[] {
  return kubectlArgv('--namespace', namespace, 'logs', `job/${job}`, `--tail=${lines}`);
}

/** The last `lines` log lines of a pod's container; `previous`: of the instance that ran before (a crash loop's). */
export function podLogsArgv(
  namespace: string,
  pod: string,
  container: string,
  lines: number,
  previous: boolean,
): string[] {
  return kubectlArgv(
    '--namespace',
    namespace,
    'logs',
    `pod/${pod}`,
    '--container',
    container,
    ...(previous ? ['--previous'] : []),
    `--tail=${lines}`,
  );
}

export function helmArgv(...args: string[]): string[] {
  return ['helm', '--kubeconfig', KUBECONFIG, ...args];
}

/** Values go on stdin as JSON (`--values -`): JSON is YAML, and nothing is in argv. */
export function helmUpgradeArgv(pin: ChartPin, timeoutSeconds: number): string[] {
  return helmArgv(
    'upgrade',
    '--install',
    pin.release,
    pin.ref,
    '--version',
    pin.version,
    '--namespace',
    pin.namespace,
    '--create-namespace',
    '--values',
    '-',
    '--wait',
    '--timeout',
    `${timeoutSeconds}s`,
  );
}

/** `--all`: a release stuck in pending-install/failed must show up too (plain `helm list` hides pending ones). */
export function helmListArgv(pin: ChartPin): string[] {
  return helmArgv('list', '--namespace', pin.namespace, '--all', '--filter', `^${pin.release}$`, '-o', 'json');
}

export function helmGetValuesArgv(pin: ChartPin): string[] {
  return helmArgv('get', 'values', pin.release, '--namespace', pin.namespace, '-o', 'json');
}

/** `helm uninstall`, bounded: --wait returns once the release's resources are gone (helm 3.7+). */
export function helmUninstallArgv(pin: Pick<ChartPin, 'release' | 'namespace'>, timeoutSeconds: number): string[] {
  return helmArgv(
    'uninstall',
    pin.release,
    '--namespace',
    pin.namespace,
    '--ignore-not-found',
    '--wait',
    '--timeout',
    `${timeoutSeconds}s`,
  );
}

/** `kubectl delete KIND/NAME...` in one namespace, waiting (bounded) until they are gone; absent ones are fine. */
export function deleteArgv(namespace: string, targets: readonly string[], timeoutSeconds: number): string[] {
  return kubectlArgv(
    '--namespace',
    namespace,
    'delete',
    ...targets,
    '--ignore-not-found',
    '--wait',
    `--timeout=${timeoutSeconds}s`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Parsers (pure)

export interface HelmListEntry {
  name: string;
  namespace: string;
  status: string;
  /** `<chart>-<version>`, e.g. cert-manager-v1.21.2 */
  chart: string;
}

export function parseHelmList(stdout: string, release: string): HelmListEntry | undefined {
  const list = JSON.parse(stdout.trim() === '' ? '[]' : stdout) as unknown;
  if (!Array.isArray(list))
    throw new OperationError(`helm list -o json printed something that is not a list: ${stdout.slice(0, 200)}`);
  return (list as HelmListEntry[]).find((r) => r.name === release);
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  return v;
}

export function canonicalJson(v: unknown): string {
  return JSON.stringify(canonical(v));
}

/** kubectl diff's name for an object's files: `[group.]version.Kind.namespace.name` (kubectl's InfoObject.Name()). */
export function diffName(o: KubeObject): string {
  const slash = o.apiVersion.lastIndexOf('/');
  const group = slash === -1 ? '' : `${o.apiVersion.slice(0, slash)}.`;
  const version = o.apiVersion.slice(slash + 1);
  return `${group}${version}.${o.kind}.${o.metadata.namespace ?? ''}.${o.metadata.name}`;
}

export interface DiffSection {
  /** The file name kubectl diff used (see diffName). */
  name: string;
  /** True when the live side is empty: the object does not exist yet. */
  created: boolean;
  text: string;
}

/** Splits `kubectl diff` output (one `diff -u -N .../LIVE-x/NAME .../MERGED-x/NAME` section per object). */
export function diffSections(out: string): DiffSection[] {
  const sections: DiffSection[] = [];
  for (const part of out.split(/^(?=diff )/m)) {
    const m = /^diff .*?\/LIVE-[^/\s]+\/(\S+)\s/.exec(part);
    if (m === null) continue;
    sections.push({ name: m[1] as string, created: /^@@ -0,0 /m.test(part), text: part });
  }
  return sections;
}

export interface HelmReleaseState {
  status: string;
  chart: string;
  /** Chart version, parsed from `<chart>-<version>`. */
  version: string;
  /** User-supplied values (`helm get values -o json`; `null` there means none). */
  values: Record<string, unknown>;
}

/** What differs between the installed release and the pin; empty means "leave it alone". */
export function helmReleaseDrift(
  pin: ChartPin,
  state: HelmReleaseState | undefined,
  want: Record<string, unknown>,
): string[] {
  const id = `helm release ${pin.namespace}/${pin.release}`;
  if (state === undefined) return [`${id} is not installed (want chart ${pin.chart} ${pin.version})`];
  const drift: string[] = [];
  if (state.status !== 'deployed') drift.push(`${id} is ${state.status}, want deployed`);
  if (state.chart !== pin.chart || state.version !== pin.version)
    drift.push(`${id} runs chart ${state.chart} ${state.version}, want ${pin.chart} ${pin.version}`);
  if (canonicalJson(state.values) !== canonicalJson(want)) {
    const keys = [...new Set([...Object.keys(state.values), ...Object.keys(want)])]
      .filter((k) => canonicalJson(state.values[k]) !== canonicalJson(want[k]))
      .sort();
    drift.push(`${id} values differ from the pinned values (${keys.join(', ')})`);
  }
  return drift;
}

/** Where each workload kind keeps its pod spec (the containers whose images a pin moves). */
const POD_SPEC_PATHS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function podSpec(o: KubeObject): Record<string, unknown> | undefined {
  const path = POD_SPEC_PATHS[o.kind];
  if (path === undefined) return undefined;
  let v: unknown = o;
  for (const k of path) v = isRecord(v) ? v[k] : undefined;
  return isRecord(v) ? v : undefined;
}

/** Container name -> image of one list of a pod spec (`containers` or `initContainers`). */
function imagesOf(spec: Record<string, unknown>, field: 'containers' | 'initContainers'): Map<string, string> {
  const list = spec[field];
  const out = new Map<string, string>();
  if (!Array.isArray(list)) return out;
  for (const c of list as unknown[])
    if (isRecord(c) && typeof c['name'] === 'string' && typeof c['image'] === 'string') out.set(c['name'], c['image']);
  return out;
}

/**
 * Pure: one line per container of a workload whose image `want` changes from the live object's, e.g.
 * `image of statefulset/postgres container postgres: A -> B`. Nothing when there is no live object (a create is
 * not a move), for other kinds, and for containers only one side has.
 */
export function imageMoves(live: KubeObject | undefined, want: KubeObject): string[] {
  if (live === undefined || live.kind !== want.kind) return [];
  const [was, now] = [podSpec(live), podSpec(want)];
  if (was === undefined || now === undefined) return [];
  const id = `${want.kind.toLowerCase()}/${want.metadata.name}`;
  const lines: string[] = [];
  for (const [field, label] of [
    ['containers', 'container'],
    ['initContainers', 'init container'],
  ] as const) {
    const before = imagesOf(was, field);
    for (const [name, image] of imagesOf(now, field)) {
      const from = before.get(name);
      if (from !== undefined && from !== image) lines.push(moved(`image of ${id} ${label} ${name}:`, from, image));
    }
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------------------------
// Runners

function failure(r: RunResult, what: string, hint?: string): OperationError {
  return new OperationError(`${what}: ${mask(r.argv.join(' '))} exited ${r.exitCode}`, {
    detail: mask((r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n')),
    hint,
  });
}

export async function getJson<T = KubeObject>(
  kind: string,
  name: string,
  namespace: string | undefined,
  log?: Logger,
): Promise<T | undefined> {
  const r = await run(getJsonArgv(kind, name, namespace), { allowFail: true, timeoutSeconds: QUICK_SECONDS, log });
  if (r.exitCode !== 0)
    throw failure(
      r,
      `cannot read ${kind} ${namespace ? `${namespace}/` : ''}${name}`,
      `is k3s running? systemctl status k3s; kubectl --kubeconfig ${KUBECONFIG} get nodes`,
    );
  return r.stdout.trim() === '' ? undefined : (JSON.parse(r.stdout) as T);
}

export async function existingNamespaces(names: readonly string[], log?: Logger): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  const r = await run(getJsonArgv('namespace', names), { allowFail: true, timeoutSeconds: QUICK_SECONDS, log });
  if (r.exitCode !== 0) throw failure(r, 'cannot list namespaces', `kubectl --kubeconfig ${KUBECONFIG} get namespaces`);
  if (r.stdout.trim() === '') return new Set();
  const parsed = JSON.parse(r.stdout) as { kind: string; items?: KubeObject[] } & Partial<KubeObject>;
  const items: KubeObject[] = Array.isArray(parsed.items) ? parsed.items : [parsed as KubeObject];
  return new Set(items.map((n) => n.metadata.name));
}

/**
 * Drift of rendered objects against the cluster, read-only. An object in a namespace that does not exist yet is
 * reported as to-be-created without asking the server (kubectl diff would fail on it).
 */
export async function objectsDrift(objects: readonly KubeObject[], log?: Logger): Promise<string[]> {
  const wanted = [...new Set(objects.map((o) => o.metadata.namespace).filter((n): n is string => n !== undefined))];
  const existing = await existingNamespaces(wanted, log);
  // One line per drifting object, in the order of `objects`.
  const lines = new Map<KubeObject, string>();
  const ask: KubeObject[] = [];
  for (const o of objects) {
    const ns = o.metadata.namespace;
    if (ns !== undefined && !existing.has(ns))
      lines.set(o, `${describeObject(o)} does not exist (namespace ${ns} does not exist yet)`);
    else ask.push(o);
  }
  if (ask.length > 0) {
    const r = await run(diffArgv(), { input: toYamlStream(ask), allowFail: true, timeoutSeconds: QUICK_SECONDS, log });
    if (r.exitCode !== 0 && r.exitCode !== 1)
      throw failure(r, 'kubectl diff failed', 'the manifests or the cluster are broken; run the step with --verbose');
    if (r.exitCode === 1) {
      const sections = diffSections(r.stdout);
      let attributed = 0;
      for (const o of ask) {
        const s = sections.find((x) => x.name === diffName(o));
        if (s === undefined) continue;
        attributed++;
        lines.set(
          o,
          s.created ? `${describeObject(o)} does not exist` : `${describeObject(o)} differs from its manifest`,
        );
      }
      if (attributed === 0)
        return [
          `kubectl diff reports differences it does not attribute to an object:\n${mask(r.stdout).slice(0, 2000)}`,
        ];
    }
  }
  return objects.filter((o) => lines.has(o)).map((o) => lines.get(o) as string);
}

export interface ApplyOptions {
  /** Retry (bounded) when stderr matches, e.g. an admission webhook that is not serving yet. */
  retryOn?: RegExp;
  attempts?: number;
  delaySeconds?: number;
  /** What the objects are, for messages ("the ClusterIssuer"). */
  what?: string;
  /** Server-side apply: for Secrets (see applyArgv). */
  serverSide?: boolean;
}

/**
 * The image moves applying `objects` will make, read from the live workloads before the apply. Best effort: a
 * failed read only costs its line (the apply itself says whether the cluster answers).
 */
async function pendingImageMoves(
  objects: readonly KubeObject[],
  log: Logger,
): Promise<Array<{ object: KubeObject; lines: string[] }>> {
  const moves: Array<{ object: KubeObject; lines: string[] }> = [];
  for (const o of objects.filter((x) => POD_SPEC_PATHS[x.kind] !== undefined)) {
    try {
      const lines = imageMoves(await getJson(o.kind.toLowerCase(), o.metadata.name, o.metadata.namespace, log), o);
      if (lines.length > 0) moves.push({ object: o, lines });
    } catch (e) {
      log.detail(`cannot read the live ${describeObject(o)} for its images: ${(e as Error).message}`);
    }
  }
  return moves;
}

/** kubectl apply's name of an object in its output lines: `deployment.apps/web`, `configmap/x`. */
export function appliedName(o: KubeObject): string {
  const slash = o.apiVersion.lastIndexOf('/');
  const group = slash === -1 ? '' : `.${o.apiVersion.slice(0, slash)}`;
  return `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
}

/**
 * `kubectl apply -f -` of the objects; returns kubectl's lines for objects it created or changed, then the image
 * moves (imageMoves) it made, so an upgrade is journaled with its old and new image.
 */
export async function applyObjects(
  objects: readonly KubeObject[],
  log: Logger,
  opts: ApplyOptions = {},
): Promise<string[]> {
  if (objects.length === 0) return [];
  const moves = await pendingImageMoves(objects, log);
  const attempts = opts.retryOn ? (opts.attempts ?? 10) : 1;
  const delay = opts.delaySeconds ?? 3;
  const failed = (r: RunResult, attempt: number) =>
    failure(
      r,
      `kubectl apply of ${opts.what ?? objects.map(describeObject).join(', ')} failed${attempt > 1 ? ` (attempt ${attempt}/${attempts})` : ''}`,
      'run the step again with --verbose; kubectl describe the object named above',
    );
  let last: RunResult | undefined;
  const applied = await pollUntil<string[]>(
    async (attempt) => {
      const r = await run(applyArgv({ serverSide: opts.serverSide }), {
        input: toYamlStream(objects),
        allowFail: true,
        timeoutSeconds: QUICK_SECONDS * 2,
        log,
      });
      last = r;
      if (r.exitCode === 0)
        return {
          done: r.stdout
            .split('\n')
            .map((l) => l.trim())
            .filter((l) => l !== '' && !/ unchanged$/.test(l)),
        };
      if (opts.retryOn === undefined || !opts.retryOn.test(r.stderr)) throw failed(r, attempt);
      return { waiting: mask(r.stderr.trim().split('\n')[0] ?? '') };
    },
    {
      attempts,
      intervalSeconds: delay,
      what: opts.what ?? 'kubectl apply',
      onWait: (attempt, why) =>
        log.info(
          `  .. ${opts.what ?? 'apply'} not accepted yet (${why}); attempt ${attempt}/${attempts}, retrying in ${delay}s`,
        ),
      onTimeout: (_last, attempt) => failed(last as RunResult, attempt),
    },
  );
  // Only for objects kubectl says it changed: a move line is a claim about what this apply did.
  const changed = (o: KubeObject) => applied.some((l) => l.startsWith(`${appliedName(o)} `));
  return [...applied, ...moves.filter((m) => changed(m.object)).flatMap((m) => m.lines)];
}

/**
 * A Secret's data, decoded, or undefined when it does not exist. The values of the keys in `secretKeys` are
 * registered for masking before anything else can print them.
 */
export async function readSecret(
  namespace: string,
  name: string,
  secretKeys: readonly string[],
  log?: Logger,
): Promise<Record<string, string> | undefined> {
  const obj = await getJson<KubeObject & { data?: Record<string, string> }>('secret', name, namespace, log);
  if (obj === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj.data ?? {})) {
    out[k] = Buffer.from(v, 'base64').toString('utf8');
    if (secretKeys.includes(k)) registerSecret(out[k]);
  }
  return out;
}

/** Waits (bounded by `timeoutSeconds`) for a rollout; a timeout is an error that says what to look at. */
export async function rolloutStatus(
  kind: 'deployment' | 'statefulset' | 'daemonset',
  name: string,
  namespace: string,
  timeoutSeconds: number,
  log: Logger,
): Promise<void> {
  const r = await run(rolloutStatusArgv(kind, name, namespace, timeoutSeconds), {
    allowFail: true,
    timeoutSeconds: timeoutSeconds + 30,
    log,
    progress: `${kind} ${namespace}/${name} to roll out`,
  });
  if (r.exitCode !== 0) {
    throw failure(
      r,
      `${kind} ${namespace}/${name} did not become ready within ${timeoutSeconds}s`,
      `kubectl --kubeconfig ${KUBECONFIG} -n ${namespace} describe ${kind}/${name}; kubectl --kubeconfig ${KUBECONFIG} -n ${namespace} get events --sort-by=.lastTimestamp | tail -20`,
    );
  }
}

export async function helmReleaseState(pin: ChartPin, log?: Logger): Promise<HelmReleaseState | undefined> {
  const l = await run(helmListArgv(pin), { allowFail: true, timeoutSeconds: QUICK_SECONDS, log });
  if (l.exitCode !== 0) throw failure(l, `cannot list helm releases in ${pin.namespace}`);
  const entry = parseHelmList(l.stdout, pin.release);
  if (entry === undefined) return undefined;
  const prefix = `${pin.chart}-`;
  const chart = entry.chart.startsWith(prefix) ? pin.chart : entry.chart.replace(/-v?\d[^-]*(-.*)?$/, '');
  const version = entry.chart.startsWith(prefix)
    ? entry.chart.slice(prefix.length)
    : entry.chart.slice(chart.length + 1);
  const v = await run(helmGetValuesArgv(pin), { allowFail: true, timeoutSeconds: QUICK_SECONDS, log });
  if (v.exitCode !== 0) throw failure(v, `cannot read the values of helm release ${pin.namespace}/${pin.release}`);
  const parsed = JSON.parse(v.stdout.trim() === '' ? 'null' : v.stdout) as Record<string, unknown> | null;
  return { status: entry.status, chart, version, values: parsed ?? {} };
}

export async function helmUpgrade(
  pin: ChartPin,
  values: Record<string, unknown>,
  timeoutSeconds: number,
  log: Logger,
): Promise<void> {
  const r = await run(helmUpgradeArgv(pin, timeoutSeconds), {
    input: JSON.stringify(values),
    allowFail: true,
    timeoutSeconds: timeoutSeconds + 60,
    log,
    progress: `helm upgrade ${pin.release} ${pin.version} (--wait)`,
  });
  if (r.exitCode !== 0) {
    throw failure(
      r,
      `helm could not install ${pin.chart} ${pin.version} as ${pin.namespace}/${pin.release}`,
      `helm --kubeconfig ${KUBECONFIG} -n ${pin.namespace} status ${pin.release}; kubectl --kubeconfig ${KUBECONFIG} -n ${pin.namespace} get pods`,
    );
  }
}
