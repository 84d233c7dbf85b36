// The no-lockout rule: after a guarded change, a NEW login as the operator confirms it, or it is rolled back.
import { freshLoginArgs, transientSshFailure } from '../ssh.mts';
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

/**
 * The no-lockout rule: after a step changed the operator account, sshd or the firewall, a NEW connection as the operator, with the
 * operator's key, must log in and run `sudo -n true`. Transient refusals (sshd re-executing, the socket being
 * re-bound) are retried, bounded; anything else fails at once. Success confirms the change on the server;
 * failure rolls it back over the master connection, which is still open, and fails the step with the reason.
 */
export async function proveLogin(
  ctx: Ctx,
  name: string,
  result: LaunchResult,
  lc: LoginCheck,
  opts: Options,
): Promise<LaunchResult> {
  const { log, cfg } = ctx;
  const key = cfg.get('OPERATOR_SSH_KEY');
  const where = `${lc.user}@${cfg.get('TARGET_HOST')}:${lc.port}`;
  log.info(`    login check: a new connection as ${where} with ${key}, then sudo -n true`);
  let last = { exitCode: 0, stderr: '' };
  const ok = await pollUntil<boolean>(
    async (i) => {
      const r = await run(
        freshLoginArgs(ctx.ssh.target, { user: lc.user, port: lc.port, identityFile: key }, ['sudo', '-n', 'true']),
        { allowFail: true, log, timeoutSeconds: 30 },
      );
      last = r;
      if (r.exitCode === 0) {
        log.info(`    + a new login as ${where} works and has sudo (attempt ${i}/${LOGIN_ATTEMPTS})`);
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
  if (ok) {
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
    error: `a new login as ${where} with OPERATOR_SSH_KEY failed after changing the operator account, sshd or the firewall; ${undone}`,
    detail: reason,
    hint: `check that OPERATOR_SSH_KEY (${key}) is the private key of OPERATOR_SSH_PUBKEY (ssh-keygen -y -f ${key}) and that port ${lc.port} is reachable from here`,
  };
}
