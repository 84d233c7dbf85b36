// --uninstall: teardown with a plan and a typed confirmation. Every step's own teardown (`<step> --uninstall`,
// lib/step.mts removeStep: check -> remove -> check) runs last step first, so what a step relies on goes after it:
// GitHub's objects, then ARC (whose controller deregisters the scale set), the service, PostgreSQL (a final dump
// is kept), k3s through its own uninstall script, then the host's hardening (a NEW login proves the server is
// still reachable, or the sshd/firewall removal is rolled back). The tool's own directories go last.
import { dirname } from 'node:path';
import { color, stripAnsi } from '../log.mts';
import { OperationError, UsageError } from '../errors.mts';
import { STEPS } from '../catalogue.mts';
import type { TeardownOptions } from '../step.mts';
import { REMOTE } from '../paths.mts';
import { KEPT_DUMPS_DIR } from '../backup/server.mts';
import { canPrompt, readLine } from '../prompt.mts';
import { remoteStepArgv } from './context.mts';
import { lastError } from './check.mts';
import type { Ctx, LaunchResult, Options } from './context.mts';
import { runSteps } from './steps.mts';

/** The steps in teardown order: the reverse of the run order. */
export const TEARDOWN_ORDER: readonly string[] = STEPS.map((s) => s.name).reverse();

/**
 * The tool's own directories, removed after every step's teardown succeeded. The logs stay: they are the record of
 * what was made and removed (and /var/log is where an operator looks for it).
 */
export const TOOL_DIRS: readonly string[] = [
  REMOTE.base,
  dirname(REMOTE.envFile),
  REMOTE.stateDir,
  dirname(REMOTE.compileCache),
];

export interface TeardownRow {
  name: string;
  /** remove: something to take away; none: nothing of this step is there; error: its plan could not be read. */
  status: 'remove' | 'none' | 'error';
  lines: string[];
  error?: string;
}

/** Pure: the flags a step's teardown gets. */
export function teardownArgs(o: TeardownOptions): string[] {
  return ['--uninstall', ...(o.purgeData ? ['--purge-data'] : []), ...(o.removeOperator ? ['--remove-operator'] : [])];
}

/**
 * Pure: one step's `--uninstall --check` output as a row. The step prints `  - LINE` per thing it would remove and
 * ends with `NAME: nothing to remove` (exit 0) or `NAME: N to remove` (exit 1); anything else is an error.
 */
export function parseTeardownCheck(name: string, exitCode: number, stdout: string, stderr: string): TeardownRow {
  const lines = stripAnsi(stdout).split('\n');
  const items = lines.filter((l) => /^\s*- /.test(l)).map((l) => l.replace(/^\s*- /, ''));
  if (exitCode === 0 && lines.some((l) => l.trim() === `${name}: nothing to remove`))
    return { name, status: 'none', lines: [] };
  if (exitCode === 1 && lines.some((l) => new RegExp(`^${name}: \\d+ to remove$`).test(l.trim())))
    return { name, status: 'remove', lines: items };
  return { name, status: 'error', lines: items, error: lastError(stderr) ?? `its plan exited with code ${exitCode}` };
}

/** Pure: what stays on the server after the teardown, by the options. */
export function keptLines(o: TeardownOptions, operator: string): string[] {
  return [
    o.purgeData
      ? `nothing of PostgreSQL: --purge-data removes ${KEPT_DUMPS_DIR} too`
      : `PostgreSQL: a final dump of the database in ${KEPT_DUMPS_DIR} (0600; --purge-data removes it)`,
    o.removeOperator
      ? `the operator ${operator} goes too (--remove-operator)`
      : `the operator ${operator}, its key and its sudo (--remove-operator removes them)`,
    'the packages installed by 10_harden_host (nftables, fail2ban, unattended-upgrades): other software may use them',
    `the logs in ${REMOTE.logDir}/ (the record of what was made and removed)`,
  ];
}

/** Pure: the plan as the terminal shows it. */
export function formatTeardownPlan(rows: readonly TeardownRow[], kept: readonly string[]): string[] {
  const w = Math.max(...rows.map((r) => r.name.length));
  const out: string[] = [];
  for (const r of rows) {
    const mark =
      r.status === 'remove' ? color.yellow('remove') : r.status === 'none' ? color.dim('nothing') : color.red('error');
    out.push(`  ${r.name.padEnd(w)}  ${mark}${r.status === 'error' ? `  ${r.error}` : ''}`);
    for (const l of r.lines) out.push(`  ${' '.repeat(w)}    - ${l}`);
  }
  out.push(`  then the tool's own directories: ${TOOL_DIRS.join(', ')}`);
  out.push('Kept:');
  for (const k of kept) out.push(`  = ${k}`);
  return out;
}

/** Reads every step's teardown plan over the open connection (read-only). */
export async function teardownPlan(ctx: Ctx, o: TeardownOptions, settingsFile: string): Promise<TeardownRow[]> {
  const rows: TeardownRow[] = [];
  ctx.log.info(color.bold(`==> uninstall plan: ${TEARDOWN_ORDER.length} step(s), read-only`));
  for (const name of TEARDOWN_ORDER) {
    const r = await ctx.ssh.run(
      remoteStepArgv(ctx, name, [...teardownArgs(o), '--check', '--env-file', settingsFile]),
      {
        allowFail: true,
        onStdoutLine: (l) => ctx.log.detail(`    ${l}`),
        onStderrLine: (l) => ctx.log.detail(`    ${l}`),
      },
    );
    rows.push(parseTeardownCheck(name, r.exitCode, r.stdout, r.stderr));
  }
  return rows;
}

/** The typed confirmation: TARGET_HOST on a terminal, or --yes with --confirm-host naming it (checked up front). */
export async function confirmTeardown(ctx: Ctx, opts: Options): Promise<void> {
  const host = ctx.cfg.get('TARGET_HOST');
  if (opts.yes) return; // --confirm-host was compared with TARGET_HOST before anything was contacted
  const typed = await readLine(`Type the host name (${host}) to remove all of the above: `);
  if (typed !== host) throw new UsageError(`the typed host name "${typed}" is not ${host}: nothing was removed`);
}

/** Before anything is contacted: the options of --uninstall that can refuse the run (exit 2). */
export function checkUninstallOptions(opts: Options, targetHost: string, operator: string, loginUser: string): void {
  if (opts.yes && opts.confirmHost === undefined)
    throw new UsageError(
      `--uninstall --yes needs --confirm-host ${targetHost}: a teardown without a prompt still names the server it removes`,
    );
  if (opts.confirmHost !== undefined && opts.confirmHost !== targetHost)
    throw new UsageError(
      `--confirm-host ${opts.confirmHost}: the settings name the server ${targetHost} (TARGET_HOST); nothing was contacted`,
    );
  if (!opts.yes && !canPrompt())
    throw new UsageError(
      `--uninstall asks for the host name to be typed, and there is no terminal; expected --yes --confirm-host ${targetHost}`,
    );
  if (opts.removeOperator && operator === loginUser)
    throw new UsageError(
      `--remove-operator: OPERATOR_USER ${operator} is also TARGET_ROOT_USER, the account the launcher logs in as; removing it would lock this tool out (log in as root, or keep the operator)`,
    );
}

/**
 * The teardown itself, after the plan was confirmed: every step's removal (a failure stops it with the resume
 * command: --uninstall again removes what is left), then the tool's directories.
 */
export async function runTeardown(
  ctx: Ctx,
  opts: Options,
  o: TeardownOptions,
  settingsFile: string,
): Promise<Map<string, LaunchResult>> {
  const results = await runSteps(ctx, TEARDOWN_ORDER, opts, [...teardownArgs(o), '--env-file', settingsFile]);
  if (TEARDOWN_ORDER.some((n) => results.get(n)?.status === 'failed')) return results;
  const rm = await ctx.ssh.run(['rm', '-rf', '--one-file-system', '--', ...TOOL_DIRS], { allowFail: true });
  if (rm.exitCode !== 0)
    throw new OperationError(`removing the tool's directories (${TOOL_DIRS.join(', ')}) failed`, {
      detail: rm.stderr,
      hint: 'every step was removed; run --uninstall again to finish',
    });
  ctx.log.info(`  - removed ${TOOL_DIRS.join(', ')}`);
  return results;
}
