// Config parsing and validation: every bad input gets a line naming the variable, what was wrong and
// what is expected; all problems are reported at once; secrets are never echoed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, chmodSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadConfig,
  serializeServerEnv,
  quoteDotenv,
  parseDuration,
  formatDuration,
  configHash,
  SETTINGS,
} from '../../bootstrap/lib/config.mts';
import { parse as parseDotenv } from 'dotenv';
import { registeredSecrets, clearSecretsForTests } from '../../bootstrap/lib/redact.mts';

const dir = mkdtempSync(join(tmpdir(), 'ck8s-config-'));
const key = join(dir, 'id_ed25519');
writeFileSync(key, '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n', { mode: 0o600 });
const pub = join(dir, 'id_ed25519.pub');
const PUBKEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl operator@laptop';
writeFileSync(pub, PUBKEY + '\n');
const TOKEN = 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ';

const GOOD: Record<string, string> = {
  TARGET_HOST: '203.0.113.10',
  TARGET_ROOT_SSH_KEY: key,
  OPERATOR_SSH_PUBKEY_PATH: pub,
  CODEXK8S_GITHUB_REPO: 'codex-k8s/codex-k8s',
  CODEXK8S_GITHUB_PAT: TOKEN,
};

function load(
  overrides: Record<string, string | undefined>,
  opts: { strict?: boolean; side?: 'host' | 'server' } = {},
) {
  return loadConfig({ side: opts.side ?? 'host', env: { ...GOOD, ...overrides }, strict: opts.strict ?? true });
}

test('a good configuration has no problems and typed values', () => {
  const r = load({});
  assert.deepEqual(r.problems, []);
  assert.equal(r.config.get('TARGET_PORT'), 22);
  assert.equal(r.config.get('CODEXK8S_MODE'), 'local');
  assert.equal(r.config.get('CODEXK8S_RUNNER_MIN'), 1);
  assert.equal(r.config.get('CODEXK8S_RUNNER_MAX'), 1);
  assert.equal(r.config.get('CODEXK8S_ROLLOUT_TIMEOUT'), 300);
  assert.equal(r.config.get('OPERATOR_SSH_PUBKEY'), PUBKEY);
  assert.equal(r.sources['OPERATOR_SSH_PUBKEY'], 'derived');
});

test('a domain selects server mode with its own runner defaults', () => {
  const r = load({ CODEXK8S_STAGING_DOMAIN: 'staging.example.com', CODEXK8S_LETSENCRYPT_EMAIL: 'ops@example.com' });
  assert.deepEqual(r.problems, []);
  assert.equal(r.config.get('CODEXK8S_MODE'), 'server');
  assert.equal(r.config.get('CODEXK8S_RUNNER_MIN'), 0);
  assert.equal(r.config.get('CODEXK8S_RUNNER_MAX'), 3);
});

// [overrides, the expected problem line (regex)]
const BAD: Array<[string, Record<string, string | undefined>, RegExp]> = [
  ['missing host', { TARGET_HOST: undefined }, /^TARGET_HOST: is not set; it is required/],
  [
    'host with user@',
    { TARGET_HOST: 'root@1.2.3.4' },
    /^TARGET_HOST: "root@1.2.3.4" is not a host name or IP address; expected e\.g\. 203\.0\.113\.10/,
  ],
  ['host with scheme', { TARGET_HOST: 'ssh://server' }, /^TARGET_HOST: .* is not a host name or IP address/],
  ['port zero', { TARGET_PORT: '0' }, /^TARGET_PORT: "0" is not a valid port; expected an integer from 1 to 65535$/],
  ['port too big', { TARGET_PORT: '70000' }, /^TARGET_PORT: "70000" is not a valid port/],
  ['port not a number', { CODEXK8S_SSH_PORT: 'ssh' }, /^CODEXK8S_SSH_PORT: "ssh" is not a valid port/],
  [
    'repo as URL',
    { CODEXK8S_GITHUB_REPO: 'https://github.com/a/b' },
    /^CODEXK8S_GITHUB_REPO: .* is not a repository; expected owner\/name/,
  ],
  [
    'repo without owner',
    { CODEXK8S_GITHUB_REPO: 'codex-k8s' },
    /^CODEXK8S_GITHUB_REPO: "codex-k8s" is not a repository/,
  ],
  ['host :::::', { TARGET_HOST: ':::::' }, /^TARGET_HOST: .* is not a host name or IP address/],
  ['host 999.1.1.1', { TARGET_HOST: '999.1.1.1' }, /^TARGET_HOST: .* is not a host name or IP address/],
  ['host [1:2:3]', { TARGET_HOST: '[1:2:3]' }, /^TARGET_HOST: .* is not a host name or IP address/],
  ['host 1.2.3', { TARGET_HOST: '1.2.3' }, /^TARGET_HOST: .* is not a host name or IP address/],
  [
    'e-mail with a quote',
    { CODEXK8S_LETSENCRYPT_EMAIL: "o'neil@example.com" },
    /^CODEXK8S_LETSENCRYPT_EMAIL: .* is not an e-mail address/,
  ],
  [
    'e-mail with $(...)',
    { CODEXK8S_LETSENCRYPT_EMAIL: '$(id)@example.com' },
    /^CODEXK8S_LETSENCRYPT_EMAIL: .* is not an e-mail address/,
  ],
  [
    'e-mail with a backtick',
    { CODEXK8S_LETSENCRYPT_EMAIL: 'a`id`@example.com' },
    /^CODEXK8S_LETSENCRYPT_EMAIL: .* is not an e-mail address/,
  ],
  [
    'e-mail with a double quote',
    { CODEXK8S_LETSENCRYPT_EMAIL: '"a b"@example.com' },
    /^CODEXK8S_LETSENCRYPT_EMAIL: .* is not an e-mail address/,
  ],
  [
    'e-mail with two dots',
    { CODEXK8S_LETSENCRYPT_EMAIL: 'a..b@example.com' },
    /^CODEXK8S_LETSENCRYPT_EMAIL: .* is not an e-mail address/,
  ],
  [
    'repo ending in .git',
    { CODEXK8S_GITHUB_REPO: 'owner/repo.git' },
    /^CODEXK8S_GITHUB_REPO: "owner\/repo\.git" is not a repository/,
  ],
  ['repo ending in .GIT', { CODEXK8S_GITHUB_REPO: 'owner/repo.GIT' }, /^CODEXK8S_GITHUB_REPO: .* is not a repository/],
  ['repo named .', { CODEXK8S_GITHUB_REPO: 'owner/.' }, /^CODEXK8S_GITHUB_REPO: "owner\/\." is not a repository/],
  ['repo named ..', { CODEXK8S_GITHUB_REPO: 'owner/..' }, /^CODEXK8S_GITHUB_REPO: "owner\/\.\." is not a repository/],
  [
    'bad token',
    { CODEXK8S_GITHUB_PAT: 'password123' },
    /^CODEXK8S_GITHUB_PAT: the value \(hidden\) does not look like a GitHub token; expected a fine-grained personal access token/,
  ],
  [
    'server mode without domain',
    { CODEXK8S_MODE: 'server' },
    /^CODEXK8S_STAGING_DOMAIN: is not set; it is required in server mode/,
  ],
  [
    'server mode without e-mail',
    { CODEXK8S_STAGING_DOMAIN: 'staging.example.com' },
    /^CODEXK8S_LETSENCRYPT_EMAIL: is not set; it is required in server mode/,
  ],
  [
    'bad e-mail',
    { CODEXK8S_STAGING_DOMAIN: 'staging.example.com', CODEXK8S_LETSENCRYPT_EMAIL: 'ops-at-example' },
    /^CODEXK8S_LETSENCRYPT_EMAIL: "ops-at-example" is not an e-mail address/,
  ],
  [
    'domain is an IP',
    { CODEXK8S_STAGING_DOMAIN: '203.0.113.10' },
    /^CODEXK8S_STAGING_DOMAIN: "203\.0\.113\.10" is not a fully qualified domain name/,
  ],
  [
    'domain with scheme',
    { CODEXK8S_STAGING_DOMAIN: 'https://staging.example.com' },
    /^CODEXK8S_STAGING_DOMAIN: .* is not a fully qualified domain name/,
  ],
  ['unknown mode', { CODEXK8S_MODE: 'prod' }, /^CODEXK8S_MODE: "prod" is not allowed; expected one of: local, server$/],
  [
    'unknown ACME server',
    { CODEXK8S_LETSENCRYPT_SERVER: 'test' },
    /^CODEXK8S_LETSENCRYPT_SERVER: "test" is not allowed; expected one of: production, staging$/,
  ],
  [
    'unknown userns remedy',
    { CODEXK8S_BUILDKIT_USERNS: 'off' },
    /^CODEXK8S_BUILDKIT_USERNS: "off" is not allowed; expected one of: sysctl, apparmor$/,
  ],
  [
    'runner min out of range',
    { CODEXK8S_RUNNER_MIN: '-1' },
    /^CODEXK8S_RUNNER_MIN: "-1" is out of range; expected an integer from 0 to 20$/,
  ],
  ['runner max not a number', { CODEXK8S_RUNNER_MAX: 'three' }, /^CODEXK8S_RUNNER_MAX: "three" is not a whole number/],
  [
    'runner min above max',
    { CODEXK8S_RUNNER_MIN: '3', CODEXK8S_RUNNER_MAX: '2' },
    /^CODEXK8S_RUNNER_MIN: 3 is greater than CODEXK8S_RUNNER_MAX \(2\); expected MIN <= MAX$/,
  ],
  [
    'namespace with capitals',
    { CODEXK8S_STAGING_NAMESPACE: 'Staging' },
    /^CODEXK8S_STAGING_NAMESPACE: "Staging" is not a valid Kubernetes name; expected a DNS label/,
  ],
  [
    'bad duration',
    { CODEXK8S_ROLLOUT_TIMEOUT: '5 minutes' },
    /^CODEXK8S_ROLLOUT_TIMEOUT: "5 minutes" is not a duration; expected a positive duration such as 90s, 5m, 1h30m$/,
  ],
  [
    'bad boolean',
    { CODEXK8S_FIREWALL_ENABLED: 'maybe' },
    /^CODEXK8S_FIREWALL_ENABLED: "maybe" is not a boolean; expected true or false$/,
  ],
  ['bad user name', { OPERATOR_USER: 'Root User' }, /^OPERATOR_USER: "Root User" is not a valid Linux user name/],
  [
    'root as the operator',
    { OPERATOR_USER: 'root' },
    /^OPERATOR_USER: "root" is root; expected a new, unprivileged name/,
  ],
  [
    'a system account as the operator',
    { OPERATOR_USER: 'sshd' },
    /^OPERATOR_USER: "sshd" is a system account on Debian and Ubuntu; expected a new, unprivileged name/,
  ],
  [
    'adopt not a boolean',
    { OPERATOR_ADOPT_EXISTING: 'yes please' },
    /^OPERATOR_ADOPT_EXISTING: "yes please" is not a boolean; expected true or false$/,
  ],
  [
    'missing private key',
    { TARGET_ROOT_SSH_KEY: join(dir, 'nope') },
    /^TARGET_ROOT_SSH_KEY: the file does not exist .*; expected the private key file/,
  ],
  [
    'public key given as private key',
    { TARGET_ROOT_SSH_KEY: pub },
    /^TARGET_ROOT_SSH_KEY: .* is a public key; expected the private key/,
  ],
  [
    'private key given as operator key',
    { OPERATOR_SSH_PUBKEY: '-----BEGIN OPENSSH PRIVATE KEY-----' },
    /^OPERATOR_SSH_PUBKEY: this is a PRIVATE key; expected the public key/,
  ],
  ['garbage operator key', { OPERATOR_SSH_PUBKEY: 'hello world' }, /^OPERATOR_SSH_PUBKEY: not an OpenSSH public key/],
  [
    'ssh options disabling host key checks',
    { CODEXK8S_SSH_EXTRA_OPTS: '-o StrictHostKeyChecking=no' },
    /^CODEXK8S_SSH_EXTRA_OPTS: option StrictHostKeyChecking is not allowed/,
  ],
  [
    'ssh options not starting with -',
    { CODEXK8S_SSH_EXTRA_OPTS: 'ProxyJump=x' },
    /^CODEXK8S_SSH_EXTRA_OPTS: "ProxyJump=x" is not an option/,
  ],
  [
    'bad checksum override',
    { CODEXK8S_ARTIFACT_SHA256_OVERRIDES: 'node=abc' },
    /^CODEXK8S_ARTIFACT_SHA256_OVERRIDES: "node=abc" is not an override; expected name:arch=<64 hex digits>/,
  ],
  [
    'mirror not a URL',
    { CODEXK8S_ARTIFACT_MIRROR: 'ftp://mirror' },
    /^CODEXK8S_ARTIFACT_MIRROR: "ftp:\/\/mirror" is not an http\(s\) URL/,
  ],
  [
    'memory warn below fail',
    { CODEXK8S_MIN_MEMORY_MIB: '4096', CODEXK8S_WARN_MEMORY_MIB: '1024' },
    /^CODEXK8S_WARN_MEMORY_MIB: 1024 is below CODEXK8S_MIN_MEMORY_MIB \(4096\)/,
  ],
  [
    'missing secret without a prompt',
    { CODEXK8S_GITHUB_PAT: undefined },
    /^CODEXK8S_GITHUB_PAT: is not set; it is a required secret/,
  ],
];

for (const [name, overrides, expected] of BAD) {
  test(`bad input: ${name}`, () => {
    const r = load(overrides);
    assert.ok(
      r.problems.some((p) => expected.test(p)),
      `expected a problem matching ${expected}, got:\n${r.problems.join('\n')}`,
    );
  });
}

test('all problems are reported at once', () => {
  const r = load({ TARGET_HOST: 'a b', TARGET_PORT: '0', CODEXK8S_GITHUB_REPO: 'x', CODEXK8S_MODE: 'prod' });
  assert.equal(r.problems.length, 4, r.problems.join('\n'));
});

test('a secret value never appears in a problem line, and is registered for masking', () => {
  clearSecretsForTests();
  const secret = 'not-a-token-but-secret-42';
  const r = load({ CODEXK8S_GITHUB_PAT: secret });
  assert.ok(r.problems.length > 0);
  for (const p of r.problems) assert.ok(!p.includes(secret), p);
  assert.ok(registeredSecrets().includes(secret));
});

test('a key readable by others is refused like ssh would', () => {
  const loose = join(dir, 'loose');
  writeFileSync(loose, '-----BEGIN OPENSSH PRIVATE KEY-----\n');
  chmodSync(loose, 0o644);
  const r = load({ TARGET_ROOT_SSH_KEY: loose });
  assert.ok(
    r.problems.some((p) => /TARGET_ROOT_SSH_KEY: .* readable by other users \(mode 0644\).*chmod 600/.test(p)),
    r.problems.join('\n'),
  );
});

test('dry run (not strict): missing secrets and files are listed, not errors', () => {
  const r = load({ CODEXK8S_GITHUB_PAT: undefined, TARGET_ROOT_SSH_KEY: join(dir, 'nope') }, { strict: false });
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.missingSecrets, ['CODEXK8S_GITHUB_PAT']);
  assert.ok(r.warnings.some((w) => w.startsWith('TARGET_ROOT_SSH_KEY')));
});

test('env file: values from the environment win; unknown CODEXK8S_ names are flagged with a suggestion', () => {
  const f = join(dir, 'a.env');
  writeFileSync(f, `TARGET_HOST=10.0.0.1\nTARGET_PORT=2222\nCODEXK8S_RUNER_MAX=3\nCODEXK8S_GITHUB_REPO=a/b\n`);
  const r = loadConfig({
    side: 'host',
    envFile: f,
    explicitEnvFile: true,
    env: { TARGET_PORT: '2200', TARGET_ROOT_SSH_KEY: key, OPERATOR_SSH_PUBKEY_PATH: pub, CODEXK8S_GITHUB_PAT: TOKEN },
  });
  assert.deepEqual(r.problems, []);
  assert.equal(r.config.get('TARGET_HOST'), '10.0.0.1');
  assert.equal(r.config.get('TARGET_PORT'), 2200);
  assert.ok(
    r.warnings.some((w) => /CODEXK8S_RUNER_MAX .* not a known setting \(did you mean CODEXK8S_RUNNER_MAX\?\)/.test(w)),
    r.warnings.join('\n'),
  );
});

test('env file: a key given twice is refused, naming both line numbers (dotenv alone keeps the last)', () => {
  const f = join(dir, 'dup.env');
  writeFileSync(
    f,
    `TARGET_HOST=10.0.0.1\nCODEXK8S_GITHUB_REPO=a/b\n# comment\nOPERATOR_USER="x\ny"\n  export TARGET_HOST = 10.0.0.2\nOPERATOR_USER=z\n`,
  );
  const r = loadConfig({
    side: 'host',
    envFile: f,
    explicitEnvFile: true,
    env: { TARGET_ROOT_SSH_KEY: key, OPERATOR_SSH_PUBKEY_PATH: pub, CODEXK8S_GITHUB_PAT: TOKEN },
  });
  assert.ok(
    r.problems.some((p) => /^TARGET_HOST in .*dup\.env is given twice \(lines 1 and 6\)/.test(p)),
    r.problems.join('\n'),
  );
  assert.ok(
    r.problems.some((p) => /^OPERATOR_USER in .*dup\.env is given twice \(lines 4 and 7\)/.test(p)),
    r.problems.join('\n'),
  );
  writeFileSync(f, `TARGET_HOST=10.0.0.1\nCODEXK8S_GITHUB_REPO=a/b\n`);
  const ok = loadConfig({
    side: 'host',
    envFile: f,
    explicitEnvFile: true,
    env: { TARGET_ROOT_SSH_KEY: key, OPERATOR_SSH_PUBKEY_PATH: pub, CODEXK8S_GITHUB_PAT: TOKEN },
  });
  assert.ok(!ok.problems.some((p) => /given twice/.test(p)), ok.problems.join('\n'));
});

test('an empty private key file, and an operator key readable by others, are refused up front', () => {
  const empty = join(dir, 'empty_key');
  writeFileSync(empty, '', { mode: 0o600 });
  const loose = join(dir, 'loose_key');
  writeFileSync(loose, readFileSync(key), { mode: 0o644 });
  chmodSync(loose, 0o644);
  const a = loadConfig({ side: 'host', env: { ...GOOD, TARGET_ROOT_SSH_KEY: empty } });
  assert.ok(
    a.problems.some((p) => /^TARGET_ROOT_SSH_KEY: .* is empty/.test(p)),
    a.problems.join('\n'),
  );
  const b = loadConfig({ side: 'host', env: { ...GOOD, OPERATOR_SSH_KEY: empty } });
  assert.ok(
    b.problems.some((p) => /^OPERATOR_SSH_KEY: .* is empty/.test(p)),
    b.problems.join('\n'),
  );
  const c = loadConfig({ side: 'host', env: { ...GOOD, OPERATOR_SSH_KEY: loose } });
  assert.ok(
    c.problems.some((p) => /^OPERATOR_SSH_KEY: .* readable by other users \(mode 0644\)/.test(p)),
    c.problems.join('\n'),
  );
});

test('an explicit env file that does not exist is a problem', () => {
  const r = loadConfig({ side: 'host', envFile: join(dir, 'missing.env'), explicitEnvFile: true, env: GOOD });
  assert.ok(r.problems.some((p) => /^--env-file .*missing\.env: the file does not exist/.test(p)));
});

test('the server file holds server settings only and round-trips through dotenv', () => {
  const r = load({ CODEXK8S_SSH_EXTRA_OPTS: '-o Compression=yes', CODEXK8S_SSH_JUMP: 'ops@bastion' });
  const text = serializeServerEnv(r.config);
  assert.ok(!text.includes('TARGET_ROOT_SSH_KEY'), 'the private key path stays on the laptop');
  assert.ok(!text.includes('CODEXK8S_SSH_EXTRA_OPTS'));
  assert.ok(!text.includes('CODEXK8S_SSH_JUMP'), 'the jump host stays on the laptop');
  assert.ok(!text.includes('TARGET_HOST='));
  const back = loadConfig({ side: 'server', env: parseDotenv(text) });
  assert.deepEqual(back.problems, []);
  for (const s of SETTINGS.filter((x) => x.scope !== 'host'))
    assert.deepEqual(back.config[s.name], r.config[s.name], s.name);
  assert.equal(configHash(back.config), configHash(r.config));
});

test('CODEXK8S_BUILDKIT_USERNS: unset by default (no remedy), and a chosen remedy reaches the server', () => {
  assert.equal(load({}).config['CODEXK8S_BUILDKIT_USERNS'], undefined);
  for (const v of ['sysctl', 'apparmor']) {
    const text = serializeServerEnv(load({ CODEXK8S_BUILDKIT_USERNS: v }).config);
    assert.match(text, new RegExp(`^CODEXK8S_BUILDKIT_USERNS=["']?${v}["']?$`, 'm'));
    assert.equal(loadConfig({ side: 'server', env: parseDotenv(text) }).config['CODEXK8S_BUILDKIT_USERNS'], v);
  }
});

test('dotenv quoting survives quotes and #', () => {
  for (const v of [`a#b`, `it's`, `say "hi"`, `both ' and "`]) assert.equal(parseDotenv(`X=${quoteDotenv(v)}`)['X'], v);
  assert.throws(() => quoteDotenv('a\nb'));
});

test('durations', () => {
  assert.equal(parseDuration('90s'), 90);
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('120'), 120);
  assert.equal(parseDuration('soon'), undefined);
  assert.equal(formatDuration(5400), '1h30m');
  assert.equal(formatDuration(300), '5m');
  assert.equal(parseDuration(formatDuration(3725)), 3725);
});

test('TARGET_HOST: IPv6 literals, bare or in brackets, become the bare address; a known_hosts name of their own', async () => {
  const { knownHostsPath } = await import('../../bootstrap/lib/ssh.mts');
  for (const given of ['2001:db8::10', '[2001:db8::10]']) {
    const r = load({ TARGET_HOST: given });
    assert.deepEqual(r.problems, [], given);
    assert.equal(r.config.get('TARGET_HOST'), '2001:db8::10');
  }
  assert.equal(knownHostsPath('/s', '2001:db8::10', 22), '/s/known_hosts/2001_db8__10_22');
  for (const bad of ['[2001:db8::10', '2001:db8::10::1', '[2001:db8::10]:22'])
    assert.ok(
      load({ TARGET_HOST: bad }).problems.some((p) => p.startsWith('TARGET_HOST:')),
      bad,
    );
});
