// Kernel and clock settings Kubernetes expects: the overlay and br_netfilter modules (now and at boot),
// forwarding and bridged traffic through netfilter (sysctl), no swap (the kubelet refuses it by default),
// and a synchronised clock (TLS and tokens). In a container the kernel belongs to the host: what cannot be
// changed from inside is reported as skipped, with the reason.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import type { StepContext, Teardown } from '../step.mts';
import { run } from '../exec.mts';
import { writeFileAtomic, readIfExists } from '../fsx.mts';
import { checkFile, ensureFile, container, skipped } from './part.mts';
import type { HostPart, ManagedFile } from './part.mts';

export const MODULES = ['overlay', 'br_netfilter'];
export const MODULES_FILE = '/etc/modules-load.d/codex-k8s.conf';
export const SYSCTL_FILE = '/etc/sysctl.d/90-codex-k8s.conf';
export const SYSCTLS: Readonly<Record<string, string>> = {
  'net.ipv4.ip_forward': '1',
  'net.bridge.bridge-nf-call-iptables': '1',
  'net.bridge.bridge-nf-call-ip6tables': '1',
};

export function renderModules(): string {
  return ['# Managed by codex-k8s bootstrap (10_harden_host): k3s needs these at boot.', ...MODULES, ''].join('\n');
}

export function renderSysctl(): string {
  return [
    '# Managed by codex-k8s bootstrap (10_harden_host): forwarding and bridged traffic for Kubernetes.',
    ...Object.entries(SYSCTLS).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
}

export const sysctlPath = (key: string) => `/proc/sys/${key.replace(/\./g, '/')}`;

/** Active swap areas from /proc/swaps (the first line is a header). */
export function parseSwaps(text: string): string[] {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

const isSwapLine = (line: string) => {
  const t = line.trim();
  if (t === '' || t.startsWith('#')) return false;
  return t.split(/\s+/)[2] === 'swap'; // device mountpoint TYPE options
};

export function fstabSwapLines(text: string): string[] {
  return text.split('\n').filter(isSwapLine);
}

export const SWAP_OFF_PREFIX = '# codex-k8s bootstrap: swap off for the kubelet: ';

/** /etc/fstab with every swap line commented out (kept, so it can be re-enabled by hand). */
export function fstabWithoutSwap(text: string): string {
  return text
    .split('\n')
    .map((l) => (isSwapLine(l) ? `${SWAP_OFF_PREFIX}${l}` : l))
    .join('\n');
}

/** The lines fstabWithoutSwap commented out, as they were (without the prefix). */
export function fstabSwapOffLines(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(SWAP_OFF_PREFIX))
    .map((l) => l.slice(SWAP_OFF_PREFIX.length));
}

/** The inverse of fstabWithoutSwap: the lines it commented out get their original text back; nothing else changes. */
export function fstabWithSwap(text: string): string {
  return text
    .split('\n')
    .map((l) => (l.startsWith(SWAP_OFF_PREFIX) ? l.slice(SWAP_OFF_PREFIX.length) : l))
    .join('\n');
}

const FILES: ManagedFile[] = [
  { path: MODULES_FILE, content: renderModules(), mode: 0o644 },
  { path: SYSCTL_FILE, content: renderSysctl(), mode: 0o644 },
];

const moduleLoaded = (m: string) => existsSync(`/sys/module/${m}`);
const sysctlValue = (k: string) => (existsSync(sysctlPath(k)) ? readFileSync(sysctlPath(k), 'utf8').trim() : undefined);

async function ntp(): Promise<{ can: string; on: string }> {
  const r = await run(['timedatectl', 'show', '-p', 'CanNTP', '-p', 'NTP'], { allowFail: true });
  const v = Object.fromEntries(r.stdout.split('\n').map((l) => l.split('=') as [string, string]));
  return { can: v['CanNTP'] ?? 'no', on: v['NTP'] ?? 'no' };
}

async function check(ctx: StepContext): Promise<string[]> {
  const drift: string[] = [];
  const ct = await container();
  for (const f of FILES) {
    const d = checkFile(f);
    if (d) drift.push(d);
  }
  for (const m of MODULES) {
    if (moduleLoaded(m)) continue;
    if (ct) skipped(ctx, `kernel module ${m}`, `${ct} container: modules belong to the host`);
    else drift.push(`kernel module ${m} is not loaded`);
  }
  for (const [k, v] of Object.entries(SYSCTLS)) {
    const got = sysctlValue(k);
    if (got === v) continue;
    if (got === undefined && ct) skipped(ctx, `sysctl ${k}`, `${ct} container: the host has not loaded br_netfilter`);
    else drift.push(`sysctl ${k} is ${got ?? 'absent'}, want ${v}`);
  }
  for (const s of parseSwaps(readIfExists('/proc/swaps') ?? 'header\n')) drift.push(`swap is active on ${s}`);
  for (const l of fstabSwapLines(readIfExists('/etc/fstab') ?? '')) drift.push(`/etc/fstab enables swap: ${l.trim()}`);
  const time = await ntp();
  if (time.on !== 'yes') {
    if (ct)
      skipped(
        ctx,
        'time sync',
        `${ct} container: the host keeps the clock (systemd-timesyncd does not run in containers)`,
      );
    else
      drift.push(
        time.can === 'yes'
          ? 'time sync (NTP) is off'
          : 'no time sync service is installed (systemd-timesyncd or chrony)',
      );
  }
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const changes: string[] = [];
  const ct = await container();
  const [modules, sysctl] = FILES as [ManagedFile, ManagedFile];
  if (await ensureFile(modules)) changes.push(`${MODULES_FILE}: ${MODULES.join(', ')} at boot`);
  if (!ct) {
    for (const m of MODULES) {
      if (!moduleLoaded(m)) {
        await run(['modprobe', m], { log: ctx.log });
        changes.push(`loaded kernel module ${m}`);
      }
    }
  }
  const sysctlChanged = await ensureFile(sysctl);
  if (sysctlChanged) changes.push(`${SYSCTL_FILE}: ${Object.keys(SYSCTLS).join(', ')}`);
  if (sysctlChanged || Object.entries(SYSCTLS).some(([k, v]) => sysctlValue(k) !== undefined && sysctlValue(k) !== v)) {
    await run(['sysctl', '-p', SYSCTL_FILE], { log: ctx.log, allowFail: Boolean(ct) });
    changes.push(`applied ${SYSCTL_FILE}`);
  }
  const swaps = parseSwaps(readIfExists('/proc/swaps') ?? 'header\n');
  if (swaps.length > 0) {
    await run(['swapoff', '-a'], { log: ctx.log });
    changes.push(`swap off (${swaps.join(', ')})`);
  }
  const fstab = readIfExists('/etc/fstab');
  if (fstab !== undefined && fstabSwapLines(fstab).length > 0) {
    await writeFileAtomic('/etc/fstab', fstabWithoutSwap(fstab), { mode: 0o644, uid: 0, gid: 0 });
    changes.push('/etc/fstab: swap lines commented out');
  }
  const time = await ntp();
  if (time.on !== 'yes' && !ct) {
    if (time.can !== 'yes')
      await run(
        ['apt-get', '-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '--no-install-recommends', 'systemd-timesyncd'],
        { log: ctx.log, env: { DEBIAN_FRONTEND: 'noninteractive' } },
      );
    await run(['timedatectl', 'set-ntp', 'true'], { log: ctx.log });
    changes.push('time sync (NTP) on');
  }
  return changes;
}

// Teardown: our two files go and fstab's swap lines come back. The live sysctl values, the loaded modules and
// the swap that is off stay as they are until the next boot (then the distribution's defaults apply): changing
// them under a running system buys nothing for a server being taken down.
const kernelTeardown: Teardown = {
  async check() {
    const lines = [MODULES_FILE, SYSCTL_FILE].filter((p) => existsSync(p)).map((p) => `file ${p}`);
    const off = fstabSwapOffLines(readIfExists('/etc/fstab') ?? '');
    if (off.length > 0) lines.push(`/etc/fstab: ${off.length} swap line(s) commented out by codex-k8s bootstrap`);
    return lines;
  },
  async apply() {
    const done: string[] = [];
    if (existsSync(MODULES_FILE)) {
      rmSync(MODULES_FILE, { force: true });
      done.push(`removed ${MODULES_FILE} (${MODULES.join(', ')} stay loaded until the next boot)`);
    }
    if (existsSync(SYSCTL_FILE)) {
      rmSync(SYSCTL_FILE, { force: true });
      done.push(
        `removed ${SYSCTL_FILE} (the live values stay until the next boot, then the distribution's defaults apply)`,
      );
    }
    const fstab = readIfExists('/etc/fstab');
    if (fstab !== undefined && fstabSwapOffLines(fstab).length > 0) {
      const n = fstabSwapOffLines(fstab).length;
      await writeFileAtomic('/etc/fstab', fstabWithSwap(fstab), { mode: 0o644, uid: 0, gid: 0 });
      done.push(`/etc/fstab: ${n} swap line(s) back as they were (swap is on again from the next boot, or swapon -a)`);
    }
    return done;
  },
};

export const kernelPart: HostPart = { name: 'kernel', check, apply, teardown: kernelTeardown };
