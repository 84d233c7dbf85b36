// The no-lockout rule: after a guarded change, NEW logins as the operator and as the launcher's own user confirm it,
// or it is rolled back.
import { asRoot, freshLoginArgs, transientSshFailure } from '../ssh.mts';
import type { Config } from '../config.mts';
import { formatJumpHost } from '../ssh_options.mts';
import { REMOTE } from '../paths.mts';
import { run } from '../exec.mts';
import type { LoginCheck } from '../step.mts';
import { pollUntil, PollTimeout } from '../poll.mts';
import { remoteStepArgv } from './context.mts';
import type { Ctx, LaunchResult, Options } from './context.mts';

/** Runs `<step> --confirm` or `--rollback` over the master connection (the one that is known to work). */
export async function runStepMode(ctx: Ctx, name: string, mode: 'confirm' | 'rollback', opts: Options) {
  return ctx.ssh.run(remoteStepArgv(ctx, name, [`--${mode}`, ...(opts.verbose ? ['--verbose'] : [])]), {
    allowFail: true,
    onStdoutLine: (l) => ctx.log.info(`    ${l}`),
    onStderrLine: (l) => ctx.log.info(`    ${l}`),
  });
}

export const LOGIN_ATTEMPTS = 30;

export const LOGIN_INTERVAL_MS = 500;

/** One login that must still work after a guarded change, and the command that proves it has root. */
export interface LoginToProve {
  user: string;
  identityFile: string;
  /** The setting that names the key, for the hint when the login fails. */
  keySetting: 'OPERATOR_SSH_KEY' | 'TARGET_ROOT_SSH_KEY';
  proof: readonly string[];
}

/**
 * The operator's login, and the launcher's own (TARGET_ROOT_USER: root, or a cloud image's sudo user), which the
 * next run needs; one entry when both are the same user with the same key.
 */
export function loginsToProve(cfg: Config, lc: LoginCheck): LoginToProve[] {
  const operator: LoginToProve = {
    user: lc.user,
    identityFile: cfg.get('OPERATOR_SSH_KEY'),
    keySetting: 'OPERATOR_SSH_KEY',
    proof: ['sudo', '-n', 'true'],
  };
  const user = cfg.get('TARGET_ROOT_USER');
  const launcher: LoginToProve = {
    user,
    identityFile: cfg.get('TARGET_ROOT_SSH_KEY'),
    keySetting: 'TARGET_ROOT_SSH_KEY',
    proof: asRoot({ user }, ['true']),
  };
  // After --uninstall --remove-operator there is no operator to log in as: the launcher's own login is what is left.
  if (lc.operatorRemoved) return [launcher];
  const same = launcher.user === operator.user && launcher.identityFile === operator.identityFile;
  return same ? [operator] : [operator, launcher];
}

/**
 * A NEW connection as `login` on `port`, its proof command run. Transient refusals (sshd re-executing, the socket
 * being re-bound) are retried, bounded; anything else fails at once.
 */
async function freshLogin(
  ctx: Ctx,
  login: LoginToProve,
  port: number,
): Promise<{ ok: boolean; where: string; last: { exitCode: number; stderr: string } }> {
  const { log } = ctx;
  const where = `${login.user}@${ctx.cfg.get('TARGET_HOST')}:${port}`;
  const jump = ctx.ssh.target.jump;
  const via = jump ? ` through the jump host ${formatJumpHost(jump)}` : '';
  log.info(
    `    login check: a new connection as ${where}${via} with ${login.identityFile}, then ${login.proof.join(' ')}`,
  );
  let last = { exitCode: 0, stderr: '' };
  const ok = await pollUntil<boolean>(
    async (i) => {
      const r = await run(
        freshLoginArgs(ctx.ssh.target, { user: login.user, port, identityFile: login.identityFile }, login.proof),
        { allowFail: true, log, timeoutSeconds: 30 },
      );
      last = r;
      if (r.exitCode === 0) {
        log.info(
          `    + a new login as ${where} works and has ${login.user === 'root' ? 'root' : 'sudo'} (attempt ${i}/${LOGIN_ATTEMPTS})`,
        );
        return { done: true };
      }
      return transientSshFailure(r.exitCode, r.stderr)
        ? { waiting: r.stderr.trim().split('\n').pop() ?? '' }
        : { done: false };
    },
    {
      attempts: LOGIN_ATTEMPTS,
      intervalSeconds: LOGIN_INTERVAL_MS / 1000,
      what: `a new login as ${where}`,
      onWait: (i, why) => log.detail(`login check attempt ${i}/${LOGIN_ATTEMPTS}: ${why}`),
    },
  ).catch((e: unknown) => {
    if (e instanceof PollTimeout) return false; // still refused after every attempt: the rollback below
    throw e;
  });
  return { ok, where, last };
}

/**
 * The no-lockout rule: after a step changed the operator account, sshd or the firewall, a NEW connection as the
 * operator, with the operator's key, must log in and run `sudo -n true`; and so must the launcher's own login
 * (loginsToProve). Success confirms the change on the server; failure rolls it back over the master connection,
 * which is still open, and fails the step with the reason.
 */
export async function proveLogin(
  ctx: Ctx,
  name: string,
  result: LaunchResult,
  lc: LoginCheck,
  opts: Options,
): Promise<LaunchResult> {
  const { log } = ctx;
  let failed: { login: LoginToProve; where: string; last: { exitCode: number; stderr: string } } | undefined;
  for (const login of loginsToProve(ctx.cfg, lc)) {
    const r = await freshLogin(ctx, login, lc.port);
    if (!r.ok) {
      failed = { login, where: r.where, last: r.last };
      break;
    }
  }
  if (!failed) {
    const c = await runStepMode(ctx, name, 'confirm', opts);
    if (c.exitCode === 0) return result;
    return {
      ...result,
      status: 'failed',
      error: `the login check passed but --confirm failed (exit ${c.exitCode}); ${lc.unit}.timer will roll the change back`,
      detail: c.stderr,
      hint: `confirm by hand within ${lc.rollbackSeconds}s: ${ctx.sshHint} ${REMOTE.base}/bootstrap/remote/${name}.mts --confirm`,
    };
  }
  const { login, where, last } = failed;
  const key = login.identityFile;
  const reason = last.stderr.trim() || `exit code ${last.exitCode}`;
  log.error(`a new login as ${where} failed after: ${lc.reasons.join('; ')}`);
  for (const line of reason.split('\n')) log.info(`    | ${line}`);
  let undone: string;
  try {
    const rb = await runStepMode(ctx, name, 'rollback', opts);
    if (rb.exitCode === 0) undone = 'the change was rolled back over the open connection';
    else {
      // A rollback that started cancelled the timer; one that never got that far left it pending. Say which.
      const pending = await ctx.ssh.run(['systemctl', 'is-active', '--quiet', `${lc.unit}.timer`], { allowFail: true });
      undone =
        pending.exitCode === 0
          ? `the rollback failed (exit ${rb.exitCode}); ${lc.unit}.timer retries it within ${lc.rollbackSeconds}s`
          : `the rollback failed (exit ${rb.exitCode}) and no timer is left to retry it: fix the cause shown above, then run ${REMOTE.base}/bootstrap/remote/${name}.mts --rollback on the server (its snapshot is kept)`;
    }
  } catch (e) {
    undone = `the server could not be reached to roll back (${(e as Error).message}); ${lc.unit}.timer rolls back within ${lc.rollbackSeconds}s`;
  }
  // The step failed by itself after a guarded change: its own error says what to fix; the login only explains the rollback.
  if (result.status === 'failed')
    return {
      ...result,
      error: `${result.error ?? 'the step failed'}; a new login as ${where} then failed too, and ${undone}`,
    };
  return {
    ...result,
    status: 'failed',
    error: `a new login as ${where} with ${login.keySetting} failed after changing the operator account, sshd or the firewall; ${undone}`,
    detail: reason,
    hint:
      login.keySetting === 'OPERATOR_SSH_KEY'
        ? `check that OPERATOR_SSH_KEY (${key}) is the private key of OPERATOR_SSH_PUBKEY (ssh-keygen -y -f ${key}) and that port ${lc.port} is reachable from here`
        : login.user === 'root'
          ? `check that root still logs in with TARGET_ROOT_SSH_KEY (${key}) on port ${lc.port} (an AllowUsers, DenyUsers or Match block); a server whose own sshd configuration says PermitRootLogin no keeps it: log in as a user with passwordless sudo instead (TARGET_ROOT_USER)`
          : `check that ${login.user} still logs in with TARGET_ROOT_SSH_KEY (${key}) on port ${lc.port} (an AllowUsers, DenyUsers or Match block) and that its sudo needs no password`,
  };
}
