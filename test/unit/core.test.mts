// Pure building blocks: redaction, SSH argv builders, journal and resume rules, lock parsing, artifacts,
// the upload tree, flag parsing, and the catalogue against the files in bootstrap/remote.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync, mkdtempSync, mkdirSync, writeFileSync, existsSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerSecret, mask, clearSecretsForTests } from '../../bootstrap/lib/redact.mts';
import {
  shellQuote,
  remoteCommand,
  sshBaseArgs,
  masterArgs,
  commandArgs,
  exitArgs,
  knownHostsPath,
  explainSshFailure,
  sweepOrphanMasters,
  asRoot,
  sudoRefusal,
  jumpProxyCommand,
  jumpFromSshConfig,
  freshLoginArgs,
} from '../../bootstrap/lib/ssh.mts';
import { loginsToProve } from '../../bootstrap/lib/launcher/login.mts';
import { loadConfig } from '../../bootstrap/lib/config.mts';
import type { SshTarget } from '../../bootstrap/lib/ssh.mts';
import {
  emptyJournal,
  recordStep,
  selectSteps,
  checkPrerequisites,
  resolveStepName,
  parseJournal,
  writeJournal,
  readJournal,
  markInterrupted,
} from '../../bootstrap/lib/state.mts';
import type { StepRecord } from '../../bootstrap/lib/state.mts';
import {
  parseLockAnswer,
  explainHeldLock,
  explainRefusedLock,
  describeTakeover,
  parseOwner,
} from '../../bootstrap/lib/lock.mts';
import { resolveArtifact } from '../../bootstrap/lib/artifacts.mts';
import { NODE, ARTIFACTS } from '../../bootstrap/lib/versions.mts';
import { productionPackages, buildUploadTree } from '../../bootstrap/lib/upload.mts';
import { parseCli, helpText } from '../../bootstrap/lib/cli.mts';
import { UsageError } from '../../bootstrap/lib/errors.mts';
import { STEPS, stepNames } from '../../bootstrap/lib/catalogue.mts';
import { SPEC as LAUNCHER } from '../../bootstrap/lib/launcher/spec.mts';
import { run } from '../../bootstrap/lib/exec.mts';

const ROOT = join(import.meta.dirname, '..', '..');

test('redaction masks every registered secret, longest first, and ignores tiny values', () => {
  clearSecretsForTests();
  registerSecret('github_pat_ABCDEF123456');
  registerSecret('ABCDEF');
  registerSecret('abc');
  assert.equal(mask('token github_pat_ABCDEF123456 and ABCDEF and abc'), 'token *** and *** and abc');
  assert.equal(mask('nothing here'), 'nothing here');
  clearSecretsForTests();
});

test('shell quoting survives spaces, quotes and metacharacters', async () => {
  const words = ['plain', 'with space', "it's", '$HOME', '`id`', 'a;b|c&d', '', 'x\ny', '--flag=v', '*'];
  const r = await run(['sh', '-c', `printf '%s\\0' ${remoteCommand(words)}`]);
  assert.deepEqual(r.stdout.split('\0').slice(0, -1), words);
  assert.equal(shellQuote('/opt/x/y.mts'), '/opt/x/y.mts');
});

const T: SshTarget = {
  host: '203.0.113.10',
  port: 2222,
  user: 'root',
  identityFile: '/k/id',
  knownHostsFile: '/s/kh',
  controlPath: '/tmp/c/cm',
  extraOptions: ['-o', 'Compression=yes'],
};

test('ssh builders: pinned host key, never StrictHostKeyChecking=no, one master reused', () => {
  const base = sshBaseArgs(T);
  assert.ok(base.includes('StrictHostKeyChecking=accept-new'));
  assert.ok(base.includes('UserKnownHostsFile=/s/kh'));
  assert.ok(base.includes('BatchMode=yes'));
  assert.ok(!base.join(' ').includes('StrictHostKeyChecking=no'));
  assert.deepEqual(base.slice(0, 4), ['-p', '2222', '-i', '/k/id']);
  assert.deepEqual(
    base.slice(-8, -6),
    ['-o', 'Compression=yes'],
    'extra options (validated) before our timeouts: ssh keeps the first value',
  );
  const m = masterArgs(T);
  assert.ok(m.includes('ControlMaster=yes') && m.includes('-N') && m.includes('-f'));
  const c = commandArgs(T, ['echo', 'a b']);
  assert.ok(c.includes('ControlMaster=no'));
  assert.deepEqual(c.slice(-3), ['root@203.0.113.10', '--', "echo 'a b'"]);
  assert.deepEqual(exitArgs(T).slice(-3), ['-O', 'exit', 'root@203.0.113.10']);
  assert.equal(knownHostsPath('/st', '2001:db8::1', 22), '/st/known_hosts/2001_db8__1_22');
});

test('a login that is not root runs every remote command through sudo -n (no prompt), the argv intact', async () => {
  const U = { ...T, user: 'ubuntu' };
  assert.deepEqual(asRoot(T, ['true']), ['true']);
  assert.deepEqual(asRoot(U, ['bash', '-c', 'x y']), ['sudo', '-n', '--', 'bash', '-c', 'x y']);
  assert.deepEqual(commandArgs(U, ['echo', 'a b']).slice(-3), ['ubuntu@203.0.113.10', '--', "sudo -n -- echo 'a b'"]);
  // What the remote shell makes of it: sudo gets exactly the words, in order.
  const words = ['printf', '%s|', "it's", '$HOME', 'a;b'];
  const r = await run(['sh', '-c', `sudo() { shift 2; "$@"; }; ${remoteCommand(asRoot(U, words))}`]);
  assert.equal(r.stdout, "it's|$HOME|a;b|");
});

test("sudo's refusals are named with the fix; anything else is the command's own failure", () => {
  const U = { user: 'ubuntu' };
  const pw = sudoRefusal(U, 1, 'sudo: a password is required\n');
  assert.match(pw?.message ?? '', /^ubuntu on the server needs a password for sudo; the bootstrap never types one$/);
  assert.match(pw?.hint ?? '', /ubuntu ALL=\(ALL\) NOPASSWD:ALL.*\/etc\/sudoers\.d\/90-ubuntu.*TARGET_ROOT_USER=root/);
  assert.match(
    sudoRefusal(U, 1, 'sudo: a terminal is required to read the password; either use the -S option\n')?.message ?? '',
    /needs a password for sudo/,
  );
  assert.match(
    sudoRefusal(U, 1, 'sudo: ubuntu is not in the sudoers file.\n')?.message ?? '',
    /ubuntu on the server may not use sudo/,
  );
  assert.match(sudoRefusal(U, 127, 'bash: line 1: sudo: command not found\n')?.message ?? '', /sudo is not installed/);
  assert.equal(sudoRefusal(U, 1, 'remote_helpers: tar failed\n'), undefined);
  assert.equal(sudoRefusal({ user: 'root' }, 1, 'sudo: a password is required\n'), undefined);
});

test("a guarded change is proven by the operator's login and the launcher's own, once each", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-logins-'));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text, { mode: 0o600 });
    return join(dir, name);
  };
  const keyText = '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n';
  const [cloudKey, rootKey, opKey] = ['cloud', 'root', 'op'].map((n) => file(n, keyText));
  const pub = file('op.pub', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op\n');
  const lc = { user: 'codex', port: 22, rollbackSeconds: 120, unit: 'codex-k8s-rollback', reasons: [] };
  const logins = (env: Record<string, string>) => {
    const r = loadConfig({
      side: 'host',
      strict: true,
      env: {
        TARGET_HOST: '203.0.113.10',
        OPERATOR_SSH_PUBKEY_PATH: pub,
        OPERATOR_SSH_KEY: opKey as string,
        CODEXK8S_GITHUB_REPO: 'codex-k8s/codex-k8s',
        CODEXK8S_GITHUB_PAT: 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ',
        ...env,
      },
    });
    assert.deepEqual(r.problems, []);
    return loginsToProve(r.config, lc).map((l) => [l.user, l.identityFile, l.keySetting, l.proof.join(' ')]);
  };
  assert.deepEqual(logins({ TARGET_ROOT_USER: 'ubuntu', TARGET_ROOT_SSH_KEY: cloudKey as string }), [
    ['codex', opKey, 'OPERATOR_SSH_KEY', 'sudo -n true'],
    ['ubuntu', cloudKey, 'TARGET_ROOT_SSH_KEY', 'sudo -n -- true'],
  ]);
  assert.deepEqual(logins({ TARGET_ROOT_SSH_KEY: rootKey as string }), [
    ['codex', opKey, 'OPERATOR_SSH_KEY', 'sudo -n true'],
    ['root', rootKey, 'TARGET_ROOT_SSH_KEY', 'true'],
  ]);
  // The login is the operator itself, with the same key: one proof.
  assert.equal(logins({ TARGET_ROOT_USER: 'codex', TARGET_ROOT_SSH_KEY: opKey as string }).length, 1);
});

const JUMP = {
  user: 'ops',
  host: 'bastion.example.com',
  port: 2200,
  identityFile: '/k/jump 100%',
  knownHostsFile: '/s/known_hosts/bastion.example.com_2200',
};

test('a jump host is our own pinned hop (ProxyCommand), in the master and in every fresh login', async () => {
  const cmd = jumpProxyCommand(JUMP, 'accept-new');
  assert.match(cmd, /^ssh -p 2200 -i '\/k\/jump 100%%' -o IdentitiesOnly=yes -o BatchMode=yes /);
  assert.match(
    cmd,
    / -o UserKnownHostsFile=\/s\/known_hosts\/bastion\.example\.com_2200 -o StrictHostKeyChecking=accept-new /,
  );
  assert.match(cmd, / -W '\[%h\]:%p' ops@bastion\.example\.com$/);
  const J = { ...T, jump: JUMP };
  const base = sshBaseArgs(J);
  assert.equal(base[base.indexOf(`ProxyCommand=${cmd}`) - 1], '-o');
  const fresh = freshLoginArgs(J, { user: 'codex', port: 22, identityFile: '/k/op' }, ['true']);
  assert.ok(fresh.includes(`ProxyCommand=${jumpProxyCommand(JUMP, 'yes')}`), 'the bastion was pinned by the master');
  assert.ok(!sshBaseArgs(T).some((a) => a.startsWith('ProxyCommand=')), 'no jump: no ProxyCommand of ours');
  // What the shell runs after ssh's %-expansion (%% -> %, %h/%p -> the server): the words, intact.
  const expanded = cmd.replaceAll('[%h]:%p', '[203.0.113.10]:22').replaceAll('%%', '%').replace(/^ssh /, '');
  const r = await run(['sh', '-c', `printf '%s\\n' ${expanded}`]);
  const words = r.stdout.trim().split('\n');
  assert.deepEqual(words.slice(0, 4), ['-p', '2200', '-i', '/k/jump 100%']);
  assert.deepEqual(words.slice(-3), ['-W', '[203.0.113.10]:22', 'ops@bastion.example.com']);
});

test("a ProxyJump from ssh's own configuration is found (ssh -G), one hop only", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-sshcfg-'));
  const cfg = join(dir, 'config');
  writeFileSync(
    cfg,
    'Host staging\n  ProxyJump ops@bastion:2200\nHost chain\n  ProxyJump a,b\nHost v6\n  ProxyJump [2001:db8::1]\n',
  );
  assert.deepEqual(await jumpFromSshConfig('staging', 22, 'root', cfg), { user: 'ops', host: 'bastion', port: 2200 });
  assert.deepEqual(await jumpFromSshConfig('v6', 22, 'root', cfg), { host: '2001:db8::1', port: 22 });
  assert.equal(await jumpFromSshConfig('other', 22, 'root', cfg), undefined);
  await assert.rejects(
    jumpFromSshConfig('chain', 22, 'root', cfg),
    (e: unknown) =>
      e instanceof UsageError && /ProxyJump for chain in .*config: "a,b" is a chain of jump hosts/.test(e.message),
  );
});

test('ssh failures are explained: changed host key, refused login', () => {
  const e = explainSshFailure(
    T,
    '@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.',
  );
  assert.match(e.message, /host key of 203\.0\.113\.10:2222 differs from the one pinned in \/s\/kh/);
  assert.match(e.hint ?? '', /ssh-keygen -R '\[203\.0\.113\.10\]:2222' -f \/s\/kh/);
  assert.match(
    explainSshFailure(T, 'root@x: Permission denied (publickey).').message,
    /login as root@203\.0\.113\.10:2222 .* was refused/,
  );
});

test('ssh failures through a jump host name the bastion when it is the bastion that failed', () => {
  const J = { ...T, jump: JUMP };
  const changed = explainSshFailure(
    J,
    `@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nOffending ED25519 key in ${JUMP.knownHostsFile}:1\nHost key for [bastion.example.com]:2200 has changed and you have requested strict checking.\nHost key verification failed.\nkex_exchange_identification: Connection closed by remote host`,
  );
  assert.match(
    changed.message,
    /^the SSH host key of the jump host ops@bastion\.example\.com:2200 differs from the one pinned in /,
  );
  assert.match(
    changed.hint ?? '',
    /ssh-keygen -R '\[bastion\.example\.com\]:2200' -f \/s\/known_hosts\/bastion\.example\.com_2200/,
  );
  const refused = explainSshFailure(J, 'ops@bastion.example.com: Permission denied (publickey).\nConnection closed');
  assert.match(
    refused.message,
    /^SSH login on the jump host ops@bastion\.example\.com:2200 with \/k\/jump 100% was refused/,
  );
  // The server's own refusal, through the bastion, is still the server's.
  assert.match(
    explainSshFailure(J, 'root@203.0.113.10: Permission denied (publickey).').message,
    /^SSH login as root@203\.0\.113\.10:2222 .* was refused/,
  );
});

const ALL = ['00_preflight', '10_operator_user', '20_install_k3s', '30_cluster_deps'];
const ok = (hash = 'h1'): StepRecord => ({
  status: 'ok',
  startedAt: 't0',
  endedAt: 't1',
  changes: [],
  configHash: hash,
  runId: 'r',
});

test('step selection: --from, --only, names by number or words, bad names exit 2', () => {
  assert.deepEqual(selectSteps(ALL, {}), ALL);
  assert.deepEqual(selectSteps(ALL, { from: '20' }), ['20_install_k3s', '30_cluster_deps']);
  assert.deepEqual(selectSteps(ALL, { only: ['cluster_deps', '00_preflight'] }), ['00_preflight', '30_cluster_deps']);
  assert.equal(resolveStepName(ALL, 'operator_user', '--from'), '10_operator_user');
  assert.throws(
    () => selectSteps(ALL, { from: '99' }),
    (e: unknown) =>
      e instanceof UsageError && /--from: "99" is not a step; expected one of: 00_preflight/.test(e.message),
  );
  assert.throws(() => selectSteps(ALL, { from: '00', only: ['10'] }), UsageError);
});

test('resume rules: skipped steps must have succeeded; another config only warns', () => {
  let j = emptyJournal();
  assert.match(
    checkPrerequisites(ALL, ['20_install_k3s', '30_cluster_deps'], j, 'h1').problems[0] ?? '',
    /00_preflight has never run on this server/,
  );
  j = recordStep(j, '00_preflight', ok());
  j = recordStep(j, '10_operator_user', { ...ok(), status: 'failed', error: 'boom' });
  const p = checkPrerequisites(ALL, ['20_install_k3s'], j, 'h1');
  assert.equal(p.problems.length, 1);
  assert.match(
    p.problems[0] ?? '',
    /10_operator_user is failed .*must succeed before 20_install_k3s\. Resume with --from 10_operator_user/,
  );
  j = recordStep(j, '10_operator_user', ok('h0'));
  const q = checkPrerequisites(ALL, ['20_install_k3s'], j, 'h1');
  assert.deepEqual(q.problems, []);
  assert.match(q.warnings[0] ?? '', /10_operator_user last succeeded with a different configuration/);
  assert.equal(j.history.length, 3);
});

test('resume rules: --only checks the prerequisites of every named step, not only of the first', () => {
  // --only 00,30 on a server where only 00 ever ran: 10 and 20 sit between the two named steps.
  let j = recordStep(emptyJournal(), '00_preflight', ok());
  const p = checkPrerequisites(ALL, ['00_preflight', '30_cluster_deps'], j, 'h1');
  assert.deepEqual(
    p.problems.map((m) => m.split(';')[0]),
    ['10_operator_user has never run on this server', '20_install_k3s has never run on this server'],
  );
  assert.match(p.problems[0] ?? '', /must succeed before 30_cluster_deps/);
  // A named step needs nothing after it, and a step this run executes is not a prerequisite.
  assert.deepEqual(checkPrerequisites(ALL, ['00_preflight', '10_operator_user'], emptyJournal(), 'h1').problems, []);
  j = recordStep(recordStep(j, '10_operator_user', ok()), '20_install_k3s', { ...ok(), status: 'running' });
  assert.match(
    checkPrerequisites(ALL, ['10_operator_user', '30_cluster_deps'], j, 'h1').problems.join('\n'),
    /^20_install_k3s is running .*must succeed before 30_cluster_deps/,
  );
  assert.deepEqual(checkPrerequisites(ALL, [], emptyJournal(), 'h1'), { problems: [], warnings: [] });
});

test('the journal is written atomically and read back; garbage is refused', () => {
  const d = mkdtempSync(join(tmpdir(), 'ck8s-j-'));
  const path = join(d, 'sub', 'state.json');
  assert.deepEqual(readJournal(path), emptyJournal());
  writeJournal(path, recordStep(emptyJournal(), '00_preflight', ok()));
  assert.equal(readJournal(path).steps['00_preflight']?.status, 'ok');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.throws(() => parseJournal('{"version":7}'));
  assert.deepEqual(parseJournal(''), emptyJournal());
});

test('lock answers: acquired, took-over, held (by what), refused; no hint ever says rm -rf', () => {
  assert.deepEqual(parseLockAnswer('acquired\n'), { kind: 'acquired' });
  const owner =
    'token=t\nholder=ana@laptop pid 7 run R1\nsince=9000\nrun=R1\nstep=10_operator_user\nboot_id=b\npid=41\npid_start=5\nstep_pid=99\nstep_start=6\n';
  const step = parseLockAnswer(`held\nnow=10000\nalive=step 99\n${owner}`);
  assert.equal(step.kind, 'held');
  if (step.kind !== 'held') return;
  assert.deepEqual(
    [step.owner.step, step.owner.run, step.owner.pid, step.owner.stepPid, step.alive],
    ['10_operator_user', 'R1', '41', '99', 'step 99'],
  );
  const s = explainHeldLock(step, 7200, 'ssh root@h');
  assert.match(
    s.message,
    /another bootstrap run holds the server lock: ana@laptop pid 7 run R1, since 1970-01-01T02:30:00.000Z \(17m ago\), step 10_operator_user; its step still runs on the server as pid 99/,
  );
  assert.match(s.hint, /ssh root@h kill 99\)/);
  const conn = parseLockAnswer(`held\nnow=10000\nalive=connection 41\n${owner}`);
  if (conn.kind !== 'held') return assert.fail();
  assert.match(
    explainHeldLock(conn, 7200, '').message,
    /its SSH connection is still open \(sshd pid 41 on the server\)/,
  );
  assert.match(explainHeldLock(conn, 7200, '').hint, /end its connection \(kill 41\)/);
  const legacy = parseLockAnswer('held\nnow=10000\nalive=unknown\ntoken=t\nholder=old@x\nsince=9000\nstep=-\n');
  if (legacy.kind !== 'held') return assert.fail();
  assert.match(
    explainHeldLock(legacy, 7200, '').hint,
    /taken over once older than CODEXK8S_LOCK_STALE_AFTER \(2h\), in 103m/,
  );
  const took = parseLockAnswer(
    `took-over\nreason=its connection and its step have ended\n${owner.replace(/^/gm, 'previous.')}node=v24\n`,
  );
  if (took.kind !== 'took-over') return assert.fail();
  assert.equal(took.previous.run, 'R1');
  assert.equal(
    describeTakeover(took),
    'took over the lock of ana@laptop pid 7 run R1 (step 10_operator_user): its holder is gone (its connection and its step have ended)',
  );
  const refused = parseLockAnswer('refused /run/lock/codex-k8s-bootstrap belongs to uid 1000, not root\n');
  assert.deepEqual(refused, { kind: 'refused', reason: '/run/lock/codex-k8s-bootstrap belongs to uid 1000, not root' });
  for (const a of [step, conn, legacy])
    if (a.kind === 'held') assert.doesNotMatch(explainHeldLock(a, 600, 'ssh root@h').hint, /rm -rf/);
  assert.equal(parseOwner('holder=x').since, 0);
  assert.throws(() => parseLockAnswer('what'));
});

test("a dead run's running steps become interrupted; other runs' records stay", () => {
  let j = recordStep(emptyJournal(), '10_harden_host', {
    status: 'ok',
    startedAt: 'a',
    endedAt: 'b',
    changes: [],
    configHash: 'h',
    runId: 'R1',
  });
  j = recordStep(j, '20_install_k3s', { status: 'running', startedAt: 'c', changes: [], configHash: 'h', runId: 'R1' });
  j = recordStep(j, '30_x', { status: 'running', startedAt: 'c', changes: [], configHash: 'h', runId: 'R0' });
  const { journal, steps } = markInterrupted(j, 'R1', 'd');
  assert.deepEqual(steps, ['20_install_k3s']);
  assert.equal(journal.steps['20_install_k3s']?.status, 'interrupted');
  assert.equal(journal.steps['30_x']?.status, 'running');
  assert.deepEqual(journal.history.at(-1), {
    step: '20_install_k3s',
    status: 'interrupted',
    at: 'd',
    runId: 'R1',
    changed: 0,
  });
  assert.equal(markInterrupted(journal, 'R1', 'e').journal, journal, 'nothing left to mark: the same journal');
  const pre = checkPrerequisites(['10_harden_host', '20_install_k3s', '30_x'], ['30_x'], journal, 'h');
  assert.match(pre.problems.join('\n'), /20_install_k3s is interrupted on this server/);
});

test('artifacts: pinned by default, mirror layout, overrides are explicit', () => {
  const a = resolveArtifact(NODE, 'x64', undefined, undefined);
  assert.equal(a.url, `https://nodejs.org/dist/v${NODE.version}/node-v${NODE.version}-linux-x64.tar.xz`);
  assert.equal(a.sha256, NODE.sha256.x64);
  assert.equal(a.overriddenFrom, undefined);
  const m = resolveArtifact(NODE, 'arm64', 'http://10.0.0.1:8080/m/', { 'node:arm64': 'f'.repeat(64) });
  assert.equal(m.url, `http://10.0.0.1:8080/m/node/node-v${NODE.version}-linux-arm64.tar.xz`);
  assert.equal(m.sha256, 'f'.repeat(64));
  assert.equal(m.overriddenFrom, NODE.sha256.arm64);
  for (const art of ARTIFACTS)
    for (const arch of ['x64', 'arm64'] as const)
      assert.match(art.sha256[arch], /^[0-9a-f]{64}$/, `${art.name} ${arch}`);
});

test('upload: production packages only, from the lockfile', () => {
  const lock = JSON.stringify({
    packages: {
      '': {},
      'node_modules/zx': {},
      'node_modules/tsx': { dev: true },
      'node_modules/x': { devOptional: true },
      'node_modules/a/node_modules/b': {},
    },
  });
  assert.deepEqual(productionPackages(lock), ['node_modules/a/node_modules/b', 'node_modules/zx']);
  const tree = buildUploadTree(ROOT);
  assert.ok(tree.files.includes('bootstrap/remote/00_preflight.mts'));
  assert.ok(tree.files.includes('node_modules/zx/package.json'));
  assert.ok(tree.files.includes('node_modules/tweetsodium/package.json'));
  assert.ok(
    !tree.files.some((f) => f.startsWith('node_modules/typescript/') || f.startsWith('node_modules/tsx/')),
    'no dev dependencies',
  );
  assert.ok(!tree.files.some((f) => f.startsWith('test/') || f === '.env'), 'no tests, no .env');
  assert.equal(buildUploadTree(ROOT).hash, tree.hash, 'the hash is stable');
});

test('flags: unknown flag and empty values are usage errors; help lists every flag', () => {
  assert.throws(
    () => parseCli(LAUNCHER, ['--bogus']),
    (e: unknown) => e instanceof UsageError && /unknown flag '--bogus'/.test(e.message),
  );
  assert.throws(
    () => parseCli(LAUNCHER, ['--from', ' ']),
    (e: unknown) => e instanceof UsageError && /--from: the value is empty/.test(e.message),
  );
  assert.equal(parseCli(LAUNCHER, ['--from', '10', '-y'])['yes'], true);
  const help = helpText(LAUNCHER);
  for (const f of LAUNCHER.flags) assert.ok(help.includes(`--${f.name}`), f.name);
});

test('catalogue and bootstrap/remote agree, both ways, and every step is executable', () => {
  const files = readdirSync(join(ROOT, 'bootstrap/remote'))
    .filter((f) => /^\d\d_.*\.mts$/.test(f))
    .map((f) => f.replace(/\.mts$/, ''))
    .sort();
  assert.deepEqual(stepNames(), files);
  assert.deepEqual([...stepNames()].sort(), stepNames(), 'catalogue order is numeric order');
  for (const s of STEPS) {
    const st = statSync(join(ROOT, 'bootstrap/remote', `${s.name}.mts`));
    assert.ok((st.mode & 0o100) !== 0, `${s.name}.mts is executable`);
    assert.ok(s.checks.length > 0 && s.changes.length > 0, `${s.name} says what it checks and changes`);
  }
});

test('a secret prompt reads without echo, supports backspace, and Ctrl-C aborts with a usage error', async () => {
  const { PassThrough } = await import('node:stream');
  const { readHidden } = await import('../../bootstrap/lib/prompt.mts');
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = '';
  output.on('data', (c: Buffer) => (shown += c.toString()));
  const answer = readHidden('TOKEN: ', input, output);
  input.write('github_pat_x');
  input.write('\u007fY\r');
  assert.equal(await answer, 'github_pat_Y');
  assert.equal(shown, 'TOKEN: \n', 'nothing typed is echoed');
  const aborted = readHidden('TOKEN: ', input, output);
  input.write('abc\u0003');
  await assert.rejects(aborted, UsageError);
});

test("SSH masters left by a killed launcher are closed and removed; a live launcher's and a stranger's stay", async () => {
  const { Logger } = await import('../../bootstrap/lib/log.mts');
  const base = mkdtempSync(join(tmpdir(), 'ck8s-sweep-'));
  const dead = await run(['sh', '-c', 'echo $$']);
  const make = (name: string, pid: string) => {
    mkdirSync(join(base, name));
    writeFileSync(join(base, name, 'launcher.pid'), `${pid}\n`);
    return join(base, name);
  };
  const orphan = make('ck8s-ssh-orphan', dead.stdout.trim());
  const live = make('ck8s-ssh-live', String(process.pid));
  const legacy = join(base, 'ck8s-ssh-legacy');
  mkdirSync(legacy);
  const stranger = make('ck8s-ssh-stranger', dead.stdout.trim());
  if (process.getuid?.() === 0) chownSync(stranger, 65534, 65534);
  const swept = await sweepOrphanMasters(new Logger(), base);
  assert.deepEqual(swept, [orphan]);
  assert.equal(existsSync(orphan), false);
  for (const d of [live, legacy]) assert.equal(existsSync(d), true, d);
  if (process.getuid?.() === 0)
    assert.equal(existsSync(stranger), true, "another user's directory is not ours to sweep");
});

test('an untrusted lock directory: named, and how to look at it from the laptop and on the server', () => {
  assert.match(
    explainRefusedLock('x belongs to uid 1000, not root', '').message,
    /the server lock is not trusted: x belongs to uid 1000, not root/,
  );
  assert.match(explainRefusedLock('r', '').hint, /look at it \(ls -la \/run\/lock\/codex-k8s-bootstrap /);
  assert.match(explainRefusedLock('r', 'ssh -p 22 root@h').hint, /look at it \(ssh -p 22 root@h ls -la /);
});

test('converge: check -> apply only on drift -> check again; leftover drift and errors fail, all journaled', async () => {
  const { converge } = await import('../../bootstrap/lib/step.mts');
  const { Logger } = await import('../../bootstrap/lib/log.mts');
  const { loadConfig } = await import('../../bootstrap/lib/config.mts');
  const { OperationError } = await import('../../bootstrap/lib/errors.mts');
  const d = mkdtempSync(join(tmpdir(), 'ck8s-conv-'));
  const journal = join(d, 'state.json');
  const ctx = { cfg: loadConfig({ side: 'server', env: {}, strict: false }).config, log: new Logger(), runId: 'run-1' };
  let state = ['a', 'b'];
  let applied = 0;
  const impl = {
    check: async () => state.map((x) => `${x} is missing`),
    apply: async () => {
      applied++;
      const done = state.map((x) => `created ${x}`);
      state = [];
      return done;
    },
  };
  const first = await converge('10_demo', impl, ctx, 'hash1', journal);
  assert.equal(first.status, 'changed');
  assert.deepEqual(first.changes, ['created a', 'created b']);
  const again = await converge('10_demo', impl, ctx, 'hash1', journal);
  assert.equal(again.status, 'unchanged');
  assert.equal(applied, 1, 'apply is not called when nothing drifts');
  const j = readJournal(journal);
  assert.equal(j.steps['10_demo']?.status, 'ok');
  assert.equal(j.steps['10_demo']?.configHash, 'hash1');
  assert.equal(j.history.length, 2);

  const stubborn = { check: async () => ['x is wrong'], apply: async () => ['tried x'] };
  const bad = await converge('20_stubborn', stubborn, ctx, 'hash1', journal);
  assert.equal(bad.status, 'failed');
  assert.match(bad.error ?? '', /still drifting after apply: x is wrong/);
  assert.equal(readJournal(journal).steps['20_stubborn']?.status, 'failed');

  const throwing = {
    check: async () => ['y'],
    apply: async () => {
      throw new OperationError('boom', { hint: 'do z', detail: 'stderr line' });
    },
  };
  const boom = await converge('30_boom', throwing, ctx, 'hash1', journal);
  assert.deepEqual([boom.status, boom.error, boom.hint, boom.detail], ['failed', 'boom', 'do z', 'stderr line']);
  assert.equal(readJournal(journal).steps['30_boom']?.error, 'boom');

  // A failure half-way: what apply() had already changed is journaled, returned and printed, not an empty list.
  const { changeList } = await import('../../bootstrap/lib/step.mts');
  const half = {
    check: async () => ['p', 'q'],
    apply: async (c: typeof ctx) => {
      const changes = changeList(c);
      changes.push('created p');
      throw new OperationError('q failed');
    },
  };
  const printed: string[] = [];
  const spyCtx = { ...ctx, log: Object.assign(new Logger(), { info: (l: string) => printed.push(l) }) };
  const partial = await converge('40_half', half, spyCtx, 'hash1', journal);
  assert.deepEqual([partial.status, partial.changes], ['failed', ['created p']]);
  assert.deepEqual(readJournal(journal).steps['40_half']?.changes, ['created p']);
  assert.ok(printed.includes('  + created p'), printed.join('\n'));
  assert.equal('applied' in partial, false, 'the change list travels as changes only');
});

test('the server state of the first round trip is parsed: stamps, hashes and the journal', async () => {
  const { parseServerState } = await import('../../bootstrap/lib/state.mts');
  const j = JSON.stringify(recordStep(emptyJournal(), '00_preflight', ok()));
  const s = parseServerState(`acquired\nnode=v24.11.1\ntree=abc\nenv=\n--- journal\n${j}\n`);
  assert.deepEqual([s.node, s.tree, s.env], ['v24.11.1', 'abc', '']);
  assert.equal(s.journal.steps['00_preflight']?.status, 'ok');
  assert.deepEqual(
    parseServerState('released\n--- journal\n').journal,
    emptyJournal(),
    'a fresh server has an empty journal',
  );
  assert.throws(() => parseServerState('acquired\nnode=\n'), /no journal section/);
});

test('lock ages read naturally', async () => {
  const { formatAge } = await import('../../bootstrap/lib/lock.mts');
  assert.deepEqual([formatAge(59), formatAge(600), formatAge(10800), formatAge(864000)], ['59s', '10m', '3h', '10d']);
});
