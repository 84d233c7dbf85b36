// Asking for a missing secret on a terminal, without echo. Never used without a TTY or with --yes.
import type { Readable, Writable } from 'node:stream';
import { UsageError } from './errors.mts';

type TtyIn = Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };

export function canPrompt(input: TtyIn = process.stdin): boolean {
  return Boolean(input.isTTY) && typeof input.setRawMode === 'function';
}

/** Reads one line with echo off. Ctrl-C aborts (exit 2: nothing was touched), backspace edits. */
export function readHidden(
  prompt: string,
  input: TtyIn = process.stdin,
  output: Writable = process.stderr,
): Promise<string> {
  return readTyped(prompt, false, 'interrupted while reading a secret; nothing was changed', input, output);
}

/** Reads one line with echo on (a typed confirmation). Ctrl-C or Ctrl-D abort (exit 2: nothing was touched). */
export function readLine(
  prompt: string,
  input: TtyIn = process.stdin,
  output: Writable = process.stderr,
): Promise<string> {
  return readTyped(prompt, true, 'interrupted at the confirmation; nothing was removed', input, output);
}

/**
 * One line from a terminal in raw mode: Enter ends it, backspace edits, Ctrl-C / Ctrl-D reject with `interrupted`
 * (a UsageError). Echo goes off before the prompt shows, so nothing typed after it is echoed unless `echo`.
 */
function readTyped(
  prompt: string,
  echo: boolean,
  interrupted: string,
  input: TtyIn,
  output: Writable,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    input.setRawMode?.(true);
    input.resume();
    output.write(prompt);
    const finish = (err?: Error) => {
      input.off('data', onData);
      input.setRawMode?.(false);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(buf.trim());
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString()) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new UsageError(interrupted));
        if (ch === '\u007f' || ch === '\b') {
          if (echo && buf.length > 0) output.write('\b \b');
          buf = buf.slice(0, -1);
        } else if (!echo) buf += ch;
        else if (ch >= ' ') {
          buf += ch;
          output.write(ch);
        }
      }
    };
    input.on('data', onData);
  });
}
