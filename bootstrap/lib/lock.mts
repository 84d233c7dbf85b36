// The server-side run lock: a directory (mkdir is atomic) with an `owner` file:
//   token=<random>  holder=<user@laptop pid N>  since=<epoch seconds>  step=<current step or ->
// The launcher takes it before touching anything and passes the token to each step (CODEXK8S_LOCK_TOKEN);
// a step run by hand takes it itself. The functions here are pure: they parse and explain.
import { REMOTE } from './paths.mts';

export interface LockOwner {
  token: string;
  holder: string;
  since: number;
  step: string;
}

export type LockAnswer = { acquired: true } | { acquired: false; owner: LockOwner; now: number };

export function parseOwner(text: string): LockOwner {
  const kv: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return { token: kv['token'] ?? '', holder: kv['holder'] ?? 'unknown', since: Number(kv['since'] ?? 0), step: kv['step'] ?? '-' };
}

export function formatOwner(o: Omit<LockOwner, 'since'> & { since: number }): string {
  return `token=${o.token}\nholder=${o.holder}\nsince=${o.since}\nstep=${o.step}\n`;
}

/** Reads the output of `remote_helpers.sh lock-acquire`. */
export function parseLockAnswer(stdout: string): LockAnswer {
  const lines = stdout.trim().split('\n');
  if (lines[0] === 'acquired') return { acquired: true };
  if (lines[0] !== 'held') throw new Error(`unexpected lock answer: ${stdout.trim().slice(0, 200)}`);
  const now = Number((lines.find((l) => l.startsWith('now=')) ?? 'now=0').slice(4));
  return { acquired: false, owner: parseOwner(lines.slice(1).join('\n')), now };
}

export function lockAgeSeconds(owner: LockOwner, now: number): number {
  return Math.max(0, now - owner.since);
}

export function isStale(owner: LockOwner, now: number, staleAfterSeconds: number): boolean {
  return owner.since === 0 || lockAgeSeconds(owner, now) > staleAfterSeconds;
}

/** `sshHint` is how to reach the server from the laptop; empty when the reader is on the server already. */
export function clearLockCommand(sshHint: string): string {
  return `${sshHint ? `${sshHint} ` : ''}rm -rf ${REMOTE.lockDir}`;
}

/** The message a refused run prints: who holds the lock, since when, which step, and what to do. */
export function explainHeldLock(owner: LockOwner, now: number, staleAfterSeconds: number, sshHint: string): { message: string; hint: string } {
  const age = lockAgeSeconds(owner, now);
  const since = owner.since ? new Date(owner.since * 1000).toISOString() : 'an unknown time';
  const who = `${owner.holder}, since ${since} (${formatAge(age)} ago), step ${owner.step}`;
  if (isStale(owner, now, staleAfterSeconds)) {
    return {
      message: `the server lock is STALE: held by ${who}. No run should take this long; the holder probably died.`,
      hint: `make sure no bootstrap is running on this server (ps aux | grep codex-k8s), then clear the lock: ${clearLockCommand(sshHint)}`,
    };
  }
  return {
    message: `another bootstrap run holds the server lock: ${who}`,
    hint: `wait for it to finish. If you are sure it is dead, clear the lock: ${clearLockCommand(sshHint)}`,
  };
}

export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}
