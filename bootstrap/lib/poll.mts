// The one bounded wait: ask, and ask again every interval until the answer is final or the bound is reached.
// Every polling loop in the tree is this function. A wait never falls through to success: reaching the bound is
// an error that says what was awaited and what was seen last (or the caller's own error, via onTimeout).
import { sleep as zxSleep } from 'zx';
import { OperationError } from './errors.mts';
import { PROGRESS_SECONDS, progressLine } from './log.mts';
import type { Logger } from './log.mts';

export interface PollOptions {
  /** The bound as a wall-clock budget; no pause starts that would end past it. */
  timeoutSeconds?: number;
  /** The bound as a number of asks (with or instead of timeoutSeconds). */
  attempts?: number;
  /** Seconds between asks; a function of the attempt that just failed for a back-off. */
  intervalSeconds: number | ((attempt: number) => number);
  /** What is awaited, for the timeout message: "Job kube-system/helm-install-traefik to complete". */
  what: string;
  hint?: string;
  /** Called before each pause with the attempt that was not final and its reason (progress lines). */
  onWait?: (attempt: number, reason: string, pauseSeconds: number) => void;
  /** The error thrown at the bound; the default is a PollTimeout. */
  onTimeout?: (last: string, attempts: number) => Error;
  /** Pauses between asks (tests pass one that returns at once). */
  sleep?: (ms: number) => Promise<void>;
  /** A progress line through this log every PROGRESS_SECONDS of waiting (what, elapsed, bound, last reason). */
  progress?: Logger;
  /** The interval of those lines (default PROGRESS_SECONDS). */
  progressSeconds?: number;
}

/** `probe` answers `{ done: value }` (stop), `{ waiting: reason }` (ask again) or throws (stop with that error). */
export type PollAnswer<T> = { done: T } | { waiting: string };

/** The bound was reached; `last` is the last reason given. */
export class PollTimeout extends OperationError {
  readonly last: string;
  readonly attempts: number;
  constructor(message: string, last: string, attempts: number, hint?: string) {
    super(message, { hint });
    this.last = last;
    this.attempts = attempts;
  }
}

/**
 * Pauses that start at `firstSeconds` and double up to `maxSeconds`: what is ready a moment later is seen a moment
 * later, and a long wait asks no more often than every `maxSeconds`.
 */
export function backOff(maxSeconds: number, firstSeconds = 1): (attempt: number) => number {
  const first = Math.min(firstSeconds, maxSeconds);
  return (attempt) => Math.min(maxSeconds, first * 2 ** (attempt - 1));
}

/** Asks a wait with these pauses makes: at least one, and the last one at or after `waitSeconds`. */
export function attemptsWithin(waitSeconds: number, interval: number | ((attempt: number) => number)): number {
  const pause = typeof interval === 'function' ? interval : () => interval;
  let attempts = 1;
  for (let waited = 0; waited < waitSeconds; attempts++) {
    const seconds = pause(attempts);
    // A pause of nothing would never reach the bound: a wait must move on.
    if (!(seconds > 0)) throw new Error(`attemptsWithin: pause ${seconds}s before attempt ${attempts + 1}`);
    waited += seconds;
  }
  return attempts;
}

export async function pollUntil<T>(probe: (attempt: number) => Promise<PollAnswer<T>>, opts: PollOptions): Promise<T> {
  if (opts.timeoutSeconds === undefined && opts.attempts === undefined)
    throw new Error(`pollUntil(${opts.what}): no bound`);
  const pause = opts.sleep ?? zxSleep;
  const deadline = opts.timeoutSeconds === undefined ? Infinity : Date.now() + opts.timeoutSeconds * 1000;
  const maxAttempts = opts.attempts ?? Infinity;
  const started = Date.now();
  let told = started;
  let last = 'not asked yet';
  let attempt = 1;
  for (; ; attempt++) {
    const a = await probe(attempt);
    if ('done' in a) return a.done;
    last = a.waiting;
    const seconds = typeof opts.intervalSeconds === 'function' ? opts.intervalSeconds(attempt) : opts.intervalSeconds;
    if (attempt >= maxAttempts || Date.now() + seconds * 1000 > deadline) break;
    opts.onWait?.(attempt, last, seconds);
    if (opts.progress && Date.now() - told >= (opts.progressSeconds ?? PROGRESS_SECONDS) * 1000) {
      told = Date.now();
      opts.progress.info(progressLine(opts.what, (told - started) / 1000, opts.timeoutSeconds, last));
    }
    await pause(seconds * 1000);
  }
  if (opts.onTimeout) throw opts.onTimeout(last, attempt);
  const bound = opts.timeoutSeconds !== undefined ? `after ${opts.timeoutSeconds}s` : `after ${attempt} attempt(s)`;
  throw new PollTimeout(`timed out ${bound} waiting for ${opts.what}; last seen: ${last}`, last, attempt, opts.hint);
}
