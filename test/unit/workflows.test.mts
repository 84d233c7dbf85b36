// The GitHub Actions workflows cannot run here, so `npm test` lints them: actionlint on every file in
// .github/workflows, and Debian's shellcheck on every bash/sh `run:` block (test/lint-workflows.mts).
// The inline workflows below prove that the extraction follows the shell rules and that a bad block is caught,
// so a green run on the real workflows means something.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  actionlint,
  extractRunBlocks,
  formatFinding,
  lintWorkflows,
  sanitizeExpressions,
  scriptFile,
  shellcheckBlocks,
  workflowFiles,
  WORKFLOW_DIR,
} from '../lint-workflows.mts';

const SAMPLE = 'sample.yml';
// Workflow-level sh, one job overriding it with bash, a Windows job, python and pwsh steps, an expression, and
// one bad block (unquoted $(ls) loop) that must be caught.
const INLINE = `name: sample
on: push
defaults:
  run:
    shell: sh
jobs:
  posix:
    runs-on: ubuntu-24.04
    steps:
      - name: brackets under sh
        run: |
          if [[ -n "$HOME" ]]; then echo home; fi
      - name: bad loop
        shell: bash
        run: |
          for f in $(ls); do
            rm $f
          done
      - name: python step
        shell: python
        run: print("not a shell script")
  bashy:
    runs-on: [ubuntu-24.04]
    defaults:
      run:
        shell: bash
    steps:
      - id: brackets-under-bash
        run: |
          if [[ -n "$HOME" ]]; then echo home; fi
      - name: expression
        run: echo "sha \${{ github.sha }}" && test "\${{ runner.os }}" = Linux
      - run: Write-Output "pwsh"
        shell: pwsh
  windows:
    runs-on: windows-latest
    defaults:
      run:
        shell: pwsh
    steps:
      - run: Get-ChildItem
  reusable:
    uses: ./.github/workflows/other.yml
`;

test('extraction: the shell comes from the step, then the job defaults, then the workflow defaults', () => {
  const { blocks, skipped } = extractRunBlocks(INLINE, SAMPLE);
  assert.deepEqual(
    blocks.map((b) => [b.job, b.step, b.shell, b.setup]),
    [
      ['posix', '"brackets under sh"', 'sh', 'set -e'],
      ['posix', '"bad loop"', 'bash', 'set -eo pipefail'],
      ['bashy', 'brackets-under-bash', 'bash', 'set -eo pipefail'],
      ['bashy', '"expression"', 'bash', 'set -eo pipefail'],
    ],
  );
  assert.deepEqual(
    skipped.map((s) => [s.job, s.step, s.shell]),
    [
      ['posix', '"python step"', 'python'],
      ['bashy', '#3', 'pwsh'],
      ['windows', '#1', 'pwsh'],
    ],
  );
  // `run: |` on line 15 of the bad step: the script starts on line 16.
  const bad = blocks[1];
  assert.equal(bad?.runLine, 15);
  assert.equal(bad?.firstScriptLine, 16);
});

test('extraction: the default shell is bash, except on Windows runners', () => {
  const text = `on: push
jobs:
  linux:
    runs-on: ubuntu-24.04
    steps:
      - run: echo hi
  win:
    runs-on: { labels: [windows-2022] }
    steps:
      - run: echo hi
`;
  const { blocks, skipped } = extractRunBlocks(text, SAMPLE);
  assert.deepEqual(
    blocks.map((b) => [b.job, b.shell, b.shellSource]),
    [['linux', 'bash', 'bash (default)']],
  );
  assert.deepEqual(
    skipped.map((s) => [s.job, s.shell]),
    [['win', 'pwsh']],
  );
});

test('extraction: a workflow that is not YAML fails instead of yielding no blocks', () => {
  assert.throws(() => extractRunBlocks('jobs:\n  a: [unclosed\n', SAMPLE), /not valid YAML/);
});

test('${{ }} becomes underscores of the same length, on one or several lines', () => {
  const src = 'echo "${{ github.sha }}" ${{ matrix.a\n }} end';
  const out = sanitizeExpressions(src);
  assert.equal(out.length, src.length);
  assert.equal(out, `echo "${'_'.repeat('${{ github.sha }}'.length)}" ${'_'.repeat('${{ matrix.a\n }}'.length)} end`);
  assert.doesNotMatch(out, /\$\{\{/);
});

test("the temp script names workflow, job and step, and starts with the runner's set -e", () => {
  const { blocks } = extractRunBlocks(INLINE, SAMPLE);
  const b = blocks[3];
  assert.ok(b);
  const { text, headerLines } = scriptFile(b);
  const lines = text.split('\n');
  assert.equal(lines[0], '#!/bin/bash');
  assert.match(lines[1] ?? '', /sample\.yml: job bashy, step "expression", run: at line \d+, shell bash/);
  assert.equal(lines[headerLines - 1], 'set -eo pipefail');
  assert.match(text, /echo "sha _{17}" && test "_{16}" = Linux/);
});

test('shellcheck catches the bad block and the sh-only problem, and names workflow, job and step', async () => {
  const { blocks } = extractRunBlocks(INLINE, SAMPLE);
  const findings = await shellcheckBlocks(blocks);
  const byStep = (step: string) =>
    findings
      .filter((f) => f.step === step)
      .map((f) => f.kind)
      .sort();
  // The unquoted loop over $(ls): iterating over ls output, and word splitting of $f.
  assert.deepEqual(byStep('"bad loop"'), ['SC2045', 'SC2086']);
  // [[ ]] is bash: flagged under the workflow's sh, clean under the job's bash. The shell really is respected.
  assert.deepEqual(byStep('"brackets under sh"'), ['SC3010']);
  assert.deepEqual(byStep('brackets-under-bash'), []);
  // Expressions, quoted or not, are placeholders that shellcheck accepts (as actionlint's own pass does).
  assert.deepEqual(byStep('"expression"'), []);
  const sc2086 = findings.find((f) => f.kind === 'SC2086');
  assert.ok(sc2086);
  // rm $f is the second script line: workflow line 17.
  assert.equal(sc2086.line, 17);
  assert.equal(sc2086.job, 'posix');
  assert.match(formatFinding(sc2086), /^sample\.yml:17:\d+: job posix, step "bad loop": info: Double quote/);
});

test('actionlint reports a broken workflow (unknown job in needs, bad expression)', async () => {
  const text = `on: push
jobs:
  a:
    runs-on: ubuntu-24.04
    needs: [nowhere]
    steps:
      - run: echo "\${{ github.no_such_thing }}"
`;
  const findings = await actionlint(text, SAMPLE);
  const kinds = findings.map((f) => f.kind).sort();
  assert.ok(kinds.includes('job-needs'), `expected a job-needs finding, got ${findings.map(formatFinding).join('\n')}`);
  assert.ok(
    kinds.includes('expression'),
    `expected an expression finding, got ${findings.map(formatFinding).join('\n')}`,
  );
  assert.deepEqual(await actionlint(INLINE.replace(/ {2}reusable:\n.*\n/, ''), SAMPLE), []);
});

test('every workflow in .github/workflows passes actionlint and shellcheck', async () => {
  const files = workflowFiles();
  // The workflows the issues ask for must exist: an empty directory would pass every lint.
  for (const name of ['ci.yml', 'e2e-ubuntu.yml'])
    assert.ok(existsSync(join(WORKFLOW_DIR, name)), `.github/workflows/${name} is missing`);
  const report = await lintWorkflows(files);
  assert.deepEqual(report.actionlint.map(formatFinding), [], 'actionlint findings');
  assert.deepEqual(report.shellcheck.map(formatFinding), [], 'shellcheck findings in run: blocks');
  // Each workflow's bash blocks were really checked: as many as its steps with `run:`.
  const expected = files.reduce((n, f) => n + (readFileSync(f, 'utf8').match(/^\s+(- )?run: /gm) ?? []).length, 0);
  assert.equal(report.blocks, expected - report.skipped.length);
  assert.ok(report.blocks >= 8, `only ${report.blocks} run: blocks found`);
});
