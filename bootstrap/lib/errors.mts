// Error types with a meaning for the exit code. One handler per script (lib/main.mts) turns them into
// a message and an exit code; nothing else calls process.exit.

/** Bad input: a flag, a setting, a step name. Exit 2, nothing was touched. */
export class UsageError extends Error {
  readonly exitCode = 2;
  readonly problems: readonly string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('\n'));
    this.name = 'UsageError';
    this.problems = list;
  }
}

/** Something failed while working. `hint` is the next command a human should run. */
export class OperationError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;
  readonly detail: string | undefined;
  constructor(message: string, opts: { hint?: string; detail?: string; exitCode?: number } = {}) {
    super(message);
    this.name = 'OperationError';
    this.hint = opts.hint;
    this.detail = opts.detail;
    this.exitCode = opts.exitCode ?? 1;
  }
}

/** Exit code when another run holds the server lock. */
export const EXIT_LOCKED = 3;
