// What `kubectl exec` into the BuildKit pod does in the fake cluster: the pod buildkitd-0 of the StatefulSet
// buildkitd (manifests/buildkit), its container buildkitd, and the build script mounted from the ConfigMap
// buildkit-scripts at /opt/codex-k8s-build/build.sh. The only other exec target is postgres-0 (lib/postgres-exec.mts).
//
// build.sh protocol (docs: /work/issue5-spec.md section 2; the real script is manifests/buildkit):
//   build.sh exists TAG          exit 0 "present <ref>" | exit 3 "absent <ref>" | other exit = error
//   build.sh build TAG GIT_SHA   stdin: tar of the build context (Dockerfile at its root).
//                                TAG already pushed: "unchanged <ref>", exit 0 (stdin drained, not checked).
//                                Else: BuildKit-like progress on stderr, the push recorded in registry.json
//                                (lib/registry.mts), "pushed <ref>" on stdout.
//   TAG ^sha-[0-9a-f]{12}$, GIT_SHA ^[0-9a-f]{40}$, TAG == sha-<first 12 of GIT_SHA>; otherwise exit 2.
//   <ref> = registry.codex-k8s-system.svc.cluster.local:5000/codex-k8s:TAG
//
// What the fake checks like the real build would fail: stdin is a complete tar; Dockerfile is a regular file at
// its root (`Dockerfile` or `./Dockerfile`), not empty, known instructions only, a FROM before the first build
// instruction; every COPY/ADD source (without --from) is in the context; the registry (Service + Deployment
// codex-k8s-system/registry) exists. Not modelled: .dockerignore, RUN steps, base image pulls.
import crypto from 'node:crypto';
import type { K8sObject, KindInfo } from './kinds.mts';
import { at, isObj, kindByApiVersion } from './kinds.mts';
import type { Store } from './store.mts';
import { DoubleError } from './cli.mts';
import { findPushed, recordPush, REGISTRY_IN_CLUSTER } from './registry.mts';
import type { PushedImage } from './registry.mts';
import { normalizeTarPath, readTar, TarError } from './tar.mts';
import { BUILDKIT, execNote as note, POSTGRES, SUPPORTED_EXEC, terminated } from './exec-targets.mts';
import type { TarEntry } from './tar.mts';

// The names, the supported forms and kubectl's exit line live in lib/exec-targets.mts (shared with postgres-0).
export { BUILDKIT, SUPPORTED_EXEC, terminated };

function kind(apiVersion: string, k: string): KindInfo {
  const info = kindByApiVersion(apiVersion, k);
  if (info === undefined) throw new Error(`no kind row for ${apiVersion} ${k}`);
  return info;
}

function ociExecFailure(detail: string, why: string): DoubleError {
  return new DoubleError(
    `error: Internal error occurred: error executing command in container: failed to exec in container: ` +
      `failed to start exec: OCI runtime exec failed: exec failed: unable to start container process: ${detail}: unknown\n` +
      terminated(126) +
      `\n(fake kubectl: ${why})`,
    126,
  );
}

/**
 * Finds the script in the container the way the kubelet would have mounted it: a configMap volume at the script's
 * directory (all keys, or items with path build.sh), or a subPath mount of the file itself. Throws what kubectl
 * would print when the file is missing or not executable.
 */
function checkScriptMount(store: Store, sts: K8sObject): void {
  const podSpec = at(sts, 'spec', 'template', 'spec');
  const containers = at(podSpec, 'containers');
  const container = Array.isArray(containers)
    ? containers.find((c) => isObj(c) && c['name'] === BUILDKIT.container)
    : undefined;
  const mounts = isObj(container) && Array.isArray(container['volumeMounts']) ? container['volumeMounts'] : [];
  const volumes = at(podSpec, 'volumes');
  const missing = `exec: "${BUILDKIT.script}": stat ${BUILDKIT.script}: no such file or directory`;
  for (const m of mounts) {
    if (!isObj(m)) continue;
    const vol = Array.isArray(volumes) ? volumes.find((v) => isObj(v) && v['name'] === m['name']) : undefined;
    const cm = isObj(vol) ? vol['configMap'] : undefined;
    if (!isObj(cm)) continue;
    const mountPath = String(m['mountPath'] ?? '').replace(/\/+$/, '');
    const subPath = typeof m['subPath'] === 'string' && m['subPath'] !== '' ? m['subPath'] : undefined;
    const items = Array.isArray(cm['items']) ? cm['items'].filter(isObj) : undefined;
    const defaultMode = typeof cm['defaultMode'] === 'number' ? cm['defaultMode'] : 0o644;
    let fileInVolume: string;
    if (mountPath === BUILDKIT.scriptDir && subPath === undefined) fileInVolume = BUILDKIT.scriptFile;
    else if (mountPath === BUILDKIT.script && subPath !== undefined) fileInVolume = subPath;
    else continue;
    const item = items?.find((i) => i['path'] === fileInVolume);
    if (items !== undefined && item === undefined) {
      throw ociExecFailure(missing, `configMap volume "${String(m['name'])}" has items without path ${fileInVolume}`);
    }
    const key = item !== undefined ? String(item['key']) : fileInVolume;
    const mode = item !== undefined && typeof item['mode'] === 'number' ? item['mode'] : defaultMode;
    const cmName = String(cm['name'] ?? '');
    const configMap = store.get(kind('v1', 'ConfigMap'), BUILDKIT.namespace, cmName);
    if (configMap === undefined) {
      throw new DoubleError(
        `error: unable to upgrade connection: container not found ("${BUILDKIT.container}")` +
          `\n(fake kubectl: the pod cannot start: configmap "${cmName}" not found in ${BUILDKIT.namespace})`,
      );
    }
    const data = configMap['data'];
    if (!isObj(data) || typeof data[key] !== 'string') {
      throw ociExecFailure(missing, `ConfigMap ${BUILDKIT.namespace}/${cmName} has no key ${key}`);
    }
    if ((mode & 0o111) === 0) {
      throw ociExecFailure(
        `exec: "${BUILDKIT.script}": permission denied`,
        `the script is mounted with mode 0${mode.toString(8)}; set defaultMode (or the item's mode) to 0755`,
      );
    }
    return;
  }
  throw ociExecFailure(
    missing,
    `no configMap volume of the StatefulSet ${BUILDKIT.statefulSet} mounts ${BUILDKIT.script} in container ${BUILDKIT.container}`,
  );
}

const EXEC_TARGETS = `the exec targets are ${BUILDKIT.namespace}/${BUILDKIT.pod} and ${POSTGRES.pod} of a StatefulSet ${POSTGRES.statefulSet}`;

/**
 * Checks that `kubectl -n NS exec POD -c CONTAINER -- COMMAND...` reaches build.sh in a running buildkitd-0,
 * throwing kubectl's error (plus a note saying what the fake supports) otherwise.
 */
export function checkExecTarget(
  store: Store,
  namespace: string,
  pod: string,
  container: string | undefined,
  command: readonly string[],
): void {
  if (pod !== BUILDKIT.pod || namespace !== BUILDKIT.namespace) {
    if (store.get(kind('v1', 'Pod'), namespace, pod) !== undefined) {
      throw new DoubleError(`error: the fake kubectl cannot exec into pod ${namespace}/${pod}` + note(EXEC_TARGETS));
    }
    throw new DoubleError(`Error from server (NotFound): pods "${pod}" not found` + note(EXEC_TARGETS));
  }
  const sts = store.get(kind('apps/v1', 'StatefulSet'), BUILDKIT.namespace, BUILDKIT.statefulSet);
  const replicas = at(sts, 'spec', 'replicas');
  if (sts === undefined || (typeof replicas === 'number' && replicas < 1)) {
    throw new DoubleError(
      `Error from server (NotFound): pods "${pod}" not found` +
        `\n(fake kubectl: ${BUILDKIT.pod} exists while the StatefulSet ${BUILDKIT.namespace}/${BUILDKIT.statefulSet} exists with replicas >= 1)`,
    );
  }
  if (container === undefined) {
    throw new DoubleError(
      'error: the fake kubectl requires -c/--container for exec (the real one picks the default container and says so on stderr)' +
        note('no -c'),
    );
  }
  const names = ((at(sts, 'spec', 'template', 'spec', 'containers') as unknown[] | undefined) ?? []).map((c) =>
    isObj(c) ? String(c['name']) : '',
  );
  if (!names.includes(container)) {
    throw new DoubleError(
      `Error from server (BadRequest): container ${container} is not valid for pod ${pod}` +
        note(`the pod's containers are: ${names.join(', ')}`),
    );
  }
  if (container !== BUILDKIT.container)
    throw new DoubleError(
      `error: the fake kubectl cannot exec into container ${container}` + note('only the buildkitd container'),
    );
  if (command[0] !== BUILDKIT.script) {
    throw new DoubleError(
      `error: the fake kubectl cannot run ${JSON.stringify(command.join(' '))} in ${pod}` +
        note('only the build script'),
    );
  }
  checkScriptMount(store, sts);
}

// ---------------------------------------------------------------------------------------------------------------
// build.sh

export interface ScriptResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  pushed?: PushedImage;
}

const TAG = /^sha-[0-9a-f]{12}$/;
const GIT_SHA = /^[0-9a-f]{40}$/;
const USAGE =
  'usage: build.sh exists TAG | build.sh build TAG GIT_SHA  (TAG: sha-<first 12 of GIT_SHA>, GIT_SHA: 40 lower-case hex digits)';

function usage(problem: string): ScriptResult {
  return { stdout: '', stderr: `build.sh: ${problem}\n${USAGE}\n`, exitCode: 2 };
}

function refOf(tag: string): string {
  return `${REGISTRY_IN_CLUSTER}/${BUILDKIT.repository}:${tag}`;
}

/** Why the registry cannot be reached, or undefined. */
function registryProblem(store: Store): string | undefined {
  const missing: string[] = [];
  if (store.get(kind('v1', 'Service'), BUILDKIT.namespace, BUILDKIT.registryName) === undefined)
    missing.push(`Service ${BUILDKIT.namespace}/${BUILDKIT.registryName}`);
  if (store.get(kind('apps/v1', 'Deployment'), BUILDKIT.namespace, BUILDKIT.registryName) === undefined)
    missing.push(`Deployment ${BUILDKIT.namespace}/${BUILDKIT.registryName}`);
  return missing.length === 0
    ? undefined
    : `the in-cluster registry is not deployed (missing ${missing.join(' and ')}, manifests/registry)`;
}

function unreachable(store: Store, tag: string): string | undefined {
  const why = registryProblem(store);
  if (why === undefined) return undefined;
  const host = REGISTRY_IN_CLUSTER.split(':')[0] as string;
  return (
    `error: failed to do request: Head "http://${REGISTRY_IN_CLUSTER}/v2/${BUILDKIT.repository}/manifests/${tag}": ` +
    `dial tcp: lookup ${host} on 10.43.0.10:53: no such host\n(fake build.sh: ${why})\n`
  );
}

interface Instruction {
  line: number;
  keyword: string;
  args: string;
}

const INSTRUCTIONS = new Set([
  'FROM',
  'RUN',
  'CMD',
  'LABEL',
  'MAINTAINER',
  'EXPOSE',
  'ENV',
  'ADD',
  'COPY',
  'ENTRYPOINT',
  'VOLUME',
  'USER',
  'WORKDIR',
  'ARG',
  'ONBUILD',
  'STOPSIGNAL',
  'HEALTHCHECK',
  'SHELL',
]);

/** Dockerfile instructions with line continuations joined and heredoc bodies skipped. */
function instructions(text: string): Instruction[] {
  const lines = text.split(/\r?\n/);
  const out: Instruction[] = [];
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] as string;
    if (/^\s*(#.*)?$/.test(first)) continue;
    const start = i;
    let joined = first;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      i++;
      const next = lines[i] as string;
      if (/^\s*#/.test(next)) continue;
      joined = joined.replace(/\\\s*$/, ' ') + next;
    }
    const m = /^\s*(\S+)\s*(.*)$/.exec(joined);
    if (m === null) continue;
    out.push({ line: start + 1, keyword: (m[1] as string).toUpperCase(), args: (m[2] as string).trim() });
    for (const h of joined.matchAll(/<<-?\s*["']?([A-Za-z_][A-Za-z0-9_]*)["']?/g)) {
      const delim = h[1] as string;
      while (i + 1 < lines.length && (lines[i + 1] as string).trim() !== delim) i++;
      i++;
    }
  }
  return out;
}

/** COPY/ADD sources that come from the build context (no --from, no URL, no variables). */
function contextSources(ins: Instruction): string[] {
  let rest = ins.args;
  const flags: string[] = [];
  for (let m = /^--(\S+)\s*/.exec(rest); m !== null; m = /^--(\S+)\s*/.exec(rest)) {
    flags.push(m[1] as string);
    rest = rest.slice(m[0].length);
  }
  if (flags.some((f) => f.startsWith('from='))) return [];
  let words: string[];
  if (rest.startsWith('[')) {
    try {
      words = (JSON.parse(rest) as unknown[]).map(String);
    } catch {
      return [];
    }
  } else {
    if (/<</.test(rest)) return [];
    words = rest.split(/\s+/).filter((w) => w !== '');
  }
  return words.slice(0, -1).filter((w) => !/^[a-z]+:\/\//i.test(w) && !w.includes('$'));
}

function sourceExists(entries: readonly string[], source: string): boolean {
  const src = normalizeTarPath(source);
  if (src === '') return true;
  if (/[*?[]/.test(src)) {
    const re = new RegExp(
      '^' +
        src
          .split('')
          .map((c) => (c === '*' ? '[^/]*' : c === '?' ? '[^/]' : /[\\^$.|+(){}[\]]/.test(c) ? `\\${c}` : c))
          .join('') +
        '(/.*)?$',
    );
    return entries.some((e) => re.test(e));
  }
  return entries.some((e) => e === src || e.startsWith(`${src}/`));
}

/** BuildKit's verdict on the context: an error message (as buildctl prints it) or the Dockerfile's stages. */
function checkContext(entries: readonly TarEntry[]): { error: string } | { froms: string[]; dockerfileSize: number } {
  const names = entries.map((e) => normalizeTarPath(e.name)).filter((n) => n !== '');
  const df = entries.find((e) => normalizeTarPath(e.name) === 'Dockerfile');
  if (df === undefined || (df.type !== '0' && df.type !== '7')) {
    return {
      error:
        'error: failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory' +
        (df !== undefined ? ` (fake: Dockerfile is an entry of type '${df.type}', not a regular file)` : ''),
    };
  }
  const text = df.data.toString('utf8');
  const list = instructions(text);
  if (list.length === 0)
    return { error: 'error: failed to solve: failed to parse dockerfile: file with no instructions' };
  const froms: string[] = [];
  const stages: string[] = [];
  // ARGs before the first FROM may name the base image (`ARG NODE_IMAGE=...` / `FROM ${NODE_IMAGE}`).
  const globalArgs = new Map<string, string>();
  const expand = (w: string): string =>
    w.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (m, name: string) => globalArgs.get(name) ?? m);
  for (const ins of list) {
    if (!INSTRUCTIONS.has(ins.keyword))
      return {
        error: `error: failed to solve: dockerfile parse error on line ${ins.line}: unknown instruction: ${ins.keyword}`,
      };
    if (ins.keyword === 'ARG' && froms.length === 0 && stages.length === 0) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|(\S*))/.exec(ins.args);
      if (m !== null) globalArgs.set(m[1] as string, m[2] ?? m[3] ?? '');
    }
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const image = expand(words[0] ?? '');
      if (image === '')
        return {
          error: `error: failed to solve: dockerfile parse error on line ${ins.line}: FROM requires either one or three arguments`,
        };
      if (!stages.includes(image.toLowerCase()) && !froms.includes(image)) froms.push(image);
      if ((words[1] ?? '').toUpperCase() === 'AS' && words[2] !== undefined) stages.push(words[2].toLowerCase());
      continue;
    }
    if (ins.keyword !== 'ARG' && froms.length === 0 && stages.length === 0) {
      return {
        error: `error: failed to solve: dockerfile parse error on line ${ins.line}: no build stage in current context`,
      };
    }
    if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      for (const src of contextSources(ins)) {
        if (!sourceExists(names, src)) {
          return {
            error:
              `error: failed to solve: failed to compute cache key: failed to calculate checksum of ref: "/${normalizeTarPath(src)}": not found` +
              ` (Dockerfile line ${ins.line}: ${ins.keyword} ${ins.args})`,
          };
        }
      }
    }
  }
  if (froms.length === 0 && stages.length === 0)
    return { error: 'error: failed to solve: dockerfile contains no stages to build' };
  return { froms, dockerfileSize: df.size };
}

function progress(
  tag: string,
  gitSha: string,
  contextBytes: number,
  dockerfileSize: number,
  froms: string[],
  digest: string,
): string {
  const ref = refOf(tag);
  const steps: string[][] = [
    ['[internal] load build definition from Dockerfile', `transferring dockerfile: ${dockerfileSize}B done`],
    ...froms.map((f) => [
      `[internal] load metadata for ${f.includes('/') && /[.:]/.test(f.split('/')[0] as string) ? f : `docker.io/${f.includes('/') ? f : `library/${f}`}`}`,
    ]),
    ['[internal] load .dockerignore', 'transferring context: 2B done'],
    ['[internal] load build context', `transferring context: ${contextBytes}B done`],
    [`[build] GIT_SHA=${gitSha} (fake: no RUN step is executed)`],
    [
      'exporting to image',
      'exporting layers done',
      `exporting manifest ${digest} done`,
      `naming to ${ref} done`,
      'pushing layers done',
      `pushing manifest for ${ref}@${digest} done`,
    ],
  ];
  return (
    steps
      .map((s, i) =>
        [`#${i + 1} ${s[0] as string}`, ...s.slice(1).map((l) => `#${i + 1} ${l}`), `#${i + 1} DONE 0.0s`].join('\n'),
      )
      .join('\n\n') + '\n'
  );
}

/**
 * Runs build.sh with `args` (the words after the script path). `stdin` reads what kubectl forwards (empty without
 * -i); it is called only when the script would read stdin. A push is recorded in registry.json; the caller marks
 * the call mutating when `pushed` is set.
 */
export function runBuildScript(dir: string, store: Store, args: readonly string[], stdin: () => Buffer): ScriptResult {
  const [cmd, tag, gitSha] = args;
  if (cmd !== 'exists' && cmd !== 'build')
    return usage(cmd === undefined ? 'missing command' : `unknown command "${cmd}"`);
  const wantArgs = cmd === 'exists' ? 1 : 2;
  if (args.length - 1 !== wantArgs)
    return usage(`${cmd} takes ${wantArgs} argument${wantArgs === 1 ? '' : 's'}, got ${args.length - 1}`);
  if (!TAG.test(tag ?? '')) return usage(`bad TAG "${tag ?? ''}" (want sha-<12 hex>)`);
  if (cmd === 'exists') {
    const down = unreachable(store, tag as string);
    if (down !== undefined) return { stdout: '', stderr: down, exitCode: 1 };
    const found = findPushed(dir, BUILDKIT.repository, tag as string);
    return found !== undefined
      ? { stdout: `present ${refOf(tag as string)}\n`, stderr: '', exitCode: 0 }
      : { stdout: `absent ${refOf(tag as string)}\n`, stderr: '', exitCode: 3 };
  }
  if (!GIT_SHA.test(gitSha ?? '')) return usage(`bad GIT_SHA "${gitSha ?? ''}" (want 40 lower-case hex digits)`);
  if (tag !== `sha-${(gitSha as string).slice(0, 12)}`)
    return usage(
      `TAG ${tag as string} does not match GIT_SHA ${gitSha as string} (want sha-${(gitSha as string).slice(0, 12)})`,
    );
  const down = unreachable(store, tag);
  if (down !== undefined) return { stdout: '', stderr: down, exitCode: 1 };
  // From here on the script reads stdin to its end, also when it only drains it.
  const context = stdin();
  if (findPushed(dir, BUILDKIT.repository, tag) !== undefined)
    return { stdout: `unchanged ${refOf(tag)}\n`, stderr: '', exitCode: 0 };
  let entries: TarEntry[];
  try {
    entries = readTar(context);
  } catch (err) {
    if (!(err instanceof TarError)) throw err;
    return {
      stdout: '',
      stderr: `tar: invalid tar magic\nbuild.sh: the build context on stdin is not a tar archive (fake: ${err.message})\n`,
      exitCode: 1,
    };
  }
  const verdict = checkContext(entries);
  if ('error' in verdict) return { stdout: '', stderr: verdict.error + '\n', exitCode: 1 };
  const contextSha256 = crypto.createHash('sha256').update(context).digest('hex');
  const pushed = recordPush(dir, { repository: BUILDKIT.repository, tag, gitSha: gitSha as string, contextSha256 });
  return {
    stdout: `pushed ${pushed.ref}\n`,
    stderr: progress(tag, gitSha as string, context.length, verdict.dockerfileSize, verdict.froms, pushed.digest),
    exitCode: 0,
    pushed,
  };
}
