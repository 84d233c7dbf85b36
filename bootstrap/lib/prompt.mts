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
  return new Promise((resolve, reject) => {
    let buf = '';
    // Echo goes off before the prompt shows: nothing typed after the prompt can be echoed.
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
        if (ch === '\u0003' || ch === '\u0004')
          return finish(new UsageError('interrupted while reading a secret; nothing was changed'));
        if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1);
        else buf += ch;
      }
    };
    input.on('data', onData);
  });
}

/** Reads one line with echo on (a typed confirmation). Ctrl-C or Ctrl-D abort (exit 2: nothing was touched). */
export function readLine(
  prompt: string,
  input: TtyIn = process.stdin,
  output: Writable = process.stderr,
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
        if (ch === '\u0003' || ch === '\u0004')
          return finish(new UsageError('interrupted at the confirmation; nothing was removed'));
        if (ch === '\u007f' || ch === '\b') {
          if (buf.length > 0) output.write('\b \b');
          buf = buf.slice(0, -1);
        } else if (ch >= ' ') {
          buf += ch;
          output.write(ch);
        }
      }
    };
    input.on('data', onData);
  });
}
