// Issue 12 item 5: every value the launcher accepts reaches the steps exactly as validated. The chain is the real one:
// loadConfig on the laptop -> serializeServerEnv (bootstrap.env) -> a file -> loadConfig on the server side (what each
// step does). A value that cannot make the trip is refused at validation, naming the setting, and never crashes.
// The inputs come from a seeded generator (no property-testing package): quotes, backslashes, \n sequences, line
// breaks, #, $, Unicode line separators and such, spliced into values that are otherwise valid for each setting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, serializeServerEnv, SETTINGS } from '../../bootstrap/lib/config.mts';
import type { Setting } from '../../bootstrap/lib/config.mts';
import { prng } from '../prng.mts';

const dir = mkdtempSync(join(tmpdir(), 'ck8s-roundtrip-'));
const key = join(dir, 'id');
writeFileSync(key, '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n', { mode: 0o600 });
const KEY_BODY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
writeFileSync(`${key}.pub`, `${KEY_BODY} op@laptop\n`);
const TOKEN = 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ';
const GOOD: Record<string, string> = {
  TARGET_HOST: '203.0.113.10',
  TARGET_ROOT_SSH_KEY: key,
  OPERATOR_SSH_PUBKEY_PATH: `${key}.pub`,
  CODEXK8S_GITHUB_REPO: 'a/b',
  CODEXK8S_GITHUB_PAT: TOKEN,
};
const SERVER = SETTINGS.filter((s) => s.scope !== 'host');

// Units a fragment is made of: what dotenv, a shell or YAML could read specially, and plain characters.
const UNITS = [
  "'",
  '"',
  '`',
  '\\',
  '\\n',
  '\\r',
  '\n',
  '\r',
  '\t',
  ' ',
  '#',
  '$',
  '${X}',
  '$(id)',
  '=',
  ',',
  '/',
  ':',
  '@',
  '.',
  '-',
  '_',
  '*',
  '%',
  '\u2028',
  '\u2029',
  '\u00a0',
  '\ufeff',
  'é',
  '😀',
  '\0',
  'a',
  'Z',
  '0',
  '9',
  'x=1',
  '\nCODEXK8S_MODE=server',
  "'#",
  '"#',
  '`#',
];

// A valid value per kind, so that a mutation often stays acceptable and the round trip is really exercised.
function seed(s: Setting): string {
  const fixed: Record<string, string> = {
    port: '2222',
    username: 'codex',
    sshPublicKey: `${KEY_BODY} op@laptop`,
    repo: 'a/b',
    githubToken: TOKEN,
    url: 'https://api.github.com',
    string: 'push,pull_request',
    domain: 'staging.example.com',
    dnsLabel: 'abc',
    email: 'ops@example.com',
    int: '3',
    bool: 'true',
    cidr: '10.42.0.0/16',
    cidrList: '198.51.100.7/32',
    duration: '3m',
    cron: '17 3 * * *',
    sha256Overrides: `node:x64=${'a'.repeat(64)}`,
  };
  return s.kind === 'enum' ? (s.values?.[0] ?? '') : (fixed[s.kind] ?? 'x');
}

function generate(s: Setting, next: () => number): string {
  const fragment = () =>
    Array.from({ length: 1 + Math.floor(next() * 6) }, () => UNITS[Math.floor(next() * UNITS.length)]).join('');
  const base = seed(s);
  const r = next();
  if (r < 0.1) return base;
  if (r < 0.5) return `${base}${s.kind === 'url' ? '/' : s.kind === 'sshPublicKey' ? ' ' : ''}${fragment()}`;
  if (r < 0.8) {
    const at = Math.floor(next() * (base.length + 1));
    return base.slice(0, at) + fragment() + base.slice(at);
  }
  return fragment();
}

/** The host's view, the text it uploads, and the server's view read back from a file, as a step reads it. */
function trip(env: Record<string, string>) {
  const host = loadConfig({ side: 'host', env: { ...GOOD, ...env } });
  if (host.problems.length > 0) return { host };
  const text = serializeServerEnv(host.config);
  const file = join(dir, 'bootstrap.env');
  writeFileSync(file, text, { mode: 0o600 });
  return { host, text, server: loadConfig({ side: 'server', envFile: file, explicitEnvFile: true, env: {} }) };
}

test('property: every accepted value reaches the steps exactly; every refused one names its setting', () => {
  const next = prng(20261205);
  const accepted = new Map<string, number>();
  const free = SERVER.filter((s) => ['string', 'sshPublicKey', 'url'].includes(s.kind));
  for (let n = 0; n < 1500; n++) {
    const picked = new Map<Setting, string>();
    for (let k = 0; k < 1 + Math.floor(next() * 3); k++) {
      const s = next() < 0.6 ? free[Math.floor(next() * free.length)] : SERVER[Math.floor(next() * SERVER.length)];
      if (s) picked.set(s, generate(s, next));
    }
    const env = Object.fromEntries([...picked].map(([s, v]) => [s.name, v]));
    if (env['CODEXK8S_STAGING_DOMAIN'] !== undefined) env['CODEXK8S_LETSENCRYPT_EMAIL'] ??= 'ops@example.com';
    const shown = JSON.stringify(env);
    const r = trip(env);
    if (!r.server) {
      for (const p of r.host.problems)
        assert.match(p, /^[A-Z][A-Z0-9_]+: /, `a problem that names no setting for ${shown}`);
      for (const p of r.host.problems) assert.ok(!p.includes(TOKEN.slice(12)), 'the token is never echoed');
      continue;
    }
    assert.deepEqual(r.server.problems, [], `${shown}\n${r.text}`);
    for (const s of SERVER)
      assert.deepEqual(
        r.server.config[s.name],
        r.host.config[s.name],
        `${s.name} changed on the way for ${shown}\n${r.text}`,
      );
    for (const [s, v] of picked)
      if (/['"`\\\n\r#$\u2028]/.test(v)) accepted.set(s.kind, (accepted.get(s.kind) ?? 0) + 1);
  }
  // Not vacuous: values with special characters did pass, for each free-text kind.
  for (const kind of ['string', 'sshPublicKey', 'url'])
    assert.ok((accepted.get(kind) ?? 0) > 30, `${kind}: only ${accepted.get(kind) ?? 0} special values passed`);
});

// The examples, and the shapes dotenv reads differently, each refused by name before anything is contacted.
const REFUSED: Array<[string, string, string]> = [
  ['a key comment with \', " and a backtick', 'OPERATOR_SSH_PUBKEY', `${KEY_BODY} it's "quoted" and \`ticked\``],
  [
    "a key comment with ', ` and a \\n that double quotes would expand",
    'OPERATOR_SSH_PUBKEY',
    `${KEY_BODY} o'neil \`x\` a\\nb`,
  ],
  ['a key comment with a carriage return', 'OPERATOR_SSH_PUBKEY', `${KEY_BODY} a\rb`],
  ['webhook events ending in a backslash', 'CODEXK8S_GITHUB_WEBHOOK_EVENTS', 'push\\'],
  ['a URL with a line break (URL parsers drop it)', 'CODEXK8S_ARTIFACT_MIRROR', 'https://mirror.example.com/a\nb'],
  ['a URL with all three quotes', 'CODEXK8S_SMOKE_URL', 'http://10.0.0.5/\'"`'],
];
for (const [name, setting, value] of REFUSED) {
  test(`refused at validation, naming the setting: ${name}`, () => {
    const r = loadConfig({ side: 'host', env: { ...GOOD, [setting]: value } });
    const mine = r.problems.filter((p) => p.startsWith(`${setting}: `));
    assert.equal(mine.length, 1, r.problems.join('\n'));
    assert.match(mine[0] ?? '', /cannot be written to the server's bootstrap\.env unchanged \(.+\); expected /);
  });
}

test('values with quotes, #, $ and \\n that bootstrap.env can hold arrive unchanged', () => {
  const cases: Record<string, string> = {
    OPERATOR_SSH_PUBKEY: `${KEY_BODY} o'neil "x" a\\nb #1 $(id)`,
    CODEXK8S_GITHUB_WEBHOOK_EVENTS: 'push,"pull_request"#`x`',
    CODEXK8S_SMOKE_URL: "http://10.0.0.5/it's",
  };
  const r = trip(cases);
  assert.deepEqual(r.host.problems, []);
  for (const [name, v] of Object.entries(cases)) assert.equal(r.server?.config[name], v, name);
});

test('a value of only spaces counts as unset on the laptop, as it does in the server file', () => {
  const r = trip({ CODEXK8S_GITHUB_WEBHOOK_EVENTS: '   ' });
  assert.equal(r.host.config['CODEXK8S_GITHUB_WEBHOOK_EVENTS'], 'push,pull_request,issues,issue_comment');
  assert.equal(r.server?.config['CODEXK8S_GITHUB_WEBHOOK_EVENTS'], r.host.config['CODEXK8S_GITHUB_WEBHOOK_EVENTS']);
});

test('a hand-edited bootstrap.env with a value no quoting carries is a problem for the step (exit 2), not a stack trace', () => {
  // Unquoted, dotenv keeps all three quote characters.
  const text = serializeServerEnv(trip({}).host.config) + 'CODEXK8S_GITHUB_WEBHOOK_EVENTS=push\'"x"`\n';
  const file = join(dir, 'hand.env');
  writeFileSync(file, text.replace(/^CODEXK8S_GITHUB_WEBHOOK_EVENTS='push,pull_request,issues,issue_comment'\n/m, ''), {
    mode: 0o600,
  });
  const r = loadConfig({ side: 'server', envFile: file, explicitEnvFile: true, env: {} });
  assert.deepEqual(
    r.problems.filter((p) => !p.startsWith('CODEXK8S_GITHUB_WEBHOOK_EVENTS: the value cannot be written')),
    [],
  );
  assert.equal(r.problems.length, 1, r.problems.join('\n'));
});
