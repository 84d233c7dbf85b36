// helm test double (codex-k8s sandbox). NOT the real helm: it renders no chart and creates no workload; it keeps
// releases (with revision history) in ${CODEXK8S_FAKES_DIR:-/var/lib/codex-k8s-fakes}/helm, shares namespaces with
// the kubectl double, and records every call in calls.jsonl (faults.json can make a call fail).
//
// Supports (output and errors shaped like helm 3):
//   global    --kubeconfig F, --kube-context C, -n/--namespace NS, --debug
//   upgrade   RELEASE CHART --version V [--install] [-n NS] [--create-namespace] [-f FILE|-]... [--set k=v]...
//             [--set-string k=v]... [--reuse-values|--reset-values] [--wait] [--timeout D] [--atomic]
//             [--history-max N] [--description S] [--skip-crds] [--force]
//   list      [-A] [-n NS] [-o json|yaml|table] [--filter REGEX]
//   status    RELEASE [-n NS] [-o json|yaml]      history RELEASE [-n NS] [-o json|yaml]
//   get values RELEASE [-n NS] [-o json|yaml] [--revision N] [--all]
//   uninstall RELEASE [-n NS] [--wait] [--timeout D] [--keep-history] [--ignore-not-found]
//   version   [--short]
//   registry  login HOST -u USER --password-stdin | logout HOST
//   repo      add NAME URL [--force-update] | update [NAME...] | list [-o json]
// Strict on purpose:
//   - upgrade without --version, or with a range/non-exact version: "unpinned chart" error;
//   - chart refs: oci://HOST/PATH/NAME (no tag: pin with --version) or REPO/NAME with REPO added by `repo add`;
//     local chart dirs, .tgz files and URLs are refused;
//   - values files must parse as YAML maps; --set syntax errors are errors;
//   - charts.json (this dir, plus ${CODEXK8S_FAKES_DIR}/charts.json from a test) may restrict a chart's versions,
//     run values hooks and chart effects (lib/chart-hooks.mts: an effect's preflight can fail the install, its
//     apply creates what the chart and its controller would, e.g. ARC's AutoscalingRunnerSet and listener pod);
//   - registry login refuses -p/--password (a password in argv): use --password-stdin;
//   - the namespace must exist (in the kubectl double's store) unless --create-namespace.
// Behaviour: each upgrade is a new revision (the previous one becomes "superseded"), like real helm, so it is
// recorded as mutating even when chart and values are the same. No values given on upgrade = previous values reused
// (helm's rule). A chart's release "installs" the CRD kinds listed for it in lib/kinds.mts (EXTENSION_KINDS).
//
// To add a verb: VERBS below. To add chart rules: charts.json / lib/chart-hooks.mts.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify } from 'yaml';
import type { FlagTable, Outcome, ParseStyle, ToolIO, VerbContext, VerbSpec } from './lib/cli.mts';
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
import type { Release, ReleaseRevision } from './lib/helm-state.mts';
import { deleteRelease, latest, listReleases, readRelease, writeRelease } from './lib/helm-state.mts';
import { isObj, kindByApiVersion } from './lib/kinds.mts';
import type { KindInfo } from './lib/kinds.mts';
import { requireCluster, Store } from './lib/store.mts';
import { sha256 } from './lib/recorder.mts';
import { CHART_EFFECTS, CHART_HOOKS } from './lib/chart-hooks.mts';
import type { ClusterAccess } from './lib/chart-hooks.mts';
import { chartValuesProblems, isCheckedChart } from './lib/chart-values.mts';

export const DEFAULT_HELM_VERSION = 'v3.19.2+g8766e71';

const GLOBAL_FLAGS: FlagTable = {
  kubeconfig: { type: 'string' },
  'kube-context': { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  debug: { type: 'bool' },
  help: { type: 'bool', short: 'h' },
};

type Ctx = VerbContext<Store>;
type Verb = VerbSpec<Ctx>;

const say = (ctx: Ctx, text: string): void => {
  ctx.out.stdout += text.endsWith('\n') ? text : text + '\n';
};
const changed = (ctx: Ctx, what: string): void => {
  ctx.out.mutating = true;
  ctx.out.changes.push(what);
};

function style(verb: string): ParseStyle {
  return {
    unknownFlag: (f) => `Error: unknown flag: ${f}`,
    badValue: (f, v, allowed) => `Error: invalid argument "${v}" for "${f}" flag: must be one of ${allowed.join(', ')}`,
    missingValue: (f) => `Error: flag needs an argument: ${f}${verb === '' ? '' : ` (helm ${verb})`}`,
  };
}

function toYaml(v: unknown): string {
  return stringify(v, { lineWidth: 0 });
}

function printData(ctx: Ctx, data: unknown, output: string | undefined, table: () => string): void {
  if (output === 'json') say(ctx, JSON.stringify(data));
  else if (output === 'yaml') say(ctx, toYaml(data));
  else say(ctx, table());
}

/** "2026-11-27 02:51:16.843 +0000 UTC", helm's time format in list/history. */
function helmTime(iso: string): string {
  return iso.replace('T', ' ').replace(/Z$/, '') + ' +0000 UTC';
}

/** "Fri Nov 27 02:51:16 2026", helm's LAST DEPLOYED format. */
function deployedTime(iso: string): string {
  const d = new Date(iso);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

function columns(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 1) + '\t')).join(''))
    .join('\n');
}

function needRelease(ctx: Ctx): string {
  const name = ctx.pos[0];
  if (name === undefined)
    throw new DoubleError(
      `Error: "helm ${ctx.verb}" requires 1 argument\n\nUsage:  helm ${ctx.verb} RELEASE_NAME [flags]`,
    );
  if (ctx.pos.length > 1)
    throw new DoubleError(`Error: "helm ${ctx.verb}" accepts 1 argument, received ${ctx.pos.length}`);
  return name;
}

function releaseOrFail(ctx: Ctx, name: string, prefix: string): Release {
  ctx.store();
  const rel = readRelease(ctx.io.dir, ctx.namespace(), name);
  if (rel === undefined || rel.history.length === 0) throw new DoubleError(`Error: ${prefix}release: not found`);
  return rel;
}

// ---------------------------------------------------------------------------------------------------------------
// Chart rules (charts.json)

interface ChartRule {
  versions?: string[];
  requiredValues?: string[];
  allowedTopLevelValues?: string[];
  hooks?: string[];
  /** What installing the chart creates in the fake cluster (lib/chart-hooks.mts CHART_EFFECTS). */
  effects?: string[];
}

const RULE_FIELDS = new Set(['versions', 'requiredValues', 'allowedTopLevelValues', 'hooks', 'effects']);

function readRules(file: string): Record<string, ChartRule> {
  if (!fs.existsSync(file)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  } catch (err) {
    throw new DoubleError(`Error: fake helm rules: ${file}: not valid JSON: ${(err as Error).message}`);
  }
  const charts = isObj(raw) ? raw['charts'] : undefined;
  if (!isObj(charts)) throw new DoubleError(`Error: fake helm rules: ${file}: must be {"charts": {NAME: {...}}}`);
  for (const [name, rule] of Object.entries(charts)) {
    if (!isObj(rule)) throw new DoubleError(`Error: fake helm rules: ${file}: charts.${name} must be an object`);
    for (const k of Object.keys(rule))
      if (!RULE_FIELDS.has(k))
        throw new DoubleError(
          `Error: fake helm rules: ${file}: charts.${name}.${k}: unknown field (known: ${[...RULE_FIELDS].join(', ')})`,
        );
    for (const k of RULE_FIELDS) {
      const v = rule[k];
      if (v !== undefined && (!Array.isArray(v) || !v.every((x) => typeof x === 'string')))
        throw new DoubleError(`Error: fake helm rules: ${file}: charts.${name}.${k} must be a list of strings`);
    }
    for (const h of (rule['hooks'] as string[] | undefined) ?? []) {
      if (CHART_HOOKS[h] === undefined)
        throw new DoubleError(
          `Error: fake helm rules: ${file}: charts.${name}.hooks: unknown hook "${h}" (known: ${Object.keys(CHART_HOOKS).join(', ')})`,
        );
    }
    for (const e of (rule['effects'] as string[] | undefined) ?? []) {
      if (CHART_EFFECTS[e] === undefined)
        throw new DoubleError(
          `Error: fake helm rules: ${file}: charts.${name}.effects: unknown effect "${e}" (known: ${Object.keys(CHART_EFFECTS).join(', ')})`,
        );
    }
  }
  return charts as Record<string, ChartRule>;
}

function chartRules(dir: string): Record<string, ChartRule> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return { ...readRules(path.join(here, 'charts.json')), ...readRules(path.join(dir, 'charts.json')) };
}

function getPath(values: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = values;
  for (const k of dotted.split('.')) cur = isObj(cur) ? cur[k] : undefined;
  return cur;
}

// ---------------------------------------------------------------------------------------------------------------
// Values

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObj(b) && isObj(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/** Splits on commas not escaped and not inside {...}. */
function splitSet(expr: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let depth = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i] as string;
    if (c === '\\' && i + 1 < expr.length) {
      cur += c + expr[i + 1];
      i++;
    } else if (c === '{') {
      depth++;
      cur += c;
    } else if (c === '}') {
      depth--;
      cur += c;
    } else if (c === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

function typedValue(raw: string, asString: boolean): unknown {
  const unescaped = raw.replace(/\\(.)/g, '$1');
  if (asString) return unescaped;
  if (raw.startsWith('{') && raw.endsWith('}'))
    return splitSet(raw.slice(1, -1))
      .filter((s) => s !== '')
      .map((s) => typedValue(s, false));
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw === 'null') return null;
  if (/^-?(0|[1-9]\d*)$/.test(raw) && Number.isSafeInteger(Number(raw))) return Number(raw);
  return unescaped;
}

/** helm --set a.b=1,c[0].d=x,e={x,y} (escapes: \, \. \=). */
function applySet(values: Record<string, unknown>, expr: string, asString: boolean, flag: string): void {
  for (const part of splitSet(expr)) {
    const eq = part.search(/(?<!\\)=/);
    if (eq <= 0) throw new DoubleError(`Error: failed parsing ${flag} data: key "${part}" has no value`);
    const keyText = part.slice(0, eq);
    const raw = part.slice(eq + 1);
    const keys: Array<string | number> = [];
    for (const seg of keyText.split(/(?<!\\)\./)) {
      const m = /^(.*?)((?:\[\d+\])*)$/.exec(seg) as RegExpExecArray;
      const name = (m[1] as string).replace(/\\(.)/g, '$1');
      if (name === '')
        throw new DoubleError(`Error: failed parsing ${flag} data: key "${keyText}" has an empty segment`);
      keys.push(name);
      for (const idx of (m[2] as string).matchAll(/\[(\d+)\]/g)) keys.push(Number(idx[1]));
    }
    let cur: Record<string, unknown> | unknown[] = values;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as string | number;
      const last = i === keys.length - 1;
      const nextIsIndex = typeof keys[i + 1] === 'number';
      if (Array.isArray(cur)) {
        if (typeof k !== 'number')
          throw new DoubleError(`Error: failed parsing ${flag} data: "${keyText}" mixes list and map`);
        while (cur.length <= k) cur.push(null);
        if (last) cur[k] = typedValue(raw, asString);
        else {
          if (!isObj(cur[k]) && !Array.isArray(cur[k])) cur[k] = nextIsIndex ? [] : {};
          cur = cur[k] as Record<string, unknown> | unknown[];
        }
      } else {
        if (typeof k === 'number')
          throw new DoubleError(`Error: failed parsing ${flag} data: "${keyText}" indexes a map`);
        if (last) cur[k] = typedValue(raw, asString);
        else {
          const nextVal: unknown = cur[k];
          if (!isObj(nextVal) && !Array.isArray(nextVal)) cur[k] = nextIsIndex ? [] : {};
          cur = cur[k] as Record<string, unknown> | unknown[];
        }
      }
    }
  }
}

function readValuesFile(ctx: Ctx, file: string): Record<string, unknown> {
  let text: string;
  if (file === '-') text = ctx.io.readStdin().toString('utf8');
  else {
    if (/^https?:\/\//.test(file))
      throw new DoubleError(`Error: the fake helm refuses values from a URL (${file}): no internet in the sandbox`);
    if (!fs.existsSync(file)) throw new DoubleError(`Error: open ${file}: no such file or directory`);
    text = fs.readFileSync(file, 'utf8');
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text, { version: '1.1' }) as unknown;
  } catch (err) {
    throw new DoubleError(`Error: failed to parse ${file}: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (!isObj(parsed))
    throw new DoubleError(
      `Error: failed to parse ${file}: error unmarshaling JSON: json: cannot unmarshal ${Array.isArray(parsed) ? 'array' : typeof parsed} into Go value of type map[string]interface {}`,
    );
  return parsed;
}

// ---------------------------------------------------------------------------------------------------------------
// Chart refs

const EXACT_VERSION = /^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

interface Repo {
  name: string;
  url: string;
}

function reposFile(dir: string): string {
  return path.join(dir, 'helm', 'repositories.json');
}

function readRepos(dir: string): Repo[] {
  try {
    return JSON.parse(fs.readFileSync(reposFile(dir), 'utf8')) as Repo[];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

function writeJson(file: string, data: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
}

function chartName(ctx: Ctx, ref: string): string {
  if (ref.startsWith('oci://')) {
    const segs = ref.slice('oci://'.length).split('/');
    const last = segs[segs.length - 1] ?? '';
    if (segs.length < 2 || last === '')
      throw new DoubleError(`Error: invalid chart reference "${ref}": expected oci://HOST/PATH/NAME`);
    if (/[:@]/.test(last))
      throw new DoubleError(
        `Error: the fake helm refuses a tag or digest in the chart ref "${ref}": pin it with --version`,
      );
    return last;
  }
  if (/^(https?:|file:|\.|\/)/.test(ref) || ref.endsWith('.tgz')) {
    throw new DoubleError(
      `Error: the fake helm refuses chart "${ref}": use oci://HOST/PATH/NAME or REPO/NAME (it has no chart files)`,
    );
  }
  const m = /^([a-z0-9][a-z0-9._-]*)\/([a-z0-9][a-z0-9._-]*)$/i.exec(ref);
  if (m === null)
    throw new DoubleError(`Error: non-absolute URLs should be in form of repo_name/path_to_chart, got: ${ref}`);
  if (!readRepos(ctx.io.dir).some((r) => r.name === m[1]))
    throw new DoubleError(`Error: repo ${m[1] as string} not found`);
  return m[2] as string;
}

// ---------------------------------------------------------------------------------------------------------------
// Verbs

function releaseBlock(rev: ReleaseRevision, name: string, namespace: string): string {
  return [
    `NAME: ${name}`,
    `LAST DEPLOYED: ${deployedTime(rev.updated)}`,
    `NAMESPACE: ${namespace}`,
    `STATUS: ${rev.status}`,
    `REVISION: ${rev.revision}`,
    'TEST SUITE: None',
  ].join('\n');
}

/** The fake cluster as chart effects see it (lib/chart-hooks.mts ClusterAccess), on the kubectl double's store. */
function clusterAccess(store: Store, dir: string): ClusterAccess {
  const kind = (apiVersion: string, k: string): KindInfo => {
    const info = kindByApiVersion(apiVersion, k);
    if (info === undefined) throw new Error(`chart effect: unknown kind ${apiVersion} ${k} (add it to lib/kinds.mts)`);
    return info;
  };
  return {
    get: (apiVersion, k, ns, name) => store.get(kind(apiVersion, k), ns, name),
    list: (apiVersion, k, ns) => store.list(kind(apiVersion, k), ns),
    put(obj) {
      const info = kind(obj.apiVersion, obj.kind);
      const current = store.get(info, obj.metadata.namespace, obj.metadata.name);
      if (current === undefined) {
        store.create(info, obj);
        return;
      }
      const updated = store.update(info, current, obj);
      // Kinds without a fake controller keep their old status on update; an effect sets the new one.
      if (info.status === undefined && obj['status'] !== undefined)
        store.put(info, { ...updated, status: obj['status'] });
    },
    remove: (apiVersion, k, ns, name) => {
      store.remove(kind(apiVersion, k), ns, name);
    },
    unavailable: (apiVersion, k) => store.unavailableReason(kind(apiVersion, k)),
    releaseNamespace: (chart) =>
      listReleases(dir).find((r) => latest(r)?.status === 'deployed' && latest(r)?.chart.name === chart)?.namespace,
  };
}

const upgrade: Verb = {
  usage:
    'upgrade RELEASE CHART --version V [--install] [-n NS] [--create-namespace] [-f FILE]... [--set k=v]... [--wait] [--timeout D] [--atomic]',
  flags: {
    install: { type: 'bool', short: 'i' },
    version: { type: 'string' },
    'create-namespace': { type: 'bool' },
    values: { type: 'list', short: 'f' },
    set: { type: 'list' },
    'set-string': { type: 'list' },
    'set-file': { type: 'list' },
    'set-json': { type: 'list' },
    'reuse-values': { type: 'bool' },
    'reset-values': { type: 'bool' },
    wait: { type: 'bool' },
    'wait-for-jobs': { type: 'bool' },
    timeout: { type: 'string' },
    atomic: { type: 'bool' },
    'history-max': { type: 'string' },
    description: { type: 'string' },
    'skip-crds': { type: 'bool' },
    force: { type: 'bool' },
    'dry-run': { type: 'string' },
    devel: { type: 'bool' },
  },
  async run(ctx) {
    const p = ctx.args;
    if (ctx.pos.length !== 2)
      throw new DoubleError(
        `Error: "helm upgrade" requires 2 arguments\n\nUsage:  helm upgrade [RELEASE] [CHART] [flags]`,
      );
    const [name, ref] = ctx.pos as [string, string];
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 53)
      throw new DoubleError(`Error: invalid release name "${name}": must be a DNS-1123 label of at most 53 characters`);
    if (p.flags.has('dry-run')) throw new DoubleError('Error: the fake helm does not support --dry-run');
    if (flagBool(p, 'devel')) throw new DoubleError('Error: the fake helm refuses --devel: pin an exact --version');
    if (flagList(p, 'set-file').length > 0 || flagList(p, 'set-json').length > 0)
      throw new DoubleError('Error: the fake helm does not support --set-file/--set-json: use -f FILE');
    const version = flagString(p, 'version');
    if (version === undefined)
      throw new DoubleError(
        `Error: unpinned chart: "helm upgrade ${name} ${ref}" has no --version (the fake helm requires an exact chart version)`,
      );
    if (!EXACT_VERSION.test(version))
      throw new DoubleError(`Error: unpinned chart: --version "${version}" is not an exact version`);
    const timeout = flagString(p, 'timeout');
    if (timeout !== undefined && parseDuration(timeout) === undefined)
      throw new DoubleError(
        `Error: invalid argument "${timeout}" for "--timeout" flag: time: invalid duration "${timeout}"`,
      );
    const historyMax = Number(flagString(p, 'history-max') ?? '10');
    if (!Number.isInteger(historyMax) || historyMax < 0)
      throw new DoubleError('Error: invalid argument for "--history-max" flag');
    if (flagBool(p, 'reuse-values') && flagBool(p, 'reset-values'))
      throw new DoubleError('Error: --reuse-values and --reset-values are mutually exclusive (fake helm)');
    const chart = chartName(ctx, ref);
    const rule = chartRules(ctx.io.dir)[chart];
    if (rule?.versions !== undefined && !rule.versions.includes(version)) {
      throw new DoubleError(
        `Error: chart "${chart}" version "${version}" not found in ${ref} (fake helm: charts.json allows ${rule.versions.join(', ') || 'no version'})`,
      );
    }

    const store = ctx.store();
    const ns = ctx.namespace();
    const nsInfo = kindByApiVersion('v1', 'Namespace') as KindInfo;
    let existing = readRelease(ctx.io.dir, ns, name);
    if (existing !== undefined && existing.history.length === 0) existing = undefined;
    const current = existing === undefined ? undefined : latest(existing);
    if (current === undefined && !flagBool(p, 'install'))
      throw new DoubleError(`Error: UPGRADE FAILED: "${name}" has no deployed releases`);

    // Values: files in order, then --set, then --set-string (helm's precedence).
    let supplied: Record<string, unknown> = {};
    for (const f of flagList(p, 'values')) supplied = deepMerge(supplied, readValuesFile(ctx, f));
    for (const s of flagList(p, 'set')) applySet(supplied, s, false, '--set');
    for (const s of flagList(p, 'set-string')) applySet(supplied, s, true, '--set-string');
    let values = supplied;
    if (current !== undefined && !flagBool(p, 'reset-values')) {
      if (flagBool(p, 'reuse-values')) values = deepMerge(current.values, supplied);
      else if (Object.keys(supplied).length === 0) values = current.values;
    }

    const problems: string[] = [];
    for (const req of rule?.requiredValues ?? [])
      if (getPath(values, req) === undefined) problems.push(`${req}: Required value`);
    if (rule?.allowedTopLevelValues !== undefined) {
      for (const k of Object.keys(values))
        if (!rule.allowedTopLevelValues.includes(k)) problems.push(`${k}: Additional property ${k} is not allowed`);
    }
    // The chart's own schema (or, for ARC, its derived key tree) at our pin: what the real chart refuses, we refuse.
    if (isCheckedChart(chart)) problems.push(...chartValuesProblems(chart, values, version));
    const releaseInfo = { name, namespace: ns, chart, version, install: current === undefined };
    for (const h of rule?.hooks ?? [])
      problems.push(...(CHART_HOOKS[h] as (typeof CHART_HOOKS)[string])(values, releaseInfo));
    const cluster = clusterAccess(store, ctx.io.dir);
    const effects = (rule?.effects ?? []).map((e) => CHART_EFFECTS[e] as (typeof CHART_EFFECTS)[string]);
    if (problems.length === 0) for (const e of effects) problems.push(...e.preflight(values, releaseInfo, cluster));
    if (problems.length > 0) {
      throw new DoubleError(
        `Error: ${current === undefined ? 'INSTALLATION' : 'UPGRADE'} FAILED: values don't meet the specifications of the schema(s) in the following chart(s):\n${chart}:\n${problems.map((x) => `- ${x}`).join('\n')}`,
      );
    }

    if (!store.namespaceExists(ns)) {
      if (!flagBool(p, 'create-namespace'))
        throw new DoubleError(
          `Error: ${current === undefined ? 'INSTALLATION' : 'UPGRADE'} FAILED: create: failed to create: namespaces "${ns}" not found`,
        );
      store.create(nsInfo, {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { 'kubernetes.io/metadata.name': ns } },
      });
      changed(ctx, `namespace/${ns} created`);
    }

    const rel: Release = existing ?? { name, namespace: ns, history: [] };
    for (const h of rel.history) if (h.status === 'deployed') h.status = 'superseded';
    const rev: ReleaseRevision = {
      revision: (current?.revision ?? 0) + 1,
      status: 'deployed',
      chart: { name: chart, version, ref },
      appVersion: version,
      values,
      updated: new Date().toISOString(),
      description: flagString(p, 'description') ?? (current === undefined ? 'Install complete' : 'Upgrade complete'),
    };
    rel.history.push(rev);
    if (historyMax > 0 && rel.history.length > historyMax) rel.history = rel.history.slice(-historyMax);
    writeRelease(ctx.io.dir, rel);
    for (const e of effects) for (const c of e.apply(values, releaseInfo, cluster)) changed(ctx, c);

    const same =
      current !== undefined &&
      current.chart.version === version &&
      current.chart.ref === ref &&
      JSON.stringify(current.values) === JSON.stringify(values);
    changed(
      ctx,
      `helm release ${ns}/${name} revision ${rev.revision} (${chart} ${version}${same ? ', same chart and values as before' : ''})`,
    );
    if (current === undefined) say(ctx, `Release "${name}" does not exist. Installing it now.`);
    else say(ctx, `Release "${name}" has been upgraded. Happy Helming!`);
    say(ctx, releaseBlock(rev, name, ns));
  },
};

function listRow(r: Release, rev: ReleaseRevision): Record<string, string> {
  return {
    name: r.name,
    namespace: r.namespace,
    revision: String(rev.revision),
    updated: helmTime(rev.updated),
    status: rev.status,
    chart: `${rev.chart.name}-${rev.chart.version}`,
    app_version: rev.appVersion,
  };
}

const list: Verb = {
  usage: 'list [-A] [-n NS] [-o json|yaml|table] [--filter REGEX]',
  flags: {
    'all-namespaces': { type: 'bool', short: 'A' },
    output: { type: 'string', short: 'o', values: ['json', 'yaml', 'table'] },
    filter: { type: 'string' },
    all: { type: 'bool', short: 'a' },
    uninstalled: { type: 'bool' },
  },
  async run(ctx) {
    const p = ctx.args;
    ctx.store();
    const filter = flagString(p, 'filter');
    const re = filter === undefined ? undefined : new RegExp(filter);
    const rows: Record<string, string>[] = [];
    for (const r of listReleases(ctx.io.dir)) {
      if (!flagBool(p, 'all-namespaces') && r.namespace !== ctx.namespace()) continue;
      const rev = latest(r);
      if (rev === undefined) continue;
      const show =
        rev.status === 'deployed' ||
        rev.status === 'failed' ||
        flagBool(p, 'all') ||
        (flagBool(p, 'uninstalled') && rev.status === 'uninstalled');
      if (!show || (re !== undefined && !re.test(r.name))) continue;
      rows.push(listRow(r, rev));
    }
    printData(ctx, rows, flagString(p, 'output'), () =>
      columns([
        ['NAME', 'NAMESPACE', 'REVISION', 'UPDATED', 'STATUS', 'CHART', 'APP VERSION'],
        ...rows.map((r) =>
          [r['name'], r['namespace'], r['revision'], r['updated'], r['status'], r['chart'], r['app_version']].map(
            String,
          ),
        ),
      ]),
    );
  },
};

const status: Verb = {
  usage: 'status RELEASE [-n NS] [-o json|yaml]',
  flags: { output: { type: 'string', short: 'o', values: ['json', 'yaml', 'table'] }, revision: { type: 'string' } },
  async run(ctx) {
    const name = needRelease(ctx);
    const rel = releaseOrFail(ctx, name, '');
    const rev = latest(rel) as ReleaseRevision;
    const first = rel.history[0] as ReleaseRevision;
    const data = {
      name,
      info: {
        first_deployed: first.updated,
        last_deployed: rev.updated,
        deleted: '',
        description: rev.description,
        status: rev.status,
      },
      chart: { metadata: { name: rev.chart.name, version: rev.chart.version, appVersion: rev.appVersion } },
      config: rev.values,
      version: rev.revision,
      namespace: rel.namespace,
    };
    printData(ctx, data, flagString(ctx.args, 'output'), () => releaseBlock(rev, name, rel.namespace));
  },
};

const history: Verb = {
  usage: 'history RELEASE [-n NS] [-o json|yaml]',
  flags: { output: { type: 'string', short: 'o', values: ['json', 'yaml', 'table'] }, max: { type: 'string' } },
  async run(ctx) {
    const name = needRelease(ctx);
    const rel = releaseOrFail(ctx, name, '');
    const rows = rel.history.map((h) => ({
      revision: h.revision,
      updated: helmTime(h.updated),
      status: h.status,
      chart: `${h.chart.name}-${h.chart.version}`,
      app_version: h.appVersion,
      description: h.description,
    }));
    printData(ctx, rows, flagString(ctx.args, 'output'), () =>
      columns([
        ['REVISION', 'UPDATED', 'STATUS', 'CHART', 'APP VERSION', 'DESCRIPTION'],
        ...rows.map((r) => [String(r.revision), r.updated, r.status, r.chart, r.app_version, r.description]),
      ]),
    );
  },
};

const getValues: Verb = {
  usage: 'get values RELEASE [-n NS] [-o json|yaml] [--revision N] [--all]',
  subverbs: ['values'],
  flags: {
    output: { type: 'string', short: 'o', values: ['json', 'yaml', 'table'] },
    revision: { type: 'string' },
    all: { type: 'bool', short: 'a' },
  },
  async run(ctx) {
    const name = needRelease(ctx);
    const rel = releaseOrFail(ctx, name, '');
    const revArg = flagString(ctx.args, 'revision');
    const rev = revArg === undefined ? latest(rel) : rel.history.find((h) => String(h.revision) === revArg);
    if (rev === undefined) throw new DoubleError('Error: release: not found');
    const values = Object.keys(rev.values).length === 0 ? null : rev.values;
    printData(
      ctx,
      values,
      flagString(ctx.args, 'output'),
      () => `${flagBool(ctx.args, 'all') ? 'COMPUTED VALUES:' : 'USER-SUPPLIED VALUES:'}\n${toYaml(values)}`,
    );
  },
};

const uninstall: Verb = {
  usage: 'uninstall RELEASE [-n NS] [--wait] [--timeout D] [--keep-history] [--ignore-not-found]',
  flags: {
    wait: { type: 'bool' },
    timeout: { type: 'string' },
    'keep-history': { type: 'bool' },
    'ignore-not-found': { type: 'bool' },
    'dry-run': { type: 'bool' },
  },
  async run(ctx) {
    const name = needRelease(ctx);
    const timeout = flagString(ctx.args, 'timeout');
    if (timeout !== undefined && parseDuration(timeout) === undefined)
      throw new DoubleError(`Error: invalid argument "${timeout}" for "--timeout" flag`);
    ctx.store();
    const rel = readRelease(ctx.io.dir, ctx.namespace(), name);
    const rev = rel === undefined ? undefined : latest(rel);
    if (rel === undefined || rev === undefined || rev.status === 'uninstalled') {
      if (flagBool(ctx.args, 'ignore-not-found')) return;
      throw new DoubleError(`Error: uninstall: Release not loaded: ${name}: release: not found`);
    }
    if (flagBool(ctx.args, 'dry-run')) {
      say(ctx, `release "${name}" uninstalled`);
      return;
    }
    // What goes with the release: the chart's objects, and the controllers' reaction (lib/chart-hooks.mts remove).
    const rule = chartRules(ctx.io.dir)[rev.chart.name];
    const cluster = clusterAccess(ctx.store(), ctx.io.dir);
    const releaseInfo = { name, namespace: rel.namespace, chart: rev.chart.name, version: rev.chart.version };
    for (const e of rule?.effects ?? [])
      for (const c of CHART_EFFECTS[e]?.remove?.(rev.values, releaseInfo, cluster) ?? []) changed(ctx, c);
    if (flagBool(ctx.args, 'keep-history')) {
      rev.status = 'uninstalled';
      rev.description = 'Uninstallation complete';
      writeRelease(ctx.io.dir, rel);
    } else {
      deleteRelease(ctx.io.dir, rel.namespace, name);
    }
    changed(ctx, `helm release ${rel.namespace}/${name} uninstalled`);
    say(ctx, `release "${name}" uninstalled`);
  },
};

const version: Verb = {
  usage: 'version [--short]',
  flags: { short: { type: 'bool' }, template: { type: 'string' } },
  async run(ctx) {
    const v = ctx.io.env['CODEXK8S_FAKES_HELM_VERSION'] ?? DEFAULT_HELM_VERSION;
    if (flagString(ctx.args, 'template') !== undefined)
      throw new DoubleError('Error: the fake helm does not support version --template: use --short');
    if (flagBool(ctx.args, 'short')) say(ctx, v);
    else {
      const [semver, commit] = v.split('+g');
      say(
        ctx,
        `version.BuildInfo{Version:"${semver ?? v}", GitCommit:"${commit ?? ''}", GitTreeState:"clean", GoVersion:"go1.24.9"}`,
      );
    }
  },
};

interface Login {
  username: string;
  passwordSha256: string;
}

const registry: Verb = {
  usage: 'registry login HOST -u USER --password-stdin | registry logout HOST',
  subverbs: ['login', 'logout'],
  flags: {
    username: { type: 'string', short: 'u' },
    password: { type: 'string', short: 'p' },
    'password-stdin': { type: 'bool' },
    insecure: { type: 'bool' },
  },
  async run(ctx) {
    const sub = ctx.verb.split(' ')[1];
    if (ctx.pos.length !== 1) throw new DoubleError(`Error: "helm ${ctx.verb}" requires 1 argument`);
    const host = ctx.pos[0] as string;
    const file = path.join(ctx.io.dir, 'helm', 'registries.json');
    const logins = (fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {}) as Record<string, Login>;
    if (sub === 'logout') {
      if (logins[host] === undefined) throw new DoubleError(`Error: not logged in to ${host}`);
      delete logins[host];
      writeJson(file, logins);
      changed(ctx, `registry logout ${host}`);
      say(ctx, `Removing login credentials for ${host}`);
      return;
    }
    if (ctx.args.flags.has('password')) {
      throw new DoubleError(
        'Error: the fake helm refuses -p/--password: a password in argv leaks into process listings and logs; use --password-stdin',
      );
    }
    if (!flagBool(ctx.args, 'password-stdin'))
      throw new DoubleError('Error: the fake helm requires --password-stdin for registry login (it never prompts)');
    const username = flagString(ctx.args, 'username');
    if (username === undefined || username === '')
      throw new DoubleError('Error: the fake helm requires -u/--username for registry login');
    const password = ctx.io
      .readStdin()
      .toString('utf8')
      .replace(/\r?\n$/, '');
    if (password === '') throw new DoubleError('Error: password required (stdin was empty)');
    const next: Login = { username, passwordSha256: sha256(password) };
    const prev = logins[host];
    if (prev === undefined || prev.username !== next.username || prev.passwordSha256 !== next.passwordSha256) {
      logins[host] = next;
      writeJson(file, logins);
      changed(ctx, `registry login ${host}`);
    }
    say(ctx, 'Login Succeeded');
  },
};

const repo: Verb = {
  usage: 'repo add NAME URL [--force-update] | repo update [NAME...] | repo list [-o json]',
  subverbs: ['add', 'update', 'list', 'remove'],
  flags: {
    'force-update': { type: 'bool' },
    output: { type: 'string', short: 'o', values: ['json', 'yaml', 'table'] },
    username: { type: 'string' },
    password: { type: 'string' },
  },
  async run(ctx) {
    const sub = ctx.verb.split(' ')[1];
    const repos = readRepos(ctx.io.dir);
    if (ctx.args.flags.has('password'))
      throw new DoubleError('Error: the fake helm refuses --password in argv: use --password-stdin');
    if (sub === 'add') {
      if (ctx.pos.length !== 2) throw new DoubleError('Error: "helm repo add" requires 2 arguments');
      const [name, url] = ctx.pos as [string, string];
      if (!/^https?:\/\//.test(url)) throw new DoubleError(`Error: could not find protocol handler for: ${url}`);
      const prev = repos.find((r) => r.name === name);
      if (prev !== undefined && prev.url === url) {
        say(ctx, `"${name}" already exists with the same configuration, skipping`);
        return;
      }
      if (prev !== undefined && !flagBool(ctx.args, 'force-update'))
        throw new DoubleError(`Error: repository name (${name}) already exists, please specify a different name`);
      writeJson(reposFile(ctx.io.dir), [...repos.filter((r) => r.name !== name), { name, url }]);
      changed(ctx, `helm repo ${name} -> ${url}`);
      say(ctx, `"${name}" has been added to your repositories`);
    } else if (sub === 'remove') {
      for (const name of ctx.pos) {
        if (!repos.some((r) => r.name === name)) throw new DoubleError(`Error: no repo named "${name}" found`);
      }
      writeJson(
        reposFile(ctx.io.dir),
        repos.filter((r) => !ctx.pos.includes(r.name)),
      );
      for (const name of ctx.pos) {
        changed(ctx, `helm repo ${name} removed`);
        say(ctx, `"${name}" has been removed from your repositories`);
      }
    } else if (sub === 'update') {
      if (repos.length === 0) throw new DoubleError('Error: no repositories found. You must add one before updating');
      for (const name of ctx.pos)
        if (!repos.some((r) => r.name === name))
          throw new DoubleError(`Error: no repositories found matching '${name}'.  Nothing will be updated`);
      say(ctx, 'Hang tight while we grab the latest from your chart repositories...');
      for (const r of repos)
        if (ctx.pos.length === 0 || ctx.pos.includes(r.name))
          say(ctx, `...Successfully got an update from the "${r.name}" chart repository`);
      say(ctx, 'Update Complete. ⎈Happy Helming!⎈');
    } else {
      if (repos.length === 0 && flagString(ctx.args, 'output') === undefined)
        throw new DoubleError('Error: no repositories to show');
      printData(ctx, repos, flagString(ctx.args, 'output'), () =>
        columns([['NAME', 'URL'], ...repos.map((r) => [r.name, r.url])]),
      );
    }
  },
};

/** THE verb table ("get values", "repo add" ... are sub-verbs). */
const VERBS: Readonly<Record<string, Verb>> = {
  upgrade,
  list,
  ls: list,
  status,
  history,
  get: getValues,
  uninstall,
  version,
  registry,
  repo,
};

function findVerb(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('-')) return a;
    const long = a.startsWith('--') ? a.slice(2) : undefined;
    const spec =
      long !== undefined ? GLOBAL_FLAGS[long] : Object.values(GLOBAL_FLAGS).find((s) => s.short === a.slice(1));
    if (spec !== undefined && spec.type !== 'bool' && !a.includes('=') && (long !== undefined || a.length === 2)) i++;
  }
  return undefined;
}

function usage(): string {
  return [
    'helm (codex-k8s test double). Supported:',
    ...Object.entries(VERBS)
      .filter(([k]) => k !== 'ls')
      .map(([, v]) => `  helm ${v.usage}`),
  ].join('\n');
}

async function main(argv: string[], io: ToolIO): Promise<Outcome> {
  const out = emptyOutcome();
  const verbName = findVerb(argv);
  if (verbName === undefined || verbName === 'help') {
    if (argv.includes('-h') || argv.includes('--help') || verbName === 'help')
      return { ...out, stdout: usage() + '\n' };
    throw new DoubleError(`Error: a command is required\n${usage()}`);
  }
  const verb = VERBS[verbName];
  if (verb === undefined)
    throw new DoubleError(
      `Error: unknown command "${verbName}" for "helm"\nRun 'helm --help' for usage.\n(fake helm supports: ${Object.keys(VERBS).join(', ')}; add verbs to VERBS in test/fakes/helm.mts)`,
    );
  const parsed = parseArgs(argv, { ...GLOBAL_FLAGS, ...verb.flags }, style(verbName));
  if (flagBool(parsed, 'help')) return { ...out, stdout: `helm ${verb.usage}\n` };
  const pos = parsed.positionals.slice(parsed.positionals.indexOf(verbName) + 1);
  let full = verbName;
  if (verb.subverbs !== undefined) {
    const sub = pos.shift();
    if (sub === undefined || !verb.subverbs.includes(sub))
      throw new DoubleError(
        `Error: unknown command "${sub ?? ''}" for "helm ${verbName}"\n(fake helm supports: helm ${verb.usage})`,
      );
    full = `${verbName} ${sub}`;
  }
  const ns = flagString(parsed, 'namespace') ?? io.env['HELM_NAMESPACE'] ?? 'default';
  let store: Store | undefined;
  const ctx: Ctx = {
    verb: full,
    args: parsed,
    pos,
    io,
    out,
    namespace: () => ns,
    store: () => {
      store ??= new Store(
        io.dir,
        requireCluster(
          io.dir,
          io.env,
          flagString(parsed, 'kubeconfig'),
          (m) => `Error: Kubernetes cluster unreachable: ${m}`,
        ),
      );
      return store;
    },
  };
  return runVerb(out, () => verb.run(ctx));
}

await runDouble({ tool: 'helm', globalFlags: GLOBAL_FLAGS, run: main });
