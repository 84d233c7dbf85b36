// The server-side run lock. Its one implementation is bash: bootstrap/lib/remote_helpers.sh (lock_acquire,
// lock_step, lock_release), used by the launcher before Node exists on the server and by a step run by hand. The
// functions here are pure: they parse its answers and explain them. The owner file's fields and the liveness rule
// (boot id, holder pid and step pid with their start times) are described at the top of the lock section there.
import { REMOTE } from './paths.mts';

export interface LockOwner {
  token: string;
  holder: string;
  since: number;
  /** The run id of the holder ("" when written by a version that did not record it). */
  run: string;
  step: string;
  /** The holder's process on the server: its SSH connection's sshd, or a step run by hand. "" when unknown. */
  pid: string;
  /** The step running now, "" between steps. */
  stepPid: string;
}

export type LockAnswer =
  | { kind: 'acquired' }
  /** The previous holder is gone: its lock was replaced by ours. */
  | { kind: 'took-over'; previous: LockOwner; reason: string }
  /** `alive`: "step PID" | "connection PID" | "unknown" (a lock that records no process, younger than the limit). */
  | { kind: 'held'; owner: LockOwner; now: number; alive: string }
  /** The lock directory is not one root created: never trusted, never removed by us. */
  | { kind: 'refused'; reason: string };

function keyValues(lines: readonly string[], prefix = ''): Record<string, string> {
  const kv: Record<string, string> = {};
  for (const line of lines) {
    if (!line.startsWith(prefix)) continue;
    const i = line.indexOf('=');
    if (i > prefix.length) kv[line.slice(prefix.length, i).trim()] = line.slice(i + 1).trim();
  }
  return kv;
}

export function parseOwner(text: string, prefix = ''): LockOwner {
  const kv = keyValues(text.split('\n'), prefix);
  return {
    token: kv['token'] ?? '',
    holder: kv['holder'] ?? 'unknown',
    since: Number(kv['since'] ?? 0) || 0,
    run: kv['run'] ?? '',
    step: kv['step'] ?? '-',
    pid: kv['pid'] ?? '',
    stepPid: kv['step_pid'] ?? '',
  };
}

/** Reads the output of `remote_helpers.sh begin` / `lock-acquire`. */
export function parseLockAnswer(stdout: string): LockAnswer {
  const lines = stdout.trim().split('\n');
  const first = lines[0] ?? '';
  if (first === 'acquired') return { kind: 'acquired' };
  if (first === 'took-over') {
    return {
      kind: 'took-over',
      previous: parseOwner(lines.join('\n'), 'previous.'),
      reason: keyValues(lines)['reason'] ?? 'its holder is gone',
    };
  }
  if (first.startsWith('refused ')) return { kind: 'refused', reason: first.slice('refused '.length) };
  if (first !== 'held') throw new Error(`unexpected lock answer: ${stdout.trim().slice(0, 200)}`);
  const kv = keyValues(lines.slice(1, 3));
  return {
    kind: 'held',
    owner: parseOwner(lines.slice(3).join('\n')),
    now: Number(kv['now'] ?? 0),
    alive: kv['alive'] ?? 'unknown',
  };
}

export function lockAgeSeconds(owner: LockOwner, now: number): number {
  return Math.max(0, now - owner.since);
}

function describeOwner(owner: LockOwner, now: number): string {
  const since = owner.since ? new Date(owner.since * 1000).toISOString() : 'an unknown time';
  return `${owner.holder}, since ${since} (${formatAge(lockAgeSeconds(owner, now))} ago), step ${owner.step}`;
}

/**
 * The message a refused run prints: who holds the lock, what on the server keeps it alive, and what to do.
 * `sshHint` is how to reach the server from the laptop; empty when the reader is on the server already.
 * Never "remove the lock": a lock whose holder is gone is taken over by the next run on its own.
 */
export function explainHeldLock(
  answer: Extract<LockAnswer, { kind: 'held' }>,
  staleAfterSeconds: number,
  sshHint: string,
): { message: string; hint: string } {
  const { owner, now, alive } = answer;
  const on = sshHint ? `${sshHint} ` : '';
  const who = describeOwner(owner, now);
  const [what, pid] = alive.split(' ');
  if (what === 'step') {
    return {
      message: `another bootstrap run holds the server lock: ${who}; its step still runs on the server as pid ${pid}`,
      hint: `wait for it to finish (the lock is taken over on its own once that process has ended). If it hangs, see what it does (${on}ps -o pid,etime,args -p ${pid}) and stop it (${on}kill ${pid}), then run again`,
    };
  }
  if (what === 'connection') {
    return {
      message: `another bootstrap run holds the server lock: ${who}; its SSH connection is still open (sshd pid ${pid} on the server)`,
      hint: `wait for it to finish. If that launcher is dead (its laptop crashed or lost the network), end its connection (${on}kill ${pid}), then run again: the lock is taken over once its holder is gone`,
    };
  }
  const left = Math.max(0, staleAfterSeconds - lockAgeSeconds(owner, now));
  return {
    message: `another bootstrap run holds the server lock: ${who}. It records no process that could prove it alive (an older version of this tool wrote it)`,
    hint: `wait for it to finish; if it does not, the lock is taken over once older than CODEXK8S_LOCK_STALE_AFTER (${formatAge(staleAfterSeconds)}), in ${formatAge(left)}`,
  };
}

/** The line a run prints when it replaced the lock of a holder that is gone. */
export function describeTakeover(answer: Extract<LockAnswer, { kind: 'took-over' }>): string {
  const p = answer.previous;
  return `took over the lock of ${p.holder}${p.run && !p.holder.includes(p.run) ? ` run ${p.run}` : ''} (step ${p.step}): its holder is gone (${answer.reason})`;
}

/** A lock directory someone else could have made: refused, and left alone. */
export function explainRefusedLock(reason: string, sshHint: string): { message: string; hint: string } {
  const on = sshHint ? `${sshHint} ` : '';
  return {
    message: `the server lock is not trusted: ${reason}. Only root creates ${REMOTE.lockDir}`,
    hint: `another local user may have created it to block or steer the bootstrap: look at it (${on}ls -la ${REMOTE.lockDir} ${REMOTE.lockDir}.guard) and remove it as root once you know who made it`,
  };
}

export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}
