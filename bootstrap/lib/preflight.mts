// The checks of 00_preflight: what the machine is (OS, root, arch, resources), what it is busy with (cloud-init,
// apt locks, ports), what it can reach (DNS of the domain, every host a later step downloads from), and the
// settings the server itself must refuse (the operator account, user namespaces). Each check is a pure evaluation
// of facts (ok / warn / fail, a reason, a fix) next to the reader that gathers those facts.
import { readFileSync, statfsSync } from 'node:fs';
import { cpus, totalmem, networkInterfaces } from 'node:os';
import { lookup } from 'node:dns/promises';
import type { StepContext } from './step.mts';
import { OperationError } from './errors.mts';
import { run } from './exec.mts';
import { pollUntil, PollTimeout } from './poll.mts';
import { ARTIFACTS, OUTBOUND_ENDPOINTS } from './versions.mts';
import type { Arch } from './versions.mts';
import { resolveArtifact } from './artifacts.mts';
import { evaluateUserns, readUsernsFacts, usernsPaths } from './userns.mts';
import type { UsernsRemedy, UsernsPaths } from './userns.mts';
import type { OperatorVerdict } from './harden/operator.mts';

export interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  reason: string;
  fix?: string;
}

export interface Facts {
  osRelease: string;
  uid: number;
  arch: string;
  cpus: number;
  memoryMiB: number;
  varLibFreeGiB: number;
}

export interface Thresholds {
  minMemoryMiB: number;
  warnMemoryMiB: number;
  minDiskGiB: number;
}

function osField(osRelease: string, key: string): string {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(osRelease);
  return (m?.[1] ?? '').replace(/^["']|["']$/g, '');
}

/** Pure: facts in, table out. */
export function evaluate(f: Facts, t: Thresholds): Check[] {
  const out: Check[] = [];
  const id = osField(f.osRelease, 'ID');
  const version = osField(f.osRelease, 'VERSION_ID');
  const pretty = osField(f.osRelease, 'PRETTY_NAME') || `${id} ${version}`;
  if (id === 'ubuntu' && version === '24.04') out.push({ name: 'os', status: 'ok', reason: `${pretty} (supported)` });
  else if (id === 'debian' && version === '12')
    out.push({ name: 'os', status: 'ok', reason: `${pretty} (accepted: the test sandbox runs Debian 12)` });
  else
    out.push({
      name: 'os',
      status: 'fail',
      reason: `found ${pretty || 'an unknown OS'}`,
      fix: 'use Ubuntu 24.04 LTS (Debian 12 is accepted for tests)',
    });

  out.push(
    f.uid === 0
      ? { name: 'root', status: 'ok', reason: 'running as root' }
      : {
          name: 'root',
          status: 'fail',
          reason: `running as uid ${f.uid}`,
          fix: 'run the step with sudo (the launcher does, for a TARGET_ROOT_USER that is not root)',
        },
  );

  if (f.arch === 'x64' || f.arch === 'arm64')
    out.push({ name: 'arch', status: 'ok', reason: f.arch === 'x64' ? 'amd64' : 'arm64' });
  else
    out.push({
      name: 'arch',
      status: 'fail',
      reason: `CPU architecture ${f.arch}`,
      fix: 'use an amd64 or arm64 server',
    });

  out.push(
    f.cpus >= 2
      ? { name: 'cpus', status: 'ok', reason: `${f.cpus} CPUs` }
      : {
          name: 'cpus',
          status: 'warn',
          reason: `${f.cpus} CPU`,
          fix: 'k3s, builds and PostgreSQL share it: 2 or more CPUs are recommended',
        },
  );

  const mem = `${Math.round(f.memoryMiB)} MiB`;
  if (f.memoryMiB < t.minMemoryMiB)
    out.push({
      name: 'memory',
      status: 'fail',
      reason: `${mem}, below the minimum ${t.minMemoryMiB} MiB`,
      fix: 'resize the server (or lower CODEXK8S_MIN_MEMORY_MIB at your own risk)',
    });
  else if (f.memoryMiB < t.warnMemoryMiB)
    out.push({
      name: 'memory',
      status: 'warn',
      reason: `${mem}, below the recommended ${t.warnMemoryMiB} MiB`,
      fix: 'expect slow image builds; 4 GiB or more is recommended',
    });
  else out.push({ name: 'memory', status: 'ok', reason: mem });

  const disk = `${f.varLibFreeGiB.toFixed(1)} GiB free under /var/lib`;
  if (f.varLibFreeGiB < t.minDiskGiB)
    out.push({
      name: 'disk',
      status: 'fail',
      reason: `${disk}, below the minimum ${t.minDiskGiB} GiB`,
      fix: 'grow the disk or free space under /var/lib (images, volumes and k3s live there)',
    });
  else out.push({ name: 'disk', status: 'ok', reason: disk });
  return out;
}

export function gatherFacts(): Facts {
  const fs = statfsSync('/var/lib');
  return {
    osRelease: readFileSync('/etc/os-release', 'utf8'),
    uid: process.getuid?.() ?? -1,
    arch: process.arch,
    cpus: cpus().length,
    memoryMiB: totalmem() / 1024 / 1024,
    varLibFreeGiB: (fs.bavail * fs.bsize) / 1024 ** 3,
  };
}

export function formatTable(checks: readonly Check[]): string[] {
  const w = Math.max(...checks.map((c) => c.name.length));
  return checks.map(
    (c) =>
      `  ${c.status.padEnd(4)}  ${c.name.padEnd(w)}  ${c.reason}${c.fix && c.status !== 'ok' ? `  -> ${c.fix}` : ''}`,
  );
}

// ---- ports --------------------------------------------------------------------------------------------

export interface Listener {
  port: number;
  address: string;
  /** Process names from `ss -p` (empty when ss cannot see them). */
  processes: string[];
}

/** `ss -H -ltnp` lines -> listeners. */
export function parseListeners(ssOutput: string): Listener[] {
  const out: Listener[] = [];
  for (const line of ssOutput.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'LISTEN' || f.length < 4) continue;
    const local = f[3] as string;
    const m = /^(.*):(\d+)$/.exec(local);
    if (!m) continue;
    const processes = [...line.matchAll(/\("([^"]+)",pid=/g)].map((x) => x[1] as string);
    out.push({ port: Number(m[2]), address: m[1] as string, processes: [...new Set(processes)] });
  }
  return out;
}

/** Processes of our own k3s (a re-run finds them holding these ports, which is fine). */
const OUR_PROCESSES = /^(k3s|k3s-server|containerd|traefik)$/;

export function evaluatePorts(listeners: readonly Listener[], ports: readonly number[] = [80, 443, 6443]): Check[] {
  return ports.map((port) => {
    const held = listeners.filter((l) => l.port === port);
    const name = `port ${port}`;
    if (held.length === 0) return { name, status: 'ok', reason: 'free' };
    const procs = [...new Set(held.flatMap((l) => l.processes))];
    if (procs.length > 0 && procs.every((p) => OUR_PROCESSES.test(p)))
      return { name, status: 'ok', reason: `held by our k3s (${procs.join(', ')}): a re-run` };
    const who = procs.length > 0 ? procs.join(', ') : 'an unknown process';
    return {
      name,
      status: 'fail',
      reason: `in use by ${who} on ${held.map((l) => l.address).join(', ')}`,
      fix: `stop and disable it (ss -ltnp 'sport = :${port}' shows the process); k3s needs ${port === 6443 ? 'the API port' : 'ports 80 and 443 for Traefik'}`,
    };
  });
}

export async function listeners(): Promise<Listener[] | undefined> {
  const r = await run(['ss', '-H', '-ltnp'], { allowFail: true });
  return r.exitCode === 0 ? parseListeners(r.stdout) : undefined;
}

// ---- a busy fresh server: cloud-init and the apt/dpkg locks ------------------------------------------

export const APT_LOCKS = [
  '/var/lib/dpkg/lock-frontend',
  '/var/lib/dpkg/lock',
  '/var/lib/apt/lists/lock',
  '/var/cache/apt/archives/lock',
];

/** `lslocks --json -o COMMAND,PID,PATH` -> the holders of the apt/dpkg locks. */
export function aptLockHolders(lslocksJson: string): string[] {
  const parsed = JSON.parse(lslocksJson || '{"locks":[]}') as {
    locks?: Array<{ command?: string; pid?: number | string; path?: string | null }>;
  };
  return (parsed.locks ?? [])
    .filter((l) => l.path && APT_LOCKS.includes(l.path))
    .map((l) => `${l.command ?? '?'} (pid ${l.pid ?? '?'}) on ${l.path}`);
}

export async function waitForCloudInit(waitSeconds: number): Promise<Check> {
  const which = await run(['sh', '-c', 'command -v cloud-init'], { allowFail: true });
  if (which.exitCode !== 0) return { name: 'cloud-init', status: 'ok', reason: 'not installed' };
  const started = performance.now();
  try {
    const r = await run(['cloud-init', 'status', '--wait'], { allowFail: true, timeoutSeconds: waitSeconds });
    const took = Math.round((performance.now() - started) / 1000);
    const state = /status:\s*(\S+)/.exec(r.stdout)?.[1] ?? `exit ${r.exitCode}`;
    if (r.exitCode === 0)
      return { name: 'cloud-init', status: 'ok', reason: `${state}${took > 1 ? ` (waited ${took}s)` : ''}` };
    if (r.exitCode === 2)
      return {
        name: 'cloud-init',
        status: 'warn',
        reason: `finished with recoverable errors (${state})`,
        fix: 'see cloud-init status --long and /var/log/cloud-init.log',
      };
    return {
      name: 'cloud-init',
      status: 'fail',
      reason: `finished with an error (${state})`,
      fix: 'see cloud-init status --long and /var/log/cloud-init-output.log; fix or rebuild the server',
    };
  } catch {
    return {
      name: 'cloud-init',
      status: 'fail',
      reason: `still running after ${waitSeconds}s`,
      fix: 'wait for cloud-init status --wait, or raise CODEXK8S_PREFLIGHT_WAIT',
    };
  }
}

export async function waitForAptLocks(waitSeconds: number, log: StepContext['log']): Promise<Check> {
  const started = performance.now();
  const attempts = Math.max(1, Math.ceil(waitSeconds / 2));
  try {
    return await pollUntil<Check>(
      async () => {
        const r = await run(['lslocks', '--json', '--output', 'COMMAND,PID,PATH'], { allowFail: true });
        if (r.exitCode !== 0)
          return {
            done: {
              name: 'apt locks',
              status: 'warn',
              reason: 'lslocks failed; cannot tell whether apt is busy',
              fix: 'if a later step fails on the dpkg lock, wait and resume',
            },
          };
        const holders = aptLockHolders(r.stdout);
        if (holders.length > 0) return { waiting: holders.join('; ') };
        const took = Math.round((performance.now() - started) / 1000);
        return { done: { name: 'apt locks', status: 'ok', reason: took > 1 ? `free (waited ${took}s)` : 'free' } };
      },
      {
        attempts,
        intervalSeconds: 2,
        what: 'the apt/dpkg lock',
        onWait: (attempt, holders) => {
          if (attempt === 1 || attempt % 15 === 0)
            log.info(`  waiting for the apt/dpkg lock, held by ${holders} (attempt ${attempt}/${attempts})`);
        },
      },
    );
  } catch (e) {
    if (!(e instanceof PollTimeout)) throw e;
    return {
      name: 'apt locks',
      status: 'fail',
      reason: `still held after ${waitSeconds}s by ${e.last}`,
      fix: 'let the running apt/unattended-upgrades finish (journalctl -u unattended-upgrades), then resume',
    };
  }
}

// ---- DNS and outbound HTTPS ----------------------------------------------------------------------------

export function evaluateDns(domain: string, resolved: readonly string[] | Error, local: readonly string[]): Check {
  const name = 'dns';
  if (resolved instanceof Error)
    return {
      name,
      status: 'fail',
      reason: `${domain} does not resolve (${resolved.message})`,
      fix: `create an A record for ${domain} pointing at this server, then wait for it to propagate`,
    };
  const mine = resolved.filter((a) => local.includes(a));
  if (mine.length > 0) return { name, status: 'ok', reason: `${domain} -> ${mine.join(', ')} (this server)` };
  return {
    name,
    status: 'warn',
    reason: `${domain} -> ${resolved.join(', ')}, not an address of this server (${local.join(', ') || 'none'})`,
    fix: "expected behind 1:1 NAT (a cloud public IP); otherwise point the A record here, or Let's Encrypt cannot issue the certificate",
  };
}

export interface Target {
  url: string;
  why: string;
  /** CODEXK8S_ARTIFACT_MIRROR can stand in for it (the pinned downloads only). */
  mirrorable?: boolean;
}

/** Every HTTPS endpoint a later step reaches, one per host (the first reason wins). */
export function outboundTargets(opts: {
  mode: string;
  mirror?: string;
  overrides?: Readonly<Record<string, string>>;
  githubApiUrl: string;
  arch: Arch;
}): Target[] {
  const all: Target[] = [
    ...ARTIFACTS.map((a) => ({
      url: resolveArtifact(a, opts.arch, opts.mirror, opts.overrides).url,
      why: `the ${a.name} ${a.version} download`,
      mirrorable: true,
    })),
    { url: `${opts.githubApiUrl}/`, why: 'the GitHub API: runners and repository wiring' },
    ...OUTBOUND_ENDPOINTS.filter((e) => !e.serverModeOnly || opts.mode === 'server').map((e) => ({
      url: e.url,
      why: e.why,
    })),
  ];
  const seen = new Set<string>();
  return all.filter((t) => {
    const host = new URL(t.url).host;
    if (seen.has(host)) return false;
    seen.add(host);
    return true;
  });
}

/** Any HTTP answer counts as reachable (a 404 still proves DNS, routing, TLS and the proxy path). */
export async function probe(
  url: string,
  timeoutMs = 5000,
): Promise<{ ok: true; status: number } | { ok: false; reason: string }> {
  try {
    const r = await fetch(url, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    return { ok: true, status: r.status };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (err.name === 'TimeoutError') return { ok: false, reason: `no answer within ${timeoutMs / 1000}s` };
    return { ok: false, reason: err.cause?.code ?? err.cause?.message ?? err.message };
  }
}

export async function evaluateOutbound(
  targets: readonly Target[],
  onFailure: 'fail' | 'warn',
  timeoutMs = 5000,
): Promise<Check[]> {
  const results = await Promise.all(targets.map(async (t) => ({ t, r: await probe(t.url, timeoutMs) })));
  return results.map(({ t, r }): Check => {
    const host = new URL(t.url).host;
    if (r.ok) return { name: `https ${host}`, status: 'ok', reason: `reachable (HTTP ${r.status}; ${t.why})` };
    return {
      name: `https ${host}`,
      status: onFailure,
      reason: `unreachable: ${r.reason} (needed for ${t.why})`,
      fix: `allow outbound HTTPS to it (firewall, proxy, DNS)${t.mirrorable ? ', or set CODEXK8S_ARTIFACT_MIRROR' : ''}`,
    };
  });
}

export function localAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address));
}

export async function resolveAll(domain: string): Promise<string[] | Error> {
  try {
    return (await lookup(domain, { all: true })).map((a) => a.address);
  } catch (e) {
    return e as Error;
  }
}

/**
 * Rootless BuildKit's user namespace (lib/userns.mts, paths injectable for tests): the two report lines, and the
 * refusal (exit 2: a setting to choose) when the kernel restricts user namespaces and no usable remedy is set.
 */
export function usernsPreflight(
  remedy: UsernsRemedy | undefined,
  paths: UsernsPaths = usernsPaths(),
): { checks: Check[]; refusal?: OperationError } {
  const checks = evaluateUserns(readUsernsFacts(paths), remedy, paths);
  const refused = checks.filter((c) => c.status === 'fail');
  if (refused.length === 0) return { checks };
  return {
    checks,
    refusal: new OperationError(
      `preflight refuses: ${refused.map((c) => `${c.name}: ${c.reason}`).join('; ')}; nothing was changed`,
      {
        hint: refused.map((c) => c.fix).join('; '),
        exitCode: 2,
      },
    ),
  };
}

/** Pure: may step 10 make OPERATOR_USER the operator? (It asks again itself before it changes anything.) */
export function operatorCheck(user: string, v: OperatorVerdict): Check {
  switch (v.kind) {
    case 'create':
      return { name: 'operator', status: 'ok', reason: `${user} does not exist yet; step 10 creates it` };
    case 'ours':
      return { name: 'operator', status: 'ok', reason: `${user} (uid ${v.account.uid}) was created by this tool` };
    case 'adopted':
      return {
        name: 'operator',
        status: 'warn',
        reason: `${user} (uid ${v.account.uid}) is an existing account, adopted (OPERATOR_ADOPT_EXISTING=true)`,
        fix: 'step 10 gives it a bash login shell, your key and passwordless sudo',
      };
    case 'refused':
      return { name: 'operator', status: 'fail', reason: v.reason, fix: v.fix };
  }
}
