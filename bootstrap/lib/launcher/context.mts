// What every part of the launcher shares: its options, the run context, the step result as the launcher sees it, and
// the one way to run bootstrap/lib/remote_helpers.sh on the server.
import { readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config.mts';
import { Logger } from '../log.mts';
import { STEPS, stepInfo } from '../catalogue.mts';
import { SshSession } from '../ssh.mts';
import type { RemoteRunOptions } from '../ssh.mts';
import type { StepResult } from '../step.mts';
import { REMOTE } from '../paths.mts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Column width of step names in --list, --help and the summary (the longest name, so the columns line up). */
export const NAME_WIDTH = Math.max(...STEPS.map((s) => s.name.length));

export const SELF = './bootstrap/host/bootstrap_remote_staging.mts';

export const HELPERS = readFileSync(join(REPO_ROOT, 'bootstrap/lib/remote_helpers.sh'), 'utf8');

export interface Options {
  envFile: string;
  explicitEnvFile: boolean;
  dryRun: boolean;
  yes: boolean;
  verbose: boolean;
  /** --check: run every selected step's check only, and report the drift. */
  check: boolean;
  /** --status: the one-screen status (lib/status.mts); reads only, takes no lock. */
  status: boolean;
  /** --json (with --check or --status): the report as one JSON document on stdout. */
  json: boolean;
  from?: string;
  only?: string[];
  /** --backup DIR: an encrypted bundle into DIR, nothing else. */
  backup?: string;
  /** --restore-from FILE: the run restores that bundle (40_postgres). */
  restoreFrom?: string;
  /** --restore-overwrite: the restore may replace a database that holds rows. */
  restoreOverwrite: boolean;
  /** --uninstall: every step's teardown, last step first, after a plan and a typed confirmation. */
  uninstall: boolean;
  /** --confirm-host NAME: with --uninstall --yes, the server named as TARGET_HOST names it. */
  confirmHost?: string;
  /** --purge-data (with --uninstall): the kept PostgreSQL dumps go too. */
  purgeData: boolean;
  /** --remove-operator (with --uninstall): the operator account goes too. */
  removeOperator: boolean;
}

export interface Ctx {
  cfg: Config;
  log: Logger;
  ssh: SshSession;
  runId: string;
  lockToken: string;
  sshHint: string;
  /** git HEAD of this checkout, when it is one: journaled by the steps (ToolRecord). */
  toolCommit?: string;
}

/** A step's result as the launcher saw it; `crashed` when the step died without reporting one. */
export type LaunchResult = StepResult & { stderrTail?: string; crashed?: boolean; exitCode?: number };

/** Runs one subcommand of bootstrap/lib/remote_helpers.sh on the server (plain bash: no Node needed there yet). */
export async function helper(ctx: Ctx, args: string[], opts: Pick<RemoteRunOptions, 'input' | 'allowFail'> = {}) {
  return ctx.ssh.run(['bash', '-c', HELPERS, 'remote_helpers', ...args], {
    ...opts,
    display: ['remote_helpers', ...args],
  });
}

/** The step that builds the first image from the uploaded app/ and so needs source.json. */
export const DEPLOY_STEP = '50_deploy_codex_k8s';

/** Whether any selected step talks to GitHub (then the token is checked first). */
export function usesGitHub(selected: readonly string[]): boolean {
  return selected.some((n) => stepInfo(n).usesGitHub === true);
}

/** Steps that install the runners or wait for them: a runner GitHub no longer serves fails them. */
export function enforcesRunnerFreshness(selected: readonly string[]): boolean {
  return selected.includes('60_runner_arc') || selected.includes('80_deploy_loop_check');
}

/**
 * `<step> ARGS` on the server with the pinned Node: the step knows it runs under this launcher (its run id, and the
 * lock token it checks before it works). `--` keeps node from reading a later --env-file as its own option.
 */
export function remoteStepArgv(ctx: Ctx, name: string, args: readonly string[]): string[] {
  return [
    'env',
    'CODEXK8S_LAUNCHER=1',
    `CODEXK8S_RUN_ID=${ctx.runId}`,
    `CODEXK8S_LOCK_TOKEN=${ctx.lockToken}`,
    ...(ctx.toolCommit ? [`CODEXK8S_TOOL_COMMIT=${ctx.toolCommit}`] : []),
    // Node keeps the stripped and compiled modules of the steps there: a converged re-run starts each step faster.
    `NODE_COMPILE_CACHE=${REMOTE.compileCache}`,
    REMOTE.nodeBin,
    '--',
    `${REMOTE.base}/bootstrap/remote/${name}.mts`,
    ...args,
  ];
}
