// Flags, --help, and the one error handler every script uses.
// An unknown flag or a bad value exits 2 with the usage line; a failure prints what failed, the command's
// stderr (masked) and the next command to run.
import { parseArgs } from 'node:util';
import { UsageError, OperationError } from './errors.mts';
import { Logger, color } from './log.mts';
import { mask } from './redact.mts';

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly type: 'boolean' | 'string';
  /** Placeholder for the value in --help, e.g. PATH. */
  readonly value?: string;
  readonly description: string;
}

export interface CliSpec {
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly flags: readonly FlagSpec[];
  /** Extra --help sections: what it changes, environment, exit codes, examples. */
  readonly sections?: ReadonlyArray<{ readonly title: string; readonly body: string }>;
}

export type FlagValues = Record<string, string | boolean | undefined>;

export function helpText(spec: CliSpec): string {
  const width = Math.max(...spec.flags.map((f) => flagLabel(f).length));
  const lines = [`Usage: ${spec.usage}`, '', spec.summary, '', 'Flags:'];
  for (const f of spec.flags) lines.push(`  ${flagLabel(f).padEnd(width)}  ${f.description}`);
  for (const s of spec.sections ?? [])
    lines.push('', `${s.title}:`, ...s.body.split('\n').map((l) => (l ? `  ${l}` : '')));
  return lines.join('\n') + '\n';
}

function flagLabel(f: FlagSpec): string {
  return `${f.short ? `-${f.short}, ` : ''}--${f.name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
}

export function parseCli(spec: CliSpec, argv: readonly string[]): FlagValues {
  const options: Record<string, { type: 'boolean' | 'string'; short?: string }> = {};
  for (const f of spec.flags) options[f.name] = f.short ? { type: f.type, short: f.short } : { type: f.type };
  try {
    const { values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
    const out: FlagValues = {};
    for (const f of spec.flags) {
      const v = (values as Record<string, string | boolean | undefined>)[f.name];
      if (f.type === 'string' && typeof v === 'string' && v.trim() === '')
        throw new UsageError(`--${f.name}: the value is empty; expected ${f.value ?? 'a value'}`);
      out[f.name] = v;
    }
    return out;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const msg = (e as Error).message
      .replace(/\. To specify a positional argument.*$/s, '')
      .replace(/^Unknown option/, 'unknown flag');
    throw new UsageError(msg);
  }
}

/**
 * Runs a script's body under the one error handler: UsageError -> exit 2 with the usage line;
 * OperationError -> what failed, detail (masked), the next command; anything else -> a bug report.
 */
export async function runMain(spec: CliSpec, log: Logger, body: () => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await body();
  } catch (e) {
    code = reportError(spec, log, e);
  }
  // Let stdout drain before exiting (large --help or plan output to a pipe).
  await new Promise<void>((r) => process.stdout.write('', () => r()));
  process.exit(code);
}

export function reportError(spec: CliSpec, log: Logger, e: unknown): number {
  if (e instanceof UsageError) {
    for (const p of e.problems) log.error(p);
    log.info(`Usage: ${spec.usage}`);
    log.info(`Run ${spec.name} --help for details.`);
    return e.exitCode;
  }
  if (e instanceof OperationError) {
    log.error(e.message);
    if (e.detail)
      log.info(
        color.dim(
          e.detail
            .split('\n')
            .map((l) => `  | ${l}`)
            .join('\n'),
        ),
      );
    if (e.hint) log.info(`next: ${e.hint}`);
    return e.exitCode;
  }
  const err = e as Error;
  log.error(`unexpected failure: ${mask(err?.stack ?? String(e))}`);
  return 1;
}
