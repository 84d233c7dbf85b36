#!/opt/codex-k8s-bootstrap/node/bin/node --
// 20_install_k3s: a single-node k3s at the pinned version, with what k3s ships (Traefik, ServiceLB, local-path)
// kept, the in-cluster registry reachable by containerd over plain HTTP on the node's loopback, and a kubeconfig
// for the operator.
//
// The install script is downloaded from a commit URL and sha256-checked (lib/download.mts), then the LOCAL file
// is run with INSTALL_K3S_VERSION pinned; it verifies the k3s binary against the release checksums itself.
// registries.yaml is written before the first start, so containerd's hosts.toml files are generated right away;
// k3s reads registries.yaml only when it starts, so a change to it restarts k3s. After every (re)start the step
// reads the generated hosts.toml back: some k3s versions wrote an https endpoint for an http mirror (k3s #12551),
// which would make every pull from the in-cluster registry fail much later, far from the cause.
import { mkdirSync, chmodSync, chownSync, mkdtempSync, rmSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runStep, changeList } from '../lib/step.mts';
import { pollUntil } from '../lib/poll.mts';
import type { StepContext } from '../lib/step.mts';
import { run } from '../lib/exec.mts';
import { OperationError } from '../lib/errors.mts';
import { writeFileAtomic, readIfExists, facts, octal } from '../lib/fsx.mts';
import { downloadVerified, resolveForServer } from '../lib/download.mts';
import { K3S_INSTALL, K3S_VERSION } from '../lib/versions.mts';
import { REMOTE } from '../lib/paths.mts';

export const K3S_BIN = '/usr/local/bin/k3s';
export const K3S_UNIT = '/etc/systemd/system/k3s.service';
export const K3S_KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';
export const REGISTRIES_FILE = '/etc/rancher/k3s/registries.yaml';
export const CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d';
/** The name images are tagged with when they are pushed to the in-cluster registry (step 30). */
export const REGISTRY_HOSTNAME = 'registry.codex-k8s.internal';
const RUNBOOK = 'docs/runbook.md, "k3s pulls from the in-cluster registry over https"';

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
  return forceRestart ? { INSTALL_K3S_VERSION: K3S_VERSION, INSTALL_K3S_FORCE_RESTART: 'true' } : { INSTALL_K3S_VERSION: K3S_VERSION };
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
  for (const name of mirrorNames(port)) lines.push(`  "${name}":`, '    endpoint:', `      - "${registryEndpoint(port)}"`);
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
  if (mode.length === 0 || !mode.every((m) => m === '600' || m === '0600')) drift.push(`${K3S_UNIT}: --write-kubeconfig-mode is ${mode.length ? mode.join(',') : 'not set'}, want 600`);
  for (const [flag, want] of [['cluster-cidr', n.podCidr], ['service-cidr', n.serviceCidr]] as const) {
    const got = values(flag);
    if (got.length !== 1 || got[0] !== want) drift.push(`${K3S_UNIT}: --${flag} is ${got.length ? got.join(',') : 'not set'}, want ${want}`);
  }
  for (const d of values('disable')) drift.push(`${K3S_UNIT}: --disable ${d}, want it kept (Traefik, ServiceLB and local-path are used by later steps)`);
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
  const installed: Networks = { podCidr: value('cluster-cidr') ?? K3S_DEFAULT_NETWORKS.podCidr, serviceCidr: value('service-cidr') ?? K3S_DEFAULT_NETWORKS.serviceCidr };
  const diffs = [
    installed.podCidr !== n.podCidr ? `pod network ${installed.podCidr} (CODEXK8S_POD_CIDR says ${n.podCidr})` : undefined,
    installed.serviceCidr !== n.serviceCidr ? `service network ${installed.serviceCidr} (CODEXK8S_SERVICE_CIDR says ${n.serviceCidr})` : undefined,
  ].filter((d): d is string => d !== undefined);
  return diffs.length === 0 ? undefined : `this k3s cluster was created with the ${diffs.join(' and the ')}; k3s cannot change them`;
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
  if (text === undefined) return required ? [`${file} is missing (k3s writes it from ${REGISTRIES_FILE} when it starts)`] : [];
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
  for (const u of all.filter((x) => x.startsWith('https://') && loopback(x))) problems.push(`${file} uses ${u}, want http://127.0.0.1:${port} (k3s #12551)`);
  if (required && problems.length === 0 && !hosts.some((u) => u.startsWith('http://') && loopback(u))) problems.push(`${file} has no [host."http://127.0.0.1:${port}/v2"] entry`);
  return problems;
}

export function kubeconfigPath(home: string): string {
  return join(home, '.kube', 'config');
}

// ---- reading the server -------------------------------------------------------------------------------------------

interface Operator {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

async function operator(ctx: StepContext): Promise<Operator | undefined> {
  const name = ctx.cfg.get('OPERATOR_USER');
  const r = await run(['getent', 'passwd', name], { allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const f = r.stdout.trim().split(':');
  return f.length >= 7 ? { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string } : undefined;
}

async function installedVersion(): Promise<string | undefined> {
  if (!existsSync(K3S_BIN)) return undefined;
  const r = await run([K3S_BIN, '--version'], { allowFail: true, timeoutSeconds: 30 });
  return r.exitCode === 0 ? parseK3sVersion(r.stdout) : undefined;
}

async function serviceActive(): Promise<boolean> {
  const r = await run(['systemctl', 'is-active', 'k3s'], { allowFail: true });
  return r.stdout.trim() === 'active';
}

function hostsProblems(port: number): string[] {
  return mirrorNames(port).flatMap((m) => hostsTomlProblems(m, readIfExists(join(CERTS_D, m, 'hosts.toml')), port));
}

async function nodeReady(timeoutSeconds: number): Promise<{ ok: boolean; detail: string }> {
  const r = await run(nodeReadyArgv(timeoutSeconds), { allowFail: true, timeoutSeconds: timeoutSeconds + 30 });
  return { ok: r.exitCode === 0, detail: (r.stdout + r.stderr).trim() };
}

/** Drift in what the install script decides: binary version, unit flags, service running. */
async function installDrift(n: Networks): Promise<string[]> {
  const drift: string[] = [];
  const version = await installedVersion();
  if (version === undefined) return [`k3s is not installed (${K3S_BIN} missing or not answering --version)`];
  if (version !== K3S_VERSION) drift.push(`k3s is ${version}, want ${K3S_VERSION}`);
  const unit = readIfExists(K3S_UNIT);
  drift.push(...(unit === undefined ? [`${K3S_UNIT} is missing`] : execStartDrift(parseExecStart(unit), n)));
  return drift;
}

function kubeconfigDrift(op: Operator): string[] {
  const want = readIfExists(K3S_KUBECONFIG);
  if (want === undefined) return [`${K3S_KUBECONFIG} is missing (k3s writes it when the server starts)`];
  const file = kubeconfigPath(op.home);
  const dir = facts(join(op.home, '.kube'));
  const f = facts(file);
  const drift: string[] = [];
  if (!dir?.isDir) drift.push(`${join(op.home, '.kube')} does not exist`);
  else if (dir.uid !== op.uid || dir.mode !== 0o700) drift.push(`${join(op.home, '.kube')} is ${octal(dir.mode)} uid ${dir.uid}, want 0700 uid ${op.uid}`);
  if (readIfExists(file) !== want) drift.push(`${file} ${f ? 'differs from' : 'is not a copy of'} ${K3S_KUBECONFIG}`);
  else if (f && (f.mode !== 0o600 || f.uid !== op.uid)) drift.push(`${file} is ${octal(f.mode)} uid ${f.uid}, want 0600 uid ${op.uid}`);
  return drift;
}

// ---- check / apply ------------------------------------------------------------------------------------------------

function networks(ctx: StepContext): Networks {
  return { podCidr: ctx.cfg.get('CODEXK8S_POD_CIDR'), serviceCidr: ctx.cfg.get('CODEXK8S_SERVICE_CIDR') };
}

async function check(ctx: StepContext): Promise<string[]> {
  const port = ctx.cfg.get('CODEXK8S_INTERNAL_REGISTRY_PORT');
  const drift = await installDrift(networks(ctx));
  if (readIfExists(REGISTRIES_FILE) !== registriesYaml(port)) drift.push(`${REGISTRIES_FILE} ${existsSync(REGISTRIES_FILE) ? 'differs from the managed content' : 'is missing'}`);
  else {
    const f = facts(REGISTRIES_FILE);
    if (f && (f.mode !== 0o600 || f.uid !== 0)) drift.push(`${REGISTRIES_FILE} is ${octal(f.mode)} uid ${f.uid}, want 0600 uid 0`);
  }
  if (drift.length > 0) return drift; // the rest depends on a k3s that runs with our settings
  if (!(await serviceActive())) return [`k3s.service is not active`];
  drift.push(...hostsProblems(port));
  const ready = await nodeReady(10);
  if (!ready.ok) drift.push(`the node is not Ready: ${ready.detail.split('\n').pop() ?? ''}`);
  const op = await operator(ctx);
  if (!op) drift.push(`user ${ctx.cfg.get('OPERATOR_USER')} does not exist (10_harden_host creates it)`);
  else drift.push(...kubeconfigDrift(op));
  return drift;
}

async function downloadInstallScript(ctx: StepContext, dir: string): Promise<string> {
  const r = resolveForServer(ctx.cfg, K3S_INSTALL);
  if (r.overriddenFrom) ctx.log.warn(`k3s install script: checksum override in force (${r.sha256}, pinned ${r.overriddenFrom})`);
  const path = join(dir, 'install.sh');
  await downloadVerified(r, path, { mode: 0o700, mirror: ctx.cfg.maybe('CODEXK8S_ARTIFACT_MIRROR'), log: ctx.log, timeoutSeconds: 60 });
  return path;
}

/**
 * After a (re)start at `since` (epoch ms), k3s rewrites every hosts.toml it manages: wait for the required one to be
 * newer than the restart, so a stale file from before it is never taken for the result.
 */
async function waitForHostsToml(port: number, since: number | undefined): Promise<void> {
  const required = join(CERTS_D, mirrorNames(port)[0] as string, 'hosts.toml');
  await pollUntil(
    async () => {
      const fresh = since === undefined || (existsSync(required) && statSync(required).mtimeMs >= since - 1);
      const problems = fresh ? hostsProblems(port) : [`${required} was not rewritten since the k3s (re)start`];
      if (fresh && problems.length === 0) return { done: true };
      // A present but https file will not fix itself: that is the k3s bug, not a slow start.
      const wrongScheme = fresh ? problems.filter((p) => p.includes('#12551')) : [];
      if (wrongScheme.length > 0) {
        throw new OperationError(`k3s generated an https endpoint for the http in-cluster registry: ${wrongScheme.join('; ')}`, {
          detail: mirrorNames(port).map((m) => `${join(CERTS_D, m, 'hosts.toml')}:\n${readIfExists(join(CERTS_D, m, 'hosts.toml')) ?? '(missing)'}`).join('\n'),
          hint: `pulls from the in-cluster registry would fail; see ${RUNBOOK} (pin a k3s version without issue #12551 in bootstrap/lib/versions.mts, then re-run)`,
        });
      }
      return { waiting: problems.join('; ') };
    },
    {
      attempts: HOSTS_TOML_ATTEMPTS,
      intervalSeconds: HOSTS_TOML_PAUSE_MS / 1000,
      what: "containerd's hosts.toml files",
      onTimeout: (problems) => new OperationError(`containerd's hosts.toml files did not appear after the k3s (re)start (attempt ${HOSTS_TOML_ATTEMPTS}/${HOSTS_TOML_ATTEMPTS}): ${problems}`, {
        hint: `look at the k3s log: journalctl -u k3s --since -10min; see ${RUNBOOK}`,
      }),
    },
  );
}

async function apply(ctx: StepContext): Promise<string[]> {
  const port = ctx.cfg.get('CODEXK8S_INTERNAL_REGISTRY_PORT');
  const changes = changeList(ctx);
  let registriesChanged = false;
  const op = await operator(ctx);
  if (!op) throw new OperationError(`user ${ctx.cfg.get('OPERATOR_USER')} does not exist; it gets the kubeconfig`, { hint: 'run step 10 first: --from 10' });

  // 0. Never re-install an existing cluster onto other networks.
  const unit = readIfExists(K3S_UNIT);
  const netProblem = networkChangeProblem(unit === undefined ? undefined : parseExecStart(unit), networks(ctx));
  if (netProblem) {
    throw new OperationError(netProblem, { hint: 'set CODEXK8S_POD_CIDR / CODEXK8S_SERVICE_CIDR back to the installed values in .env; new networks need a new cluster (docs/runbook.md "Rebuilding the server from scratch")' });
  }

  // 1. When k3s must be (re)installed, fetch and verify the script first: a bad download changes nothing at all.
  const drift = await installDrift(networks(ctx));
  if (drift.length > 0) mkdirSync(REMOTE.stateDir, { recursive: true, mode: 0o700 });
  const workDir = drift.length > 0 ? mkdtempSync(join(REMOTE.stateDir, 'k3s-install-')) : undefined;
  let restarted = false;
  let since: number | undefined;
  try {
    const script = workDir !== undefined ? await downloadInstallScript(ctx, workDir) : undefined;

    // 2. registries.yaml before k3s (first) starts: then no restart is needed for it on a fresh server.
    const wanted = registriesYaml(port);
    const regFacts = facts(REGISTRIES_FILE);
    registriesChanged = readIfExists(REGISTRIES_FILE) !== wanted;
    if (registriesChanged || regFacts?.mode !== 0o600 || regFacts.uid !== 0) {
      mkdirSync('/etc/rancher/k3s', { recursive: true, mode: 0o755 });
      await writeFileAtomic(REGISTRIES_FILE, wanted, { mode: 0o600, uid: 0, gid: 0 });
      changes.push(`${REGISTRIES_FILE}: ${mirrorNames(port).join(' and ')} -> ${registryEndpoint(port)}`);
    }

    // 3. k3s itself, only when the version or the flags differ: the LOCAL, verified copy of the script.
    if (script !== undefined) {
      since = Date.now();
      const r = await run(installArgv(script, networks(ctx)), { env: installEnv(registriesChanged), log: ctx.log, timeoutSeconds: 900, allowFail: true, onStdoutLine: (l) => ctx.log.detail(l) });
      if (r.exitCode !== 0) {
        throw new OperationError(`the k3s install script failed (exit ${r.exitCode})`, { detail: (r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n'), hint: 'journalctl -u k3s --since -10min; the script is re-downloaded and re-run on the next run' });
      }
      changes.push(`k3s ${K3S_VERSION} installed (${drift.join('; ')})`);
      restarted = true;
    }
  } finally {
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  }

  // 4. A running k3s that has not read the current registries.yaml, or wrote bad hosts.toml: restart it once.
  if (!restarted && (registriesChanged || !(await serviceActive()) || hostsProblems(port).length > 0)) {
    since = Date.now();
    await run(['systemctl', 'restart', 'k3s'], { log: ctx.log, timeoutSeconds: 300 });
    changes.push(registriesChanged ? 'restarted k3s to load registries.yaml' : 'restarted k3s');
  }

  // 5. Verify what the (re)start produced, bounded, loudly.
  await waitForHostsToml(port, since);
  const ready = await nodeReady(NODE_READY_TIMEOUT_SECONDS);
  if (!ready.ok) {
    throw new OperationError(`the node did not become Ready within ${NODE_READY_TIMEOUT_SECONDS}s`, { detail: ready.detail, hint: 'journalctl -u k3s --since -10min; k3s kubectl describe nodes' });
  }

  // 6. The operator's kubeconfig: a copy of k3s.yaml, 0600, in a 0700 ~/.kube.
  if (kubeconfigDrift(op).length > 0) {
    const content = readFileSync(K3S_KUBECONFIG, 'utf8');
    const kube = join(op.home, '.kube');
    mkdirSync(kube, { recursive: true, mode: 0o700 });
    chmodSync(kube, 0o700);
    chownSync(kube, op.uid, op.gid);
    await writeFileAtomic(kubeconfigPath(op.home), content, { mode: 0o600, uid: op.uid, gid: op.gid });
    changes.push(`${kubeconfigPath(op.home)}: kubeconfig for ${op.name} (0600)`);
  }
  return changes;
}

if (import.meta.filename === process.argv[1]) await runStep('20_install_k3s', { check, apply });
