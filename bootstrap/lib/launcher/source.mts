// Which checkout this is. The commit app/ is, for the first image: a dirty app/ stops a run that deploys it (exit
// 2). And whether this checkout is older than the one that last converged the server: then it is refused (exit 2)
// before it uploads anything, because it would move pins back (ToolRecord in the journal).
import { Logger } from '../log.mts';
import { UsageError } from '../errors.mts';
import { pinVersions, pinsNewerThan } from '../versions.mts';
import type { ToolRecord } from '../state.mts';
import { appSourceProblem, gitAppStatusArgv, gitHeadArgv, sourceJson } from '../build.mts';
import { run } from '../exec.mts';
import { DEPLOY_STEP, REPO_ROOT } from './context.mts';

/**
 * source.json for the upload: the commit app/ is, when app/ has no uncommitted change. When it has (or this is no
 * git checkout) and the deploy step is selected, the run stops here with exit 2: the first image would carry the
 * tag of a commit it is not. Otherwise the upload simply goes without source.json.
 */
export async function appSource(
  selected: readonly string[],
  head: CheckoutHead,
  log: Logger,
): Promise<Record<string, string>> {
  const status =
    head.exitCode === 0
      ? await run(gitAppStatusArgv(REPO_ROOT), { allowFail: true, log, timeoutSeconds: 30 }).catch(gitNotRun)
      : undefined;
  const problem = appSourceProblem(head, status);
  if (problem === undefined) return { 'source.json': sourceJson(head.stdout.trim()) };
  if (selected.includes(DEPLOY_STEP)) throw new UsageError([`${DEPLOY_STEP} is selected, but ${problem}`]);
  log.detail(`the upload goes without source.json: ${problem}`);
  return {};
}

/** `git rev-parse HEAD` of this checkout, read once: appSource and the journal's ToolRecord both need it. */
export interface CheckoutHead {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function checkoutHead(log: Logger): Promise<CheckoutHead> {
  return run(gitHeadArgv(REPO_ROOT), { allowFail: true, log, timeoutSeconds: 30 }).catch(gitNotRun);
}

/** git itself missing: a result like a failed command, which appSourceProblem explains. */
function gitNotRun(e: unknown): CheckoutHead {
  return { exitCode: 127, stdout: '', stderr: (e as Error).message };
}

/** Pure: the commit (40 hex digits), or undefined when this is not a git checkout. */
export function commitOf(head: CheckoutHead): string | undefined {
  const sha = head.exitCode === 0 ? head.stdout.trim() : '';
  return /^[0-9a-f]{40}$/.test(sha) ? sha : undefined;
}

/**
 * Pure: why this checkout must not run against the server, or undefined. It is refused when the server was last
 * converged with a pin NEWER than this checkout's, unless this checkout contains that run's commit (then the pin
 * was moved back on purpose, in a newer commit).
 */
export function olderCheckoutProblem(
  tool: ToolRecord | undefined,
  here: Record<string, string>,
  containsThatCommit: boolean,
): string | undefined {
  if (tool === undefined) return undefined;
  const newer = pinsNewerThan(tool.pins, here);
  if (newer.length === 0 || containsThatCommit) return undefined;
  return `this checkout is older than the one that last converged the server (commit ${tool.commit.slice(0, 12)}, ${tool.at}): the server has ${newer.join(', ')}; nothing was changed. Pull that commit (git pull) and run again`;
}

/** The refusal of an older checkout (exit 2), after the journal is read and before anything is uploaded. */
export async function refuseOlderCheckout(tool: ToolRecord | undefined, log: Logger): Promise<void> {
  if (tool === undefined || pinsNewerThan(tool.pins, pinVersions()).length === 0) return;
  const r = await run(['git', '-C', REPO_ROOT, 'merge-base', '--is-ancestor', tool.commit, 'HEAD'], {
    allowFail: true,
    log,
    timeoutSeconds: 30,
  }).catch(() => undefined);
  const problem = olderCheckoutProblem(tool, pinVersions(), r?.exitCode === 0);
  if (problem) throw new UsageError([problem]);
}
