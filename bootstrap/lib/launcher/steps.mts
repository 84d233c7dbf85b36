// The step loop: each selected step on the server, its output streamed, its result read from the marker line.
import { isProgressLine, stepLiveLine } from '../log.mts';
import { RESULT_MARKER } from '../paths.mts';
import type { StepResult } from '../step.mts';
import { remoteStepArgv } from './context.mts';
import type { Ctx, LaunchResult, Options } from './context.mts';
import { proveLogin } from './login.mts';

export async function runSteps(
  ctx: Ctx,
  selected: readonly string[],
  opts: Options,
  /** What every step gets besides --verbose (--uninstall's teardown flags). */
  args: readonly string[] = [],
): Promise<Map<string, LaunchResult>> {
  const results = new Map<string, LaunchResult>();
  for (const [i, name] of selected.entries()) {
    ctx.log.stepHeader(i + 1, selected.length, name);
    const t0 = performance.now();
    let result: LaunchResult | undefined;
    const stderr: string[] = [];
    // On a terminal: a live line with the step's time, ticking every second, and the server's last progress
    // report (which then goes to the log file only). Elsewhere the reports are lines of their own, every 15 s.
    let latest: string | undefined;
    let tick = 0;
    const drawLive = () => ctx.log.liveLine(stepLiveLine(name, (performance.now() - t0) / 1000, tick++, latest));
    const ticker = ctx.log.isLive ? setInterval(drawLive, 1000) : undefined;
    let r;
    try {
      r = await ctx.ssh.run(remoteStepArgv(ctx, name, [...args, ...(opts.verbose ? ['--verbose'] : [])]), {
        allowFail: true,
        onStdoutLine: (line) => {
          if (line.startsWith(RESULT_MARKER)) result = JSON.parse(line.slice(RESULT_MARKER.length)) as StepResult;
          else if (ticker && isProgressLine(line)) {
            latest = line;
            ctx.log.fileOnly(`    ${line}`);
            drawLive();
          } else ctx.log.info(`    ${line}`);
        },
        onStderrLine: (line) => {
          stderr.push(line);
          ctx.log.info(`    ${line}`);
        },
      });
    } finally {
      clearInterval(ticker);
      ctx.log.liveLine(undefined);
    }
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
