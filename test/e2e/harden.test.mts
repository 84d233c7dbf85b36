// 10_harden_host end to end, over real SSH, against a disposable Debian server (test/sandbox): real sshd,
// nftables, fail2ban, systemd timers. The tests run in order on one sandbox: first run, its real effects,
// the idempotent re-run, a broken sshd candidate, a lockout the launcher rolls back, and the dead-man timer
// rolling back a change made by hand that nobody confirmed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { run as runProcess, sandboxPreflight } from '../sandbox/sandbox.mts';

const STEP = '/opt/codex-k8s-bootstrap/bootstrap/remote/10_harden_host.mts';
const NODE = '/opt/codex-k8s-bootstrap/node/bin/node';
const DROPIN = '/etc/ssh/sshd_config.d/00-codex-k8s.conf';
const PASSWORD = 'E2e-pass-not-a-secret-1';
let t: Target;

async function operatorLogin(argv: string[], key = t.operatorKey) {
  return runProcess(
    'ssh',
    [
      '-i',
      key,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'ControlPath=none',
      '-o',
      `UserKnownHostsFile=${t.sb.knownHostsPath}`,
      '-o',
      'StrictHostKeyChecking=yes',
      `codex@${t.sb.host}`,
      '--',
      ...argv,
    ],
    { allowFail: true },
  );
}

/** A real password login (no tty needed: ssh asks SSH_ASKPASS when SSH_ASKPASS_REQUIRE=force). */
async function passwordLogin(user: string) {
  const askpass = join(t.dir, 'askpass.sh');
  writeFileSync(askpass, `#!/bin/sh\necho '${PASSWORD}'\n`, { mode: 0o700 });
  return runProcess(
    'ssh',
    [
      '-o',
      'PreferredAuthentications=password,keyboard-interactive',
      '-o',
      'PubkeyAuthentication=no',
      '-o',
      'NumberOfPasswordPrompts=1',
      '-o',
      'ControlPath=none',
      '-o',
      'ConnectTimeout=5',
      '-o',
      `UserKnownHostsFile=${t.sb.knownHostsPath}`,
      '-o',
      'StrictHostKeyChecking=yes',
      `${user}@${t.sb.host}`,
      'true',
    ],
    { allowFail: true, env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: 'none' } },
  );
}

async function reachable(port: number): Promise<boolean> {
  try {
    await fetch(`http://${t.sb.host}:${port}/`, { signal: AbortSignal.timeout(2500) });
    return true;
  } catch {
    return false;
  }
}

async function sshdT(key: string): Promise<string> {
  const r = await t.sb.exec(['sshd', '-T']);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith(`${key} `))
    .map((l) => l.slice(key.length + 1))
    .join(',');
}

async function journalStatus(): Promise<string | undefined> {
  const j = JSON.parse((await t.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout) as {
    steps: Record<string, { status: string }>;
  };
  return j.steps['10_harden_host']?.status;
}

async function noPendingRollback(): Promise<void> {
  assert.notEqual(
    (await t.sb.exec(['systemctl', 'is-active', '--quiet', 'codex-k8s-rollback.timer'], { allowFail: true })).exitCode,
    0,
    'no rollback timer is pending',
  );
  assert.notEqual(
    (await t.sb.exec(['test', '-e', '/var/lib/codex-k8s-bootstrap/rollback/10_harden_host'], { allowFail: true }))
      .exitCode,
    0,
    'no snapshot is left',
  );
}

describe('10_harden_host against a sandbox server', { concurrency: false }, () => {
  it('this machine can run the test sandbox (preflight)', () => sandboxPreflight());

  before(async () => {
    t = await startTarget();
  });
  after(async () => {
    await t?.stop();
  });

  it('before hardening: a cloud-init drop-in allows passwords, a password login works, a test port is open', async () => {
    await t.sb.exec(['sh', '-c', 'printf "PasswordAuthentication yes\\n" > /etc/ssh/sshd_config.d/50-cloud-init.conf']);
    await t.sb.reloadSshd();
    await t.sb.exec(['sh', '-c', 'useradd --create-home --shell /bin/bash pwtest && chpasswd'], {
      input: `pwtest:${PASSWORD}\n`,
    });
    const pw = await passwordLogin('pwtest');
    assert.equal(
      pw.exitCode,
      0,
      `the password login must work before hardening, or the later refusal proves nothing: ${pw.stderr}`,
    );
    await t.sb.exec(['systemd-run', '--unit=e2e-listener', 'python3', '-m', 'http.server', '8081']);
    let open = false;
    for (let i = 0; i < 20 && !open; i++)
      open = (await reachable(8081)) || (await new Promise((r) => setTimeout(r, 250)), false);
    assert.ok(open, 'the test listener on 8081 answers from the host before the firewall');
  });

  it('the first run hardens the host and proves a fresh operator login before it keeps the change', async () => {
    const accepted = await t.sb.countAcceptedSsh();
    const r = await t.launch(['--yes', '--only', '00,10']);
    assert.equal(r.code, 0, r.output);
    assert.match(footers(r.output)['10_harden_host'] ?? '', /^\+ changed \d+$/, r.output);
    assert.equal(
      (await t.sb.countAcceptedSsh()) - accepted,
      3,
      "the master, plus NEW logins for the check: the operator's and root's own",
    );
    assert.match(
      (await t.sb.exec(['journalctl', '-u', 'ssh', '--no-pager', '-o', 'cat'])).stdout,
      /Accepted publickey for codex /,
    );
    assert.match(r.output, /login check: a new connection as codex@\S+:22/);
    assert.match(r.output, /\+ a new login as codex@\S+:22 works and has sudo/);
    assert.match(r.output, /\+ a new login as root@\S+:22 works and has root/);
    assert.match(r.output, /kept the change; stopped codex-k8s-rollback\.timer/);
    await noPendingRollback();
  });

  it('real effects: key login with sudo, passwords refused despite cloud-init, firewall on, fail2ban, kernel and updates', async () => {
    const login = await operatorLogin(['sudo', '-n', 'true']);
    assert.equal(login.exitCode, 0, login.stderr);
    assert.equal(
      (await t.sb.exec(['test', '-f', '/etc/ssh/sshd_config.d/50-cloud-init.conf'], { allowFail: true })).exitCode,
      0,
      'the planted drop-in is still there',
    );
    assert.equal(await sshdT('passwordauthentication'), 'no');
    assert.equal(await sshdT('kbdinteractiveauthentication'), 'no');
    assert.match(await sshdT('permitrootlogin'), /^(prohibit-password|without-password)$/);
    assert.equal(await sshdT('maxauthtries'), '3');
    const pw = await passwordLogin('pwtest');
    assert.equal(pw.exitCode, 255, 'a real password login is refused');
    assert.match(pw.stderr, /Permission denied \(publickey\)/);
    assert.equal((await t.sb.ssh(['whoami'])).stdout.trim(), 'root', 'root still logs in with its key');

    assert.equal(await reachable(8081), false, 'the test port is blocked from the host');
    assert.equal((await operatorLogin(['true'])).exitCode, 0, 'while SSH still answers');
    const table = (await t.sb.exec(['nft', 'list', 'table', 'inet', 'codex_k8s'])).stdout;
    assert.match(table, /policy drop/);
    assert.doesNotMatch(table, /6443/, '6443 is not public without CODEXK8S_KUBE_API_ALLOW');
    assert.equal((await t.sb.exec(['systemctl', 'is-enabled', 'codex-k8s-firewall.service'])).stdout.trim(), 'enabled');

    assert.equal(
      (await t.sb.exec(['fail2ban-client', 'status', 'sshd'], { allowFail: true })).exitCode,
      0,
      'the sshd jail runs',
    );
    assert.equal((await t.sb.exec(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1');
    assert.equal(
      (await t.sb.exec(['cat', '/etc/modules-load.d/codex-k8s.conf'])).stdout
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .join(','),
      'overlay,br_netfilter',
    );
    assert.match((await t.sb.exec(['apt-config', 'dump'])).stdout, /^Unattended-Upgrade::Automatic-Reboot "false";$/m);
  });

  it('the second run reports 10_harden_host unchanged and needs no login check', async () => {
    const r = await t.launch(['--yes', '--only', '00,10']);
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(footers(r.output), { '00_preflight': '= unchanged', '10_harden_host': '= unchanged' }, r.output);
    assert.doesNotMatch(r.output, /login check/);
  });

  it('a broken sshd configuration is refused before anything moves; the previous one is kept', async () => {
    await t.sb.exec(['sh', '-c', 'printf "NoSuchKeyword yes\\n" > /etc/ssh/sshd_config.d/60-broken.conf']);
    try {
      const r = await t.launch(['--yes', '--only', '10'], { CODEXK8S_SSH_MAX_AUTH_TRIES: '4' });
      assert.equal(r.code, 1, r.output);
      assert.match(r.output, /sshd -t refused the new configuration/);
      assert.match((await t.sb.exec(['cat', DROPIN])).stdout, /^MaxAuthTries 3$/m, 'the drop-in was not replaced');
    } finally {
      await t.sb.exec(['rm', '-f', '/etc/ssh/sshd_config.d/60-broken.conf']);
    }
    assert.equal(await sshdT('maxauthtries'), '3');
    assert.equal((await operatorLogin(['sudo', '-n', 'true'])).exitCode, 0);
    await noPendingRollback();
  });

  it('lockout: when the fresh operator login fails, the launcher rolls sshd and the firewall back', async () => {
    // The right key pair, but passphrase-protected and no agent: the launcher cannot compare it up front (it warns), and
    // the BatchMode login after hardening cannot use it. A wrong pair is refused before contact, so it cannot show this.
    const locked = join(t.dir, 'locked-key');
    copyFileSync(t.operatorKey, locked);
    chmodSync(locked, 0o600);
    await runProcess('ssh-keygen', ['-q', '-p', '-P', '', '-N', 'not-in-any-agent', '-f', locked]);
    const r = await t.launch(['--yes', '--only', '10'], {
      OPERATOR_SSH_KEY: locked,
      SSH_AUTH_SOCK: '',
      CODEXK8S_SSH_MAX_AUTH_TRIES: '4',
      CODEXK8S_KUBE_API_ALLOW: '10.9.0.0/16',
    });
    assert.match(r.output, /OPERATOR_SSH_KEY: .* is passphrase-protected/);
    assert.equal(r.code, 1, r.output);
    assert.equal(footers(r.output)['10_harden_host'], 'x failed');
    assert.match(r.output, /a new login as codex@\S+:22 failed after: sshd: .*firewall: /);
    assert.match(r.output, /Permission denied \(publickey\)/);
    assert.match(r.output, /the change was rolled back over the open connection/);
    assert.match((await t.sb.exec(['cat', DROPIN])).stdout, /^MaxAuthTries 3$/m, 'the drop-in is the previous one');
    assert.equal(await sshdT('maxauthtries'), '3');
    assert.doesNotMatch(
      (await t.sb.exec(['nft', 'list', 'table', 'inet', 'codex_k8s'])).stdout,
      /6443/,
      'the loaded ruleset is the previous one',
    );
    assert.doesNotMatch((await t.sb.exec(['cat', '/etc/nftables.d/codex-k8s.nft'])).stdout, /6443/);
    assert.equal(await journalStatus(), 'failed');
    await noPendingRollback();
    assert.equal((await operatorLogin(['sudo', '-n', 'true'])).exitCode, 0, 'the operator still gets in');
  });

  it("lockout of the launcher's own login: the operator still gets in, root does not, so the change is rolled back", async () => {
    // Someone's sshd drop-in denies root; it bites at the reload of the step's next sshd change (the master stays).
    const deny = '/etc/ssh/sshd_config.d/90-deny-root.conf';
    await t.sb.exec(['sh', '-c', `echo 'DenyUsers root' > ${deny}`]);
    try {
      const r = await t.launch(['--yes', '--only', '10'], { CODEXK8S_SSH_MAX_AUTH_TRIES: '5' });
      assert.equal(r.code, 1, r.output);
      assert.equal(footers(r.output)['10_harden_host'], 'x failed');
      assert.match(r.output, /\+ a new login as codex@\S+:22 works and has sudo/);
      assert.match(r.output, /a new login as root@\S+:22 failed after: sshd: /);
      assert.match(r.output, /a new login as root@\S+:22 with TARGET_ROOT_SSH_KEY failed after changing/);
      assert.match(r.output, /the change was rolled back over the open connection/);
      assert.match(r.output, /check that root still logs in with TARGET_ROOT_SSH_KEY/);
      assert.equal(await sshdT('maxauthtries'), '3', 'the previous sshd settings are back');
      await noPendingRollback();
    } finally {
      await t.sb.exec(['rm', '-f', deny]);
      await t.sb.reloadSshd();
    }
    assert.equal((await t.sb.ssh(['true'])).exitCode, 0, 'root gets in again once the drop-in is gone');
  });

  it('an operator that is a system account, or an account this tool did not create, is refused before anything changes', async () => {
    await t.sb.exec([
      'useradd',
      '--system',
      '--create-home',
      '--home-dir',
      '/var/lib/svcacct',
      '--shell',
      '/usr/sbin/nologin',
      'svcacct',
    ]);
    const state = async () =>
      (
        await t.sb.exec([
          'sh',
          '-c',
          'stat -c "%U %a" /var/lib/svcacct; getent passwd svcacct pwtest; cat /etc/sudoers.d/codex-k8s-operator; ls -A /home/pwtest',
        ])
      ).stdout;
    const before = await state();
    const r = await t.launch(['--yes', '--only', '00,10'], { OPERATOR_USER: 'svcacct' });
    assert.equal(r.code, 2, r.output);
    assert.match(
      r.output,
      /fail\s+operator\s+OPERATOR_USER=svcacct is a system account on the server \(uid \d+, home \/var\/lib\/svcacct\)/,
    );
    assert.equal(footers(r.output)['10_harden_host'], undefined, 'step 10 never started');
    // Step 10 asks again by itself (run by hand, or --only 10 after the preflight passed on another day).
    for (const [user, reason] of [
      ['svcacct', /is a system account on the server/],
      [
        'pwtest',
        /OPERATOR_USER=pwtest is an existing account \(uid \d+, comment ""\) that this tool did not create; nothing was changed/,
      ],
    ] as const) {
      const byHand = await t.sb.exec(['env', `OPERATOR_USER=${user}`, NODE, '--', STEP], { allowFail: true });
      assert.equal(byHand.exitCode, 2, byHand.stdout + byHand.stderr);
      assert.match(byHand.stdout + byHand.stderr, reason);
    }
    const adoptHint = await t.sb.exec(['env', 'OPERATOR_USER=pwtest', NODE, '--', STEP, '--check'], {
      allowFail: true,
    });
    assert.match(adoptHint.stdout + adoptHint.stderr, /OPERATOR_ADOPT_EXISTING=true/);
    assert.equal(await state(), before, 'no account, home or sudoers change');
    await noPendingRollback();
    // The refused preflight is journaled as failed; with a good name the next run passes it, no manual step.
    const again = await t.launch(['--yes', '--only', '00,10']);
    assert.equal(again.code, 0, again.output);
    assert.deepEqual(
      footers(again.output),
      { '00_preflight': '= unchanged', '10_harden_host': '= unchanged' },
      again.output,
    );
  });

  it('lockout of a new operator: the rollback removes the account it created and gives sudo back', async () => {
    const locked = join(t.dir, 'locked-key');
    const r = await t.launch(['--yes', '--only', '10'], {
      OPERATOR_USER: 'ops3',
      OPERATOR_SSH_KEY: locked,
      SSH_AUTH_SOCK: '',
    });
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /a new login as ops3@\S+:22 failed after: operator: user ops3 does not exist/);
    assert.match(r.output, /removed user ops3 and \/home\/ops3 \(it did not exist before\)/);
    assert.equal(
      (await t.sb.exec(['getent', 'passwd', 'ops3'], { allowFail: true })).exitCode,
      2,
      'the account is gone',
    );
    assert.equal((await t.sb.exec(['getent', 'group', 'ops3'], { allowFail: true })).exitCode, 2, 'and its group');
    assert.equal((await t.sb.exec(['test', '-e', '/home/ops3'], { allowFail: true })).exitCode, 1, 'and its home');
    assert.match(
      (await t.sb.exec(['cat', '/etc/sudoers.d/codex-k8s-operator'])).stdout,
      /^codex ALL=\(ALL:ALL\) NOPASSWD: ALL$/m,
    );
    assert.equal(await journalStatus(), 'failed');
    await noPendingRollback();
    assert.equal((await operatorLogin(['sudo', '-n', 'true'])).exitCode, 0, 'the previous operator has sudo again');
  });

  it('lockout of an adopted account: the rollback restores its shell, .ssh and authorized_keys', async () => {
    await t.sb.exec([
      'sh',
      '-c',
      'useradd --create-home --shell /bin/sh adoptme && install -d -m 755 -o adoptme -g adoptme /home/adoptme/.ssh && printf "# kept\\n" > /home/adoptme/.ssh/authorized_keys && chown adoptme: /home/adoptme/.ssh/authorized_keys && chmod 640 /home/adoptme/.ssh/authorized_keys',
    ]);
    const state = async () =>
      (
        await t.sb.exec([
          'sh',
          '-c',
          'getent passwd adoptme; stat -c "%n %U %a" /home/adoptme/.ssh /home/adoptme/.ssh/authorized_keys; cat /home/adoptme/.ssh/authorized_keys',
        ])
      ).stdout;
    const before = await state();
    const r = await t.launch(['--yes', '--only', '10'], {
      OPERATOR_USER: 'adoptme',
      OPERATOR_ADOPT_EXISTING: 'true',
      OPERATOR_SSH_KEY: join(t.dir, 'locked-key'),
      SSH_AUTH_SOCK: '',
    });
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /a new login as adoptme@\S+:22 failed after: operator: login shell of adoptme is \/bin\/sh/);
    assert.match(r.output, /restored the login shell of adoptme to \/bin\/sh/);
    assert.equal(await state(), before, 'shell, .ssh and authorized_keys are as they were');
    assert.match((await t.sb.exec(['cat', '/etc/sudoers.d/codex-k8s-operator'])).stdout, /^codex ALL=/m);
    await noPendingRollback();
    assert.equal((await operatorLogin(['sudo', '-n', 'true'])).exitCode, 0);
  });

  it('a rollback whose account part fails still restores sshd and the firewall, keeps the snapshot, and can be run again', async () => {
    await t.sb.exec(['sh', '-c', 'useradd --create-home --shell /bin/sh adoptfail']);
    // usermod fails for this run only: the account part of the rollback cannot put the shell back.
    await t.sb.exec([
      'sh',
      '-c',
      'mv /usr/sbin/usermod /usr/sbin/usermod.real && printf "#!/bin/sh\\ncase \\"\\$*\\" in *--shell\\ /bin/sh*) echo usermod: simulated failure >&2; exit 1;; esac\\nexec /usr/sbin/usermod.real \\"\\$@\\"\\n" > /usr/sbin/usermod && chmod 755 /usr/sbin/usermod',
    ]);
    try {
      const r = await t.launch(['--yes', '--only', '10'], {
        OPERATOR_USER: 'adoptfail',
        OPERATOR_ADOPT_EXISTING: 'true',
        OPERATOR_SSH_KEY: join(t.dir, 'locked-key'),
        SSH_AUTH_SOCK: '',
        CODEXK8S_SSH_MAX_AUTH_TRIES: '4',
      });
      assert.equal(r.code, 1, r.output);
      assert.match(
        r.output,
        /not everything followed them: operator: command failed: usermod --shell \/bin\/sh adoptfail/,
      );
      assert.match(
        r.output,
        /the rollback failed \(exit 1\) and no timer is left to retry it: .*10_harden_host\.mts --rollback/,
      );
      assert.equal(await sshdT('maxauthtries'), '3', 'sshd was restored and reloaded although the account part failed');
      assert.equal(await journalStatus(), 'failed', 'half rolled back is not succeeded');
      assert.equal(
        (await t.sb.exec(['test', '-d', '/var/lib/codex-k8s-bootstrap/rollback/10_harden_host'], { allowFail: true }))
          .exitCode,
        0,
        'the snapshot is kept',
      );
    } finally {
      await t.sb.exec(['mv', '-f', '/usr/sbin/usermod.real', '/usr/sbin/usermod']);
    }
    const again = await t.sb.exec([NODE, '--', STEP, '--rollback'], { allowFail: true });
    assert.equal(again.exitCode, 0, again.stdout + again.stderr);
    assert.match(again.stdout + again.stderr, /restored the login shell of adoptfail to \/bin\/sh/);
    assert.equal((await t.sb.exec(['getent', 'passwd', 'adoptfail'])).stdout.trim().split(':')[6], '/bin/sh');
    await noPendingRollback();
    assert.equal((await operatorLogin(['sudo', '-n', 'true'])).exitCode, 0);
  });

  it('dead-man timer: a change made by hand and never confirmed is rolled back by itself', async () => {
    const byHand = await t.sb.exec(
      ['env', 'CODEXK8S_LOCKOUT_ROLLBACK_AFTER=3s', 'CODEXK8S_SSH_MAX_AUTH_TRIES=5', NODE, '--', STEP],
      { allowFail: true },
    );
    assert.equal(byHand.exitCode, 0, byHand.stdout + byHand.stderr);
    assert.match(byHand.stdout + byHand.stderr, /10_harden_host\.mts --confirm/);
    assert.equal(await sshdT('maxauthtries'), '5', 'the change is in effect for now');
    let restored = false;
    for (let i = 1; i <= 40 && !restored; i++) {
      await new Promise((res) => setTimeout(res, 500));
      restored =
        (await t.sb.exec(['cat', DROPIN])).stdout.includes('MaxAuthTries 3\n') && (await journalStatus()) === 'failed';
    }
    assert.ok(restored, 'the timer restored the previous drop-in within 20 s');
    assert.equal(await sshdT('maxauthtries'), '3');
    await noPendingRollback();
    const again = await t.launch(['--yes', '--only', '10']);
    assert.equal(again.code, 0, again.output);
    assert.deepEqual(
      footers(again.output),
      { '10_harden_host': '= unchanged' },
      'the rollback restored exactly the converged state',
    );
  });

  it('a port change: sshd moves to 2222 under the open run, the login check uses the new port and the pinned key', async () => {
    const moved = await t.launch(['--yes', '--only', '10'], { CODEXK8S_SSH_PORT: '2222' });
    assert.equal(moved.code, 0, moved.output);
    assert.match(moved.output, /\+ a new login as codex@\S+:2222 works and has sudo/);
    assert.equal(await sshdT('port'), '2222');
    assert.match(
      (await t.sb.exec(['nft', 'list', 'table', 'inet', 'codex_k8s'])).stdout,
      /tcp dport \{ 22, 80, 443, 2222 \} accept/,
      'both ports while the run still comes in on 22',
    );
    // The next run comes in on the new port: the old one leaves the firewall.
    const settled = await t.launch(['--yes', '--only', '10'], { TARGET_PORT: '2222', CODEXK8S_SSH_PORT: '2222' });
    assert.equal(settled.code, 0, settled.output);
    assert.match(settled.output, /\+ a new login as codex@\S+:2222 works/);
    const table = (await t.sb.exec(['nft', 'list', 'table', 'inet', 'codex_k8s'])).stdout;
    assert.match(table, /tcp dport \{ 80, 443, 2222 \} accept/);
    const old = await runProcess(
      'ssh',
      [...t.sb.sshArgs(), '-o', 'ConnectTimeout=3', '-o', 'ControlPath=none', '-p', '22', `root@${t.sb.host}`, 'true'],
      { allowFail: true },
    );
    assert.equal(old.exitCode, 255, 'nothing answers on 22 any more');
    const now = await runProcess(
      'ssh',
      [
        '-p',
        '2222',
        '-i',
        t.operatorKey,
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'BatchMode=yes',
        '-o',
        'ControlPath=none',
        '-o',
        'HostKeyAlias=' + t.sb.host,
        '-o',
        `UserKnownHostsFile=${t.sb.knownHostsPath}`,
        '-o',
        'StrictHostKeyChecking=yes',
        `codex@${t.sb.host}`,
        'sudo',
        '-n',
        'true',
      ],
      { allowFail: true },
    );
    assert.equal(now.exitCode, 0, now.stderr);
    await noPendingRollback();
  });
});
