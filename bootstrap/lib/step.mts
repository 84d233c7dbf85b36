// The remote step runner. Every bootstrap/remote/NN_name.mts calls runStep() with its check() and apply():
//   check()  read-only; returns drift lines ("user codex does not exist"), empty when converged
//   apply()  fixes the drift; returns what it changed
// The runner does check -> apply (only when drifting) -> check again; drift left after apply is a failure
// that names what is still wrong. `--check` prints the drift and changes nothing (exit 0 clean, 1 drift).
//
// Run by the launcher, a step receives CODEXK8S_RUN_ID, CODEXK8S_LOCK_TOKEN and CODEXK8S_TOOL_COMMIT (the checkout
// it came from, journaled with the pins); run by hand, it takes the server lock itself. Either way it journals its
// result and appends to /var/log/codex-k8s-bootstrap/.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './exec.mts';
import { loadConfig, configHash } from './config.mts';
import type { Config } from './config.mts';
import { Logger, color } from './log.mts';
import { parseCli, helpText, runMain, reportError } from './cli.mts';
import type { CliSpec } from './cli.mts';
import { UsageError, OperationError, EXIT_LOCKED } from './errors.mts';
import { stepInfo } from './catalogue.mts';
import { REMOTE, RESULT_MARKER } from './paths.mts';
import { readJournal, writeJournal, recordStep, markInterrupted, forgetStep } from './state.mts';
import { pinVersions } from './versions.mts';
import { parseOwner, parseLockAnswer, explainHeldLock, explainRefusedLock, describeTakeover } from './lock.mts';
import { mask } from './redact.mts';

export interface StepContext {
  readonly cfg: Config;
  readonly log: Logger;
  readonly runId: string;
  /** What apply() wants the caller to know besides its change lines; converge copies it into the result. */
  readonly notes?: StepNotes;
}

/**
 * A change that could lock the operator out (sshd, firewall). The step has snapshotted the previous state and
 * scheduled a dead-man rollback (`unit`, due in `rollbackSeconds`); the launcher proves a NEW login works, then
 * runs the step with --confirm, or with --rollback when the login fails.
 */
export interface LoginCheck {
  user: string;
  port: number;
  rollbackSeconds: number;
  unit: string;
  /** What changed, for the message when the login fails. */
  reasons: string[];
  /** --uninstall --remove-operator took the operator away: only the launcher's own login is proven. */
  operatorRemoved?: true;
}

export interface StepNotes {
  loginCheck?: LoginCheck;
  /** The list apply() pushes its change lines into (changeList): kept when apply fails half-way. */
  applied?: string[];
}

/**
 * The list an apply() collects its change lines in. Registered with the step, so a failure half-way still
 * journals and prints what was already changed instead of an empty list.
 */
export function changeList(ctx: StepContext): string[] {
  const list: string[] = [];
  if (ctx.notes) ctx.notes.applied = list;
  return list;
}

/**
 * A one-off action of a step (--confirm, --rollback, --backup-stream): no lock and no journal by the runner; a mode
 * that needs the settings loads them from `envFile` itself (loadStepConfig), so a rollback works without them.
 */
export type StepMode = (log: Logger, opts: { envFile: string }) => Promise<number>;

/**
 * Journals which checkout converged the step (the launcher passes its git HEAD; a run by hand has none and leaves
 * the record as it is), so an older checkout is refused later instead of moving pins back.
 */
function recordTool(commit: string | undefined, journalPath: string = REMOTE.journal): void {
  if (commit === undefined || !/^[0-9a-f]{40}$/.test(commit)) return;
  const j = readJournal(journalPath);
  writeJournal(journalPath, { ...j, tool: { commit, pins: pinVersions(), at: new Date().toISOString() } });
}

/** The server's settings for a step or a mode; bad ones are a UsageError (exit 2). */
export function loadStepConfig(envFile: string, log: Logger): Config {
  const loaded = loadConfig({ envFile, explicitEnvFile: true, side: 'server' });
  for (const w of loaded.warnings) log.warn(w);
  if (loaded.problems.length > 0) throw new UsageError(loaded.problems);
  return loaded.config;
}

export interface StepImpl {
  check(ctx: StepContext): Promise<string[]>;
  apply(ctx: StepContext, drift: readonly string[]): Promise<string[]>;
  /** Handlers of the modes the catalogue lists for this step, by flag name. */
  modes?: Readonly<Record<string, StepMode>>;
  /** What `--uninstall` takes away of this step's work; a step without one leaves nothing behind of its own. */
  teardown?: Teardown;
}

/** What `--uninstall` keeps unless told otherwise. */
export interface TeardownOptions {
  /** --purge-data: the PostgreSQL dumps kept on the server go too. */
  readonly purgeData: boolean;
  /** --remove-operator: the operator account, its home and its sudoers drop-in go too. */
  readonly removeOperator: boolean;
}

/**
 * Teardown is convergence to absence: check() lists what of ours is still there (one line each, read-only),
 * apply() removes it and returns what it removed; the runner checks again and fails on anything left.
 */
export interface Teardown {
  check(ctx: StepContext, o: TeardownOptions): Promise<string[]>;
  apply(ctx: StepContext, o: TeardownOptions): Promise<string[]>;
}

export interface StepResult {
  status: 'unchanged' | 'changed' | 'failed';
  changes: string[];
  drift: string[];
  seconds: number;
  error?: string;
  /** The failed command's stderr (masked), when a command failed. */
  detail?: string;
  /** What a human should do next, when the step knows. */
  hint?: string;
  /** Set when apply() made a change that a fresh login must confirm (see LoginCheck). */
  loginCheck?: LoginCheck;
  /** A failed step's exit code: 2 when it refused a setting and changed nothing, else 1. */
  exitCode?: number;
}

export function stepCliSpec(name: string): CliSpec {
  const info = stepInfo(name);
  const modes = info.modes ?? [];
  return {
    name: `${name}.mts`,
    usage: `${REMOTE.base}/bootstrap/remote/${name}.mts [--check${modes.map((m) => ` | --${m.name}`).join('')} | --uninstall [--check] [--purge-data] [--remove-operator]] [--env-file PATH] [--verbose]`,
    summary: `${info.title}\nRuns on the server as root. Idempotent: checks first, changes only what drifts, checks again.`,
    flags: [
      { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
      {
        name: 'check',
        type: 'boolean',
        description: 'print what drifts from the wanted state and change nothing (exit 0 clean, 1 drift)',
      },
      {
        name: 'env-file',
        type: 'string',
        value: 'PATH',
        description: `configuration to read (default ${REMOTE.envFile})`,
      },
      { name: 'verbose', short: 'v', type: 'boolean', description: 'print every command it runs' },
      {
        name: 'uninstall',
        type: 'boolean',
        description:
          "remove what this step made (with --check: list it and change nothing); the launcher's --uninstall runs every step's, last step first",
      },
      {
        name: 'purge-data',
        type: 'boolean',
        description: 'with --uninstall: the PostgreSQL dumps kept on the server go too',
      },
      {
        name: 'remove-operator',
        type: 'boolean',
        description: 'with --uninstall: the operator account, its home and sudoers drop-in go too',
      },
      ...modes.map((m) => ({ name: m.name, type: 'boolean' as const, description: m.description })),
    ],
    sections: [
      { title: 'Checks', body: info.checks.map((c) => `- ${c}`).join('\n') },
      { title: 'Changes', body: info.changes.map((c) => `- ${c}`).join('\n') },
      {
        title: 'Files',
        body: `reads   ${REMOTE.envFile} (written by the launcher)\njournal ${REMOTE.journal}\nlogs    ${REMOTE.logDir}/<run-id>.log\nlock    ${REMOTE.lockDir} (taken unless the launcher holds it)`,
      },
      {
        title: 'Exit codes',
        body: `0 converged (or clean with --check)\n1 failed, or drift found with --check\n2 bad flag or configuration\n${EXIT_LOCKED} another run holds the lock`,
      },
      { title: 'Example', body: `sudo ${REMOTE.base}/bootstrap/remote/${name}.mts --check` },
    ],
  };
}

/** Entry point of a step file: `await runStep('10_harden_host', { check, apply })`. */
export async function runStep(
  name: string,
  impl: StepImpl,
  argv: readonly string[] = process.argv.slice(2),
): Promise<never> {
  const spec = stepCliSpec(name);
  const log = new Logger();
  return runMain(spec, log, async () => {
    const flags = parseCli(spec, argv);
    if (flags['help']) {
      process.stdout.write(helpText(spec));
      return 0;
    }
    log.verbose = Boolean(flags['verbose']);
    // Modes run before the configuration is read and without the lock: a rollback must work while the
    // launcher holds the lock, and even when the settings file is broken.
    const envFile = (flags['env-file'] as string | undefined) ?? REMOTE.envFile;
    const mode = (stepInfo(name).modes ?? []).find((m) => flags[m.name]);
    if (mode) {
      const handler = impl.modes?.[mode.name];
      if (!handler) throw new Error(`${name} lists the mode --${mode.name} in the catalogue but implements no handler`);
      return handler(log, { envFile });
    }
    const uninstall = Boolean(flags['uninstall']);
    const teardownOpts: TeardownOptions = {
      purgeData: Boolean(flags['purge-data']),
      removeOperator: Boolean(flags['remove-operator']),
    };
    if (!uninstall && (teardownOpts.purgeData || teardownOpts.removeOperator))
      throw new UsageError(
        `--${teardownOpts.purgeData ? 'purge-data' : 'remove-operator'} goes with --uninstall only; expected --uninstall ${teardownOpts.purgeData ? '--purge-data' : '--remove-operator'}`,
      );
    const config = loadStepConfig(envFile, log);

    const fromLauncher = process.env['CODEXK8S_LAUNCHER'] === '1';
    const runId = process.env['CODEXK8S_RUN_ID'] ?? newRunId();
    const ctx: StepContext = { cfg: config, log, runId };

    if (uninstall && flags['check']) {
      // The teardown plan: read-only, like --check.
      const left = (await impl.teardown?.check(ctx, teardownOpts)) ?? [];
      for (const l of left) log.info(`  - ${l}`);
      log.info(left.length === 0 ? `${name}: nothing to remove` : `${name}: ${left.length} to remove`);
      return left.length === 0 ? 0 : 1;
    }
    if (flags['check']) {
      // Read-only: no lock, no journal, no log file.
      const drift = await impl.check(ctx);
      for (const d of drift) log.info(`  ~ ${d}`);
      log.info(
        drift.length === 0 ? color.green(`${name}: converged`) : color.yellow(`${name}: ${drift.length} drift(s)`),
      );
      return drift.length === 0 ? 0 : 1;
    }

    const lock = await holdLock(
      name,
      process.env['CODEXK8S_LOCK_TOKEN'],
      runId,
      config.get('CODEXK8S_LOCK_STALE_AFTER'),
      log,
    );
    log.setFile(join(REMOTE.logDir, `${runId}.log`));
    if (!fromLauncher) log.info(color.bold(`==> ${name}`));
    const result = uninstall
      ? await removeStep(name, impl.teardown, ctx, teardownOpts)
      : await converge(name, impl, ctx, configHash(config));
    if (!uninstall && result.status !== 'failed') recordTool(process.env['CODEXK8S_TOOL_COMMIT']);
    await lock.release();
    if (!fromLauncher) {
      log.stepFooter({ status: result.status, changed: result.changes.length, seconds: result.seconds });
      if (result.loginCheck) printConfirmHint(name, result.loginCheck, log);
    }
    if (result.status === 'failed') {
      reportError(
        spec,
        log,
        new OperationError(`${name} failed: ${result.error ?? 'unknown error'}`, {
          detail: result.detail,
          hint: result.hint,
        }),
      );
    }
    process.stdout.write(`${RESULT_MARKER} ${mask(JSON.stringify(result))}\n`);
    return result.status === 'failed' ? (result.exitCode ?? 1) : 0;
  });
}

/** Run by hand, nobody checks the login for you: say how to keep the change before the timer undoes it. */
function printConfirmHint(name: string, lc: LoginCheck, log: Logger): void {
  const due = new Date(Date.now() + lc.rollbackSeconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  log.warn(
    `${lc.reasons.join('; ')}: this change is rolled back automatically at ${due} (${lc.unit}.timer) unless confirmed.`,
  );
  log.warn(`From a NEW terminal, check that you can still log in, then confirm:`);
  log.warn(`  ssh -p ${lc.port} ${lc.user}@<this server> sudo ${REMOTE.base}/bootstrap/remote/${name}.mts --confirm`);
  log.warn(`To undo it now instead: ${REMOTE.base}/bootstrap/remote/${name}.mts --rollback`);
}

/** check -> apply -> check, journaled. Never throws: a failure is a result. */
export async function converge(
  name: string,
  impl: StepImpl,
  baseCtx: StepContext,
  cfgHash: string,
  journalPath: string = REMOTE.journal,
): Promise<StepResult> {
  const notes: StepNotes = {};
  const ctx: StepContext = { ...baseCtx, notes };
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const seconds = () => Math.round((performance.now() - started) / 100) / 10;
  writeJournal(
    journalPath,
    recordStep(readJournal(journalPath), name, {
      status: 'running',
      startedAt,
      changes: [],
      configHash: cfgHash,
      runId: ctx.runId,
    }),
  );
  let changes: string[] = [];
  let drift: string[] = [];
  try {
    drift = await impl.check(ctx);
    if (drift.length > 0) {
      for (const d of drift) ctx.log.info(`  ~ ${d}`);
      changes = await impl.apply(ctx, drift);
      for (const c of changes) ctx.log.info(`  + ${c}`);
      const left = await impl.check(ctx);
      if (left.length > 0) throw new OperationError(`still drifting after apply: ${left.join('; ')}`);
    }
    const status = changes.length > 0 || drift.length > 0 ? 'changed' : 'unchanged';
    const endedAt = new Date().toISOString();
    writeJournal(
      journalPath,
      recordStep(readJournal(journalPath), name, {
        status: 'ok',
        startedAt,
        endedAt,
        seconds: seconds(),
        changes,
        configHash: cfgHash,
        runId: ctx.runId,
      }),
    );
    return { status, changes, drift, seconds: seconds(), ...resultNotes(notes) };
  } catch (e) {
    return failed(e, {
      name,
      ctx,
      notes,
      changes,
      drift,
      startedAt,
      seconds: seconds(),
      journalPath,
      configHash: cfgHash,
    });
  }
}

/** The notes that travel in the result (the change list is already its `changes`). */
function resultNotes(notes: StepNotes): Omit<StepNotes, 'applied'> {
  const { applied: _applied, ...rest } = notes;
  return rest;
}

/**
 * --uninstall: the step's teardown as check -> apply -> check. Removed, the step leaves the journal (a later run
 * makes it again from scratch); a failure half-way is journaled as failed, so a bootstrap after it repeats the
 * step and a second --uninstall removes what is left. Never throws, like converge.
 */
export async function removeStep(
  name: string,
  td: Teardown | undefined,
  baseCtx: StepContext,
  o: TeardownOptions,
  journalPath: string = REMOTE.journal,
): Promise<StepResult> {
  const notes: StepNotes = {};
  const ctx: StepContext = { ...baseCtx, notes };
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const seconds = () => Math.round((performance.now() - started) / 100) / 10;
  let changes: string[] = [];
  let present: string[] = [];
  try {
    present = td ? await td.check(ctx, o) : [];
    if (present.length > 0 && td) {
      for (const d of present) ctx.log.info(`  - ${d}`);
      changes = await td.apply(ctx, o);
      for (const c of changes) ctx.log.info(`  + ${c}`);
      const left = await td.check(ctx, o);
      if (left.length > 0) throw new OperationError(`still present after the removal: ${left.join('; ')}`);
    }
    writeJournal(journalPath, forgetStep(readJournal(journalPath), name));
    return {
      status: changes.length > 0 ? 'changed' : 'unchanged',
      changes,
      drift: present,
      seconds: seconds(),
      ...resultNotes(notes),
    };
  } catch (e) {
    const configHash = readJournal(journalPath).steps[name]?.configHash ?? '';
    return failed(
      e,
      { name, ctx, notes, changes, drift: present, startedAt, seconds: seconds(), journalPath, configHash },
      'uninstall: ',
    );
  }
}

/**
 * A step (or its teardown) that threw: what apply() had already changed (its change list), the error masked and
 * journaled as failed, and the result the launcher reads. A refusal of a setting (exit 2) stays exit 2; a failure
 * after a guarded change still carries the login check, so the launcher proves the login or rolls it back.
 */
function failed(
  e: unknown,
  at: {
    name: string;
    ctx: StepContext;
    notes: StepNotes;
    changes: string[];
    drift: string[];
    startedAt: string;
    seconds: number;
    journalPath: string;
    configHash: string;
  },
  prefix = '',
): StepResult {
  const { name, ctx, notes, drift, journalPath } = at;
  let changes = at.changes;
  if (changes.length === 0 && notes.applied && notes.applied.length > 0) {
    changes = [...notes.applied];
    for (const c of changes) ctx.log.info(`  + ${c}`);
  }
  const err = e as OperationError;
  const message = mask(`${prefix}${err.message ?? String(e)}`);
  const detail = err.detail
    ? mask(err.detail)
    : e instanceof OperationError
      ? undefined
      : mask((e as Error).stack ?? '');
  writeJournal(
    journalPath,
    recordStep(readJournal(journalPath), name, {
      status: 'failed',
      startedAt: at.startedAt,
      endedAt: new Date().toISOString(),
      seconds: at.seconds,
      changes,
      configHash: at.configHash,
      runId: ctx.runId,
      error: message,
    }),
  );
  return {
    status: 'failed',
    changes,
    drift,
    seconds: at.seconds,
    error: message,
    detail: detail || undefined,
    hint: err.hint ? mask(err.hint) : undefined,
    exitCode: e instanceof OperationError && e.exitCode === 2 ? 2 : 1,
    ...resultNotes(notes),
  };
}

export function newRunId(): string {
  return (
    new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z') +
    '-' +
    randomBytes(2).toString('hex')
  );
}

/** The lock's one implementation (bash, shared with the launcher); this file ships next to this module. */
const LOCK_HELPER = fileURLToPath(new URL('./remote_helpers.sh', import.meta.url));

/**
 * With the launcher's token: verify it still owns the lock and record this step (and its pid) in it. Without:
 * take the lock for this step, as this process; a lock whose holder is gone is taken over, and the steps its dead
 * run left `running` are marked interrupted.
 */
async function holdLock(
  step: string,
  token: string | undefined,
  runId: string,
  staleAfter: number,
  log: Logger,
): Promise<{ release(): Promise<void> }> {
  const dir = REMOTE.lockDir;
  if (token) {
    const r = await run(['bash', LOCK_HELPER, 'lock-step', dir, token, step, String(process.pid)], { allowFail: true });
    const answer = r.stdout.trim().split('\n')[0] ?? '';
    if (r.exitCode === 0 && answer === 'ok') return { async release() {} };
    if (answer === 'gone')
      throw new OperationError(`the launcher's lock ${dir} is gone; refusing to run ${step} unlocked`, {
        exitCode: EXIT_LOCKED,
      });
    if (answer === 'not-ours')
      throw new OperationError(
        `the lock ${dir} belongs to another run (${parseOwner(r.stdout).holder}); refusing to run ${step}`,
        { exitCode: EXIT_LOCKED },
      );
    if (answer.startsWith('refused ')) {
      const { message, hint } = explainRefusedLock(answer.slice('refused '.length), '');
      throw new OperationError(message, { hint, exitCode: EXIT_LOCKED });
    }
    throw new OperationError(`could not record ${step} in the lock ${dir}`, { detail: r.stderr || r.stdout });
  }
  const mine = randomBytes(8).toString('hex');
  const holder = `${process.env['SUDO_USER'] ?? 'root'}@${hostname()} (by hand, pid ${process.pid})`;
  const r = await run(
    ['bash', LOCK_HELPER, 'lock-acquire', dir, mine, holder, runId, step, String(staleAfter), String(process.pid)],
    { allowFail: true },
  );
  if (r.exitCode !== 0 && r.exitCode !== EXIT_LOCKED)
    throw new OperationError(`could not take the lock ${dir}`, { detail: r.stderr || r.stdout });
  const answer = parseLockAnswer(r.stdout);
  if (answer.kind === 'refused' || answer.kind === 'held') {
    const { message, hint } =
      answer.kind === 'refused' ? explainRefusedLock(answer.reason, '') : explainHeldLock(answer, staleAfter, '');
    throw new OperationError(message, { hint, exitCode: EXIT_LOCKED });
  }
  if (answer.kind === 'took-over') {
    log.warn(describeTakeover(answer));
    const { journal, steps } = markInterrupted(
      readJournal(REMOTE.journal),
      answer.previous.run,
      new Date().toISOString(),
    );
    if (steps.length > 0) {
      writeJournal(REMOTE.journal, journal);
      log.warn(
        `journal: ${steps.join(', ')} marked interrupted (run ${answer.previous.run || 'unknown'} died while it ran)`,
      );
    }
  }
  const release = async () => {
    await run(['bash', LOCK_HELPER, 'lock-release', dir, mine], { allowFail: true });
  };
  process.once('SIGINT', () => {
    void release().finally(() => process.exit(130));
  });
  return { release };
}
