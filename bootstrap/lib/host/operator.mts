// The operator account you use day to day (and that stays usable when root login gets restricted): the user,
// your public key in its authorized_keys, passwordless sudo. The sudoers drop-in is validated with `visudo -cf`
// before it replaces anything: a broken file never lands.
import { mkdirSync, chmodSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import type { StepContext } from '../step.mts';
import { run } from '../exec.mts';
import { OperationError } from '../errors.mts';
import { writeFileAtomic, readIfExists, facts, octal } from '../fsx.mts';
import type { HostPart } from './part.mts';

export const SUDOERS_FILE = '/etc/sudoers.d/codex-k8s-operator';

/**
 * Validate, then swap: the candidate is written next to `path` (0440, root), `visudo -cf` must accept it, and
 * only then does it replace `path`. A refused candidate leaves the previous file exactly as it was.
 */
export async function installSudoers(path: string, content: string, log?: StepContext['log']): Promise<void> {
  await writeFileAtomic(path, content, {
    mode: 0o440,
    uid: 0,
    gid: 0,
    validate: async (tmp) => {
      const r = await run(['visudo', '-cf', tmp], { allowFail: true, log });
      if (r.exitCode !== 0) throw new OperationError(`visudo refused the sudoers drop-in; ${path} was left as it was`, { detail: r.stdout + r.stderr });
    },
  });
}

export interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** Parses one `getent passwd` line. */
export function parsePasswd(line: string): Account | undefined {
  const f = line.trim().split(':');
  if (f.length < 7) return undefined;
  return { name: f[0] as string, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string, shell: f[6] as string };
}

export function sudoersContent(user: string): string {
  return `# Managed by codex-k8s bootstrap (10_harden_host). Edits are overwritten on the next run.\n${user} ALL=(ALL:ALL) NOPASSWD: ALL\n`;
}

/** The "TYPE BASE64" part of a key line: comments and options do not make a key different. */
export function keyIdentity(line: string): string | undefined {
  const m = /(?:^|\s)((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,3})(?:\s|$)/.exec(line);
  return m ? `${m[1]} ${m[2]}` : undefined;
}

/** authorized_keys with `key` present exactly once; every other line is kept as it was. */
export function withKey(existing: string | undefined, key: string): string {
  const id = keyIdentity(key);
  const lines = (existing ?? '').split('\n').filter((l, i, all) => !(i === all.length - 1 && l === ''));
  if (lines.some((l) => keyIdentity(l) === id)) return lines.join('\n') + (lines.length ? '\n' : '');
  return [...lines, key].join('\n') + '\n';
}

async function account(name: string): Promise<Account | undefined> {
  const r = await run(['getent', 'passwd', name], { allowFail: true });
  return r.exitCode === 0 ? parsePasswd(r.stdout) : undefined;
}

function settings(ctx: StepContext) {
  return { user: ctx.cfg.get('OPERATOR_USER'), key: ctx.cfg.get('OPERATOR_SSH_PUBKEY') };
}

async function checkOperator(ctx: StepContext): Promise<string[]> {
  const { user, key } = settings(ctx);
  const drift: string[] = [];
  const acct = await account(user);
  if (!acct) return [`user ${user} does not exist`];
  if (acct.shell !== '/bin/bash') drift.push(`login shell of ${user} is ${acct.shell}, want /bin/bash`);
  const home = facts(acct.home);
  if (!home?.isDir) drift.push(`home ${acct.home} of ${user} is not a directory`);
  else if (home.uid !== acct.uid) drift.push(`home ${acct.home} is owned by uid ${home.uid}, want ${acct.uid}`);
  const sshDir = join(acct.home, '.ssh');
  const dirFacts = facts(sshDir);
  if (!dirFacts?.isDir) drift.push(`${sshDir} does not exist`);
  else if (dirFacts.mode !== 0o700 || dirFacts.uid !== acct.uid) drift.push(`${sshDir} is ${octal(dirFacts.mode)} uid ${dirFacts.uid}, want 0700 uid ${acct.uid}`);
  const ak = join(sshDir, 'authorized_keys');
  const akFacts = facts(ak);
  const akText = readIfExists(ak);
  if (akText === undefined || !akText.split('\n').some((l) => keyIdentity(l) === keyIdentity(key))) drift.push(`${ak} lacks the operator key`);
  if (akFacts && (akFacts.mode !== 0o600 || akFacts.uid !== acct.uid)) drift.push(`${ak} is ${octal(akFacts.mode)} uid ${akFacts.uid}, want 0600 uid ${acct.uid}`);
  const sudo = readIfExists(SUDOERS_FILE);
  const sudoFacts = facts(SUDOERS_FILE);
  if (sudo !== sudoersContent(user)) {
    const other = sudo === undefined ? undefined : /^([a-z_][a-z0-9_-]*) ALL=/m.exec(sudo)?.[1];
    drift.push(`${SUDOERS_FILE} ${sudo === undefined ? 'is missing' : other && other !== user ? `grants sudo to ${other}, want ${user} (${other} loses it)` : 'differs from the managed content'}`);
  }
  else if (sudoFacts && (sudoFacts.mode !== 0o440 || sudoFacts.uid !== 0)) drift.push(`${SUDOERS_FILE} is ${octal(sudoFacts.mode)} uid ${sudoFacts.uid}, want 0440 uid 0`);
  return drift;
}

async function applyOperator(ctx: StepContext): Promise<string[]> {
  const { user, key } = settings(ctx);
  const changes: string[] = [];
  let acct = await account(user);
  if (!acct) {
    await run(['useradd', '--create-home', '--shell', '/bin/bash', '--user-group', '--comment', 'codex-k8s operator', user], { log: ctx.log });
    acct = await account(user);
    if (!acct) throw new OperationError(`useradd reported success but ${user} does not exist`);
    changes.push(`created user ${user} (uid ${acct.uid})`);
  } else if (acct.shell !== '/bin/bash') {
    await run(['usermod', '--shell', '/bin/bash', user], { log: ctx.log });
    changes.push(`set the login shell of ${user} to /bin/bash`);
  }

  const home = facts(acct.home);
  if (!home?.isDir || home.uid !== acct.uid) {
    if (home && !home.isDir) throw new OperationError(`${acct.home} exists but is not a directory; it cannot be the home of ${user}`, { hint: `move it aside on the server (mv ${acct.home} ${acct.home}.bak)` });
    mkdirSync(acct.home, { recursive: true, mode: 0o750 });
    chownSync(acct.home, acct.uid, acct.gid);
    changes.push(`home ${acct.home} exists and belongs to ${user}`);
  }
  const sshDir = join(acct.home, '.ssh');
  const before = facts(sshDir);
  if (!before?.isDir || before.mode !== 0o700 || before.uid !== acct.uid) {
    mkdirSync(sshDir, { recursive: true, mode: 0o700 });
    chmodSync(sshDir, 0o700);
    chownSync(sshDir, acct.uid, acct.gid);
    changes.push(`${sshDir} is 0700, owned by ${user}`);
  }
  const ak = join(sshDir, 'authorized_keys');
  const current = readIfExists(ak);
  const wanted = withKey(current, key);
  const akFacts = facts(ak);
  if (wanted !== current || akFacts?.mode !== 0o600 || akFacts.uid !== acct.uid) {
    await writeFileAtomic(ak, wanted, { mode: 0o600, uid: acct.uid, gid: acct.gid });
    changes.push(wanted !== current ? `added the operator key to ${ak}` : `fixed the mode and owner of ${ak}`);
  }

  const sudo = sudoersContent(user);
  const sudoFacts = facts(SUDOERS_FILE);
  if (readIfExists(SUDOERS_FILE) !== sudo || sudoFacts?.mode !== 0o440 || sudoFacts.uid !== 0) {
    await installSudoers(SUDOERS_FILE, sudo, ctx.log);
    changes.push(`${SUDOERS_FILE}: ${user} may sudo without a password`);
  }
  return changes;
}


export const operatorPart: HostPart = { name: 'operator', check: checkOperator, apply: applyOperator };
