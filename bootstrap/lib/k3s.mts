// k3s as 20_install_k3s installs it: the paths it owns, the server flags, registries.yaml, and the parsers that
// read back what k3s wrote (its version, the unit's ExecStart, containerd's hosts.toml). Pure: no process is
// spawned here; the step reads the server and calls these.
import { join } from 'node:path';
import { K3S_VERSION } from './versions.mts';

export const K3S_BIN = '/usr/local/bin/k3s';
export const K3S_UNIT = '/etc/systemd/system/k3s.service';
export const K3S_KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';
export const REGISTRIES_FILE = '/etc/rancher/k3s/registries.yaml';
/** k3s's own uninstall script, written by its install script: stops k3s, removes its binaries, units and data. */
export const K3S_UNINSTALL = '/usr/local/bin/k3s-uninstall.sh';
/** Where k3s keeps its configuration (registries.yaml, k3s.yaml); the uninstall script removes it. */
export const K3S_CONFIG_DIR = '/etc/rancher/k3s';
export const CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d';
/** The name images are tagged with when they are pushed to the in-cluster registry (step 30). */
export const REGISTRY_HOSTNAME = 'registry.codex-k8s.internal';

/** How long the node may take to become Ready after an install or restart (first start pulls system images). */
export const NODE_READY_TIMEOUT_SECONDS = 300;
/** hosts.toml polling after a (re)start: attempts x pause. */
export const HOSTS_TOML_ATTEMPTS = 30;
export const HOSTS_TOML_PAUSE_MS = 2000;

// ---- pure builders and parsers ------------------------------------------------------------------------------------

/** The pod and service networks k3s is installed with; the firewall of 10_harden_host allows the same ones. */
export interface Networks {
  podCidr: string;
  serviceCidr: string;
}

/**
 * k3s server flags, passed as arguments to the install script (which writes them into the unit). The networks
 * are explicit so that k3s and the firewall read them from the same settings (k3s cannot change them later).
 */
export function serverArgs(n: Networks): string[] {
  return ['server', '--write-kubeconfig-mode', '600', '--cluster-cidr', n.podCidr, '--service-cidr', n.serviceCidr];
}

/** The install script's environment: the pinned version; a forced restart when registries.yaml changed with it. */
export function installEnv(forceRestart: boolean): Record<string, string> {
  return forceRestart
    ? { INSTALL_K3S_VERSION: K3S_VERSION, INSTALL_K3S_FORCE_RESTART: 'true' }
    : { INSTALL_K3S_VERSION: K3S_VERSION };
}

export function installArgv(scriptPath: string, n: Networks): string[] {
  return ['sh', scriptPath, ...serverArgs(n)];
}

export function nodeReadyArgv(timeoutSeconds: number): string[] {
  return [K3S_BIN, 'kubectl', 'wait', '--for=condition=Ready', 'node', '--all', `--timeout=${timeoutSeconds}s`];
}

/** Both names containerd may be asked for, and the one endpoint they lead to. */
export function mirrorNames(port: number): string[] {
  return [`${REGISTRY_HOSTNAME}:${port}`, `127.0.0.1:${port}`];
}

export function registryEndpoint(port: number): string {
  return `http://127.0.0.1:${port}`;
}

export function registriesYaml(port: number): string {
  const lines = [
    '# Managed by codex-k8s bootstrap (20_install_k3s). Edits are overwritten on the next run.',
    '# The in-cluster registry (step 30) listens on the node loopback over plain HTTP; k3s reads this file at start.',
    'mirrors:',
  ];
  for (const name of mirrorNames(port))
    lines.push(`  "${name}":`, '    endpoint:', `      - "${registryEndpoint(port)}"`);
  return lines.join('\n') + '\n';
}

/** "k3s version v1.36.2+k3s1 (abcdef12)" -> "v1.36.2+k3s1". */
export function parseK3sVersion(stdout: string): string | undefined {
  return /^k3s version (v\d+\.\d+\.\d+\+k3s\d+)\b/m.exec(stdout)?.[1];
}

/**
 * The words of ExecStart in a systemd unit: continuation lines joined, single and double quotes honoured
 * (the install script writes `ExecStart=/usr/local/bin/k3s \` then one quoted word per line).
 */
export function parseExecStart(unit: string): string[] | undefined {
  const lines = unit.split('\n');
  const start = lines.findIndex((l) => /^ExecStart=/.test(l));
  if (start < 0) return undefined;
  let text = '';
  for (let i = start; i < lines.length; i++) {
    const l = (lines[i] as string).replace(/^ExecStart=/, '');
    if (/\\\s*$/.test(l)) {
      text += l.replace(/\\\s*$/, ' ');
    } else {
      text += l;
      break;
    }
  }
  const words: string[] = [];
  const re = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) words.push(m[1] ?? m[2] ?? m[3] ?? '');
  return words;
}

/** What is wrong with the k3s command line in the unit, against the flags we install with. */
export function execStartDrift(words: readonly string[] | undefined, n: Networks): string[] {
  if (words === undefined) return [`${K3S_UNIT} has no ExecStart`];
  const drift: string[] = [];
  const args = words.slice(1);
  if (args[0] !== 'server') drift.push(`${K3S_UNIT} runs "${args[0] ?? ''}", want "server"`);
  const values = (flag: string): string[] => {
    const out: string[] = [];
    args.forEach((a, i) => {
      if (a === `--${flag}`) out.push(args[i + 1] ?? '');
      else if (a.startsWith(`--${flag}=`)) out.push(a.slice(flag.length + 3));
    });
    return out;
  };
  const mode = values('write-kubeconfig-mode');
  if (mode.length === 0 || !mode.every((m) => m === '600' || m === '0600'))
    drift.push(`${K3S_UNIT}: --write-kubeconfig-mode is ${mode.length ? mode.join(',') : 'not set'}, want 600`);
  for (const [flag, want] of [
    ['cluster-cidr', n.podCidr],
    ['service-cidr', n.serviceCidr],
  ] as const) {
    const got = values(flag);
    if (got.length !== 1 || got[0] !== want)
      drift.push(`${K3S_UNIT}: --${flag} is ${got.length ? got.join(',') : 'not set'}, want ${want}`);
  }
  for (const d of values('disable'))
    drift.push(`${K3S_UNIT}: --disable ${d}, want it kept (Traefik, ServiceLB and local-path are used by later steps)`);
  return drift;
}

/** k3s's own defaults: a unit written without the flags runs with these. */
export const K3S_DEFAULT_NETWORKS: Networks = { podCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16' };

/**
 * A cluster's pod and service networks are fixed when it is created: re-running the installer with other ones
 * would restart k3s on networks its pods, services and CoreDNS do not use. Returns why that must not happen, or
 * undefined when the wanted networks are the installed ones (or nothing is installed).
 */
export function networkChangeProblem(words: readonly string[] | undefined, n: Networks): string | undefined {
  if (words === undefined) return undefined;
  const value = (flag: string): string | undefined => {
    const i = words.findIndex((w) => w === `--${flag}` || w.startsWith(`--${flag}=`));
    if (i < 0) return undefined;
    const w = words[i] as string;
    return w.includes('=') ? w.slice(w.indexOf('=') + 1) : words[i + 1];
  };
  const installed: Networks = {
    podCidr: value('cluster-cidr') ?? K3S_DEFAULT_NETWORKS.podCidr,
    serviceCidr: value('service-cidr') ?? K3S_DEFAULT_NETWORKS.serviceCidr,
  };
  const diffs = [
    installed.podCidr !== n.podCidr
      ? `pod network ${installed.podCidr} (CODEXK8S_POD_CIDR says ${n.podCidr})`
      : undefined,
    installed.serviceCidr !== n.serviceCidr
      ? `service network ${installed.serviceCidr} (CODEXK8S_SERVICE_CIDR says ${n.serviceCidr})`
      : undefined,
  ].filter((d): d is string => d !== undefined);
  return diffs.length === 0
    ? undefined
    : `this k3s cluster was created with the ${diffs.join(' and the ')}; k3s cannot change them`;
}

export interface HostsToml {
  server?: string;
  hosts: string[];
}

/** The `server = "..."` line and every `[host."..."]` table of a containerd hosts.toml. */
export function parseHostsToml(text: string): HostsToml {
  const server = /^\s*server\s*=\s*"([^"]*)"/m.exec(text)?.[1];
  const hosts = [...text.matchAll(/^\s*\[host\."([^"]+)"\]/gm)].map((m) => m[1] as string);
  return { server, hosts };
}

/**
 * Problems with the generated hosts.toml of one mirror: no https entry may point at our loopback registry (k3s #12551:
 * containerd would speak TLS to plain HTTP), and where an entry is required it must be there, over http.
 * k3s writes no file for 127.0.0.1:PORT (its only endpoint equals the default, and containerd already uses http
 * for localhost), so that one is checked only when present.
 */
export function hostsTomlProblems(mirror: string, text: string | undefined, port: number): string[] {
  const file = join(CERTS_D, mirror, 'hosts.toml');
  const required = mirror.startsWith(`${REGISTRY_HOSTNAME}:`);
  if (text === undefined)
    return required ? [`${file} is missing (k3s writes it from ${REGISTRIES_FILE} when it starts)`] : [];
  const { server, hosts } = parseHostsToml(text);
  const problems: string[] = [];
  const loopback = (u: string): boolean => {
    try {
      const url = new URL(u);
      return url.hostname === '127.0.0.1' && url.port === String(port);
    } catch {
      return false;
    }
  };
  const all = [...hosts, ...(server !== undefined ? [server] : [])];
  for (const u of all.filter((x) => x.startsWith('https://') && loopback(x)))
    problems.push(`${file} uses ${u}, want http://127.0.0.1:${port} (k3s #12551)`);
  if (required && problems.length === 0 && !hosts.some((u) => u.startsWith('http://') && loopback(u)))
    problems.push(`${file} has no [host."http://127.0.0.1:${port}/v2"] entry`);
  return problems;
}

/** The uninstall script, run as is (it is k3s's, generated for this install). */
export function uninstallArgv(): string[] {
  return [K3S_UNINSTALL];
}

/** Pure: the operator's kubeconfig is ours to remove only while it is a byte-for-byte copy of k3s's admin one. */
export function isOurKubeconfigCopy(copy: string | undefined, k3sYaml: string | undefined): boolean {
  return copy !== undefined && k3sYaml !== undefined && copy === k3sYaml;
}

export function kubeconfigPath(home: string): string {
  return join(home, '.kube', 'config');
}
