// The live line (lib/log.mts): on a terminal, long work shows as one line at the bottom, redrawn in place, with
// every other line scrolling above it; on anything else (CI, a pipe, the log file) the reports stay lines of their
// own. Written against a stand-in terminal that keeps what a real one would show.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, isProgressLine, progressLine, stepLiveLine } from '../../bootstrap/lib/log.mts';
import type { Sink } from '../../bootstrap/lib/log.mts';
import { registerSecret } from '../../bootstrap/lib/redact.mts';

/** A terminal of lines: `\r\x1b[K` erases the current line, `\n` ends it; what is left is what the user sees. */
function terminal(isTTY: boolean, columns = 80): Sink & { raw: string; screen(): string[] } {
  const t = {
    isTTY,
    columns,
    raw: '',
    write(s: string) {
      t.raw += s;
      return true;
    },
    screen() {
      const lines: string[] = [''];
      for (const part of t.raw.split(/(\r\u001b\[K|\n)/)) {
        if (part === '\r\u001b[K') lines[lines.length - 1] = '';
        else if (part === '\n') lines.push('');
        else lines[lines.length - 1] += part;
      }
      return lines;
    },
  };
  return t;
}

test('a terminal: the live line stays at the bottom, redrawn in place; other lines scroll above it', () => {
  const out = terminal(true);
  const err = terminal(true);
  const log = new Logger({ out, err });
  assert.equal(log.isLive, true);
  log.info('==> [03/05] 20_install_k3s');
  log.liveLine('⠋ 20_install_k3s 1.0s');
  log.liveLine('⠙ 20_install_k3s 2.0s');
  assert.deepEqual(out.screen(), ['==> [03/05] 20_install_k3s', '⠙ 20_install_k3s 2.0s']);
  log.info('    + k3s v1.36.2+k3s1 installed');
  assert.deepEqual(out.screen(), [
    '==> [03/05] 20_install_k3s',
    '    + k3s v1.36.2+k3s1 installed',
    '⠙ 20_install_k3s 2.0s',
  ]);
  log.liveLine(undefined);
  log.info('+ changed 3 (5.3s)');
  assert.deepEqual(out.screen(), [
    '==> [03/05] 20_install_k3s',
    '    + k3s v1.36.2+k3s1 installed',
    '+ changed 3 (5.3s)',
    '',
  ]);
});

test('a terminal: progress is the live line and goes to the log file; a warning on stderr erases it first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-live-'));
  const out = terminal(true);
  const err = terminal(true);
  const log = new Logger({ out, err, file: join(dir, 'run.log') });
  log.progress('  .. upload of the dump: 12.0 MiB of 46.0 MiB');
  assert.deepEqual(out.screen(), ['.. upload of the dump: 12.0 MiB of 46.0 MiB']);
  log.warn('slow');
  // The erase went to the terminal before stderr wrote its line, then the live line came back.
  assert.ok(out.raw.endsWith('\r\u001b[K.. upload of the dump: 12.0 MiB of 46.0 MiB'));
  assert.match(readFileSync(join(dir, 'run.log'), 'utf8'), /Z {3}\.\. upload of the dump: 12\.0 MiB of 46\.0 MiB\n/);
  assert.doesNotMatch(readFileSync(join(dir, 'run.log'), 'utf8'), /\u001b/);
});

test('not a terminal (CI, a pipe): no live line at all; progress reports are lines of their own', () => {
  const out = terminal(false);
  const log = new Logger({ out, err: terminal(false) });
  assert.equal(log.isLive, false);
  log.liveLine('⠋ 30_cluster_deps 1.0s');
  log.progress('  .. still waiting for x: 15s of at most 300s');
  log.info('done');
  assert.equal(out.raw, '  .. still waiting for x: 15s of at most 300s\ndone\n');
});

test('--json keeps stdout for the document: the live line goes to stderr when that is the terminal', () => {
  const out = terminal(false);
  const err = terminal(true);
  const log = new Logger({ out, err });
  log.stdoutForData = true;
  assert.equal(log.isLive, true);
  log.liveLine('⠋ 00_preflight 1.0s');
  assert.equal(out.raw, '');
  assert.equal(err.raw, '⠋ 00_preflight 1.0s');
});

test('the live line is masked and cut to the terminal width', () => {
  registerSecret('hunter2-live-secret');
  const out = terminal(true, 30);
  const log = new Logger({ out, err: terminal(true) });
  log.liveLine('token hunter2-live-secret and a long tail that does not fit');
  const [line] = out.screen();
  assert.ok(!out.raw.includes('hunter2-live-secret'));
  assert.equal(line?.length, 29);
  assert.ok(line?.endsWith('…'));
});

test('a step live line: spinner, step, time so far, the server last report without its dots', () => {
  assert.equal(stepLiveLine('30_cluster_deps', 4.25, 0), '⠋ 30_cluster_deps 4.3s');
  assert.equal(
    stepLiveLine('30_cluster_deps', 75, 11, progressLine('helm release cert-manager', 60, 300)),
    '⠙ 30_cluster_deps 1m15s · still waiting for helm release cert-manager: 60s of at most 300s',
  );
  assert.equal(isProgressLine(progressLine('x', 1, undefined)), true);
  assert.equal(isProgressLine('  .. backup: 3.0 MiB received in 2s, 1.5 MiB/s'), true);
  assert.equal(isProgressLine('      + namespace/codex-k8s-system created'), false);
  assert.equal(isProgressLine('...and more'), false);
});
