// Every command in the README and the runbook that calls one of our scripts must name a script that
// exists, and use only flags that its --help lists: docs read at 3 a.m. must not lie.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { helpText } from '../../bootstrap/lib/cli.mts';
import type { CliSpec } from '../../bootstrap/lib/cli.mts';
import { stepCliSpec } from '../../bootstrap/lib/step.mts';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';
import { SPEC as LAUNCHER } from '../../bootstrap/lib/launcher/spec.mts';
import { SPEC as GEN_DOCS } from '../../bootstrap/host/gen_config_docs.mts';
import { SPEC as SMOKE } from '../../bootstrap/host/smoke_staging.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const HOST_SCRIPTS: Record<string, CliSpec> = {
  'bootstrap/host/bootstrap_remote_staging.mts': LAUNCHER,
  'bootstrap/host/gen_config_docs.mts': GEN_DOCS,
  'bootstrap/host/smoke_staging.mts': SMOKE,
};

interface Invocation {
  doc: string;
  line: string;
  script: string;
  flags: string[];
}

/**
 * Commands inside fenced code blocks (and inline `code`) that run bootstrap/host/*.mts or bootstrap/remote/*.mts.
 * A command continued with a trailing backslash is one command; a line is cut at `|`, `;` and `&&`/`||`, so
 * the flags of the next command are never taken for our script's, and two of our scripts on one line are both checked.
 */
export function invocations(doc: string, text: string): Invocation[] {
  const out: Invocation[] = [];
  const fenced = [...text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].flatMap((m) =>
    (m[1] ?? '').replace(/\\\n\s*/g, ' ').split('\n'),
  );
  const inline = [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] ?? '');
  for (const raw of [...fenced, ...inline]) {
    const line = raw.replace(/#.*$/, '').trim();
    for (const command of line.split(/\s*(?:\|\|?|&&|;)\s*/)) {
      const m = /(?:\.\/|\/opt\/codex-k8s-bootstrap\/)?(bootstrap\/(?:host|remote)\/[A-Za-z0-9_]+\.mts)(.*)$/.exec(
        command,
      );
      if (!m) continue;
      const rest = (m[2] ?? '').replace(/['"]/g, ' ');
      const flags = [...rest.matchAll(/(?:^|\s)(--?[A-Za-z][A-Za-z-]*)/g)].map((f) => f[1] as string);
      out.push({ doc, line: command, script: m[1] as string, flags });
    }
  }
  return out;
}

function specFor(script: string): CliSpec | undefined {
  if (HOST_SCRIPTS[script]) return HOST_SCRIPTS[script];
  const m = /^bootstrap\/remote\/(\d\d_[a-z0-9_]+)\.mts$/.exec(script);
  return m && stepNames().includes(m[1] as string) ? stepCliSpec(m[1] as string) : undefined;
}

const DOCS = ['README.md', 'docs/runbook.md'];

test('the README and the runbook call our scripts, and every call is checked', () => {
  const all = DOCS.flatMap((d) => invocations(d, readFileSync(join(ROOT, d), 'utf8')));
  assert.ok(all.filter((i) => i.doc === 'README.md').length >= 4, 'the README quick start runs the launcher');
  assert.ok(all.filter((i) => i.doc === 'docs/runbook.md').length >= 4);
  for (const inv of all) {
    assert.ok(existsSync(join(ROOT, inv.script)), `${inv.doc}: ${inv.script} does not exist (in: ${inv.line})`);
    const spec = specFor(inv.script);
    assert.ok(spec, `${inv.doc}: no --help spec known for ${inv.script}`);
    const help = helpText(spec);
    for (const flag of inv.flags) {
      const known = flag.startsWith('--')
        ? help.includes(`${flag} `) || help.includes(`${flag}\n`) || help.includes(`${flag},`)
        : new RegExp(`(^|\\s)${flag},`, 'm').test(help);
      assert.ok(known, `${inv.doc}: "${inv.line}" uses ${flag}, which ${inv.script} --help does not list`);
    }
  }
});

test('the README quick start shows the plan without a server first', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const quick = readme.slice(
    readme.indexOf('## Quick start'),
    readme.indexOf('##', readme.indexOf('## Quick start') + 5),
  );
  const calls = invocations('README.md', quick);
  assert.equal(
    calls[0]?.line.replace(/\s+/g, ' '),
    './bootstrap/host/bootstrap_remote_staging.mts --dry-run --env-file .env.example',
  );
});

test('the extractor itself finds flags and ignores comments', () => {
  const found = invocations(
    'x',
    '```sh\n./bootstrap/host/bootstrap_remote_staging.mts --from 10 -y   # not --this\n```\n',
  );
  assert.deepEqual(
    found.map((f) => f.flags),
    [['--from', '-y']],
  );
});

test('the extractor follows continued lines and stops at the next command', () => {
  const text = [
    '```sh',
    './bootstrap/host/bootstrap_remote_staging.mts --env-file .env.new \\',
    '  --only 00_preflight',
    'sudo /opt/codex-k8s-bootstrap/bootstrap/remote/40_postgres.mts --check | grep -c drift && /opt/codex-k8s-bootstrap/bootstrap/remote/20_install_k3s.mts --check',
    '```',
  ].join('\n');
  const found = invocations('x', text);
  assert.deepEqual(
    found.map((f) => [f.script, f.flags]),
    [
      ['bootstrap/host/bootstrap_remote_staging.mts', ['--env-file', '--only']],
      ['bootstrap/remote/40_postgres.mts', ['--check']],
      ['bootstrap/remote/20_install_k3s.mts', ['--check']],
    ],
  );
  assert.ok(
    specFor('bootstrap/remote/20_install_k3s.mts'),
    'a step name with a digit after the number (k3s) has a spec',
  );
});
