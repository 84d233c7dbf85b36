// The commit app/ is, for the first image: a dirty app/ stops a run that deploys it (exit 2).
import { Logger } from '../log.mts';
import { UsageError } from '../errors.mts';
import { appSourceProblem, gitAppStatusArgv, gitHeadArgv, sourceJson } from '../build.mts';
import { run } from '../exec.mts';
import { DEPLOY_STEP, REPO_ROOT } from './context.mts';

/**
 * source.json for the upload: the commit app/ is, when app/ has no uncommitted change. When it has (or this is no
 * git checkout) and the deploy step is selected, the run stops here with exit 2: the first image would carry the
 * tag of a commit it is not. Otherwise the upload simply goes without source.json.
 */
export async function appSource(selected: readonly string[], log: Logger): Promise<Record<string, string>> {
  const failed = (e: unknown) => ({ exitCode: 127, stdout: '', stderr: (e as Error).message });
  const head = await run(gitHeadArgv(REPO_ROOT), { allowFail: true, log, timeoutSeconds: 30 }).catch(failed);
  const status =
    head.exitCode === 0
      ? await run(gitAppStatusArgv(REPO_ROOT), { allowFail: true, log, timeoutSeconds: 30 }).catch(failed)
      : undefined;
  const problem = appSourceProblem(head, status);
  if (problem === undefined) return { 'source.json': sourceJson(head.stdout.trim()) };
  if (selected.includes(DEPLOY_STEP)) throw new UsageError([`${DEPLOY_STEP} is selected, but ${problem}`]);
  log.detail(`the upload goes without source.json: ${problem}`);
  return {};
}
