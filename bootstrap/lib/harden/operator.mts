// The operator account you use day to day (and that stays usable when root login gets restricted): the user,
// your public key in its authorized_keys, passwordless sudo. The sudoers drop-in is validated with `visudo -cf`
// before it replaces anything: a broken file never lands.
// Only an account this tool created (its comment says so) or one adopted on purpose (OPERATOR_ADOPT_EXISTING)
// is touched: taking over a service account (sshd, www-data) breaks that service. The part is guarded: a grant
// nobody proved by logging in is undone by the rollback, account changes included.
import { mkdirSync, chmodSync, chownSync, writeFileSync, readFileSync, existsSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { StepContext, Teardown, TeardownOptions } from '../step.mts';
import type { Logger } from '../log.mts';
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
      if (r.exitCode !== 0)
        throw new OperationError(`visudo refused the sudoers drop-in; ${path} was left as it was`, {
          detail: r.stdout + r.stderr,
        });
    },
  });
}

export interface Account {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

/** Parses one `getent passwd` line. */
export function parsePasswd(line: string): Account | undefined {
  const f = line.replace(/\n$/, '').split(':');
  if (f.length < 7) return undefined;
  return {
    name: f[0] as string,
    uid: Number(f[2]),
    gid: Number(f[3]),
    gecos: f[4] as string,
    home: f[5] as string,
    shell: f[6] as string,
  };
}

/** The comment `useradd --comment` gives the account this tool creates: how a later run knows it is ours. */
export const OPERATOR_GECOS = 'codex-k8s operator';
/** Debian and Ubuntu hand out uids from 1000 (UID_MIN); below are system accounts, 65534 is nobody. */
export const FIRST_REGULAR_UID = 1000;
const NOBODY_UID = 65534;

export type OperatorVerdict =
  | { kind: 'create' }
  | { kind: 'ours'; account: Account }
  | { kind: 'adopted'; account: Account }
  | { kind: 'refused'; reason: string; fix: string };

/**
 * May step 10 make `name` the operator? Pure: the account as getent shows it (or none) and the adopt setting.
 * root and system accounts are refused even when adopting: they run services that the shell, home and sudo
 * changes would break.
 */
export function operatorVerdict(name: string, acct: Account | undefined, adopt: boolean): OperatorVerdict {
  if (name === 'root' || acct?.uid === 0)
    return {
      kind: 'refused',
      reason: `OPERATOR_USER=${name} is root (uid 0)`,
      fix: 'choose an unprivileged name such as codex: the operator is a separate login with sudo',
    };
  if (!acct) return { kind: 'create' };
  if (acct.uid < FIRST_REGULAR_UID || acct.uid === NOBODY_UID)
    return {
      kind: 'refused',
      reason: `OPERATOR_USER=${name} is a system account on the server (uid ${acct.uid}, home ${acct.home})`,
      fix: 'choose a name not in use on the server: step 10 would take over its home, shell and sudo, and break the service it runs',
    };
  if (acct.gecos.split(',')[0] === OPERATOR_GECOS) return { kind: 'ours', account: acct };
  if (adopt) return { kind: 'adopted', account: acct };
  return {
    kind: 'refused',
    reason: `OPERATOR_USER=${name} is an existing account (uid ${acct.uid}, comment "${acct.gecos}") that this tool did not create`,
    fix: `choose a new name, or set OPERATOR_ADOPT_EXISTING=true to give ${name} a bash login shell, your key and passwordless sudo`,
  };
}

/** The verdict for the configured operator as the server has it now (preflight and step 10 both ask). */
export async function operatorVerdictNow(cfg: StepContext['cfg']): Promise<OperatorVerdict> {
  const name = cfg.get('OPERATOR_USER');
  return operatorVerdict(name, await account(name), cfg.get('OPERATOR_ADOPT_EXISTING'));
}

/** A refused verdict as the error both callers throw: bad input, exit 2, nothing changed. */
export function refusal(v: Extract<OperatorVerdict, { kind: 'refused' }>): OperationError {
  return new OperationError(`${v.reason}; nothing was changed`, { hint: v.fix, exitCode: 2 });
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

/** The account as `getent passwd` shows it, or undefined when there is none. */
export async function account(name: string): Promise<Account | undefined> {
  const r = await run(['getent', 'passwd', name], { allowFail: true });
  return r.exitCode === 0 ? parsePasswd(r.stdout) : undefined;
}

function settings(ctx: StepContext) {
  return { user: ctx.cfg.get('OPERATOR_USER'), key: ctx.cfg.get('OPERATOR_SSH_PUBKEY') };
}

async function checkOperator(ctx: StepContext): Promise<string[]> {
  const { user, key } = settings(ctx);
  const drift: string[] = [];
  // Before any part applies: a refused account stops the step with nothing changed.
  const verdict = await operatorVerdictNow(ctx.cfg);
  if (verdict.kind === 'refused') throw refusal(verdict);
  if (verdict.kind === 'create') return [`user ${user} does not exist`];
  const acct = verdict.account;
  if (acct.shell !== '/bin/bash') drift.push(`login shell of ${user} is ${acct.shell}, want /bin/bash`);
  const home = facts(acct.home);
  if (!home?.isDir) drift.push(`home ${acct.home} of ${user} is not a directory`);
  else if (home.uid !== acct.uid) drift.push(`home ${acct.home} is owned by uid ${home.uid}, want ${acct.uid}`);
  const sshDir = join(acct.home, '.ssh');
  const dirFacts = facts(sshDir);
  if (!dirFacts?.isDir) drift.push(`${sshDir} does not exist`);
  else if (dirFacts.mode !== 0o700 || dirFacts.uid !== acct.uid)
    drift.push(`${sshDir} is ${octal(dirFacts.mode)} uid ${dirFacts.uid}, want 0700 uid ${acct.uid}`);
  const ak = join(sshDir, 'authorized_keys');
  const akFacts = facts(ak);
  const akText = readIfExists(ak);
  if (akText === undefined || !akText.split('\n').some((l) => keyIdentity(l) === keyIdentity(key)))
    drift.push(`${ak} lacks the operator key`);
  if (akFacts && (akFacts.mode !== 0o600 || akFacts.uid !== acct.uid))
    drift.push(`${ak} is ${octal(akFacts.mode)} uid ${akFacts.uid}, want 0600 uid ${acct.uid}`);
  const sudo = readIfExists(SUDOERS_FILE);
  const sudoFacts = facts(SUDOERS_FILE);
  if (sudo !== sudoersContent(user)) {
    const other = sudo === undefined ? undefined : /^([a-z_][a-z0-9_-]*) ALL=/m.exec(sudo)?.[1];
    drift.push(
      `${SUDOERS_FILE} ${sudo === undefined ? 'is missing' : other && other !== user ? `grants sudo to ${other}, want ${user} (${other} loses it)` : 'differs from the managed content'}`,
    );
  } else if (sudoFacts && (sudoFacts.mode !== 0o440 || sudoFacts.uid !== 0))
    drift.push(`${SUDOERS_FILE} is ${octal(sudoFacts.mode)} uid ${sudoFacts.uid}, want 0440 uid 0`);
  return drift;
}

async function applyOperator(ctx: StepContext): Promise<string[]> {
  const { user, key } = settings(ctx);
  const changes: string[] = [];
  let acct = await account(user);
  if (!acct) {
    await run(accountCommands.create(user), { log: ctx.log });
    acct = await account(user);
    if (!acct) throw new OperationError(`useradd reported success but ${user} does not exist`);
    changes.push(`created user ${user} (uid ${acct.uid})`);
  } else if (acct.shell !== '/bin/bash') {
    await run(accountCommands.setShell(user, '/bin/bash'), { log: ctx.log });
    changes.push(`set the login shell of ${user} to /bin/bash`);
  }

  const home = facts(acct.home);
  if (!home?.isDir || home.uid !== acct.uid) {
    if (home && !home.isDir)
      throw new OperationError(`${acct.home} exists but is not a directory; it cannot be the home of ${user}`, {
        hint: `move it aside on the server (mv ${acct.home} ${acct.home}.bak)`,
      });
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

export const accountCommands = {
  create: (user: string) => [
    'useradd',
    '--create-home',
    '--shell',
    '/bin/bash',
    '--user-group',
    '--comment',
    OPERATOR_GECOS,
    user,
  ],
  setShell: (user: string, shell: string) => ['usermod', '--shell', shell, user],
  /** Only for an account this run created: its processes (a login during the unconfirmed window) go with it. */
  killAll: (user: string) => ['pkill', '--signal', 'KILL', '--uid', user],
  remove: (user: string, withHome: boolean) => ['userdel', ...(withHome ? ['--remove'] : []), user],
  /** A rollback after --remove-operator: the account again, with the uid, group, comment and shell it had. */
  recreate: (a: { user: string; uid: number; gid: number; gecos: string; shell: string }) => [
    'useradd',
    '--create-home',
    '--shell',
    a.shell,
    '--uid',
    String(a.uid),
    '--gid',
    String(a.gid),
    '--comment',
    a.gecos,
    a.user,
  ],
  /** userdel took the user's own group with it; it comes back first, with its gid, so the files' owners match. */
  createGroup: (name: string, gid: number) => ['groupadd', '--gid', String(gid), name],
  groupByGid: (gid: number) => ['getent', 'group', String(gid)],
};

// --- rollback -----------------------------------------------------------------------------------------
// The sudoers drop-in is a plain file the snapshot copies; the account, its home, .ssh and authorized_keys
// depend on the user name and are recorded here.

interface PathState {
  existed: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface OperatorState {
  user: string;
  existed: boolean;
  /** uid, gid and comment: what a rollback after --remove-operator needs to create the account again. */
  uid?: number;
  gid?: number;
  gecos?: string;
  shell?: string;
  home?: string;
  homeState?: PathState;
  sshDir?: PathState;
  keys?: PathState & { content?: string };
}

// One file per account: a snapshot kept from an earlier unconfirmed change may cover another OPERATOR_USER.
const stateFile = (user: string) => `operator-${user}.json`;

function pathState(path: string): PathState {
  const f = facts(path);
  return f ? { existed: true, mode: f.mode, uid: f.uid, gid: f.gid } : { existed: false };
}

async function saveOperator(dir: string, ctx: StepContext): Promise<void> {
  const user = ctx.cfg.get('OPERATOR_USER');
  // Already recorded: that is the state before the first unconfirmed change, the one to return to.
  if (existsSync(join(dir, stateFile(user)))) return;
  const acct = await account(user);
  // A new account's home is where useradd will put it (/home/<user> on Debian and Ubuntu).
  const home = acct?.home ?? join('/home', user);
  const ak = join(home, '.ssh', 'authorized_keys');
  const state: OperatorState = {
    user,
    existed: acct !== undefined,
    uid: acct?.uid,
    gid: acct?.gid,
    gecos: acct?.gecos,
    shell: acct?.shell,
    home,
    homeState: pathState(home),
    sshDir: pathState(join(home, '.ssh')),
    keys: { ...pathState(ak), content: readIfExists(ak) },
  };
  writeFileSync(join(dir, stateFile(user)), JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
}

/** Puts one path's mode and owner back, or removes it when it did not exist. */
function restorePath(path: string, before: PathState | undefined, done: string[]): void {
  if (!before) return;
  const now = facts(path);
  if (!before.existed) {
    if (now) {
      rmSync(path, { recursive: true, force: true });
      done.push(`removed ${path} (it did not exist before)`);
    }
    return;
  }
  if (!now) return;
  if (now.mode !== before.mode) chmodSync(path, before.mode ?? now.mode);
  if (now.uid !== before.uid || now.gid !== before.gid) chownSync(path, before.uid ?? now.uid, before.gid ?? now.gid);
  if (now.mode !== before.mode || now.uid !== before.uid || now.gid !== before.gid)
    done.push(`restored the mode and owner of ${path}`);
}

/** Undoes what the unconfirmed change did to each recorded account; the sudoers file was already restored. */
async function restoreOperators(dir: string, log: Logger): Promise<string[]> {
  const done: string[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => /^operator-.+\.json$/.test(n))
    .sort())
    done.push(...(await restoreOperator(JSON.parse(readFileSync(join(dir, f), 'utf8')) as OperatorState, log)));
  return done;
}

async function restoreOperator(before: OperatorState, log: Logger): Promise<string[]> {
  const done: string[] = [];
  const now = await account(before.user);
  const home = before.home ?? join('/home', before.user);
  const ak = join(home, '.ssh', 'authorized_keys');
  if (!before.existed) {
    if (!now) return done;
    if (now.gecos.split(',')[0] !== OPERATOR_GECOS) {
      done.push(`left user ${before.user}: it is not the account this run created (comment "${now.gecos}")`);
      return done;
    }
    await run(accountCommands.killAll(before.user), { allowFail: true, log });
    // A home that was there before the account (useradd kept it) stays; only what this run made goes.
    const removeHome = before.homeState?.existed === false;
    const r = await run(accountCommands.remove(before.user, removeHome), { allowFail: true, log });
    if (r.exitCode !== 0 && (await account(before.user))) {
      done.push(
        `could not remove user ${before.user} (userdel: ${r.stderr.trim()}); remove it by hand: userdel --remove ${before.user}`,
      );
      return done;
    }
    done.push(`removed user ${before.user}${removeHome ? ` and ${home}` : ''} (it did not exist before)`);
    if (!removeHome) {
      restorePath(join(home, '.ssh'), before.sshDir, done);
      if (before.sshDir?.existed) await restoreKeys(ak, before.keys, done);
      restorePath(home, before.homeState, done);
    }
    return done;
  }
  if (!now) {
    if (before.uid === undefined || before.uid < FIRST_REGULAR_UID || before.gid === undefined) {
      done.push(`user ${before.user} no longer exists; nothing to restore for it`);
      return done;
    }
    return recreateOperator(before, log);
  }
  if (before.shell && now.shell !== before.shell) {
    await run(accountCommands.setShell(before.user, before.shell), { log });
    done.push(`restored the login shell of ${before.user} to ${before.shell}`);
  }
  await restoreKeys(ak, before.keys, done);
  restorePath(join(home, '.ssh'), before.sshDir, done);
  restorePath(home, before.homeState, done);
  return done;
}

/**
 * The account is gone (--uninstall --remove-operator removed it) but a login never proved the server reachable
 * without it: it comes back with its uid, group, comment, shell, .ssh and authorized_keys. Other files of its old
 * home are not in the snapshot; useradd gives the new home the skeleton files.
 */
async function recreateOperator(before: OperatorState, log: Logger): Promise<string[]> {
  const done: string[] = [];
  const uid = before.uid as number;
  const gid = before.gid as number;
  const home = before.home ?? join('/home', before.user);
  if ((await run(accountCommands.groupByGid(gid), { allowFail: true, log })).exitCode !== 0)
    await run(accountCommands.createGroup(before.user, gid), { log });
  await run(
    accountCommands.recreate({
      user: before.user,
      uid,
      gid,
      gecos: before.gecos ?? OPERATOR_GECOS,
      shell: before.shell ?? '/bin/bash',
    }),
    { log },
  );
  done.push(
    `recreated user ${before.user} (uid ${uid}, gid ${gid}; the files of its old home other than its keys are gone)`,
  );
  const sshDir = join(home, '.ssh');
  if (before.sshDir?.existed) {
    mkdirSync(sshDir, { recursive: true, mode: before.sshDir.mode ?? 0o700 });
    chmodSync(sshDir, before.sshDir.mode ?? 0o700);
    chownSync(sshDir, before.sshDir.uid ?? uid, before.sshDir.gid ?? gid);
    await restoreKeys(join(sshDir, 'authorized_keys'), before.keys, done);
  }
  restorePath(home, before.homeState, done);
  return done;
}

async function restoreKeys(ak: string, before: OperatorState['keys'], done: string[]): Promise<void> {
  if (!before) return;
  if (!before.existed || before.content === undefined) {
    restorePath(ak, { existed: false }, done);
    return;
  }
  const f = facts(ak);
  if (readIfExists(ak) === before.content && f?.mode === before.mode && f?.uid === before.uid && f?.gid === before.gid)
    return;
  // Renamed into place, never written through: a symlink planted there is replaced, not followed.
  await writeFileAtomic(ak, before.content, { mode: before.mode ?? 0o600, uid: before.uid ?? 0, gid: before.gid ?? 0 });
  done.push(`restored ${ak}`);
}

// --- teardown -------------------------------------------------------------------------------------------
// Only with --remove-operator. An account this tool created (its comment) goes with its home; an adopted one
// (OPERATOR_ADOPT_EXISTING) stays, and loses only what we gave it: the sudoers drop-in and our key line. root and
// system accounts are never touched, whatever the settings say.

/** authorized_keys without `key` (matched by type and base64, whatever the comment); other lines stay as they were. */
export function withoutKey(existing: string, key: string): string {
  const id = keyIdentity(key);
  const lines = existing.split('\n').filter((l, i, all) => !(i === all.length - 1 && l === ''));
  const kept = lines.filter((l) => id === undefined || keyIdentity(l) !== id);
  return kept.join('\n') + (kept.length ? '\n' : '');
}

export type OperatorRemoval =
  /** userdel --remove: the account this tool created. */
  | { kind: 'delete'; account: Account }
  /** An adopted account keeps everything but our key line. */
  | { kind: 'unkey'; account: Account; authorizedKeys: string }
  /** Nothing of the account is ours to take (none, a system account, one neither created nor adopted). */
  | { kind: 'keep'; why?: string };

/** Pure: what --remove-operator does to the account, from getent's view of it, the adopt setting and its keys. */
export function operatorRemoval(
  acct: Account | undefined,
  adopt: boolean,
  key: string,
  authorizedKeys: string | undefined,
): OperatorRemoval {
  if (!acct) return { kind: 'keep' };
  if (acct.name === 'root' || acct.uid === 0 || acct.uid < FIRST_REGULAR_UID || acct.uid === NOBODY_UID)
    return { kind: 'keep', why: `${acct.name} is root or a system account (uid ${acct.uid}): never removed` };
  if (acct.gecos.split(',')[0] === OPERATOR_GECOS) return { kind: 'delete', account: acct };
  const id = keyIdentity(key);
  const hasKey = authorizedKeys !== undefined && authorizedKeys.split('\n').some((l) => keyIdentity(l) === id);
  if (adopt && hasKey)
    return { kind: 'unkey', account: acct, authorizedKeys: join(acct.home, '.ssh', 'authorized_keys') };
  return { kind: 'keep', why: adopt ? undefined : `${acct.name} was not created by this tool: it stays` };
}

/** Pure: the teardown check's lines. */
export function operatorTeardownLines(r: OperatorRemoval, sudoersPresent: boolean): string[] {
  const lines: string[] = [];
  if (r.kind === 'delete')
    lines.push(`user ${r.account.name} (uid ${r.account.uid}, created by codex-k8s bootstrap; home ${r.account.home})`);
  if (r.kind === 'unkey')
    lines.push(`operator key in ${r.authorizedKeys} (user ${r.account.name} was adopted: the account stays)`);
  if (sudoersPresent) lines.push(`file ${SUDOERS_FILE}`);
  return lines;
}

async function removalNow(ctx: StepContext): Promise<OperatorRemoval> {
  const { user, key } = settings(ctx);
  const acct = await account(user);
  const ak = acct ? readIfExists(join(acct.home, '.ssh', 'authorized_keys')) : undefined;
  return operatorRemoval(acct, ctx.cfg.get('OPERATOR_ADOPT_EXISTING'), key, ak);
}

/**
 * Refuses --remove-operator before anything changes when it cannot succeed: userdel refuses an account with
 * running processes, and the one running this through sudo is such an account.
 */
export async function operatorRemovalRefusal(
  ctx: StepContext,
  o: TeardownOptions,
): Promise<OperationError | undefined> {
  if (!o.removeOperator) return undefined;
  const r = await removalNow(ctx);
  if (r.kind !== 'delete') return undefined;
  const by = process.env['SUDO_USER'];
  if (by === r.account.name)
    return new OperationError(
      `--remove-operator would remove ${by}, the account running this uninstall (through sudo); nothing was removed`,
      { hint: `run it as root or another sudo user (ssh root@<server>), or leave out --remove-operator`, exitCode: 2 },
    );
  return undefined;
}

const operatorTeardown: Teardown = {
  async check(ctx, o) {
    if (!o.removeOperator) return [];
    return operatorTeardownLines(await removalNow(ctx), existsSync(SUDOERS_FILE));
  },
  async apply(ctx, o) {
    if (!o.removeOperator) return [];
    const refused = await operatorRemovalRefusal(ctx, o);
    if (refused) throw refused;
    const r = await removalNow(ctx);
    const done: string[] = [];
    if (r.kind === 'keep' && r.why) ctx.log.detail(r.why);
    if (r.kind === 'delete') {
      const res = await run(accountCommands.remove(r.account.name, true), { allowFail: true, log: ctx.log });
      // userdel exits 12 when only the home could not be removed; the account itself is what counts here.
      if (await account(r.account.name))
        throw new OperationError(`userdel could not remove ${r.account.name}`, {
          detail: (res.stderr + res.stdout).trim(),
          hint: `log out the sessions of ${r.account.name} (who -u; loginctl terminate-user ${r.account.name}) and run the uninstall again`,
        });
      done.push(
        `removed user ${r.account.name} and its home ${r.account.home}${res.exitCode !== 0 ? ` (userdel: ${res.stderr.trim()})` : ''}`,
      );
    }
    if (r.kind === 'unkey') {
      const text = readIfExists(r.authorizedKeys) ?? '';
      const f = facts(r.authorizedKeys);
      // Renamed into place, never written through: a symlink planted there is replaced, not followed.
      await writeFileAtomic(r.authorizedKeys, withoutKey(text, ctx.cfg.get('OPERATOR_SSH_PUBKEY')), {
        mode: f?.mode ?? 0o600,
        uid: f?.uid ?? r.account.uid,
        gid: f?.gid ?? r.account.gid,
      });
      done.push(`removed the operator key from ${r.authorizedKeys} (user ${r.account.name} stays: it was adopted)`);
    }
    if (existsSync(SUDOERS_FILE)) {
      rmSync(SUDOERS_FILE, { force: true });
      done.push(`removed ${SUDOERS_FILE} (no more passwordless sudo)`);
    }
    return done;
  },
};

export const operatorPart: HostPart = {
  name: 'operator',
  guarded: true,
  files: [SUDOERS_FILE],
  check: checkOperator,
  apply: applyOperator,
  saveState: saveOperator,
  addState: saveOperator,
  afterRestore: restoreOperators,
  teardown: operatorTeardown,
};
