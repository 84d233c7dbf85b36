// The node kernel's restriction of unprivileged user namespaces (Ubuntu 24.04), as it hits rootless BuildKit.
//
// The double reads the same files the steps read and write (bootstrap/lib/userns.mts), under CODEXK8S_FAKES_ROOT:
//   proc/sys/kernel/apparmor_restrict_unprivileged_userns   absent or 0: not restricted
//   sys/kernel/security/apparmor/profiles                   loaded profiles, `name (mode)` per line
//   etc/apparmor.d/<name>                                    a loaded Localhost profile's source (must hold `userns,`)
// A container of a rootless BuildKit image (rootlesskit is its entry point) on a restricting kernel:
//   - appArmorProfile Localhost, loaded, with `userns,`: starts;
//   - Localhost not loaded: CreateContainerError, as containerd refuses an unknown profile;
//   - anything else (Unconfined, RuntimeDefault, a profile without userns): rootlesskit's newuidmap fails and the
//     container crash-loops (CrashLoopBackOff); `kubectl logs` shows rootlesskit's error.
// Whether Ubuntu's own `rootlesskit` profile would attach inside the pod is not modelled as a way out (unproven).
// The kernel is consulted when a StatefulSet's pods (re)start: when the StatefulSet is created or its template changes,
// and when a pod is deleted (the controller recreates it). The verdict sticks to the pod until then, as a crash loop
// keeps failing after the kernel was fixed until the next restart: `userns-pods.json` in the state dir,
// {"<namespace>/<pod>": {"<container>": denial}}.
//
// This file must stay dependency-free (node: modules only): the sandbox runs it with plain Node 24.
import fs from 'node:fs';
import path from 'node:path';

const SYSCTL = 'proc/sys/kernel/apparmor_restrict_unprivileged_userns';
const PROFILES = 'sys/kernel/security/apparmor/profiles';
/** Images whose entry point is rootlesskit (moby/buildkit's `-rootless` tags). */
const ROOTLESS_IMAGE = /(^|\/)moby\/buildkit:[^@]*rootless/;

export type UsernsDenial = { kind: 'crash'; log: string[] } | { kind: 'create'; message: string };

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function root(): string {
  return process.env['CODEXK8S_FAKES_ROOT'] || '/';
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The last lines rootlesskit prints when the kernel refuses its uid map (Ubuntu 24.04, restricted userns). */
export const ROOTLESSKIT_DENIED_LOG = [
  '[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 15 [0 1000 1 1 100000 65536] failed: ' +
    'newuidmap: write to uid_map failed: Operation not permitted',
  ': exit status 1',
];

/** Why container `name` of a pod template cannot start on this node's kernel, or undefined. */
export function usernsDenial(template: unknown, name: string): UsernsDenial | undefined {
  const spec = isObj(template) ? template['spec'] : undefined;
  const containers = isObj(spec) && Array.isArray(spec['containers']) ? spec['containers'].filter(isObj) : [];
  const c = containers.find((x) => x['name'] === name);
  if (c === undefined || !ROOTLESS_IMAGE.test(String(c['image'] ?? ''))) return undefined;
  const value = read(path.join(root(), SYSCTL))?.trim();
  if (value === undefined || value === '0') return undefined;
  const podSc = isObj(spec) && isObj(spec['securityContext']) ? spec['securityContext'] : {};
  const sc = isObj(c['securityContext']) ? c['securityContext'] : {};
  const profile = isObj(sc['appArmorProfile'])
    ? sc['appArmorProfile']
    : isObj(podSc['appArmorProfile'])
      ? podSc['appArmorProfile']
      : { type: 'RuntimeDefault' };
  if (profile['type'] === 'Localhost') {
    const wanted = String(profile['localhostProfile'] ?? '');
    const loaded = (read(path.join(root(), PROFILES)) ?? '')
      .split('\n')
      .map((l) => l.trim().replace(/\s+\([a-z_]+\)$/, ''));
    if (!loaded.includes(wanted))
      return { kind: 'create', message: `failed to generate apparmor spec opts: apparmor profile not found ${wanted}` };
    const source = read(path.join(root(), 'etc/apparmor.d', wanted)) ?? '';
    if (/^\s*userns\s*,/m.test(source)) return undefined;
  }
  return { kind: 'crash', log: ROOTLESSKIT_DENIED_LOG };
}

type PodVerdicts = Record<string, Record<string, UsernsDenial>>;

function loadVerdicts(dir: string): PodVerdicts {
  const text = read(path.join(dir, 'userns-pods.json'));
  return text === undefined ? {} : (JSON.parse(text) as PodVerdicts);
}

/** Pods `names` of `namespace` (re)start from `template` now: records each container's verdict; true when any is denied. */
export function recordPodStarts(dir: string, namespace: string, names: readonly string[], template: unknown): boolean {
  const spec = isObj(template) ? template['spec'] : undefined;
  const containers =
    isObj(spec) && Array.isArray(spec['containers'])
      ? spec['containers'].filter(isObj).map((c) => String(c['name'] ?? ''))
      : [];
  const all = loadVerdicts(dir);
  let denied = false;
  for (const pod of names) {
    const v: Record<string, UsernsDenial> = {};
    for (const c of containers) {
      const d = usernsDenial(template, c);
      if (d !== undefined) v[c] = d;
    }
    if (Object.keys(v).length > 0) {
      all[`${namespace}/${pod}`] = v;
      denied = true;
    } else delete all[`${namespace}/${pod}`];
  }
  fs.writeFileSync(path.join(dir, 'userns-pods.json'), JSON.stringify(all, null, 2) + '\n');
  return denied;
}

export function podDenied(dir: string, namespace: string, pod: string): boolean {
  return loadVerdicts(dir)[`${namespace}/${pod}`] !== undefined;
}

/** The verdict recorded when the pod last started (undefined: it runs). */
export function podDenial(dir: string, namespace: string, pod: string, container: string): UsernsDenial | undefined {
  return loadVerdicts(dir)[`${namespace}/${pod}`]?.[container];
}
