// The step loop: each selected step on the server, its output streamed, its result read from the marker line.
import { REMOTE, RESULT_MARKER } from '../paths.mts';
import type { StepResult } from '../step.mts';
import type { Ctx, LaunchResult, Options } from './context.mts';
import { proveLogin } from './login.mts';

export async function runSteps(
  ctx: Ctx,
  selected: readonly string[],
  opts: Options,
): Promise<Map<string, LaunchResult>> {
  const results = new Map<string, LaunchResult>();
  for (const [i, name] of selected.entries()) {
    ctx.log.stepHeader(i + 1, selected.length, name);
    const t0 = performance.now();
    let result: LaunchResult | undefined;
    const stderr: string[] = [];
    const r = await ctx.ssh.run(
      [
        'env',
        'CODEXK8S_LAUNCHER=1',
        `CODEXK8S_RUN_ID=${ctx.runId}`,
        `CODEXK8S_LOCK_TOKEN=${ctx.lockToken}`,
        // Node keeps the stripped and compiled modules of the steps there: a converged re-run starts each step faster.
        `NODE_COMPILE_CACHE=${REMOTE.compileCache}`,
        // `--` keeps node from reading a later --env-file as its own option (node scans the whole argv).
        REMOTE.nodeBin,
        '--',
        `${REMOTE.base}/bootstrap/remote/${name}.mts`,
        ...(opts.verbose ? ['--verbose'] : []),
      ],
      {
        allowFail: true,
        onStdoutLine: (line) => {
          if (line.startsWith(RESULT_MARKER)) result = JSON.parse(line.slice(RESULT_MARKER.length)) as StepResult;
          else ctx.log.info(`    ${line}`);
        },
        onStderrLine: (line) => {
          stderr.push(line);
          ctx.log.info(`    ${line}`);
        },
      },
    );
    const seconds = (performance.now() - t0) / 1000;
    if (!result)
      result = {
        status: 'failed',
        changes: [],
        drift: [],
        seconds,
        error: `the step exited with code ${r.exitCode} without reporting a result`,
        crashed: true,
      };
    else if (r.exitCode !== 0 && result.status !== 'failed')
      result = { ...result, status: 'failed', error: `exit code ${r.exitCode}` };
    result.stderrTail = stderr.slice(-15).join('\n') || undefined;
    result.exitCode = r.exitCode;
    if (result.loginCheck) result = await proveLogin(ctx, name, result, result.loginCheck, opts);
    result.seconds = (performance.now() - t0) / 1000; // wall time as seen from here: node start-up, SSH and the login check included
    results.set(name, result);
    ctx.log.stepFooter({ status: result.status, changed: result.changes.length, seconds: result.seconds });
    if (result.status === 'failed') break;
  }
  return results;
}
