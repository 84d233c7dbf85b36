// The GitHub webhook secret, read from a file (a Kubernetes Secret mounted as a volume). The kubelet rotates such
// a file by swapping a symlink, which changes the target's mtime and inode: the file is stat()ed on every use and
// re-read only when that identity changed, so a rotated secret takes effect without a restart and an unchanged one
// costs one stat.
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from './log.mts';

export type SecretState = { ok: true; value: string } | { ok: false; problem: string };

export class WebhookSecret {
  readonly file: string;
  #log: Logger;
  #identity: string | undefined;
  #state: SecretState = { ok: false, problem: 'not read yet' };

  constructor(file: string, log: Logger) {
    this.file = file;
    this.#log = log;
  }

  /** The current secret, or why there is none (missing, unreadable or empty file). Never throws. */
  async current(): Promise<SecretState> {
    let identity: string;
    try {
      const st = await stat(this.file);
      identity = `${st.mtimeMs}:${st.ino}:${st.size}`;
    } catch (e) {
      return this.#set('absent', {
        ok: false,
        problem: `webhook secret file ${this.file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      });
    }
    if (identity === this.#identity) return this.#state;
    try {
      // The file ends with a newline when written by hand or by the bootstrap: the secret is the trimmed text, as
      // the bootstrap hands it to GitHub.
      const value = (await readFile(this.file, 'utf8')).trim();
      if (value === '') return this.#set(identity, { ok: false, problem: `webhook secret file ${this.file} is empty` });
      this.#log.addSecret(value);
      return this.#set(identity, { ok: true, value });
    } catch (e) {
      return this.#set('absent', {
        ok: false,
        problem: `webhook secret file ${this.file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      });
    }
  }

  #set(identity: string, state: SecretState): SecretState {
    const changed = identity !== this.#identity;
    this.#identity = identity;
    this.#state = state;
    if (changed) {
      // Logged once per change, never the value: enough to see a rotation (or a broken mount) in the logs.
      if (state.ok) this.#log.info('webhook secret loaded', { file: this.file });
      else this.#log.warn('webhook secret unavailable: every webhook gets 401', { reason: state.problem });
    }
    return state;
  }
}
