#!/usr/bin/env -S node --import tsx --
// The launcher: run on your laptop, from the repository root. It validates the whole configuration before
// touching anything, opens ONE multiplexed SSH connection to the server as root (host key pinned), takes
// the server lock, makes sure the pinned Node.js runtime is there, uploads this tree and the config, then
// runs bootstrap/remote/NN_*.mts in order, streaming their output. See --help and docs/runbook.md.
//
// Its parts, in the order a run meets them (bootstrap/lib/launcher/):
//   spec       the command line: flags, help, examples
//   settings   every setting checked at once, secrets prompted, the operator key compared with its public half
//   plan       --dry-run: what a run would do, from the settings alone
//   run        a real run: token and runner checks, one SSH connection, the lock, prepare, steps, summary
//   source     the commit app/ is, for the first image (a dirty app/ stops a deploying run)
//   prepare    the first round trip (lock, server state), Node.js, the upload, the settings; the lock's release
//   steps      the step loop: each step streamed, its result read from its marker line
//   login      after a guarded change: a NEW operator login confirms it, or it is rolled back
//   summary    the table at the end
//   status     --status: the one-screen status, read without the lock (lines made by lib/status.mts)
//   uninstall  --uninstall: every step's teardown, last first, after a plan and a typed confirmation
//   context    what they share: options, the run context, the remote helper
import { Logger } from '../lib/log.mts';
import { UsageError } from '../lib/errors.mts';
import { parseCli, helpText, runMain } from '../lib/cli.mts';
import { STEPS, stepNames } from '../lib/catalogue.mts';
import { selectSteps } from '../lib/state.mts';
import { NAME_WIDTH } from '../lib/launcher/context.mts';
import type { Options } from '../lib/launcher/context.mts';
import { printPlan } from '../lib/launcher/plan.mts';
import { RESTORE_STEP, realRun } from '../lib/launcher/run.mts';
import { loadSettings } from '../lib/launcher/settings.mts';
import { SPEC } from '../lib/launcher/spec.mts';
import { checkUninstallOptions } from '../lib/launcher/uninstall.mts';

async function main(argv: readonly string[], log: Logger): Promise<number> {
  const flags = parseCli(SPEC, argv);
  if (flags['help']) {
    process.stdout.write(helpText(SPEC));
    return 0;
  }
  if (flags['list']) {
    STEPS.forEach((s, i) => log.info(`${String(i + 1).padStart(2, '0')}  ${s.name.padEnd(NAME_WIDTH)} ${s.title}`));
    return 0;
  }
  const opts: Options = {
    envFile: (flags['env-file'] as string | undefined) ?? '.env',
    explicitEnvFile: flags['env-file'] !== undefined,
    dryRun: Boolean(flags['dry-run']),
    yes: Boolean(flags['yes']),
    verbose: Boolean(flags['verbose']),
    check: Boolean(flags['check']),
    status: Boolean(flags['status']),
    json: Boolean(flags['json']),
    from: flags['from'] as string | undefined,
    only:
      typeof flags['only'] === 'string'
        ? flags['only']
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : undefined,
    backup: flags['backup'] as string | undefined,
    restoreFrom: flags['restore-from'] as string | undefined,
    restoreOverwrite: Boolean(flags['restore-overwrite']),
    uninstall: Boolean(flags['uninstall']),
    confirmHost: flags['confirm-host'] as string | undefined,
    purgeData: Boolean(flags['purge-data']),
    removeOperator: Boolean(flags['remove-operator']),
  };
  if (opts.check && opts.dryRun)
    throw new UsageError(
      '--check and --dry-run exclude each other: --dry-run contacts nothing, --check connects and reads the server',
    );
  if (opts.backup !== undefined && (opts.check || opts.dryRun || opts.restoreFrom || opts.from || opts.only))
    throw new UsageError(
      '--backup runs alone: it writes a bundle and changes nothing, so --check, --dry-run, --restore-from, --from and --only do not go with it',
    );
  if (opts.restoreFrom !== undefined && (opts.check || opts.dryRun))
    throw new UsageError('--restore-from makes a run: --check and --dry-run do not go with it');
  if (opts.restoreOverwrite && opts.restoreFrom === undefined)
    throw new UsageError('--restore-overwrite goes with --restore-from');
  if (opts.status && (opts.check || opts.dryRun || opts.backup || opts.restoreFrom || opts.from || opts.only))
    throw new UsageError(
      '--status runs alone: it reads the server and GitHub and changes nothing, so --check, --dry-run, --backup, --restore-from, --from and --only do not go with it',
    );
  if (
    opts.uninstall &&
    (opts.check || opts.dryRun || opts.status || opts.backup || opts.restoreFrom || opts.from || opts.only)
  )
    throw new UsageError(
      '--uninstall runs alone: it removes every step, last first, so --check, --dry-run, --status, --backup, --restore-from, --from and --only do not go with it (take a --backup first, in its own run)',
    );
  for (const [set, flag] of [
    [opts.confirmHost !== undefined, '--confirm-host NAME'],
    [opts.purgeData, '--purge-data'],
    [opts.removeOperator, '--remove-operator'],
  ] as const)
    if (set && !opts.uninstall)
      throw new UsageError(`${flag} goes with --uninstall only; expected --uninstall ${flag}`);
  if (opts.json && !opts.check && !opts.status)
    throw new UsageError(
      '--json goes with --check (the drift report) or --status; expected --check --json or --status --json',
    );
  log.verbose = opts.verbose;
  log.stdoutForData = opts.json;
  const selected = selectSteps(stepNames(), { from: opts.from, only: opts.only });
  if (opts.restoreFrom !== undefined && !selected.includes(RESTORE_STEP))
    throw new UsageError(`--restore-from: the selected steps leave out ${RESTORE_STEP}, which restores the bundle`);
  const loaded = await loadSettings(opts, log);
  if (opts.uninstall)
    checkUninstallOptions(
      opts,
      loaded.config.get('TARGET_HOST'),
      loaded.config.get('OPERATOR_USER'),
      loaded.config.get('TARGET_ROOT_USER'),
    );
  return opts.dryRun ? printPlan(loaded, selected, log) : realRun(opts, loaded.config, selected, log);
}

if (import.meta.filename === process.argv[1]) {
  const log = new Logger();
  await runMain(SPEC, log, () => main(process.argv.slice(2), log));
}
