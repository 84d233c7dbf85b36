// lib/poll.mts: the one bounded wait every polling loop goes through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attemptsWithin, backOff, pollUntil, PollTimeout } from '../../bootstrap/lib/poll.mts';
import { OperationError } from '../../bootstrap/lib/errors.mts';

const noSleep = (log: number[]) => async (ms: number) => void log.push(ms);

test('pollUntil: done on the third ask; each pause is reported first and slept after', async () => {
  const slept: number[] = [];
  const waits: string[] = [];
  const v = await pollUntil(async (i) => (i === 3 ? { done: `ok@${i}` } : { waiting: `not yet ${i}` }), {
    attempts: 5,
    intervalSeconds: 2,
    what: 'x',
    sleep: noSleep(slept),
    onWait: (i, why, s) => waits.push(`${i}:${why}:${s}`),
  });
  assert.equal(v, 'ok@3');
  assert.deepEqual(waits, ['1:not yet 1:2', '2:not yet 2:2']);
  assert.deepEqual(slept, [2000, 2000]);
});

test('pollUntil: the attempts bound ends in a PollTimeout naming what was awaited and the last reason; no pause after the last ask', async () => {
  const slept: number[] = [];
  const e = await pollUntil(async (i) => ({ waiting: `busy ${i}` }), {
    attempts: 3,
    intervalSeconds: 1,
    what: 'the lock',
    hint: 'wait',
    sleep: noSleep(slept),
  }).catch((x: unknown) => x);
  assert.ok(e instanceof PollTimeout);
  assert.equal(e.message, 'timed out after 3 attempt(s) waiting for the lock; last seen: busy 3');
  assert.deepEqual([e.last, e.attempts, e.hint, slept.length], ['busy 3', 3, 'wait', 2]);
});

test("pollUntil: a back-off interval, the caller's own timeout error, a probe that throws, and no bound at all", async () => {
  const slept: number[] = [];
  const custom = await pollUntil(async () => ({ waiting: 'down' }), {
    attempts: 4,
    intervalSeconds: (i) => 2 ** (i - 1),
    what: 'x',
    sleep: noSleep(slept),
    onTimeout: (last, n) => new OperationError(`gave up after ${n}: ${last}`),
  }).catch((x: unknown) => x);
  assert.deepEqual(slept, [1000, 2000, 4000]);
  assert.equal((custom as Error).message, 'gave up after 4: down');
  await assert.rejects(
    pollUntil(
      async () => {
        throw new OperationError('refused');
      },
      { attempts: 9, intervalSeconds: 0, what: 'x' },
    ),
    /^OperationError: refused$/,
  );
  await assert.rejects(
    pollUntil(async () => ({ waiting: '' }), { intervalSeconds: 1, what: 'x' }),
    /no bound/,
  );
});

test('pollUntil: a wall-clock bound stops before a pause that would end past it', async () => {
  const slept: number[] = [];
  const e = await pollUntil(async () => ({ waiting: 'slow' }), {
    timeoutSeconds: 0.001,
    intervalSeconds: 5,
    what: 'the rollout',
    sleep: noSleep(slept),
  }).catch((x: unknown) => x);
  assert.ok(e instanceof PollTimeout);
  assert.match(e.message, /^timed out after 0\.001s waiting for the rollout; last seen: slow$/);
  assert.deepEqual(slept, []);
});

test('progress: a long wait says what it waits for, how long it has waited, the bound and the last reason', async () => {
  const { CaptureLog } = await import('../capture-log.mts');
  const log = new CaptureLog();
  await pollUntil(async (i) => (i === 6 ? { done: true } : { waiting: `pending ${i}` }), {
    attempts: 6,
    timeoutSeconds: 30,
    intervalSeconds: 0.05,
    what: 'Job kube-system/helm-install-traefik',
    progress: log,
    progressSeconds: 0.1,
  });
  assert.ok(log.lines.length >= 1, 'at least one progress line in 0.25 s of waiting');
  assert.match(
    log.lines[0] ?? '',
    /^ {2}\.\. still waiting for Job kube-system\/helm-install-traefik: \d+s of at most 30s \(pending \d\)$/,
  );
});

test('progress: a long command prints a line every interval while it runs, and none after it ended', async () => {
  const { CaptureLog } = await import('../capture-log.mts');
  const { run } = await import('../../bootstrap/lib/exec.mts');
  const log = new CaptureLog();
  await run(['sleep', '0.35'], {
    log,
    progress: 'helm upgrade cert-manager v1.21.2 (--wait)',
    progressSeconds: 0.1,
    timeoutSeconds: 330,
  });
  const lines = log.lines.filter((l) => l.includes('still waiting'));
  assert.ok(lines.length >= 2, log.lines.join('\n'));
  assert.match(
    lines[0] ?? '',
    /^ {2}\.\. still waiting for helm upgrade cert-manager v1\.21\.2 \(--wait\): \d+s of at most 330s$/,
  );
  const after = log.lines.length;
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(log.lines.length, after, 'the heartbeat stops with the command');
});

test('formatBytes: the sizes and rates of progress lines', async () => {
  const { formatBytes } = await import('../../bootstrap/lib/log.mts');
  assert.deepEqual([0, 1023, 1536, 5 * 1024 ** 2, 3.25 * 1024 ** 3].map(formatBytes), [
    '0 B',
    '1023 B',
    '1.5 KiB',
    '5.0 MiB',
    '3.3 GiB',
  ]);
});

test('backOff: 1 s, then doubling up to the longest pause; attemptsWithin: the last ask at or after the bound', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(backOff(10)), [1, 2, 4, 8, 10, 10]);
  assert.deepEqual([1, 2, 3].map(backOff(0.05)), [0.05, 0.05, 0.05], 'never longer than the longest pause');
  // A steady interval: 900 s every 10 s is the first ask plus 90.
  assert.equal(attemptsWithin(900, 10), 91);
  assert.equal(attemptsWithin(1, 10), 2);
  assert.equal(attemptsWithin(0, 10), 1, 'at least one ask');
  assert.throws(() => attemptsWithin(10, 0), /pause 0s/, 'a pause of nothing would never reach the bound');
  assert.throws(() => attemptsWithin(10, () => Number.NaN), /pause NaN/);
  // Backing off: pauses 1+2+4+8 = 15, then 10 each; 900 s needs 4 + 89 pauses (15 + 885 >= 900).
  assert.equal(attemptsWithin(900, backOff(10)), 1 + 4 + 89);
  const pauses = (n: number) => Array.from({ length: n - 1 }, (_, i) => backOff(10)(i + 1)).reduce((a, b) => a + b, 0);
  assert.ok(pauses(attemptsWithin(900, backOff(10))) >= 900);
  assert.ok(pauses(attemptsWithin(900, backOff(10)) - 1) < 900, 'no more asks than needed');
});
