// Rootless BuildKit (buildkitd-0) and Ubuntu's restriction of unprivileged user namespaces.
//
// rootlesskit, buildkitd-0's entry point, creates a user namespace as uid 1000. Ubuntu 24.04 sets
// kernel.apparmor_restrict_unprivileged_userns=1: an unconfined process may then create one only through an
// AppArmor profile that allows `userns,`. BuildKit's rootless docs (moby/buildkit docs/rootless.md, Ubuntu) give the
// fix: set the sysctl to 0, or load a profile with `userns,`. The user opts into one with CODEXK8S_BUILDKIT_USERNS:
//   sysctl    /etc/sysctl.d/<file> with the sysctl at 0, applied with `sysctl -p` (host-wide: every unprivileged
//             process may create user namespaces again)
//   apparmor  a Localhost AppArmor profile (flags=(unconfined) plus `userns,`), loaded with apparmor_parser; the
//             BuildKit pod runs under it (securityContext.appArmorProfile type Localhost). Only buildkitd gains it.
// Unset on a restricted kernel: 00_preflight and 50_deploy_codex_k8s refuse (exit 2), naming the setting and both fixes.
// A kernel without the sysctl (Debian, other distributions) does not restrict: nothing to do.
//
// Paths are injectable (`usernsPaths(root)`): the tests put a fake /proc, /sys and /etc under a temp dir.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { OperationError } from './errors.mts';
import { run } from './exec.mts';
import type { RunOptions, RunResult } from './exec.mts';
import { readIfExists, writeFileAtomic } from './fsx.mts';
import type { Logger } from './log.mts';

export const USERNS_SETTING = 'CODEXK8S_BUILDKIT_USERNS';
export const USERNS_REMEDIES = ['sysctl', 'apparmor'] as const;
export type UsernsRemedy = (typeof USERNS_REMEDIES)[number];
export const USERNS_SYSCTL = 'kernel.apparmor_restrict_unprivileged_userns';
/** The profile Ubuntu's apparmor package ships for /usr/bin/rootlesskit (reported, not relied on). */
export const ROOTLESSKIT_PROFILE = 'rootlesskit';
/** Our Localhost profile: its loaded name is what the pod's appArmorProfile.localhostProfile names. */
export const APPARMOR_PROFILE = 'codex-k8s-buildkitd';
export const RUNBOOK_SECTION = 'docs/runbook.md "BuildKit does not start: user namespaces (Ubuntu 24.04)"';

export interface UsernsPaths {
  /** The sysctl; absent: the kernel does not restrict unprivileged user namespaces. */
  sysctl: string;
  /** Loaded AppArmor profiles, `name (mode)` per line; absent or unreadable: AppArmor is not enabled. */
  profiles: string;
  sysctlFile: string;
  apparmorFile: string;
}

export function usernsPaths(root = ''): UsernsPaths {
  return {
    sysctl: join(root || '/', 'proc/sys', USERNS_SYSCTL.replace(/\./g, '/')),
    profiles: join(root || '/', 'sys/kernel/security/apparmor/profiles'),
    // 99-: after any distribution or admin file that sets it (sysctl --system applies files in name order; the last wins).
    sysctlFile: join(root || '/', 'etc/sysctl.d/99-codex-k8s-buildkit-userns.conf'),
    apparmorFile: join(root || '/', 'etc/apparmor.d', APPARMOR_PROFILE),
  };
}

export interface UsernsFacts {
  /** The sysctl's value, trimmed; undefined when the kernel has no such sysctl. */
  restrict: string | undefined;
  /** Names of the loaded AppArmor profiles; undefined when AppArmor is not enabled (or not readable). */
  profiles: string[] | undefined;
  sysctlFile: string | undefined;
  apparmorFile: string | undefined;
}

/** `/sys/kernel/security/apparmor/profiles` lines (`name (enforce)`) -> names. */
export function parseApparmorProfiles(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim().replace(/\s+\((?:[a-z_]+)\)$/, ''))
    .filter((l) => l !== '');
}

function readQuiet(path: string): string | undefined {
  try {
    return readIfExists(path);
  } catch {
    return undefined; // EACCES: securityfs is root-only
  }
}

export function readUsernsFacts(paths: UsernsPaths = usernsPaths()): UsernsFacts {
  const profiles = readQuiet(paths.profiles);
  return {
    restrict: readQuiet(paths.sysctl)?.trim(),
    profiles: profiles === undefined ? undefined : parseApparmorProfiles(profiles),
    sysctlFile: readQuiet(paths.sysctlFile),
    apparmorFile: readQuiet(paths.apparmorFile),
  };
}

export const isRestricted = (f: UsernsFacts): boolean => f.restrict !== undefined && f.restrict !== '0';

export function renderUsernsSysctl(): string {
  return [
    `# Managed by codex-k8s bootstrap (50_deploy_codex_k8s, ${USERNS_SETTING}=sysctl): rootless BuildKit creates user`,
    "# namespaces; BuildKit's rootless docs give this fix for Ubuntu. Host-wide: remove the file and unset the setting to undo.",
    `${USERNS_SYSCTL} = 0`,
    '',
  ].join('\n');
}

export function renderApparmorProfile(): string {
  return [
    `# Managed by codex-k8s bootstrap (50_deploy_codex_k8s, ${USERNS_SETTING}=apparmor). buildkitd-0 runs under this`,
    '# profile (securityContext.appArmorProfile: Localhost). It confines nothing (unconfined) and allows what',
    `# ${USERNS_SYSCTL}=1 refuses an unconfined process: creating user namespaces (rootlesskit, the build containers).`,
    'abi <abi/4.0>,',
    'include <tunables/global>',
    '',
    `profile ${APPARMOR_PROFILE} flags=(unconfined) {`,
    '  userns,',
    '}',
    '',
  ].join('\n');
}

export const sysctlApplyArgv = (file: string): string[] => ['sysctl', '-p', file];
/** --replace: load, or reload a changed file; the kernel keeps the profile until reboot, the file brings it back at boot. */
export const apparmorLoadArgv = (file: string): string[] => ['apparmor_parser', '--replace', file];

/** The remedies, as the refusal and the crash-loop message name them. */
export function usernsFixText(paths: UsernsPaths = usernsPaths()): string {
  return (
    `set ${USERNS_SETTING}=sysctl (writes ${paths.sysctlFile} with ${USERNS_SYSCTL}=0, host-wide, BuildKit's documented fix) ` +
    `or ${USERNS_SETTING}=apparmor (loads the AppArmor profile ${APPARMOR_PROFILE} with \`userns,\` and runs buildkitd-0 under it); ` +
    `then run again. See ${RUNBOOK_SECTION}`
  );
}

function rootlesskitNote(f: UsernsFacts): string {
  if (f.profiles === undefined) return 'AppArmor is not enabled';
  return `Ubuntu's ${ROOTLESSKIT_PROFILE} profile is ${f.profiles.includes(ROOTLESSKIT_PROFILE) ? 'loaded' : 'not loaded'}`;
}

export interface UsernsCheck {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  reason: string;
  fix?: string;
}

/** Pure: what preflight reports. A `fail` here is a setting to choose: the run stops with exit 2. */
export function evaluateUserns(
  f: UsernsFacts,
  remedy: UsernsRemedy | undefined,
  paths: UsernsPaths = usernsPaths(),
): UsernsCheck[] {
  const aa: UsernsCheck =
    f.profiles === undefined
      ? { name: 'apparmor', status: 'ok', reason: `not enabled (${paths.profiles} is not readable)` }
      : {
          name: 'apparmor',
          status: 'ok',
          reason: `enabled; ${rootlesskitNote(f)}${f.profiles.includes(APPARMOR_PROFILE) ? `; ${APPARMOR_PROFILE} is loaded` : ''}`,
        };
  if (remedy === 'apparmor' && f.profiles === undefined) {
    Object.assign(aa, {
      status: 'fail',
      reason: `not enabled, but ${USERNS_SETTING}=apparmor needs it to load ${APPARMOR_PROFILE}`,
      fix: `unset ${USERNS_SETTING}${isRestricted(f) ? ` or set it to sysctl` : ' (this kernel does not restrict user namespaces)'}`,
    });
  }
  const value =
    f.restrict === undefined
      ? `absent (this kernel does not restrict unprivileged user namespaces)`
      : `${USERNS_SYSCTL}=${f.restrict}`;
  let u: UsernsCheck;
  if (!isRestricted(f))
    u = { name: 'userns', status: 'ok', reason: `${value}: rootless BuildKit can create its user namespace` };
  else if (remedy === 'sysctl')
    u = {
      name: 'userns',
      status: 'ok',
      reason: `${value}; 50_deploy_codex_k8s sets it to 0 (${USERNS_SETTING}=sysctl)`,
    };
  else if (remedy === 'apparmor') {
    u = {
      name: 'userns',
      status: 'ok',
      reason: `${value}; 50_deploy_codex_k8s loads ${APPARMOR_PROFILE} for buildkitd-0 (${USERNS_SETTING}=apparmor)`,
    };
  } else {
    u = {
      name: 'userns',
      status: 'fail',
      fix: usernsFixText(paths),
      reason:
        `${value}: rootless BuildKit (buildkitd-0) cannot create its user namespace and would crash-loop; ${rootlesskitNote(f)}` +
        ` (it may attach to rootlesskit inside the pod, which nothing proves); ${USERNS_SETTING} is not set`,
    };
  }
  return [u, aa];
}

/** The refusal of 50_deploy_codex_k8s (exit 2: a setting to choose, nothing was touched), or undefined. */
export function usernsRefusal(
  f: UsernsFacts,
  remedy: UsernsRemedy | undefined,
  paths: UsernsPaths = usernsPaths(),
): OperationError | undefined {
  const failed = evaluateUserns(f, remedy, paths).filter((c) => c.status === 'fail');
  if (failed.length === 0) return undefined;
  return new OperationError(
    `refusing to deploy rootless BuildKit: ${failed.map((c) => `${c.name}: ${c.reason}`).join('; ')}`,
    {
      hint: failed.map((c) => c.fix).join('; '),
      exitCode: 2,
    },
  );
}

/** Pure: what the remedy still has to do (empty: nothing). Call usernsRefusal first. */
export function usernsDrift(
  f: UsernsFacts,
  remedy: UsernsRemedy | undefined,
  paths: UsernsPaths = usernsPaths(),
): string[] {
  const drift: string[] = [];
  if (remedy === 'sysctl') {
    if (f.restrict === undefined) return []; // the kernel has no such sysctl: a file for it would make `sysctl -p` fail
    const state = f.sysctlFile === undefined ? 'does not exist' : 'differs';
    if (f.sysctlFile !== renderUsernsSysctl())
      drift.push(`${paths.sysctlFile} ${state} (want ${USERNS_SYSCTL} = 0 at boot)`);
    if (f.restrict !== '0') drift.push(`sysctl ${USERNS_SYSCTL} is ${f.restrict}, want 0 (${USERNS_SETTING}=sysctl)`);
  } else if (remedy === 'apparmor') {
    const state = f.apparmorFile === undefined ? 'does not exist' : 'differs';
    if (f.apparmorFile !== renderApparmorProfile())
      drift.push(`${paths.apparmorFile} ${state} (AppArmor profile ${APPARMOR_PROFILE}: userns)`);
    if (!(f.profiles ?? []).includes(APPARMOR_PROFILE))
      drift.push(`AppArmor profile ${APPARMOR_PROFILE} is not loaded (${USERNS_SETTING}=apparmor)`);
  }
  return drift;
}

export type Runner = (argv: string[], opts: RunOptions) => Promise<RunResult>;

/** check -> apply -> check for the chosen remedy; returns the changes (none: unchanged). */
export async function applyUsernsRemedy(
  remedy: UsernsRemedy | undefined,
  log: Logger,
  paths: UsernsPaths = usernsPaths(),
  runner: Runner = run,
): Promise<string[]> {
  const before = readUsernsFacts(paths);
  const refusal = usernsRefusal(before, remedy, paths);
  if (refusal) throw refusal;
  if (usernsDrift(before, remedy, paths).length === 0) return [];
  const changes: string[] = [];
  const fail = (r: RunResult, what: string): OperationError =>
    new OperationError(`${what}: ${r.argv.join(' ')} exited ${r.exitCode}`, {
      detail: (r.stderr || r.stdout).trim(),
      hint: usernsFixText(paths),
    });
  if (remedy === 'sysctl') {
    if (before.sysctlFile !== renderUsernsSysctl()) {
      mkdirSync(dirname(paths.sysctlFile), { recursive: true });
      await writeFileAtomic(paths.sysctlFile, renderUsernsSysctl(), { mode: 0o644 });
      changes.push(`${paths.sysctlFile}: ${USERNS_SYSCTL} = 0 at boot`);
    }
    if (before.restrict !== '0') {
      const r = await runner(sysctlApplyArgv(paths.sysctlFile), { allowFail: true, timeoutSeconds: 30, log });
      if (r.exitCode !== 0) throw fail(r, `cannot set ${USERNS_SYSCTL}=0`);
      changes.push(`sysctl ${USERNS_SYSCTL}: ${before.restrict} -> 0`);
    }
  } else if (remedy === 'apparmor') {
    const fileChanged = before.apparmorFile !== renderApparmorProfile();
    if (fileChanged) {
      mkdirSync(dirname(paths.apparmorFile), { recursive: true });
      await writeFileAtomic(paths.apparmorFile, renderApparmorProfile(), { mode: 0o644 });
      changes.push(`${paths.apparmorFile}: AppArmor profile ${APPARMOR_PROFILE} (userns)`);
    }
    if (fileChanged || !(before.profiles ?? []).includes(APPARMOR_PROFILE)) {
      const r = await runner(apparmorLoadArgv(paths.apparmorFile), { allowFail: true, timeoutSeconds: 60, log });
      if (r.exitCode !== 0) throw fail(r, `apparmor_parser could not load ${paths.apparmorFile}`);
      changes.push(`AppArmor profile ${APPARMOR_PROFILE} loaded`);
    }
  }
  const left = usernsDrift(readUsernsFacts(paths), remedy, paths);
  if (left.length > 0)
    throw new OperationError(`the ${USERNS_SETTING}=${remedy} remedy did not take: ${left.join('; ')}`, {
      hint: usernsFixText(paths),
    });
  return changes;
}

// ---- --uninstall ------------------------------------------------------------------------------------------------------

/** `--remove` unloads the profile the file defines (by its name inside, so the file must be there or be rendered). */
export const apparmorRemoveArgv = (file: string): string[] => ['apparmor_parser', '--remove', file];

/** Pure: what of the remedy is still on the host, one line each; empty when nothing is (whatever the setting says). */
export function usernsLeftovers(f: UsernsFacts, paths: UsernsPaths = usernsPaths()): string[] {
  const left: string[] = [];
  if (f.sysctlFile !== undefined) left.push(`file ${paths.sysctlFile} (${USERNS_SYSCTL} = 0 at boot)`);
  if ((f.profiles ?? []).includes(APPARMOR_PROFILE)) left.push(`AppArmor profile ${APPARMOR_PROFILE} (loaded)`);
  if (f.apparmorFile !== undefined) left.push(`file ${paths.apparmorFile}`);
  return left;
}

/**
 * Takes the remedy away: the profile is unloaded before its file goes (a killed run that removed the file first
 * would leave a loaded profile nobody can name: then the rendered profile, which has the same name, unloads it).
 * The sysctl file goes; the running kernel keeps the value until the next boot (the file said so at boot only).
 */
export async function removeUsernsRemedy(
  log: Logger,
  paths: UsernsPaths = usernsPaths(),
  runner: Runner = run,
): Promise<string[]> {
  const f = readUsernsFacts(paths);
  const changes: string[] = [];
  if ((f.profiles ?? []).includes(APPARMOR_PROFILE)) {
    let file = paths.apparmorFile;
    let tmp: string | undefined;
    if (f.apparmorFile === undefined) {
      tmp = join(mkdtempSync(join(tmpdir(), 'codex-k8s-apparmor-')), APPARMOR_PROFILE);
      writeFileSync(tmp, renderApparmorProfile(), { mode: 0o600 });
      file = tmp;
    }
    try {
      const r = await runner(apparmorRemoveArgv(file), { allowFail: true, timeoutSeconds: 60, log });
      if (r.exitCode !== 0)
        throw new OperationError(
          `apparmor_parser could not unload ${APPARMOR_PROFILE}: ${r.argv.join(' ')} exited ${r.exitCode}`,
          {
            detail: (r.stderr || r.stdout).trim(),
            hint: `look at: aa-status | grep ${APPARMOR_PROFILE}; then --uninstall again`,
          },
        );
    } finally {
      if (tmp !== undefined) rmSync(dirname(tmp), { recursive: true, force: true });
    }
    changes.push(`AppArmor profile ${APPARMOR_PROFILE} unloaded`);
  }
  if (f.apparmorFile !== undefined) {
    rmSync(paths.apparmorFile, { force: true });
    changes.push(`removed ${paths.apparmorFile}`);
  }
  if (f.sysctlFile !== undefined) {
    rmSync(paths.sysctlFile, { force: true });
    changes.push(
      `removed ${paths.sysctlFile} (the running kernel keeps ${USERNS_SYSCTL}=${f.restrict ?? '?'} until the next boot)`,
    );
  }
  return changes;
}
