// sshd: key-only logins through a drop-in that sorts before cloud-init's 50-cloud-init.conf (for sshd the FIRST
// value of a keyword wins, so 00-codex-k8s.conf beats a later `PasswordAuthentication yes`). What counts is the
// effective configuration (`sshd -T`), not our file: a candidate of the whole configuration is built in a
// private directory and must pass `sshd -t` and give the wanted `sshd -T` values before anything is moved in.
// sshd is reloaded, never restarted: a reload re-executes the listener and keeps every open session.
import { mkdtempSync, mkdirSync, readdirSync, copyFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { StepContext, Teardown } from '../step.mts';
import type { Logger } from '../log.mts';
import { run } from '../exec.mts';
import { OperationError } from '../errors.mts';
import { readIfExists, writeFileAtomic } from '../fsx.mts';
import { checkFile, ensureFile, succeeds, systemctl } from './part.mts';
import type { HostPart, ManagedFile } from './part.mts';

export const SSHD = '/usr/sbin/sshd';
export const SSHD_MAIN = '/etc/ssh/sshd_config';
export const SSHD_DIR = '/etc/ssh/sshd_config.d';
export const SSHD_DROPIN = `${SSHD_DIR}/00-codex-k8s.conf`;
export const INCLUDE_LINE = `Include ${SSHD_DIR}/*.conf`;
/**
 * Ubuntu 24.04 starts sshd through ssh.socket, and a generator writes the socket's addresses from sshd_config
 * into /run/systemd/generator/ssh.socket.d/addresses.conf. A file of the same name in /etc wins over it
 * (it is also where Ubuntu's own upgrade puts a migrated Port).
 */
export const SOCKET_DROPIN = '/etc/systemd/system/ssh.socket.d/addresses.conf';

/**
 * Root's SSH login as the drop-in sets it: keys only, unless the server's own configuration is stricter. Ours comes
 * first and so wins: it must never loosen an image's or an admin's `PermitRootLogin no`.
 */
export type RootLogin = 'prohibit-password' | 'forced-commands-only' | 'no';

export interface SshdWanted {
  port: number;
  maxAuthTries: number;
  rootLogin: RootLogin;
}

/** The root login to write, from what the configuration says without our drop-in (sshd -T; undefined: unknown). */
export function rootLoginWanted(theirs: string | undefined): RootLogin {
  return theirs === 'no' || theirs === 'forced-commands-only' ? theirs : 'prohibit-password';
}

async function sshdWanted(ctx: StepContext, main: string): Promise<SshdWanted> {
  const theirs = await withCandidate(main, undefined, async (cand) =>
    (await effective(cand)).eff?.get('permitrootlogin'),
  );
  return {
    port: ctx.cfg.get('CODEXK8S_SSH_PORT'),
    maxAuthTries: ctx.cfg.get('CODEXK8S_SSH_MAX_AUTH_TRIES'),
    rootLogin: rootLoginWanted(theirs?.[0]),
  };
}

export function renderSshdDropin(w: SshdWanted): string {
  return [
    '# Managed by codex-k8s bootstrap (10_harden_host). Edits are overwritten on the next run.',
    "# Named 00- so that it is read before cloud-init's 50-cloud-init.conf: for sshd the first value wins.",
    `Port ${w.port}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    `PermitRootLogin ${w.rootLogin}`,
    `MaxAuthTries ${w.maxAuthTries}`,
    '',
  ].join('\n');
}

export function sshdDropin(w: SshdWanted): ManagedFile {
  return { path: SSHD_DROPIN, content: renderSshdDropin(w), mode: 0o644 };
}

const INCLUDE_RE = /^\s*Include\s+\/etc\/ssh\/sshd_config\.d\/\*\.conf\s*$/im;

export function hasInclude(main: string): boolean {
  return INCLUDE_RE.test(main);
}

/** The main file with the Include on top (where Debian and Ubuntu have it), so the drop-ins come first. */
export function withInclude(main: string): string {
  if (hasInclude(main)) return main;
  return `# Added by codex-k8s bootstrap: read the drop-ins first (the first value of a keyword wins).\n${INCLUDE_LINE}\n\n${main}`;
}

/** The main file of a candidate configuration: the same text, with the drop-in directory replaced by `dir`. */
export function candidateMain(main: string, dir: string): string {
  return withInclude(main).replace(new RegExp(INCLUDE_RE.source, 'gim'), `Include ${dir}/*.conf`);
}

/** `sshd -T` output: lower-case keyword -> values (Port may repeat). */
export function parseSshdT(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(' ');
    if (i <= 0) continue;
    const k = line.slice(0, i).toLowerCase();
    m.set(k, [...(m.get(k) ?? []), line.slice(i + 1).trim()]);
  }
  return m;
}

/** What the effective configuration gets wrong; "without-password" is the old name of prohibit-password. */
export function effectiveDrift(eff: Map<string, string[]>, w: SshdWanted): string[] {
  const want: Array<[string, string, string]> = [
    ['passwordauthentication', 'PasswordAuthentication', 'no'],
    ['kbdinteractiveauthentication', 'KbdInteractiveAuthentication', 'no'],
    ['permitrootlogin', 'PermitRootLogin', w.rootLogin],
    ['maxauthtries', 'MaxAuthTries', String(w.maxAuthTries)],
  ];
  const drift: string[] = [];
  for (const [key, name, value] of want) {
    const got = (eff.get(key) ?? []).map((v) => (v === 'without-password' ? 'prohibit-password' : v)).join(' ');
    if (got !== value) drift.push(`${name} is ${got || 'unset'}, want ${value} (sshd -T)`);
  }
  const ports = eff.get('port') ?? [];
  if (ports.join(' ') !== String(w.port))
    drift.push(`sshd listens on port ${ports.join(', ') || 'none'}, want ${w.port} (sshd -T)`);
  return drift;
}

export function renderSocketDropin(port: number): string {
  return [
    '# Managed by codex-k8s bootstrap (10_harden_host): ssh.socket listens where sshd_config says.',
    '[Socket]',
    'ListenStream=',
    `ListenStream=0.0.0.0:${port}`,
    `ListenStream=[::]:${port}`,
    '',
  ].join('\n');
}

/** Ports of `systemctl show ssh.socket -p Listen --value` ("[::]:22 (Stream)" per line). */
export function parseSocketListen(text: string): number[] {
  return [...new Set([...text.matchAll(/:(\d+) \(Stream\)/g)].map((m) => Number(m[1])))].sort((a, b) => a - b);
}

export const sshCommands = {
  test: (config: string) => [SSHD, '-t', '-f', config],
  dump: (config: string = SSHD_MAIN) => [SSHD, '-T', '-f', config],
  socketListen: () => ['systemctl', 'show', 'ssh.socket', '-p', 'Listen', '--value'],
  /** A Port change under socket activation: the socket must be re-bound; the service keeps its sessions. */
  socketRebind: () => [systemctl.daemonReload(), systemctl.restart('ssh.socket')],
  reload: () => systemctl.reload('ssh.service'),
};

/**
 * sshd -t/-T refuse to run without the privilege separation directory, which only a running ssh.service
 * creates (socket activation on Ubuntu 24.04 may not have started it yet when run from the console).
 */
function ensurePrivsepDir(): void {
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}

async function effective(config: string = SSHD_MAIN): Promise<{ eff?: Map<string, string[]>; error?: string }> {
  ensurePrivsepDir();
  const r = await run(sshCommands.dump(config), { allowFail: true });
  return r.exitCode === 0 ? { eff: parseSshdT(r.stdout) } : { error: (r.stderr || r.stdout).trim() };
}

async function socketActive(): Promise<boolean> {
  return succeeds(systemctl.isActive('ssh.socket'));
}

async function socketPorts(): Promise<number[]> {
  return parseSocketListen((await run(sshCommands.socketListen(), { allowFail: true })).stdout);
}

async function check(ctx: StepContext): Promise<string[]> {
  const main = readIfExists(SSHD_MAIN) ?? '';
  const w = await sshdWanted(ctx, main);
  const drift: string[] = [];
  const f = checkFile(sshdDropin(w));
  if (f) drift.push(f);
  if (!hasInclude(main)) drift.push(`${SSHD_MAIN} does not include ${SSHD_DIR}/*.conf`);
  const { eff, error } = await effective();
  if (!eff) drift.push(`sshd -T fails: ${error}`);
  else drift.push(...effectiveDrift(eff, w));
  if (await socketActive()) {
    const ports = await socketPorts();
    if (ports.join(',') !== String(w.port))
      drift.push(`ssh.socket listens on ${ports.join(', ') || 'nothing'}, want ${w.port}`);
  }
  return drift;
}

/**
 * Validates the whole configuration as it would be: the main file (with the Include), every drop-in there now,
 * and ours, in a private directory. sshd -t must accept it and sshd -T must give the wanted values, or nothing
 * is moved into place.
 */
async function validateCandidate(w: SshdWanted, main: string, log: Logger): Promise<void> {
  await withCandidate(main, renderSshdDropin(w), async (mainCand) => {
    const t = await run(sshCommands.test(mainCand), { allowFail: true, log });
    if (t.exitCode !== 0) {
      throw new OperationError(
        `sshd -t refused the new configuration; ${SSHD_DROPIN} and ${SSHD_MAIN} were left as they were`,
        {
          detail: (t.stderr + t.stdout).trim(),
          hint: `fix what sshd reports (a file in ${SSHD_DIR} or ${SSHD_MAIN}; check with: sshd -t)`,
        },
      );
    }
    const { eff, error } = await effective(mainCand);
    if (!eff) throw new OperationError('sshd -T failed on the candidate configuration', { detail: error });
    const left = effectiveDrift(eff, w);
    if (left.length > 0) {
      throw new OperationError(
        `even with ${SSHD_DROPIN} in place sshd would not have the wanted settings: ${left.join('; ')}`,
        {
          hint: `a setting before the Include line in ${SSHD_MAIN} wins over the drop-ins; move it below the Include or remove it`,
        },
      );
    }
  });
}

/**
 * Runs `fn` on a private copy of the whole configuration (its main file's path): the main file with the Include,
 * every drop-in there now but ours, and `ours` in our drop-in's place (left out when undefined).
 */
async function withCandidate<T>(
  main: string,
  ours: string | undefined,
  fn: (mainCandidate: string) => Promise<T>,
): Promise<T> {
  ensurePrivsepDir();
  const dir = mkdtempSync(join('/etc/ssh', '.codex-k8s-candidate-'));
  try {
    const dropins = join(dir, 'sshd_config.d');
    mkdirSync(dropins, { mode: 0o755 });
    for (const name of readdirSafe(SSHD_DIR))
      if (name.endsWith('.conf') && join(SSHD_DIR, name) !== SSHD_DROPIN)
        copyFileSync(join(SSHD_DIR, name), join(dropins, name));
    if (ours !== undefined) writeFileSync(join(dropins, '00-codex-k8s.conf'), ours, { mode: 0o644 });
    const mainCand = join(dir, 'sshd_config');
    writeFileSync(mainCand, candidateMain(main, dropins), { mode: 0o644 });
    return await fn(mainCand);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

async function apply(ctx: StepContext): Promise<string[]> {
  const main = readIfExists(SSHD_MAIN) ?? '';
  const w = await sshdWanted(ctx, main);
  const changes: string[] = [];
  const dropinDrifts = checkFile(sshdDropin(w)) !== undefined;
  let changedConfig = false;
  const now = await effective();
  const effDrifts = !now.eff || effectiveDrift(now.eff, w).length > 0;
  // The candidate check also explains an effective drift our files cannot fix (a setting above the Include).
  if (dropinDrifts || !hasInclude(main) || effDrifts) {
    await validateCandidate(w, main, ctx.log);
    if (await ensureFile(sshdDropin(w))) {
      changes.push(
        `${SSHD_DROPIN}: Port ${w.port}, PasswordAuthentication no, KbdInteractiveAuthentication no, PermitRootLogin ${w.rootLogin}, MaxAuthTries ${w.maxAuthTries}`,
      );
      changedConfig = true;
    }
    if (!hasInclude(main)) {
      await writeFileAtomic(SSHD_MAIN, withInclude(main), {
        mode: 0o644,
        uid: 0,
        gid: 0,
        validate: async (tmp) => {
          const r = await run(sshCommands.test(tmp), { allowFail: true, log: ctx.log });
          if (r.exitCode !== 0)
            throw new OperationError(`sshd -t refused ${SSHD_MAIN} with the Include added`, { detail: r.stderr });
        },
      });
      changes.push(`${SSHD_MAIN} includes ${SSHD_DIR}/*.conf`);
      changedConfig = true;
    }
  }
  if (changedConfig) {
    if (await succeeds(systemctl.isActive('ssh.service'))) {
      await run(sshCommands.reload(), { log: ctx.log });
      changes.push('sshd reloaded (open sessions are kept)');
    }
  }
  if (await socketActive()) {
    const ports = await socketPorts();
    if (ports.join(',') !== String(w.port)) {
      mkdirSync(join(SOCKET_DROPIN, '..'), { recursive: true, mode: 0o755 });
      await ensureFile({ path: SOCKET_DROPIN, content: renderSocketDropin(w.port), mode: 0o644 });
      for (const argv of sshCommands.socketRebind()) await run(argv, { log: ctx.log });
      changes.push(`ssh.socket listens on ${w.port} (${SOCKET_DROPIN}, socket restarted; sessions are kept)`);
    }
  }
  return changes;
}

/** After a rollback restored the files: re-bind the socket when it listens elsewhere, reload sshd. */
async function afterRestore(_dir: string, log: Logger): Promise<string[]> {
  const done: string[] = [];
  await run(systemctl.daemonReload(), { log });
  const { eff } = await effective();
  const port = eff?.get('port')?.[0];
  if ((await socketActive()) && port && (await socketPorts()).join(',') !== port) {
    await run(systemctl.restart('ssh.socket'), { log });
    done.push(`ssh.socket re-bound to ${port}`);
  }
  if (await succeeds(systemctl.isActive('ssh.service'))) {
    await run(sshCommands.reload(), { log });
    done.push('sshd reloaded with the restored configuration');
  }
  return done;
}

// --- teardown -------------------------------------------------------------------------------------------
// Our drop-in goes, and the ssh.socket drop-in when our apply wrote it (its header says so; Ubuntu's upgrade
// may have put its own file of that name there, which stays). The Include line apply may have added on top of
// sshd_config stays: it only reads sshd_config.d/*.conf, which Debian and Ubuntu include anyway, and editing
// the main file again is a risk for no gain.

const SOCKET_DROPIN_HEADER = '# Managed by codex-k8s bootstrap (10_harden_host)';

/** Pure: is this ssh.socket drop-in the one renderSocketDropin wrote? */
export function isOurSocketDropin(text: string | undefined): boolean {
  return text !== undefined && text.startsWith(SOCKET_DROPIN_HEADER);
}

/** Pure: the teardown check's lines. */
export function sshdTeardownLines(f: { dropin: boolean; socketDropin: boolean }): string[] {
  return [
    ...(f.dropin ? [`file ${SSHD_DROPIN}`] : []),
    ...(f.socketDropin ? [`file ${SOCKET_DROPIN} (ssh.socket addresses)`] : []),
  ];
}

function sshdTeardownFacts(): { dropin: boolean; socketDropin: boolean } {
  return {
    dropin: readIfExists(SSHD_DROPIN) !== undefined,
    socketDropin: isOurSocketDropin(readIfExists(SOCKET_DROPIN)),
  };
}

/** The first Port of an `sshd -T` dump, when there is one. */
export function portOf(eff: Map<string, string[]> | undefined): number | undefined {
  const p = Number(eff?.get('port')?.[0]);
  return Number.isInteger(p) && p > 0 && p < 65536 ? p : undefined;
}

/** The port sshd listens on now, as `sshd -T` says (after a teardown: the distribution's or the admin's). */
export async function effectivePort(): Promise<number | undefined> {
  return portOf((await effective()).eff);
}

/**
 * The configuration as it would be without our drop-in must pass `sshd -t` and give a port (`sshd -T`), or
 * nothing is removed. Returns that port: the one to prove a login on after the removal.
 */
export async function validateRemoval(log?: Logger): Promise<number> {
  const main = readIfExists(SSHD_MAIN) ?? '';
  return withCandidate(main, undefined, async (mainCand) => {
    const t = await run(sshCommands.test(mainCand), { allowFail: true, log });
    if (t.exitCode !== 0)
      throw new OperationError(
        `sshd -t refuses the configuration without ${SSHD_DROPIN}; nothing was removed (sshd would not start after it)`,
        {
          detail: (t.stderr + t.stdout).trim(),
          hint: `fix what sshd reports in ${SSHD_MAIN} or another file in ${SSHD_DIR}, then run the uninstall again`,
          exitCode: 2,
        },
      );
    const { eff, error } = await effective(mainCand);
    const port = portOf(eff);
    if (port === undefined)
      throw new OperationError(
        `sshd -T gives no port for the configuration without ${SSHD_DROPIN}; nothing was removed`,
        { detail: error, exitCode: 2 },
      );
    return port;
  });
}

const sshdTeardown: Teardown = {
  async check() {
    return sshdTeardownLines(sshdTeardownFacts());
  },
  async apply(ctx) {
    const f = sshdTeardownFacts();
    const done: string[] = [];
    if (!f.dropin && !f.socketDropin) return done;
    // The whole candidate first: a configuration sshd refuses is never left behind.
    const port = await validateRemoval(ctx.log);
    if (f.dropin) {
      rmSync(SSHD_DROPIN, { force: true });
      if (await succeeds(systemctl.isActive('ssh.service'))) {
        await run(sshCommands.reload(), { log: ctx.log });
        done.push(`removed ${SSHD_DROPIN}; sshd reloaded (open sessions are kept; it listens on ${port})`);
      } else done.push(`removed ${SSHD_DROPIN} (sshd listens on ${port} when it starts)`);
    }
    // Socket activation: the generator writes the socket's addresses from sshd_config again on daemon-reload. The
    // socket is re-bound (like apply's port change) when our drop-in goes or it listens elsewhere; the ports are
    // read before the daemon-reload, which changes what systemctl shows but not what is bound.
    const active = await socketActive();
    const bound = active ? await socketPorts() : [];
    if (f.socketDropin) rmSync(SOCKET_DROPIN, { force: true });
    if (active && (f.socketDropin || bound.join(',') !== String(port))) {
      for (const argv of sshCommands.socketRebind()) await run(argv, { log: ctx.log });
      done.push(
        `${f.socketDropin ? `removed ${SOCKET_DROPIN}; ` : ''}ssh.socket re-bound to ${port} (sessions are kept)`,
      );
    } else if (f.socketDropin) {
      await run(systemctl.daemonReload(), { log: ctx.log });
      done.push(`removed ${SOCKET_DROPIN}; systemd reloaded (daemon-reload)`);
    }
    return done;
  },
};

export const sshdPart: HostPart = {
  name: 'sshd',
  guarded: true,
  files: [SSHD_DROPIN, SSHD_MAIN, SOCKET_DROPIN],
  check,
  apply,
  afterRestore,
  teardown: sshdTeardown,
};
