#!/usr/bin/env -S node --import tsx --
// Generates .env.example and docs/configuration.md from the settings schema (bootstrap/lib/config.mts),
// so the three never disagree. `--check` exits 1 when a generated file is out of date (run by npm test).
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SETTINGS } from '../lib/config.mts';
import type { Setting } from '../lib/config.mts';
import { Logger } from '../lib/log.mts';
import { parseCli, helpText, runMain } from '../lib/cli.mts';
import type { CliSpec } from '../lib/cli.mts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const SPEC: CliSpec = {
  name: './bootstrap/host/gen_config_docs.mts',
  usage: './bootstrap/host/gen_config_docs.mts [--check]',
  summary: 'Writes .env.example and docs/configuration.md from the settings schema in bootstrap/lib/config.mts.',
  flags: [
    { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
    { name: 'check', type: 'boolean', description: 'write nothing; exit 1 when a generated file is out of date' },
  ],
};

function defaultText(s: Setting): string {
  if (s.defaultText) return s.defaultText;
  if (typeof s.default === 'string') return s.default;
  return 'none';
}

function requiredText(s: Setting): string {
  if (s.required === true) return 'required';
  if (typeof s.required === 'function') return `required ${s.requiredText ?? 'in some modes'}`;
  return 'optional';
}

const SCOPE: Record<Setting['scope'], string> = {
  host: 'laptop only (never uploaded)',
  server: 'server',
  both: 'laptop and server',
};

function groups(): Map<string, Setting[]> {
  const m = new Map<string, Setting[]>();
  for (const s of SETTINGS) m.set(s.group, [...(m.get(s.group) ?? []), s]);
  return m;
}

export function renderEnvExample(): string {
  const out = [
    '# codex-k8s staging bootstrap settings. Copy to .env and fill in; .env is git-ignored.',
    '# Generated from bootstrap/lib/config.mts by ./bootstrap/host/gen_config_docs.mts: edit the schema, not this file.',
    '# Empty or commented-out settings take their default. Values already in the environment win over this file.',
    '# Quote values that contain # (dotenv starts a comment at an unquoted #).',
    '',
  ];
  for (const [group, items] of groups()) {
    out.push(`# --- ${group} ${'-'.repeat(Math.max(3, 96 - group.length))}`);
    for (const s of items) {
      out.push(`# ${s.description}`);
      out.push(`# ${requiredText(s)}; default: ${defaultText(s)}${s.secret ? '; SECRET' : ''}`);
      if (s.secret) out.push(`${s.name}=`);
      else if (s.example !== undefined && s.required === true) out.push(`${s.name}=${s.example}`);
      else if (s.example !== undefined) out.push(`# ${s.name}=${s.example}`);
      else out.push(`# ${s.name}=${typeof s.default === 'string' ? s.default : ''}`);
      out.push('');
    }
  }
  return out.join('\n');
}

export function renderConfigDoc(): string {
  const out = [
    '# Configuration reference',
    '',
    'Generated from `bootstrap/lib/config.mts` by `./bootstrap/host/gen_config_docs.mts`; a test fails when it is out of date.',
    'Settings come from the env file (`--env-file`, default `.env`) and the environment; the environment wins.',
    'The launcher validates all of them before it contacts anything and reports every problem at once (exit 2).',
    'Secrets are never printed: they are masked as `***` in every output and log, and reach the server only',
    'inside `/etc/codex-k8s-bootstrap/bootstrap.env` (0600, sent on stdin). Laptop-only settings are never uploaded.',
    '',
  ];
  for (const [group, items] of groups()) {
    out.push(
      `## ${group}`,
      '',
      '| Setting | Type | Default | Required | Secret | Used on | Meaning |',
      '|---|---|---|---|---|---|---|',
    );
    for (const s of items) {
      const type =
        s.kind === 'enum' ? `one of ${s.values?.join(', ')}` : s.kind === 'int' ? `integer ${s.min}..${s.max}` : s.kind;
      out.push(
        `| \`${s.name}\` | ${type} | ${defaultText(s).replace(/\|/g, '\\|')} | ${requiredText(s)} | ${s.secret ? 'yes' : 'no'} | ${SCOPE[s.scope]} | ${s.description.replace(/\|/g, '\\|')} |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}

export const GENERATED: ReadonlyArray<{ path: string; render: () => string }> = [
  { path: '.env.example', render: renderEnvExample },
  { path: 'docs/configuration.md', render: renderConfigDoc },
];

if (import.meta.filename === process.argv[1]) {
  const log = new Logger();
  await runMain(SPEC, log, async () => {
    const flags = parseCli(SPEC, process.argv.slice(2));
    if (flags['help']) {
      process.stdout.write(helpText(SPEC));
      return 0;
    }
    let stale = 0;
    for (const g of GENERATED) {
      const path = join(ROOT, g.path);
      const want = g.render();
      const have = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
      if (have === want) continue;
      if (flags['check']) {
        log.error(`${g.path} is out of date; run ./bootstrap/host/gen_config_docs.mts`);
        stale++;
      } else {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, want);
        log.info(`wrote ${g.path}`);
      }
    }
    return stale ? 1 : 0;
  });
}
