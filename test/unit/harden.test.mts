// The pure parts of 10_harden_host (bootstrap/lib/harden/*): renderers, parsers, drift rules, command builders,
// and the launcher's fresh-login command. The sandbox e2e (test/e2e/harden.test.mts) proves the real effects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  renderSshdDropin,
  hasInclude,
  withInclude,
  candidateMain,
  parseSshdT,
  effectiveDrift,
  rootLoginWanted,
  renderSocketDropin,
  parseSocketListen,
  sshCommands,
  SOCKET_DROPIN,
  INCLUDE_LINE,
} from '../../bootstrap/lib/harden/sshd.mts';
import {
  connectionPort,
  renderRules,
  renderRuleset,
  rulesHash,
  parseLoadedTable,
  tableDrift,
  renderUnit,
  nftCommands,
  FIREWALL_FILE,
} from '../../bootstrap/lib/harden/firewall.mts';
import type { FirewallWanted } from '../../bootstrap/lib/harden/firewall.mts';
import { renderJail } from '../../bootstrap/lib/harden/fail2ban.mts';
import { renderUpgrades, parseAptConfig, aptDrift } from '../../bootstrap/lib/harden/upgrades.mts';
import {
  renderModules,
  renderSysctl,
  parseSwaps,
  fstabSwapLines,
  fstabWithoutSwap,
  sysctlPath,
} from '../../bootstrap/lib/harden/kernel.mts';
import { missingPackages, aptCommands, PACKAGES } from '../../bootstrap/lib/harden/packages.mts';
import { rollbackCommands } from '../../bootstrap/lib/harden/rollback.mts';
import { fileDrift } from '../../bootstrap/lib/harden/part.mts';
import { freshLoginArgs, transientSshFailure } from '../../bootstrap/lib/ssh.mts';
import type { SshTarget } from '../../bootstrap/lib/ssh.mts';
import { parseCidr, loadConfig } from '../../bootstrap/lib/config.mts';
import { stepCliSpec } from '../../bootstrap/lib/step.mts';
import { helpText } from '../../bootstrap/lib/cli.mts';

const W = { port: 22, maxAuthTries: 3, rootLogin: 'prohibit-password' } as const;

test('sshd: the drop-in says what the issue asks, and sorts before 50-cloud-init.conf', () => {
  const d = renderSshdDropin(W);
  for (const line of [
    'Port 22',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'MaxAuthTries 3',
  ])
    assert.match(d, new RegExp(`^${line}$`, 'm'));
  assert.ok('00-codex-k8s.conf' < '50-cloud-init.conf');
});

test("sshd: root's login is never loosened: the server's own `no` or forced-commands-only stays", () => {
  assert.equal(rootLoginWanted('no'), 'no');
  assert.equal(rootLoginWanted('forced-commands-only'), 'forced-commands-only');
  for (const theirs of ['yes', 'prohibit-password', 'without-password', undefined])
    assert.equal(rootLoginWanted(theirs), 'prohibit-password', String(theirs));
  assert.match(renderSshdDropin({ ...W, rootLogin: 'no' }), /^PermitRootLogin no$/m);
  const strict = parseSshdT(
    'port 22\npasswordauthentication no\nkbdinteractiveauthentication no\npermitrootlogin prohibit-password\nmaxauthtries 3\n',
  );
  assert.deepEqual(effectiveDrift(strict, { ...W, rootLogin: 'no' }), [
    'PermitRootLogin is prohibit-password, want no (sshd -T)',
  ]);
});

test('sshd: the Include is detected, added on top when missing, and redirected for a candidate', () => {
  const debian = `# comment\n${INCLUDE_LINE}\n\nKbdInteractiveAuthentication no\n`;
  assert.equal(hasInclude(debian), true);
  assert.equal(withInclude(debian), debian);
  const bare = 'PermitRootLogin yes\n';
  assert.equal(hasInclude(bare), false);
  const fixed = withInclude(bare);
  assert.ok(
    fixed.indexOf(INCLUDE_LINE) < fixed.indexOf('PermitRootLogin yes'),
    'the drop-ins come before the main file settings',
  );
  const cand = candidateMain(debian, '/etc/ssh/.cand/sshd_config.d');
  assert.match(cand, /^Include \/etc\/ssh\/\.cand\/sshd_config\.d\/\*\.conf$/m);
  assert.doesNotMatch(cand, /Include \/etc\/ssh\/sshd_config\.d/);
  assert.match(candidateMain(bare, '/x'), /^Include \/x\/\*\.conf$/m);
});

test('sshd: sshd -T is parsed; drift names the effective value, without-password counts as prohibit-password', () => {
  const good = parseSshdT(
    'port 22\npasswordauthentication no\nkbdinteractiveauthentication no\npermitrootlogin without-password\nmaxauthtries 3\n',
  );
  assert.deepEqual(effectiveDrift(good, W), []);
  const cloud = parseSshdT(
    'port 22\nport 2222\npasswordauthentication yes\nkbdinteractiveauthentication no\npermitrootlogin yes\nmaxauthtries 6\n',
  );
  assert.deepEqual(effectiveDrift(cloud, W), [
    'PasswordAuthentication is yes, want no (sshd -T)',
    'PermitRootLogin is yes, want prohibit-password (sshd -T)',
    'MaxAuthTries is 6, want 3 (sshd -T)',
    'sshd listens on port 22, 2222, want 22 (sshd -T)',
  ]);
  assert.deepEqual(effectiveDrift(parseSshdT(''), W).length, 5);
});

test('sshd: ssh.socket override and its parser (Ubuntu 24.04 socket activation)', () => {
  const s = renderSocketDropin(2222);
  assert.match(
    s,
    /^\[Socket\]\nListenStream=\nListenStream=0\.0\.0\.0:2222\nListenStream=\[::\]:2222$/m,
    'the reset line first, then both families',
  );
  assert.equal(
    SOCKET_DROPIN,
    '/etc/systemd/system/ssh.socket.d/addresses.conf',
    'same name as the generator output in /run, so /etc wins',
  );
  assert.deepEqual(parseSocketListen('0.0.0.0:22 (Stream)\n[::]:22 (Stream)\n'), [22]);
  assert.deepEqual(parseSocketListen('[::]:2222 (Stream)\n0.0.0.0:22 (Stream)\n'), [22, 2222]);
  assert.deepEqual(parseSocketListen(''), []);
  assert.deepEqual(sshCommands.socketRebind(), [
    ['systemctl', 'daemon-reload'],
    ['systemctl', 'restart', 'ssh.socket'],
  ]);
  assert.deepEqual(
    sshCommands.reload(),
    ['systemctl', 'reload', 'ssh.service'],
    'a reload, never a restart of the service',
  );
  assert.deepEqual(sshCommands.test('/tmp/c'), ['/usr/sbin/sshd', '-t', '-f', '/tmp/c']);
});

const FW: FirewallWanted = { sshPorts: [22], podCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16', kubeApiAllow: [] };

test('firewall: the current SSH connection port comes from SSH_CONNECTION', () => {
  assert.equal(connectionPort('203.0.113.9 51000 10.0.0.5 2222'), 2222);
  assert.equal(connectionPort(undefined), undefined);
  assert.equal(connectionPort('garbage'), undefined);
});

test('firewall: inbound SSH, 80, 443, loopback, ICMP, DHCP, k3s networks; 6443 only from the allow-list', () => {
  const rules = renderRules(FW);
  assert.deepEqual(rules, [
    'ct state established,related accept',
    'ct state invalid drop',
    'iifname "lo" accept',
    'meta l4proto { 1, 58 } accept',
    'udp sport 67 udp dport 68 accept',
    'udp sport 547 udp dport 546 accept',
    'iifname { "cni0", "flannel.1" } accept',
    'ip saddr { 10.42.0.0/16, 10.43.0.0/16 } accept',
    'tcp dport { 22, 80, 443 } accept',
  ]);
  assert.ok(!rules.some((r) => r.includes('6443')), '6443 is not public by default');
  const allowed = renderRules({ ...FW, sshPorts: [22, 2222], kubeApiAllow: ['198.51.100.7/32', '2001:db8::/64'] });
  assert.ok(allowed.includes('tcp dport { 22, 2222, 80, 443 } accept'), 'both SSH ports during a port change');
  assert.ok(allowed.includes('ip saddr 198.51.100.7/32 tcp dport 6443 accept'));
  assert.ok(allowed.includes('ip6 saddr 2001:db8::/64 tcp dport 6443 accept'));
});

test('firewall: the file replaces only our table, carries the marker, and the unit loads it at boot', () => {
  const f = renderRuleset(FW);
  assert.match(f, /^table inet codex_k8s\ndelete table inet codex_k8s\ntable inet codex_k8s \{$/m);
  assert.match(f, /type filter hook input priority filter; policy drop;/);
  assert.ok(f.includes(`counter comment "codex-k8s sha256=${rulesHash(renderRules(FW))}"`));
  assert.doesNotMatch(f, /flush ruleset/, 'other tables (k3s, fail2ban, the distribution) are never flushed');
  const u = renderUnit();
  assert.match(u, new RegExp(`^ExecStart=/usr/sbin/nft -f ${FIREWALL_FILE}$`, 'm'));
  assert.match(u, /^WantedBy=sysinit\.target$/m);
  assert.match(u, /^Before=network-pre\.target/m);
  assert.deepEqual(nftCommands.check('/tmp/x'), ['/usr/sbin/nft', '-c', '-f', '/tmp/x']);
});

function nftJson(marker: string | undefined, rules: number, policy = 'drop'): string {
  const items: unknown[] = [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'inet', name: 'codex_k8s', handle: 1 } },
    {
      chain: {
        family: 'inet',
        table: 'codex_k8s',
        name: 'input',
        handle: 1,
        type: 'filter',
        hook: 'input',
        prio: 0,
        policy,
      },
    },
  ];
  for (let i = 0; i < rules; i++)
    items.push({
      rule: {
        family: 'inet',
        table: 'codex_k8s',
        chain: 'input',
        handle: i + 2,
        ...(i === 0 && marker ? { comment: `codex-k8s sha256=${marker}` } : {}),
        expr: [],
      },
    });
  return JSON.stringify({ nftables: items });
}

test('firewall: the loaded table is compared by marker, rule count and policy', () => {
  const want = rulesHash(renderRules(FW));
  const n = renderRules(FW).length + 1;
  assert.deepEqual(tableDrift(parseLoadedTable(nftJson(want, n)), FW), []);
  assert.match(tableDrift(parseLoadedTable(nftJson('0000', n)), FW)[0] ?? '', /holds other rules/);
  assert.match(
    tableDrift(parseLoadedTable(nftJson(want, n + 1)), FW)[0] ?? '',
    /holds other rules/,
    'a rule added by hand',
  );
  assert.match(
    tableDrift(parseLoadedTable(nftJson(want, n, 'accept')), FW)[0] ?? '',
    /policy accept, want hook input policy drop/,
  );
  assert.deepEqual(tableDrift(parseLoadedTable('{"nftables":[{"metainfo":{}}]}'), FW), [
    'nftables table inet codex_k8s is not loaded',
  ]);
});

test('fail2ban: the sshd jail reads the journal, bans through nftables, on the SSH port', () => {
  const j = renderJail(2222);
  for (const l of ['[sshd]', 'enabled = true', 'backend = systemd', 'port = 2222', 'banaction = nftables'])
    assert.ok(j.split('\n').includes(l), l);
});

test('unattended-upgrades: rendered values, apt-config parsing, drift on the effective values', () => {
  assert.match(renderUpgrades(false), /^Unattended-Upgrade::Automatic-Reboot "false";$/m);
  assert.match(renderUpgrades(true), /^Unattended-Upgrade::Automatic-Reboot "true";$/m);
  const dump =
    'APT "";\nAPT::Periodic "";\nAPT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "0";\nUnattended-Upgrade::Automatic-Reboot "yes";\n';
  const values = parseAptConfig(dump);
  assert.equal(values.get('APT::Periodic::Unattended-Upgrade'), '0');
  assert.deepEqual(aptDrift(values, false), [
    'APT::Periodic::Unattended-Upgrade is "0", want "1" (apt-config)',
    'Unattended-Upgrade::Automatic-Reboot is "yes", want "false" (apt-config)',
  ]);
  assert.deepEqual(
    aptDrift(values, true),
    ['APT::Periodic::Unattended-Upgrade is "0", want "1" (apt-config)'],
    '"yes" is true for apt',
  );
  assert.deepEqual(aptDrift(parseAptConfig(renderUpgrades(false)), false), [], 'our own file satisfies the check');
});

test('kernel: modules, sysctl, swap in /proc/swaps and /etc/fstab', () => {
  assert.deepEqual(
    renderModules()
      .split('\n')
      .filter((l) => l && !l.startsWith('#')),
    ['overlay', 'br_netfilter'],
  );
  assert.match(renderSysctl(), /^net\.ipv4\.ip_forward = 1$/m);
  assert.match(renderSysctl(), /^net\.bridge\.bridge-nf-call-iptables = 1$/m);
  assert.equal(sysctlPath('net.bridge.bridge-nf-call-iptables'), '/proc/sys/net/bridge/bridge-nf-call-iptables');
  assert.deepEqual(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n/swap.img file 2097148 0 -2\n'), ['/swap.img']);
  assert.deepEqual(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n'), []);
  const fstab = 'UUID=abc / ext4 defaults 0 1\n/swap.img\tnone\tswap\tsw\t0\t0\n# /old none swap sw 0 0\n';
  assert.deepEqual(fstabSwapLines(fstab), ['/swap.img\tnone\tswap\tsw\t0\t0']);
  const off = fstabWithoutSwap(fstab);
  assert.deepEqual(fstabSwapLines(off), []);
  assert.match(off, /^UUID=abc \/ ext4 defaults 0 1$/m, 'other lines untouched');
  assert.match(off, /^# codex-k8s bootstrap: swap off for the kubelet: \/swap\.img/m, 'kept, commented');
});

test('packages: only what dpkg does not report installed; apt waits for the dpkg lock', () => {
  assert.deepEqual(
    missingPackages(PACKAGES, 'nftables installed\nfail2ban config-files\npython3-systemd installed\n'),
    ['fail2ban', 'unattended-upgrades'],
  );
  assert.deepEqual(missingPackages(PACKAGES, PACKAGES.map((p) => `${p} installed`).join('\n')), []);
  assert.ok(aptCommands.install(['x']).includes('DPkg::Lock::Timeout=300'));
});

test('managed files: missing, different content, wrong mode or owner', () => {
  const f = { path: '/etc/x', content: 'a\n', mode: 0o644 };
  assert.equal(fileDrift(f, undefined, undefined, undefined), '/etc/x is missing');
  assert.equal(fileDrift(f, 'b\n', 0o644, 0), '/etc/x differs from the managed content');
  assert.equal(fileDrift(f, 'a\n', 0o600, 0), '/etc/x is 0600 uid 0, want 0644 uid 0');
  assert.equal(fileDrift(f, 'a\n', 0o644, 0), undefined);
});

test('rollback: a transient timer runs the step with --rollback; cancel stops the timer', () => {
  assert.deepEqual(
    rollbackCommands.schedule(
      180,
      '/opt/codex-k8s-bootstrap/node/bin/node',
      '/opt/codex-k8s-bootstrap/bootstrap/remote/10_harden_host.mts',
    ),
    [
      'systemd-run',
      '--unit=codex-k8s-rollback',
      '--on-active=180s',
      '--timer-property=AccuracySec=1s',
      '--description=codex-k8s bootstrap: undo an unconfirmed operator/sshd/firewall change',
      '/opt/codex-k8s-bootstrap/node/bin/node',
      '--',
      '/opt/codex-k8s-bootstrap/bootstrap/remote/10_harden_host.mts',
      '--rollback',
    ],
  );
  assert.deepEqual(rollbackCommands.cancel(), ['systemctl', 'stop', 'codex-k8s-rollback.timer']);
});

test('the step --help lists --confirm and --rollback', () => {
  const help = helpText(stepCliSpec('10_harden_host'));
  assert.match(help, /--confirm\s+keep the last operator\/sshd\/firewall change/);
  assert.match(help, /--rollback\s+restore the operator account, sshd and firewall as snapshotted/);
});

const TARGET: SshTarget = {
  host: '203.0.113.10',
  port: 22,
  user: 'root',
  identityFile: '/k/root',
  knownHostsFile: '/s/kh',
  controlPath: '/tmp/cm',
  extraOptions: ['-o', 'Compression=yes'],
};

test('launcher: the login check is a NEW connection as the operator, with the pinned host key', () => {
  const argv = freshLoginArgs(TARGET, { user: 'codex', port: 22, identityFile: '/k/op' }, ['sudo', '-n', 'true']);
  const s = argv.join(' ');
  assert.match(s, /-o ControlPath=none/);
  assert.match(s, /-o ControlMaster=no/);
  assert.match(s, /-o BatchMode=yes/);
  assert.match(s, /-o StrictHostKeyChecking=yes/);
  assert.match(s, /-o UserKnownHostsFile=\/s\/kh/);
  assert.match(s, /-i \/k\/op /);
  assert.ok(!s.includes('/tmp/cm'), 'never through the master');
  assert.ok(!s.includes('HostKeyAlias'), 'same port: the pinned name matches as it is');
  assert.deepEqual(argv.slice(-3), ['codex@203.0.113.10', '--', 'sudo -n true']);
  assert.ok(s.includes('-o Compression=yes'), 'extra options pass through');
  const moved = freshLoginArgs(TARGET, { user: 'codex', port: 2222, identityFile: '/k/op' }, ['true']).join(' ');
  assert.match(
    moved,
    /-p 2222 .*-o HostKeyAlias=203\.0\.113\.10 /,
    'a new port still checks the key pinned for port 22',
  );
  const from2200 = freshLoginArgs({ ...TARGET, port: 2200 }, { user: 'codex', port: 2222, identityFile: '/k/op' }, [
    'true',
  ]).join(' ');
  assert.match(from2200, /HostKeyAlias=\[203\.0\.113\.10\]:2200/);
});

test('launcher: only connection-level ssh failures are retried', () => {
  assert.equal(transientSshFailure(255, 'ssh: connect to host 10.0.0.1 port 22: Connection refused'), true);
  assert.equal(transientSshFailure(255, 'kex_exchange_identification: read: Connection reset by peer'), true);
  assert.equal(transientSshFailure(255, 'codex@10.0.0.1: Permission denied (publickey).'), false);
  assert.equal(transientSshFailure(1, 'sudo: a password is required'), false);
});

test('config: CIDRs and CIDR lists; OPERATOR_SSH_KEY defaults to the public key path without .pub', () => {
  assert.equal(parseCidr('10.42.0.0/16'), '10.42.0.0/16');
  assert.equal(parseCidr('198.51.100.7'), '198.51.100.7/32');
  assert.equal(parseCidr('2001:DB8::/64'), '2001:db8::/64');
  assert.equal(parseCidr('10.42.0.0/33'), undefined);
  assert.equal(parseCidr('example.com/16'), undefined);
  const ok = loadConfig({
    side: 'host',
    strict: false,
    env: { CODEXK8S_KUBE_API_ALLOW: '198.51.100.7/32, 203.0.113.0/24', OPERATOR_SSH_PUBKEY_PATH: '/keys/op.pub' },
  });
  assert.deepEqual(ok.config.maybe('CODEXK8S_KUBE_API_ALLOW'), ['198.51.100.7/32', '203.0.113.0/24']);
  assert.equal(ok.config.get('OPERATOR_SSH_KEY'), '/keys/op');
  assert.equal(ok.config.get('CODEXK8S_POD_CIDR'), '10.42.0.0/16');
  assert.equal(ok.config.get('CODEXK8S_AUTO_REBOOT'), false);
  assert.equal(ok.config.get('CODEXK8S_LOCKOUT_ROLLBACK_AFTER'), 180);
  const bad = loadConfig({ side: 'host', strict: false, env: { CODEXK8S_KUBE_API_ALLOW: '198.51.100.7/32,nope' } });
  assert.ok(
    bad.problems.some((p) => p.startsWith('CODEXK8S_KUBE_API_ALLOW: "nope" is not a CIDR')),
    bad.problems.join('\n'),
  );
});
