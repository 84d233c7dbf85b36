// One bounded wait for the steps: ask, and ask again every `intervalSeconds` until the answer is final or
// `timeoutSeconds` have passed. A wait never falls through to success: the timeout is an error that says what was
// awaited and what was seen last.
import { sleep } from 'zx';
import { OperationError } from './errors.mts';

export interface PollOptions {
  timeoutSeconds: number;
  intervalSeconds: number;
  /** What is awaited, for the timeout message: "Job kube-system/helm-install-traefik to complete". */
  what: string;
  hint?: string;
}

/** `probe` answers `{ done: value }` (stop), `{ waiting: reason }` (ask again) or throws (stop with that error). */
export type PollAnswer<T> = { done: T } | { waiting: string };

export async function pollUntil<T>(probe: (attempt: number) => Promise<PollAnswer<T>>, opts: PollOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutSeconds * 1000;
  let last = 'not asked yet';
  for (let attempt = 1; ; attempt++) {
    const a = await probe(attempt);
    if ('done' in a) return a.done;
    last = a.waiting;
    if (Date.now() + opts.intervalSeconds * 1000 > deadline) break;
    await sleep(opts.intervalSeconds * 1000);
  }
  throw new OperationError(`timed out after ${opts.timeoutSeconds}s waiting for ${opts.what}; last seen: ${last}`, { hint: opts.hint });
}
