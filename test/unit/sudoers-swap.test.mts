// Validate, then swap, with the real visudo: a broken sudoers candidate is refused and the file that works stays.
// (The sandbox e2e proves the same rule for sshd with the real sshd -t.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, statSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installSudoers, sudoersContent } from '../../bootstrap/lib/harden/operator.mts';

const root = process.getuid?.() === 0;

test(
  'sudoers: visudo refuses a broken candidate and the previous working file is kept; a good one replaces it',
  { skip: root ? false : 'needs root (chown to root)' },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ck8s-sudoers-'));
    const path = join(dir, 'codex-k8s-operator');
    const working = sudoersContent('codex');
    writeFileSync(path, working);
    chmodSync(path, 0o440);

    await assert.rejects(
      installSudoers(path, 'codex ALL=(ALL:ALL) NOPASSWD ALL\n'),
      /visudo refused the sudoers drop-in; .* was left as it was/,
    );
    assert.equal(readFileSync(path, 'utf8'), working, 'the working file is untouched');
    assert.deepEqual(readdirSync(dir), ['codex-k8s-operator'], 'no candidate left behind');

    const next = sudoersContent('ops2');
    await installSudoers(path, next);
    assert.equal(readFileSync(path, 'utf8'), next);
    const st = statSync(path);
    assert.deepEqual([st.mode & 0o777, st.uid], [0o440, 0]);
  },
);
