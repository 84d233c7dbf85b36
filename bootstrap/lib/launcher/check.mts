// --check: the live plan. Every selected step runs its own check on the server (`<step> --check`: read-only, no
// journal, no lock of its own) against the laptop's settings; the launcher gathers the drift lines into one report.
// Nothing on the server's system changes: only the tool's own files (the tree, Node.js, and a settings file for the
// check inside the lock directory, which goes with the lock) may be refreshed, and prepare() says so line by line.
import { color, stripAnsi } from '../log.mts';
import { remoteStepArgv } from './context.mts';
import type { Ctx } from './context.mts';

export interface StepCheck {
  name: string;
  /** ok: converged; drift: the step would change something; error: the check itself could not run. */
  status: 'ok' | 'drift' | 'error';
  drift: string[];
  error?: string;
}

export interface CheckReport {
  converged: boolean;
  steps: StepCheck[];
}

/**
 * Pure: one step's `--check` output and exit code as a row. The step prints `  ~ LINE` per drift and ends with
 * `NAME: converged` (exit 0) or `NAME: N drift(s)` (exit 1); anything else is an error of the check itself.
 */
export function parseStepCheck(name: string, exitCode: number, stdout: string, stderr: string): StepCheck {
  const lines = stripAnsi(stdout).split('\n');
  const drift = lines.filter((l) => /^\s*~ /.test(l)).map((l) => l.replace(/^\s*~ /, ''));
  const converged = lines.some((l) => l.trim() === `${name}: converged`);
  const drifting = lines.some((l) => new RegExp(`^${name}: \\d+ drift\\(s\\)$`).test(l.trim()));
  if (exitCode === 0 && converged) return { name, status: 'ok', drift: [] };
  if (exitCode === 1 && drifting) return { name, status: 'drift', drift };
  return { name, status: 'error', drift, error: lastError(stderr) ?? `the check exited with code ${exitCode}` };
}

/** Pure: the last `error: ...` line a step printed on stderr (its one error handler's), without the prefix. */
export function lastError(stderr: string): string | undefined {
  return stripAnsi(stderr)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('error:'))
    .pop()
    ?.replace(/^error: /, '');
}

/** Pure: the report as the terminal shows it, one row per step and one line per drift. */
export function formatCheckReport(r: CheckReport): string[] {
  const w = Math.max(...r.steps.map((s) => s.name.length));
  const out: string[] = [];
  for (const s of r.steps) {
    const mark =
      s.status === 'ok' ? color.green('ok   ') : s.status === 'drift' ? color.yellow('drift') : color.red('error');
    out.push(`  ${s.name.padEnd(w)}  ${mark}${s.status === 'error' ? `  ${s.error}` : ''}`);
    for (const d of s.drift) out.push(`  ${' '.repeat(w)}    ~ ${d}`);
  }
  const drifting = r.steps.filter((s) => s.status !== 'ok').length;
  out.push(
    r.converged
      ? color.green(`converged: ${r.steps.length} step(s) checked, nothing to change`)
      : color.yellow(
          `${drifting} of ${r.steps.length} step(s) would change something (a run without --check applies it)`,
        ),
  );
  return out;
}

/** Runs each selected step's check over the open connection; `settingsFile` is what prepare() returned. */
export async function checkSteps(ctx: Ctx, selected: readonly string[], settingsFile: string): Promise<CheckReport> {
  const steps: StepCheck[] = [];
  ctx.log.info(color.bold(`==> check: ${selected.length} step(s), read-only`));
  for (const name of selected) {
    const r = await ctx.ssh.run(remoteStepArgv(ctx, name, ['--check', '--env-file', settingsFile]), {
      allowFail: true,
      onStdoutLine: (l) => ctx.log.detail(`    ${l}`),
      onStderrLine: (l) => ctx.log.detail(`    ${l}`),
    });
    steps.push(parseStepCheck(name, r.exitCode, r.stdout, r.stderr));
  }
  return { converged: steps.every((s) => s.status === 'ok'), steps };
}
