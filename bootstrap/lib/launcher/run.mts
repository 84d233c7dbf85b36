// A real run: the token and runner checks, one SSH connection, the server lock, prepare, the steps, the summary;
// Ctrl-C and SIGTERM release the lock.
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { configHash } from '../config.mts';
import type { Config } from '../config.mts';
import { Logger, color, formatSeconds } from '../log.mts';
import { UsageError, OperationError } from '../errors.mts';
import { stepNames } from '../catalogue.mts';
import { checkPrerequisites } from '../state.mts';
import type { ServerState } from '../state.mts';
import { SshSession, asRoot, jumpFromSshConfig, knownHostsPath, shellQuote } from '../ssh.mts';
import type { SshJump } from '../ssh.mts';
import { formatJumpHost, parseJumpHost } from '../ssh_options.mts';
import { REMOTE } from '../paths.mts';
import { newRunId } from '../step.mts';
import { clientFromConfig } from '../github/client.mts';
import { preflightToken } from '../github/preflight.mts';
import { webhookEvents } from '../github/wiring.mts';
import { checkRunnerFreshness } from '../runners.mts';
import { SELF, enforcesRunnerFreshness, helper, usesGitHub } from './context.mts';
import type { Ctx, Options } from './context.mts';
import { begin, finish, prepare, serverState } from './prepare.mts';
import { checkSteps, formatCheckReport } from './check.mts';
import { appSource, checkoutHead, commitOf, refuseOlderCheckout } from './source.mts';
import { runSteps } from './steps.mts';
import { printSummary } from './summary.mts';
import { statusRun } from './status.mts';
import {
  TEARDOWN_ORDER,
  confirmTeardown,
  formatTeardownPlan,
  keptLines,
  runTeardown,
  teardownPlan,
} from './uninstall.mts';
import { backupDir, backupKey, takeBackup } from './backup.mts';
import { discardRestore, openBundle, uploadRestore } from './restore.mts';
import type { BundleKey } from '../backup/crypt.mts';

/**
 * The bastion: CODEXK8S_SSH_JUMP, else the ProxyJump that ~/.ssh/config gives for the server; either way with its
 * own key and its host key pinned in a known_hosts file of its own.
 */
async function jumpHost(cfg: Config, host: string, port: number, user: string): Promise<SshJump | undefined> {
  const setting = cfg.maybe('CODEXK8S_SSH_JUMP');
  const parsed = setting ? parseJumpHost(setting) : undefined;
  const j = parsed?.ok ? parsed.value : await jumpFromSshConfig(host, port, user);
  if (!j) return undefined;
  return {
    ...j,
    identityFile: cfg.get('CODEXK8S_SSH_JUMP_KEY'),
    knownHostsFile: knownHostsPath(cfg.get('CODEXK8S_HOST_STATE_DIR'), j.host, j.port),
  };
}

/** The step that restores a bundle uploaded by --restore-from. */
export const RESTORE_STEP = '40_postgres';

export async function realRun(opts: Options, cfg: Config, selected: readonly string[], log: Logger): Promise<number> {
  const started = performance.now();
  const runId = newRunId();
  log.setFile(join(cfg.get('CODEXK8S_HOST_LOG_DIR'), `${runId}.log`));
  const host = cfg.get('TARGET_HOST');
  const port = cfg.get('TARGET_PORT');
  const user = cfg.get('TARGET_ROOT_USER');
  const key = cfg.get('TARGET_ROOT_SSH_KEY');
  const extra = cfg.maybe('CODEXK8S_SSH_EXTRA_OPTS') ?? [];
  log.info(
    color.bold(`codex-k8s staging bootstrap: ${user}@${host}:${port}, mode ${cfg.get('CODEXK8S_MODE')}, run ${runId}`),
  );
  log.info(color.dim(`log: ${log.filePath}`));
  // Before anything is contacted: a deploy from an app/ that is not a commit stops the run (exit 2).
  // (--check and --backup build nothing: a dirty app/ only means the upload goes without source.json.)
  const head = await checkoutHead(log);
  const generated = await appSource(
    opts.check || opts.backup || opts.status || opts.uninstall ? [] : selected,
    head,
    log,
  );
  // --backup: the directory and the key are settled before the connection (a wrong recipient is exit 2 here).
  const backup = opts.backup ? { dir: backupDir(opts.backup), key: await backupKey(cfg, opts.yes) } : undefined;
  // --restore-from: the whole bundle is decrypted and checked before the connection (exit 2 when it is not right).
  const bundle = opts.restoreFrom ? await openBundle(opts.restoreFrom, cfg, opts.yes, log) : undefined;
  try {
    return await connected();
  } finally {
    bundle?.close();
  }

  async function connected(): Promise<number> {
    // Before the first connection: a token that cannot do what the selected steps need stops the run here (exit 2).
    // (--status reads GitHub with what the token can do, and says so line by line: it refuses nothing.)
    if (!backup && !opts.status && usesGitHub(selected)) {
      webhookEvents(cfg);
      log.info(
        color.bold(
          `==> GitHub token: what ${cfg.get('CODEXK8S_GITHUB_REPO')} needs (${cfg.get('CODEXK8S_GITHUB_API_URL')})`,
        ),
      );
      const gh = clientFromConfig(cfg, log);
      await preflightToken(cfg, log, gh);
      // --check reports instead of refusing: a runner past the limit is a warning there.
      // --uninstall removes the runners: their age does not matter.
      if (!opts.uninstall) await checkRunnerFreshness(cfg, log, gh, !opts.check && enforcesRunnerFreshness(selected));
    }

    // After every check that can refuse the run (exit 2): `ssh -G` reads ~/.ssh/config for a ProxyJump.
    const jump = await jumpHost(cfg, host, port, user);
    if (jump) log.info(`via the jump host ${formatJumpHost(jump)} (its host key pinned in ${jump.knownHostsFile})`);
    // How a hint reaches the server by hand: "<sshHint> COMMAND" runs COMMAND as root, as the run does (asRoot).
    const sshHint = [
      'ssh',
      ...(jump ? ['-J', formatJumpHost(jump)] : []),
      '-p',
      String(port),
      '-i',
      key,
      ...extra,
      `${user}@${host}`,
      ...asRoot({ user }, []),
    ]
      .map(shellQuote)
      .join(' ');
    const ssh = await SshSession.connect({
      host,
      port,
      user,
      identityFile: key,
      knownHostsFile: knownHostsPath(cfg.get('CODEXK8S_HOST_STATE_DIR'), host, port),
      extraOptions: extra,
      ...(jump ? { jump } : {}),
      log,
    });
    const toolCommit = commitOf(head);
    const ctx: Ctx = {
      cfg,
      log,
      ssh,
      runId,
      lockToken: randomBytes(12).toString('hex'),
      sshHint,
      ...(toolCommit ? { toolCommit } : {}),
    };
    let locked = false;
    // Ctrl-C / SIGTERM: release the lock, close the connection, exit 130. The main flow keeps running meanwhile
    // (its remote command dies with the connection); whatever it ends with, it waits for this cleanup.
    // A second Ctrl-C kills the launcher at once.
    let interrupted: Promise<never> | undefined;
    const onSignal = () => {
      log.error('interrupted; releasing the server lock');
      interrupted = (async () => {
        if (locked)
          await helper(ctx, ['lock-release', REMOTE.lockDir, ctx.lockToken], { allowFail: true }).catch(
            () => undefined,
          );
        await ssh.close().catch(() => undefined);
        process.exit(130);
      })();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const outcome = await runLocked().then(
      (code) => ({ code }),
      (error: unknown) => ({ error }),
    );
    if (interrupted) await interrupted;
    if ('error' in outcome) throw outcome.error;
    return outcome.code;

    async function runLocked(): Promise<number> {
      try {
        // --status takes no lock: it reads, and it answers while a run is going on.
        if (opts.status) return await statusRun(ctx, opts.json);
        const answer = await begin(ctx);
        locked = true;
        try {
          const server = serverState(ctx, answer);
          // An older checkout would move pins back (and --check would upload its older tree): exit 2, unchanged.
          if (!opts.uninstall && !backup) await refuseOlderCheckout(server.journal.tool, log);
          if (opts.check) return await liveCheck(server);
          if (backup) return await backupRun(server, backup);
          if (opts.uninstall) return await uninstallRun(server);
          const pre = checkPrerequisites(stepNames(), selected, server.journal, configHash(cfg));
          for (const w of pre.warnings) log.warn(w);
          if (pre.problems.length > 0) throw new UsageError(pre.problems);
          await prepare(ctx, server, generated);
          if (bundle) await uploadRestore(ctx, bundle, opts.restoreOverwrite);
          const results = await runSteps(ctx, selected, opts);
          if (bundle && results.get(RESTORE_STEP)?.exitCode === 2) await discardRestore(ctx);
          const finalJournal = await finish(ctx);
          locked = false;
          printSummary(ctx, selected, results, finalJournal, (performance.now() - started) / 1000);
          const failed = selected.find((n) => results.get(n)?.status === 'failed');
          if (failed) {
            const r = results.get(failed);
            // A restore resumes with its bundle: 40_postgres finds the upload again, or a refusal removed it.
            const restore = bundle ? ` --restore-from ${shellQuote(bundle.source)}` : '';
            const resume = `${SELF}${opts.explicitEnvFile ? ` --env-file ${opts.envFile}` : ''}${restore} --from ${failed}`;
            throw new OperationError(`step ${failed} failed: ${r?.error ?? 'see the output above'}`, {
              hint: `${r?.hint ?? 'fix the cause'}, then resume with: ${resume}`,
              // A step that crashed before reporting gave no detail: its stderr is the best we have.
              detail: r?.detail ?? (r?.crashed ? r.stderrTail : undefined),
              // A step that refused a setting of the server's (exit 2) changed nothing: the launcher says the same.
              exitCode: r?.exitCode === 2 ? 2 : 1,
            });
          }
          return 0;
        } finally {
          if (locked) await helper(ctx, ['lock-release', REMOTE.lockDir, ctx.lockToken], { allowFail: true });
          locked = false;
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        if (!interrupted) await ssh.close();
      }
    }

    /** --backup: the bundle down the connection into DIR; the server's settings file stays as it is. */
    async function backupRun(server: ServerState, b: { dir: string; key: BundleKey }): Promise<number> {
      const settingsFile = await prepare(ctx, server, generated, 'check');
      await takeBackup(ctx, b.dir, settingsFile, b.key);
      await finish(ctx);
      locked = false;
      return 0;
    }

    /** --uninstall: the plan, the typed confirmation, every step's teardown (last first), the tool's directories. */
    async function uninstallRun(server: ServerState): Promise<number> {
      const o = { purgeData: opts.purgeData, removeOperator: opts.removeOperator };
      const settingsFile = await prepare(ctx, server, generated, 'teardown');
      const rows = await teardownPlan(ctx, o, settingsFile);
      log.info(color.bold(`Uninstall plan for ${host} (nothing removed yet)`));
      for (const line of formatTeardownPlan(rows, keptLines(o, cfg.get('OPERATOR_USER')))) log.info(line);
      const unreadable = rows.filter((r) => r.status === 'error').map((r) => r.name);
      if (unreadable.length > 0)
        throw new OperationError(
          `the teardown plan of ${unreadable.join(', ')} could not be read: nothing was removed`,
          {
            hint: `run ${SELF} --check to see why, fix it, then --uninstall again`,
          },
        );
      await confirmTeardown(ctx, opts);
      const results = await runTeardown(ctx, opts, o, settingsFile);
      await helper(ctx, ['lock-release', REMOTE.lockDir, ctx.lockToken], { allowFail: true });
      locked = false;
      const failed = TEARDOWN_ORDER.find((n) => results.get(n)?.status === 'failed');
      if (failed) {
        const r = results.get(failed);
        throw new OperationError(`the teardown of ${failed} failed: ${r?.error ?? 'see the output above'}`, {
          hint: `${r?.hint ?? 'fix the cause'}, then finish with: ${SELF}${opts.explicitEnvFile ? ` --env-file ${opts.envFile}` : ''} --uninstall (it removes what is left)`,
          detail: r?.detail ?? (r?.crashed ? r.stderrTail : undefined),
        });
      }
      const removed = [...results.values()].reduce((n, r) => n + r.changes.length, 0);
      const sshPort = results.get('10_harden_host')?.loginCheck?.port;
      log.info('');
      log.info(
        color.bold(
          `Uninstalled: ${removed} thing(s) removed from ${host} in ${formatSeconds((performance.now() - started) / 1000)}`,
        ),
      );
      if (sshPort !== undefined && sshPort !== port)
        log.info(
          `  sshd listens on ${sshPort} again (the server's own configuration): set TARGET_PORT=${sshPort} for the next run`,
        );
      log.info(
        `  a fresh bootstrap of this server: ${SELF}${opts.explicitEnvFile ? ` --env-file ${opts.envFile}` : ''}`,
      );
      return 0;
    }

    /** --check: every selected step's check (prerequisites not required: a missing one shows as drift). */
    async function liveCheck(server: ServerState): Promise<number> {
      const settingsFile = await prepare(ctx, server, generated, 'check');
      const report = await checkSteps(ctx, selected, settingsFile);
      await finish(ctx);
      locked = false;
      log.info(color.bold('Check (nothing was changed on the server)'));
      for (const line of formatCheckReport(report)) log.info(line);
      if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return report.converged ? 0 : 1;
    }
  }
}
