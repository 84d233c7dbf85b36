// --uninstall's pure parts (the plan rows, the step flags, what is kept) and the teardown runner (removeStep):
// convergence to absence, journaled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeStep } from '../../bootstrap/lib/step.mts';
import type { Teardown } from '../../bootstrap/lib/step.mts';
import { Logger, stripAnsi } from '../../bootstrap/lib/log.mts';
import { loadConfig } from '../../bootstrap/lib/config.mts';
import { OperationError } from '../../bootstrap/lib/errors.mts';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';
import { REMOTE } from '../../bootstrap/lib/paths.mts';
import { KEPT_DUMPS_DIR } from '../../bootstrap/lib/backup/server.mts';
import {
  TEARDOWN_ORDER,
  TOOL_DIRS,
  formatTeardownPlan,
  keptLines,
  parseTeardownCheck,
  teardownArgs,
} from '../../bootstrap/lib/launcher/uninstall.mts';

const ctx = () => ({
  cfg: loadConfig({ side: 'server', env: {}, strict: false }).config,
  log: new Logger(),
  runId: 'run-u',
});

test('teardown order is the run order reversed; the flags a step gets follow the options', () => {
  assert.deepEqual(TEARDOWN_ORDER, [...stepNames()].reverse());
  assert.deepEqual(teardownArgs({ purgeData: false, removeOperator: false }), ['--uninstall']);
  assert.deepEqual(teardownArgs({ purgeData: true, removeOperator: true }), [
    '--uninstall',
    '--purge-data',
    '--remove-operator',
  ]);
  // The tool's own directories, never the logs or a system directory.
  assert.ok(TOOL_DIRS.includes(REMOTE.base) && TOOL_DIRS.includes(REMOTE.stateDir));
  assert.ok(!TOOL_DIRS.includes(REMOTE.logDir));
  for (const d of TOOL_DIRS) assert.match(d, /\/codex-k8s-bootstrap$/);
});

test("a step's --uninstall --check output becomes a plan row; anything else is an error row", () => {
  assert.deepEqual(parseTeardownCheck('20_install_k3s', 0, '20_install_k3s: nothing to remove\n', ''), {
    name: '20_install_k3s',
    status: 'none',
    lines: [],
  });
  assert.deepEqual(
    parseTeardownCheck(
      '20_install_k3s',
      1,
      '  - k3s v1.36 (binary, unit)\n  - file /home/codex/.kube/config\n20_install_k3s: 2 to remove\n',
      '',
    ),
    { name: '20_install_k3s', status: 'remove', lines: ['k3s v1.36 (binary, unit)', 'file /home/codex/.kube/config'] },
  );
  const broken = parseTeardownCheck('70_github_repo', 1, '', 'error: GitHub answered 401\n');
  assert.equal(broken.status, 'error');
  assert.equal(broken.error, 'GitHub answered 401');
  assert.equal(parseTeardownCheck('70_github_repo', 137, '', '').error, 'its plan exited with code 137');
  // Exit 1 without the step's own closing line is not a plan (a crash that printed a dash).
  assert.equal(parseTeardownCheck('70_github_repo', 1, '  - x\n', '').status, 'error');
});

test('the plan names each step, what it removes, the directories, and what is kept', () => {
  const rows = [
    { name: '70_github_repo', status: 'remove' as const, lines: ['GitHub variable CODEXK8S_MODE'] },
    { name: '00_preflight', status: 'none' as const, lines: [] },
  ];
  const text = formatTeardownPlan(rows, keptLines({ purgeData: false, removeOperator: false }, 'codex'))
    .map(stripAnsi)
    .join('\n');
  assert.match(text, /^ {2}70_github_repo +remove\n +- GitHub variable CODEXK8S_MODE$/m);
  assert.match(text, /^ {2}00_preflight +nothing$/m);
  assert.match(text, /then the tool's own directories: \/opt\/codex-k8s-bootstrap/);
  assert.match(text, new RegExp(`= PostgreSQL: a final dump of the database in ${KEPT_DUMPS_DIR}`));
  assert.match(text, /= the operator codex, its key and its sudo/);
  const purge = keptLines({ purgeData: true, removeOperator: true }, 'codex').join('\n');
  assert.match(purge, /--purge-data removes/);
  assert.match(purge, /the operator codex goes too/);
});

test('removeStep: check -> remove -> check; the step leaves the journal; a second teardown is unchanged', async () => {
  const d = mkdtempSync(join(tmpdir(), 'ck8s-rm-'));
  const journal = join(d, 'state.json');
  writeFileSync(
    journal,
    JSON.stringify({
      version: 1,
      steps: { '20_demo': { status: 'ok', startedAt: 'x', changes: [], configHash: 'h', runId: 'r0' } },
      history: [],
    }),
  );
  let present = ['file /etc/demo', 'unit demo.service'];
  let removals = 0;
  const td: Teardown = {
    check: async () => [...present],
    apply: async () => {
      removals++;
      const done = present.map((p) => `removed ${p}`);
      present = [];
      return done;
    },
  };
  const o = { purgeData: false, removeOperator: false };
  const first = await removeStep('20_demo', td, ctx(), o, journal);
  assert.equal(first.status, 'changed');
  assert.deepEqual(first.changes, ['removed file /etc/demo', 'removed unit demo.service']);
  assert.equal(JSON.parse(readFileSync(journal, 'utf8')).steps['20_demo'], undefined, 'a later run makes it again');
  const again = await removeStep('20_demo', td, ctx(), o, journal);
  assert.equal(again.status, 'unchanged');
  assert.equal(removals, 1);
  // A step without a teardown has nothing of its own to remove.
  assert.equal((await removeStep('00_none', undefined, ctx(), o, journal)).status, 'unchanged');
});

test('removeStep: something left after the removal, or a refusal, fails and is journaled as failed', async () => {
  const d = mkdtempSync(join(tmpdir(), 'ck8s-rm-'));
  const journal = join(d, 'state.json');
  const o = { purgeData: false, removeOperator: false };
  const stubborn: Teardown = { check: async () => ['file /etc/stays'], apply: async () => ['tried'] };
  const left = await removeStep('20_stubborn', stubborn, ctx(), o, journal);
  assert.equal(left.status, 'failed');
  assert.match(left.error ?? '', /^uninstall: still present after the removal: file \/etc\/stays$/);
  const rec = JSON.parse(readFileSync(journal, 'utf8')).steps['20_stubborn'];
  assert.equal(rec.status, 'failed', 'a bootstrap after a half teardown repeats the step');
  const refusing: Teardown = {
    check: async () => ['sshd drop-in'],
    apply: async () => {
      throw new OperationError('sshd -t refuses the configuration without our drop-in', { exitCode: 2 });
    },
  };
  const refused = await removeStep('10_refusing', refusing, ctx(), o, journal);
  assert.equal(refused.status, 'failed');
  assert.equal(refused.exitCode, 2);
});

test('the typed confirmation: echoed, edited with backspace, ended by Enter; Ctrl-C refuses (nothing removed)', async () => {
  const { PassThrough } = await import('node:stream');
  const { readLine } = await import('../../bootstrap/lib/prompt.mts');
  const { UsageError } = await import('../../bootstrap/lib/errors.mts');
  const tty = () => Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => undefined });
  const out = new PassThrough();
  let shown = '';
  out.on('data', (c: Buffer) => (shown += c.toString()));
  const input = tty();
  const typed = readLine('Type the host name (h1) to remove all of the above: ', input, out);
  input.write('h2\u007f1\r');
  assert.equal(await typed, 'h1');
  assert.equal(shown, 'Type the host name (h1) to remove all of the above: h2\b \b1\n');
  const cancelled = tty();
  const refused = readLine('? ', cancelled, new PassThrough());
  cancelled.write('h\u0003');
  await assert.rejects(refused, (e: unknown) => e instanceof UsageError && /nothing was removed/.test(e.message));
});
