// SSH through the system `ssh`: one multiplexed master connection that every later command reuses.
// The host key is pinned per target in a known_hosts file the launcher keeps (accept-new records it on the
// first connection; a later mismatch stops the run). ~/.ssh/config is honoured; extra options pass only through the
// allowlist in ssh_options.mts. A login that is not root runs every command through `sudo -n` (asRoot). A jump host
// is a ProxyCommand of our own (jumpProxyCommand), so the bastion's host key is pinned the same way.
//
// The builders (sshBaseArgs, masterArgs, commandArgs, remoteCommand, shellQuote) are pure: tests assert them.
import { mkdtempSync, mkdirSync, rmSync, readdirSync, readFileSync, writeFileSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { run, spawnStream, CommandError } from './exec.mts';
import type { RunResult, StreamOptions, StreamingProcess } from './exec.mts';
import { OperationError, UsageError } from './errors.mts';
import { readIfExists } from './fsx.mts';
import type { Logger } from './log.mts';
import { formatJumpHost, parseJumpHost } from './ssh_options.mts';
import type { JumpHost } from './ssh_options.mts';

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
  controlPath: string;
  extraOptions: readonly string[];
  /** The bastion every connection goes through (CODEXK8S_SSH_JUMP, or ~/.ssh/config's ProxyJump). */
  jump?: SshJump;
}

/** A jump host with its own key and its own pinned known_hosts file. */
export interface SshJump extends JumpHost {
  identityFile: string;
  knownHostsFile: string;
  /**
   * Where the hop's ssh writes its messages (-E): a backgrounded master (ControlPersist) sends its ProxyCommand's
   * stderr to /dev/null, and a changed bastion key would show only as "Connection closed". Set by SshSession.connect.
   */
  errorLog?: string;
}

const SAFE = /^[A-Za-z0-9_\-.,:/@=+%^]+$/;

/** POSIX shell quoting for one word of the remote command line (ssh sends one string to the remote shell). */
export function shellQuote(word: string): string {
  if (word !== '' && SAFE.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function remoteCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

export function destination(t: SshTarget): string {
  return `${t.user}@${t.host}`;
}

/** Known-hosts file for one target: per host and port, so two servers never share a pin. */
export function knownHostsPath(stateDir: string, host: string, port: number): string {
  return join(stateDir, 'known_hosts', `${host.replace(/[^A-Za-z0-9.-]/g, '_')}_${port}`);
}

/** What every connection shares: this key only, never a prompt, host keys from our own pinned file, never rewritten. */
function keyAndHostOptions(
  port: number,
  identityFile: string,
  knownHostsFile: string,
  hostKeyChecking: 'accept-new' | 'yes',
): string[] {
  return [
    '-p',
    String(port),
    '-i',
    identityFile,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    `UserKnownHostsFile=${knownHostsFile}`,
    '-o',
    `StrictHostKeyChecking=${hostKeyChecking}`,
    '-o',
    'UpdateHostKeys=no',
  ];
}

/**
 * The bastion hop as a ProxyCommand of our own, not ProxyJump: ssh starts a ProxyJump's connection with none of our
 * options, so its host key would be checked against ~/.ssh/known_hosts (or asked about) instead of our pin, and
 * BatchMode would not hold. ssh runs `exec COMMAND` through the shell after %-expansion: every word is quoted, and a
 * literal % doubled; [%h]:%p is the server as ssh resolved it (brackets for IPv6).
 */
export function jumpProxyCommand(j: SshJump, hostKeyChecking: 'accept-new' | 'yes'): string {
  const argv = [
    'ssh',
    ...keyAndHostOptions(j.port, j.identityFile, j.knownHostsFile, hostKeyChecking),
    '-o',
    'ConnectTimeout=20',
    ...(j.errorLog ? ['-E', j.errorLog] : []),
    '-W',
    '[%h]:%p',
    j.user ? `${j.user}@${j.host}` : j.host,
  ];
  return argv.map((w) => (w === '[%h]:%p' ? `'${w}'` : shellQuote(w).replaceAll('%', '%%'))).join(' ');
}

function jumpOptions(t: SshTarget, hostKeyChecking: 'accept-new' | 'yes'): string[] {
  return t.jump ? ['-o', `ProxyCommand=${jumpProxyCommand(t.jump, hostKeyChecking)}`] : [];
}

export function sshBaseArgs(t: SshTarget): string[] {
  return [
    ...keyAndHostOptions(t.port, t.identityFile, t.knownHostsFile, 'accept-new'),
    ...jumpOptions(t, 'accept-new'),
    '-o',
    `ControlPath=${t.controlPath}`,
    // ssh keeps the first value of an option: the user's (validated, lib/ssh_options.mts) before our defaults.
    ...t.extraOptions,
    '-o',
    'ConnectTimeout=20',
    '-o',
    'ServerAliveInterval=15',
    '-o',
    'ServerAliveCountMax=4',
  ];
}

/** Starts the master in the background once authenticated; it lives until `-O exit` or 10 idle minutes. */
export function masterArgs(t: SshTarget): string[] {
  return ['ssh', ...sshBaseArgs(t), '-o', 'ControlMaster=yes', '-o', 'ControlPersist=600', '-N', '-f', destination(t)];
}

/**
 * Every server-side command runs as root. A login that is not root (a cloud image's `ubuntu`) gets there through
 * `sudo -n`: never a password prompt, so a sudo that wants one fails at once (sudoRefusal says why). Inputs still
 * travel on stdin, which sudo passes through untouched.
 */
export function asRoot(t: Pick<SshTarget, 'user'>, remoteArgv: readonly string[]): readonly string[] {
  return t.user === 'root' ? remoteArgv : ['sudo', '-n', '--', ...remoteArgv];
}

export function commandArgs(t: SshTarget, remoteArgv: readonly string[]): string[] {
  return [
    'ssh',
    ...sshBaseArgs(t),
    '-o',
    'ControlMaster=no',
    destination(t),
    '--',
    remoteCommand(asRoot(t, remoteArgv)),
  ];
}

/**
 * What `sudo -n` printed when the login may not become root without a password, or has no sudo at all; undefined
 * for anything else (the command itself failed). Exit 2 at the caller: a setting or the server's sudoers is wrong.
 */
export function sudoRefusal(
  t: Pick<SshTarget, 'user'>,
  exitCode: number,
  stderr: string,
): { message: string; hint: string } | undefined {
  if (t.user === 'root') return undefined;
  const fix =
    `give ${t.user} passwordless sudo on the server (as cloud images do: ` +
    `echo '${t.user} ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/90-${t.user}; sudo chmod 440 /etc/sudoers.d/90-${t.user}), ` +
    'or set TARGET_ROOT_USER=root with a key that root accepts; nothing was changed';
  if (exitCode === 127 && /sudo: (command )?not found/.test(stderr))
    return { message: `sudo is not installed on the server, and ${t.user} is not root`, hint: fix };
  if (
    exitCode === 1 &&
    /^sudo: (a password is required|a terminal is required|sorry, you must have a tty)/m.test(stderr)
  )
    return { message: `${t.user} on the server needs a password for sudo; the bootstrap never types one`, hint: fix };
  if (exitCode === 1 && /^sudo: .*(not in the sudoers file|is not allowed to (run|execute))/m.test(stderr))
    return { message: `${t.user} on the server may not use sudo`, hint: fix };
  return undefined;
}

export interface FreshLogin {
  user: string;
  port: number;
  identityFile: string;
}

/**
 * A NEW connection, never through the master (ControlPath=none): after an sshd or firewall change only a fresh
 * login proves that the operator can still get in. The host key must be the pinned one; on another port it is
 * looked up under the name it was pinned with (HostKeyAlias).
 */
export function freshLoginArgs(t: SshTarget, login: FreshLogin, remoteArgv: readonly string[]): string[] {
  const alias = login.port === t.port ? [] : ['-o', `HostKeyAlias=${t.port === 22 ? t.host : `[${t.host}]:${t.port}`}`];
  return [
    'ssh',
    // The host keys (the server's, the bastion's) were pinned by the master: a fresh login never accepts a new one.
    ...keyAndHostOptions(login.port, login.identityFile, t.knownHostsFile, 'yes'),
    ...jumpOptions(t, 'yes'),
    '-o',
    'ControlMaster=no',
    '-o',
    'ControlPath=none',
    ...t.extraOptions,
    '-o',
    'ConnectTimeout=5',
    ...alias,
    `${login.user}@${t.host}`,
    '--',
    remoteCommand(remoteArgv),
  ];
}

/**
 * The ProxyJump that ssh's own configuration (~/.ssh/config, or `configFile`) gives for this server, read with
 * `ssh -G`, which prints the resolved configuration and connects nowhere. The launcher then makes that hop itself,
 * pinned (jumpProxyCommand). A chain of hops is refused (exit 2): one jump host is supported.
 */
export async function jumpFromSshConfig(
  host: string,
  port: number,
  user: string,
  configFile?: string,
): Promise<JumpHost | undefined> {
  const r = await run(['ssh', '-G', ...(configFile ? ['-F', configFile] : []), '-p', String(port), `${user}@${host}`], {
    allowFail: true,
    timeoutSeconds: 15,
  });
  if (r.exitCode !== 0) return undefined; // a configuration ssh cannot read fails the connection itself, with its words
  const value = /^proxyjump (.+)$/m.exec(r.stdout)?.[1]?.trim();
  if (!value || value.toLowerCase() === 'none') return undefined;
  const j = parseJumpHost(value);
  if (!j.ok)
    throw new UsageError(
      `ProxyJump for ${host} in ${configFile ?? '~/.ssh/config'}: ${j.why}; expected ${j.expected} (or set CODEXK8S_SSH_JUMP)`,
    );
  return j.value;
}

/** ssh failures worth another attempt: sshd re-executing after a reload, the socket being re-bound. */
export function transientSshFailure(exitCode: number, stderr: string): boolean {
  return (
    exitCode === 255 &&
    /Connection refused|Connection reset|Connection closed|kex_exchange_identification|timed out|banner exchange/i.test(
      stderr,
    )
  );
}

export function checkArgs(t: SshTarget): string[] {
  return ['ssh', ...sshBaseArgs(t), '-O', 'check', destination(t)];
}

export function exitArgs(t: SshTarget): string[] {
  return ['ssh', ...sshBaseArgs(t), '-O', 'exit', destination(t)];
}

export function explainSshFailure(t: SshTarget, stderr: string): OperationError {
  const j = t.jump;
  if (j && stderr.includes(j.knownHostsFile) && /REMOTE HOST IDENTIFICATION HAS CHANGED|has changed/i.test(stderr)) {
    const alias = j.port === 22 ? j.host : `[${j.host}]:${j.port}`;
    return new OperationError(
      `the SSH host key of the jump host ${formatJumpHost(j)} differs from the one pinned in ${j.knownHostsFile}. ` +
        'Either the bastion was rebuilt, or something is intercepting the connection. The run stopped before sending anything.',
      {
        hint: `if (and only if) the bastion was rebuilt, forget its old key: ssh-keygen -R '${alias}' -f ${j.knownHostsFile}`,
        detail: stderr.trim(),
      },
    );
  }
  if (j && new RegExp(`@${j.host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: Permission denied`).test(stderr)) {
    return new OperationError(`SSH login on the jump host ${formatJumpHost(j)} with ${j.identityFile} was refused`, {
      hint: `check CODEXK8S_SSH_JUMP and CODEXK8S_SSH_JUMP_KEY: ssh -i ${j.identityFile} -p ${j.port} ${j.user ? `${j.user}@` : ''}${j.host} true`,
      detail: stderr.trim(),
    });
  }
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|host key for .* has changed/i.test(stderr)) {
    return new OperationError(
      `the SSH host key of ${t.host}:${t.port} differs from the one pinned in ${t.knownHostsFile}. ` +
        'Either the server was rebuilt, or something is intercepting the connection. The run stopped before sending anything.',
      {
        hint: `if (and only if) you rebuilt this server, forget the old key: ssh-keygen -R '${t.port === 22 ? t.host : `[${t.host}]:${t.port}`}' -f ${t.knownHostsFile}`,
        detail: stderr.trim(),
      },
    );
  }
  if (/Permission denied/i.test(stderr)) {
    return new OperationError(`SSH login as ${t.user}@${t.host}:${t.port} with ${t.identityFile} was refused`, {
      hint: `check that the key is in /${t.user === 'root' ? 'root' : 'home/' + t.user}/.ssh/authorized_keys on the server: ssh -i ${t.identityFile} -p ${t.port} ${destination(t)} true`,
      detail: stderr.trim(),
    });
  }
  return new OperationError(`cannot connect to ${t.host}:${t.port} over SSH`, {
    hint: `try by hand: ssh -v -i ${t.identityFile} -p ${t.port} ${destination(t)} true`,
    detail: stderr.trim(),
  });
}

export interface RemoteRunOptions {
  input?: string | Buffer | Readable;
  allowFail?: boolean;
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
  timeoutSeconds?: number;
  /** How to show the command in errors, when argv is long (a script sent with bash -c). */
  display?: readonly string[];
}

const CONTROL_DIR_PREFIX = 'ck8s-ssh-';
const LAUNCHER_PID_FILE = 'launcher.pid';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, as another user's process.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A launcher killed hard (SIGKILL, a closed laptop lid that never came back) leaves its ControlPersist master
 * running, and with it its connection, which keeps the server lock alive. Close the masters whose launcher is
 * gone and remove their directories: ours only (our uid), and only those that name their launcher.
 */
export async function sweepOrphanMasters(log: Logger, base: string = tmpdir()): Promise<string[]> {
  const swept: string[] = [];
  let names: string[];
  try {
    names = readdirSync(base).filter((n) => n.startsWith(CONTROL_DIR_PREFIX));
  } catch {
    return swept;
  }
  for (const name of names) {
    const dir = join(base, name);
    let pid: number;
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || st.uid !== process.getuid?.()) continue;
      pid = Number(readFileSync(join(dir, LAUNCHER_PID_FILE), 'utf8').trim());
    } catch {
      continue;
    }
    if (!Number.isSafeInteger(pid) || pid <= 0 || processAlive(pid)) continue;
    await run(['ssh', '-F', '/dev/null', '-o', `ControlPath=${join(dir, 'cm')}`, '-O', 'exit', 'orphan'], {
      allowFail: true,
      timeoutSeconds: 15,
    });
    rmSync(dir, { recursive: true, force: true });
    log.info(`closed the SSH connection that a killed launcher (pid ${pid}) left open (${dir})`);
    swept.push(dir);
  }
  return swept;
}

/** One multiplexed connection to the server. All remote work goes through `run` or `stream`, as root (asRoot). */
export class SshSession {
  readonly target: SshTarget;
  private readonly log: Logger;
  private controlDir: string | undefined;
  private open = false;

  private constructor(target: SshTarget, log: Logger, controlDir: string) {
    this.target = target;
    this.log = log;
    this.controlDir = controlDir;
  }

  static async connect(opts: Omit<SshTarget, 'controlPath'> & { log: Logger }): Promise<SshSession> {
    await sweepOrphanMasters(opts.log);
    // A private directory for the control socket: only we can reach the master through it. launcher.pid tells a
    // later run whether the master is an orphan (its launcher was killed before it could close it).
    const controlDir = mkdtempSync(join(tmpdir(), CONTROL_DIR_PREFIX));
    writeFileSync(join(controlDir, LAUNCHER_PID_FILE), `${process.pid}\n`, { mode: 0o600 });
    const target: SshTarget = {
      ...opts,
      controlPath: join(controlDir, 'cm'),
      ...(opts.jump ? { jump: { ...opts.jump, errorLog: join(controlDir, 'jump.log') } } : {}),
    };
    mkdirSync(join(opts.knownHostsFile, '..'), { recursive: true, mode: 0o700 });
    const s = new SshSession(target, opts.log, controlDir);
    const r = await run(masterArgs(target), { allowFail: true, log: opts.log, timeoutSeconds: 60 });
    if (r.exitCode !== 0) {
      const hop = target.jump?.errorLog ? (readIfExists(target.jump.errorLog) ?? '') : '';
      s.cleanupDir();
      throw explainSshFailure(target, hop + r.stderr);
    }
    s.open = true;
    return s;
  }

  async run(remoteArgv: readonly string[], opts: RemoteRunOptions = {}): Promise<RunResult> {
    if (!this.open) throw new Error('SSH session is closed');
    const { display, ...runOpts } = opts;
    const r = await run(commandArgs(this.target, remoteArgv), {
      ...runOpts,
      allowFail: true,
      log: display ? undefined : this.log,
    });
    if (display) this.log.detail(`$ ssh ${destination(this.target)} ${display.join(' ')}`);
    // 255 is ssh's own failure (connection, host key); anything else is the remote command's exit code.
    if (r.exitCode === 255 && /^(ssh:|Host key|@@@|mux_client|Control socket|kex_|Connection)/m.test(r.stderr)) {
      throw explainSshFailure(this.target, r.stderr);
    }
    if (r.exitCode !== 0 && !opts.allowFail)
      throw new CommandError({ ...r, argv: display ?? remoteArgv }, 'remote command failed');
    return r;
  }

  /**
   * A remote command whose stdin or stdout is a byte stream (a backup coming down, a dump going up) over the same
   * connection. The caller reads `done` for the exit code; 255 there is ssh's own failure.
   */
  stream(
    remoteArgv: readonly string[],
    opts: Pick<StreamOptions, 'stdin' | 'onStderrLine'> & { display?: readonly string[] } = {},
  ): StreamingProcess {
    if (!this.open) throw new Error('SSH session is closed');
    this.log.detail(`$ ssh ${destination(this.target)} ${(opts.display ?? remoteArgv).join(' ')}`);
    return spawnStream(commandArgs(this.target, remoteArgv), { stdin: opts.stdin, onStderrLine: opts.onStderrLine });
  }

  async close(): Promise<void> {
    if (this.open) {
      this.open = false;
      await run(exitArgs(this.target), { allowFail: true, timeoutSeconds: 15 });
    }
    this.cleanupDir();
  }

  private cleanupDir(): void {
    if (this.controlDir) rmSync(this.controlDir, { recursive: true, force: true });
    this.controlDir = undefined;
  }
}
