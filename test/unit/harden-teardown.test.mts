// --uninstall of 10_harden_host: the pure parts of each part's teardown (what it lists, what it would take, the
// commands it runs) and the step's order. The real removal and the rollback after it are proven in the sandbox e2e;
// nothing here touches this machine's /etc, sshd, nftables or accounts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  fstabWithoutSwap,
  fstabWithSwap,
  fstabSwapOffLines,
  fstabSwapLines,
  SWAP_OFF_PREFIX,
  kernelPart,
} from '../../bootstrap/lib/harden/kernel.mts';
import {
  firewallTeardownLines,
  nftCommands,
  FIREWALL_FILE,
  FIREWALL_UNIT_FILE,
  FIREWALL_FINGERPRINT,
} from '../../bootstrap/lib/harden/firewall.mts';
import {
  sshdTeardownLines,
  isOurSocketDropin,
  renderSocketDropin,
  portOf,
  parseSshdT,
  sshCommands,
  SSHD_DROPIN,
  SOCKET_DROPIN,
} from '../../bootstrap/lib/harden/sshd.mts';
import {
  withoutKey,
  withKey,
  operatorRemoval,
  operatorTeardownLines,
  operatorPart,
  accountCommands,
  OPERATOR_GECOS,
  SUDOERS_FILE,
} from '../../bootstrap/lib/harden/operator.mts';
import type { Account } from '../../bootstrap/lib/harden/operator.mts';
import { packagesPart } from '../../bootstrap/lib/harden/packages.mts';
import { systemctl } from '../../bootstrap/lib/harden/part.mts';
import { TEARDOWN_PARTS, teardown } from '../../bootstrap/remote/10_harden_host.mts';
import type { StepContext } from '../../bootstrap/lib/step.mts';

const FSTABS = [
  '',
  'UUID=abc / ext4 defaults 0 1\n',
  'UUID=abc / ext4 defaults 0 1\n/swap.img\tnone\tswap\tsw\t0\t0\n',
  '# /etc/fstab\nUUID=abc / ext4 defaults 0 1\n/dev/sda2 none swap sw 0 0\n  /swapfile none swap sw,pri=5 0 0\n#/old none swap sw 0 0\n',
  'no trailing newline /x swap sw 0 0',
];

test('kernel: fstabWithSwap undoes fstabWithoutSwap exactly (round trip), and only our comment lines', () => {
  for (const f of FSTABS) {
    const off = fstabWithoutSwap(f);
    assert.equal(fstabSwapLines(off).length, 0, 'no swap left enabled');
    assert.equal(fstabWithSwap(off), f, JSON.stringify(f));
    assert.equal(fstabSwapOffLines(off).length, fstabSwapLines(f).length);
    // And the other way: commenting the restored file out again gives the same file.
    assert.equal(fstabWithoutSwap(fstabWithSwap(off)), off);
  }
  const admin = '#/old none swap sw 0 0\n# swap off by hand: /dev/sdb1 none swap sw 0 0\n';
  assert.equal(fstabWithSwap(admin), admin, "an admin's own commented swap line stays commented");
  assert.deepEqual(fstabSwapOffLines(`${SWAP_OFF_PREFIX}/swap.img none swap sw 0 0\n`), ['/swap.img none swap sw 0 0']);
});

test('firewall: the teardown lists our unit, our table and our files, nothing else; the commands are ours only', () => {
  assert.deepEqual(firewallTeardownLines({ unitEnabled: false, unitActive: false, tableLoaded: false, files: [] }), []);
  assert.deepEqual(
    firewallTeardownLines({
      unitEnabled: true,
      unitActive: true,
      tableLoaded: true,
      files: [FIREWALL_FILE, FIREWALL_UNIT_FILE, FIREWALL_FINGERPRINT],
    }),
    [
      'unit codex-k8s-firewall.service (enabled, active)',
      'nftables table inet codex_k8s (loaded)',
      'file /etc/nftables.d/codex-k8s.nft',
      'file /etc/systemd/system/codex-k8s-firewall.service',
      `file ${FIREWALL_FINGERPRINT}`,
    ],
  );
  assert.deepEqual(firewallTeardownLines({ unitEnabled: true, unitActive: false, tableLoaded: false, files: [] }), [
    'unit codex-k8s-firewall.service (enabled)',
  ]);
  assert.deepEqual(nftCommands.remove(), ['/usr/sbin/nft', 'delete', 'table', 'inet', 'codex_k8s']);
  assert.deepEqual(systemctl.disableNow('codex-k8s-firewall.service'), [
    'systemctl',
    'disable',
    '--now',
    'codex-k8s-firewall.service',
  ]);
});

test('sshd: the teardown lists our drop-in, and the socket drop-in only when it is ours; the port comes from sshd -T', () => {
  assert.deepEqual(sshdTeardownLines({ dropin: false, socketDropin: false }), []);
  assert.deepEqual(sshdTeardownLines({ dropin: true, socketDropin: true }), [
    `file ${SSHD_DROPIN}`,
    `file ${SOCKET_DROPIN} (ssh.socket addresses)`,
  ]);
  assert.equal(isOurSocketDropin(renderSocketDropin(2222)), true);
  // Ubuntu's own upgrade migrates a Port into a file of the same name: not ours, it stays.
  assert.equal(isOurSocketDropin('[Socket]\nListenStream=\nListenStream=2222\n'), false);
  assert.equal(isOurSocketDropin(undefined), false);
  assert.equal(portOf(parseSshdT('port 2222\nport 22\npasswordauthentication yes\n')), 2222);
  assert.equal(portOf(parseSshdT('passwordauthentication yes\n')), undefined);
  assert.equal(portOf(undefined), undefined);
  assert.deepEqual(sshCommands.socketRebind(), [
    ['systemctl', 'daemon-reload'],
    ['systemctl', 'restart', 'ssh.socket'],
  ]);
  assert.deepEqual(sshCommands.reload(), ['systemctl', 'reload', 'ssh.service']);
});

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBu1ExAmPlEkEyxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx me@laptop';
const acct = (over: Partial<Account> = {}): Account => ({
  name: 'codex',
  uid: 1001,
  gid: 1001,
  gecos: OPERATOR_GECOS,
  home: '/home/codex',
  shell: '/bin/bash',
  ...over,
});

test('operator: only our key line leaves authorized_keys, whatever its comment; withoutKey undoes withKey', () => {
  const other = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0ther admin@desk';
  const keys = `${other}\n${KEY.replace('me@laptop', 'renamed')}\n# a comment\n`;
  assert.equal(withoutKey(keys, KEY), `${other}\n# a comment\n`);
  assert.equal(withoutKey(withKey(`${other}\n`, KEY), KEY), `${other}\n`);
  assert.equal(withoutKey(`${KEY}\n`, KEY), '');
  assert.equal(withoutKey(`${other}\n`, KEY), `${other}\n`, 'nothing of ours: unchanged');
});

test('operator: --remove-operator deletes only the account this tool created; an adopted one keeps all but our key', () => {
  assert.deepEqual(operatorRemoval(undefined, false, KEY, undefined), { kind: 'keep' });
  assert.equal(operatorRemoval(acct(), false, KEY, `${KEY}\n`).kind, 'delete');
  const adopted = acct({ name: 'alice', gecos: 'Alice,,,', home: '/home/alice' });
  assert.deepEqual(operatorRemoval(adopted, true, KEY, `${KEY}\n`), {
    kind: 'unkey',
    account: adopted,
    authorizedKeys: '/home/alice/.ssh/authorized_keys',
  });
  assert.equal(operatorRemoval(adopted, true, KEY, 'ssh-rsa AAAAother x\n').kind, 'keep', 'adopted, no key of ours');
  assert.equal(operatorRemoval(adopted, false, KEY, `${KEY}\n`).kind, 'keep', 'neither created nor adopted');
  for (const sys of [acct({ name: 'root', uid: 0 }), acct({ uid: 999 }), acct({ uid: 65534 })])
    assert.equal(
      operatorRemoval(sys, true, KEY, `${KEY}\n`).kind,
      'keep',
      `never uid ${sys.uid}, even with our comment`,
    );

  assert.deepEqual(operatorTeardownLines({ kind: 'delete', account: acct() }, true), [
    'user codex (uid 1001, created by codex-k8s bootstrap; home /home/codex)',
    `file ${SUDOERS_FILE}`,
  ]);
  assert.deepEqual(
    operatorTeardownLines(
      { kind: 'unkey', account: adopted, authorizedKeys: '/home/alice/.ssh/authorized_keys' },
      false,
    ),
    ['operator key in /home/alice/.ssh/authorized_keys (user alice was adopted: the account stays)'],
  );
  assert.deepEqual(operatorTeardownLines({ kind: 'keep' }, true), [`file ${SUDOERS_FILE}`]);
  assert.deepEqual(operatorTeardownLines({ kind: 'keep' }, false), []);
});

test('operator: userdel --remove for the teardown; the rollback recreates the account with its uid, group and comment', () => {
  assert.deepEqual(accountCommands.remove('codex', true), ['userdel', '--remove', 'codex']);
  assert.deepEqual(accountCommands.createGroup('codex', 1001), ['groupadd', '--gid', '1001', 'codex']);
  assert.deepEqual(accountCommands.groupByGid(1001), ['getent', 'group', '1001']);
  assert.deepEqual(
    accountCommands.recreate({ user: 'codex', uid: 1001, gid: 1001, gecos: OPERATOR_GECOS, shell: '/bin/bash' }),
    [
      'useradd',
      '--create-home',
      '--shell',
      '/bin/bash',
      '--uid',
      '1001',
      '--gid',
      '1001',
      '--comment',
      OPERATOR_GECOS,
      'codex',
    ],
  );
});

test('operator: without --remove-operator the teardown lists nothing and removes nothing (the operator is kept)', async () => {
  // Both return before they read anything: no settings, no getent, no file.
  const ctx = {} as StepContext;
  const o = { purgeData: true, removeOperator: false };
  assert.deepEqual(await operatorPart.teardown?.check(ctx, o), []);
  assert.deepEqual(await operatorPart.teardown?.apply(ctx, o), []);
});

test('the step tears down last part first: firewall, sshd, operator, fail2ban, upgrades, kernel; packages stay', () => {
  assert.deepEqual(
    TEARDOWN_PARTS.map((p) => p.name),
    ['firewall', 'sshd', 'operator', 'fail2ban', 'upgrades', 'kernel'],
  );
  assert.deepEqual(
    TEARDOWN_PARTS.filter((p) => p.guarded).map((p) => p.name),
    ['firewall', 'sshd', 'operator'],
    'the guarded parts come first: the rollback is armed before the first removal',
  );
  assert.equal(packagesPart.teardown, undefined);
  assert.ok(kernelPart.teardown);
  assert.equal(typeof teardown.check, 'function');
  assert.equal(typeof teardown.apply, 'function');
});

test('units this tool enabled are recorded, read back, and an unreadable record disables nothing', async () => {
  const { mkdtempSync, writeFileSync, statSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { unitsEnabledByUs } = await import('../../bootstrap/lib/harden/part.mts');
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-units-'));
  const file = join(dir, 'enabled-units.json');
  assert.deepEqual(unitsEnabledByUs(file), [], 'no record: the units were enabled before us, or by the image');
  writeFileSync(file, '["fail2ban.service","apt-daily.timer",3]');
  assert.deepEqual(unitsEnabledByUs(file), ['fail2ban.service', 'apt-daily.timer']);
  writeFileSync(file, '{not json');
  assert.deepEqual(unitsEnabledByUs(file), []);
  assert.ok(statSync(file).isFile());
});
