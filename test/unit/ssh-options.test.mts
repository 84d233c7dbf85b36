// CODEXK8S_SSH_EXTRA_OPTS (issue 12 item 4): only a short list of options known to be safe passes, read as ssh reads
// its argv; everything else is refused by name. The real ssh (`ssh -G`, which prints the configuration it would use
// and connects nowhere) proves that what passes leaves the destination, the host-key pin and the control path alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../bootstrap/lib/config.mts';
import { sshBaseArgs, freshLoginArgs } from '../../bootstrap/lib/ssh.mts';
import { parseJumpHost, formatJumpHost } from '../../bootstrap/lib/ssh_options.mts';
import type { JumpHost } from '../../bootstrap/lib/ssh_options.mts';
import type { SshTarget } from '../../bootstrap/lib/ssh.mts';
import { prng } from '../prng.mts';

const dir = mkdtempSync(join(tmpdir(), 'ck8s-sshopts-'));
const key = join(dir, 'id');
writeFileSync(key, '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n', { mode: 0o600 });
writeFileSync(
  `${key}.pub`,
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop\n',
);
const GOOD = {
  TARGET_HOST: '203.0.113.10',
  TARGET_ROOT_SSH_KEY: key,
  OPERATOR_SSH_PUBKEY_PATH: `${key}.pub`,
  CODEXK8S_GITHUB_REPO: 'a/b',
  CODEXK8S_GITHUB_PAT: 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ',
};

function parse(opts: string): { value?: readonly string[]; problem?: string } {
  const r = loadConfig({ side: 'host', env: { ...GOOD, CODEXK8S_SSH_EXTRA_OPTS: opts } });
  const problem = r.problems.find((p) => p.startsWith('CODEXK8S_SSH_EXTRA_OPTS'));
  return problem ? { problem } : { value: r.config.maybe('CODEXK8S_SSH_EXTRA_OPTS') ?? [] };
}

const ACCEPTED: Array<[string, string[]]> = [
  ['-o ServerAliveInterval=30 -o ConnectTimeout=1m', ['-o', 'ServerAliveInterval=30', '-o', 'ConnectTimeout=1m']],
  ['-4C', ['-o', 'AddressFamily=inet', '-o', 'Compression=yes']],
  ['-c aes256-gcm@openssh.com -m hmac-sha2-512', ['-o', 'Ciphers=aes256-gcm@openssh.com', '-o', 'MACs=hmac-sha2-512']],
  [
    '-o KexAlgorithms=+diffie-hellman-group14-sha256 -o IPQoS=af21',
    ['-o', 'KexAlgorithms=+diffie-hellman-group14-sha256', '-o', 'IPQoS=af21'],
  ],
  ['  ', []],
];
for (const [opts, want] of ACCEPTED) {
  test(`ssh extra options accepted and normalised: ${JSON.stringify(opts)}`, () => {
    const r = parse(opts);
    assert.equal(r.problem, undefined);
    assert.deepEqual(r.value, want);
  });
}

// [options, the problem line it must give (after "CODEXK8S_SSH_EXTRA_OPTS: ")]
const REFUSED: Array<[string, RegExp]> = [
  [
    '-o GlobalKnownHostsFile=/tmp/kh',
    /option GlobalKnownHostsFile is not allowed \(it would change how the host key is checked/,
  ],
  [
    '-o globalknownhostsfile /tmp/kh',
    /option globalknownhostsfile is not allowed \(it would change how the host key is checked/,
  ],
  ['-S none', /option -S is not allowed \(it would change the shared connection/],
  ['-o ControlPath=none', /option ControlPath is not allowed/],
  ['-o ControlMaster=no', /option ControlMaster is not allowed/],
  [
    '-o ConnectTimeout=5 evil.example.com',
    /"evil\.example\.com" is not an option: ssh would take it as the destination \(set CODEXK8S_SSH_JUMP=evil/,
  ],
  // A jump host has a setting of its own, whose host key is pinned: here it would be checked against ~/.ssh/known_hosts.
  ['-o ProxyJump=bastion.example.com', /option ProxyJump is not allowed \(a jump host given here .* CODEXK8S_SSH_JUMP/],
  ['-oProxyJump=ops@bastion:2222', /option ProxyJump is not allowed/],
  ['-o proxyjump bastion', /option proxyjump is not allowed/],
  [
    '-J a.example.com',
    /option -J is not allowed \(a jump host given here would be checked against ~\/\.ssh\/known_hosts/,
  ],
  ['-Jssh://ops@bastion:2200', /option -J is not allowed/],
  ['bastion', /"bastion" is not an option: ssh would take it as the destination/],
  ['-- x', /"--" ends ssh's options/],
  ['-F /tmp/cfg', /option -F is not allowed/],
  ['-i /tmp/other', /option -i is not allowed \(the keys are TARGET_ROOT_SSH_KEY/],
  ['-l admin', /option -l is not allowed \(the user is TARGET_ROOT_USER\)/],
  ['-p 2222', /option -p is not allowed \(the port is TARGET_PORT\)/],
  ['-4p 2222', /option -p is not allowed/],
  ['-o ProxyCommand=nc %h %p', /option ProxyCommand is not allowed \(it would run a command/],
  ['-oLocalCommand=id', /option LocalCommand is not allowed/],
  ['-o PermitLocalCommand=yes', /option PermitLocalCommand is not allowed/],
  [
    '-o StrictHostKeyChecking=no',
    /option StrictHostKeyChecking is not allowed \(it would change how the host key is checked/,
  ],
  ['-o UserKnownHostsFile=/dev/null', /option UserKnownHostsFile is not allowed/],
  [
    '-o HostKeyAlgorithms=ssh-rsa',
    /option HostKeyAlgorithms is not allowed \(it would change how the host key is checked/,
  ],
  ['-o KnownHostsCommand=/bin/true', /option KnownHostsCommand is not allowed/],
  ['-o HostKeyAlias=other', /option HostKeyAlias is not allowed/],
  ['-o Hostname=198.51.100.1', /option Hostname is not allowed \(it would change where or as whom/],
  ['-o "ProxyCommand=x"', /"\\"ProxyCommand=x\\"" is not an ssh option/],
  ['-o SomethingNew=1', /option SomethingNew is not allowed \(it is not on the list of options known to be safe\)/],
  ['-A', /option -A is not allowed \(it would forward/],
  ['-L 8080:localhost:80', /option -L is not allowed/],
  ['-G', /option -G is not allowed/],
  ['-v', /option -v is not allowed/],
  ['-J', /option -J is not allowed/],
  ['-o ProxyJump', /option ProxyJump is not allowed/],
  ['-o Ciphers', /option Ciphers has no value/],
  ['-o Ciphers=aes128-ctr;id', /option Ciphers: .* is not a cipher list/],
  ['-c aes128-ctr -o Ciphers=aes256-ctr', /option Ciphers is given twice/],
  ['-H', /-H \(in "-H"\) is not an ssh option/],
];
for (const [opts, want] of REFUSED) {
  test(`ssh extra options refused by name: ${JSON.stringify(opts)}`, () => {
    const r = parse(opts);
    assert.ok(r.problem, `accepted as ${JSON.stringify(r.value)}`);
    assert.match(r.problem, new RegExp(`^CODEXK8S_SSH_EXTRA_OPTS: ${want.source}`));
    assert.match(r.problem, /; expected only these options: -o with Ciphers, MACs/);
  });
}

// CODEXK8S_SSH_JUMP (and a ProxyJump from ~/.ssh/config): one hop, [ssh://][user@]host[:port].
const JUMPS: Array<[string, JumpHost | RegExp]> = [
  ['bastion.example.com', { host: 'bastion.example.com', port: 22 }],
  ['ops@bastion:2222', { user: 'ops', host: 'bastion', port: 2222 }],
  ['ssh://ops@10.0.0.5:2200', { user: 'ops', host: '10.0.0.5', port: 2200 }],
  ['ops@[2001:db8::1]:22', { user: 'ops', host: '2001:db8::1', port: 22 }],
  ['a.example.com,b.example.com', /"a\.example\.com,b\.example\.com" is a chain of jump hosts/],
  ['-oProxyCommand=x', /is not \[user@\]host\[:port\]/],
  ['bastion:99999', /"bastion:99999" is not \[user@\]host\[:port\]/],
  ['ev il@bastion', /is not \[user@\]host\[:port\]/],
  ['[bastion]', /is not \[user@\]host\[:port\]/],
  ['', /is not \[user@\]host\[:port\]/],
];
for (const [value, want] of JUMPS) {
  test(`jump host ${JSON.stringify(value)}: ${want instanceof RegExp ? 'refused' : 'parsed'}`, () => {
    const r = parseJumpHost(value);
    if (want instanceof RegExp) {
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.why, want);
    } else {
      assert.deepEqual(r, { ok: true, value: want });
      // As the setting holds it: formatted back, it parses to the same hop.
      assert.deepEqual(parseJumpHost(formatJumpHost(want)), r);
    }
  });
}

test('CODEXK8S_SSH_JUMP is refused by name when it is not one jump host (exit 2 before contact)', () => {
  const r = loadConfig({ side: 'host', env: { ...GOOD, CODEXK8S_SSH_JUMP: 'a,b' } });
  assert.ok(
    r.problems.some((p) => /^CODEXK8S_SSH_JUMP: "a,b" is a chain of jump hosts; expected one jump host/.test(p)),
    r.problems.join('\n'),
  );
  const ok = loadConfig({ side: 'host', env: { ...GOOD, CODEXK8S_SSH_JUMP: 'ssh://ops@[2001:db8::1]' } });
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.config.get('CODEXK8S_SSH_JUMP'), 'ops@[2001:db8::1]:22');
  assert.equal(ok.config.get('CODEXK8S_SSH_JUMP_KEY'), key, 'the jump key defaults to TARGET_ROOT_SSH_KEY');
});

test("extra options come before the launcher's own timeouts, so theirs take effect (ssh keeps the first value of an option)", () => {
  const t: SshTarget = {
    host: 'h.example.com',
    port: 22,
    user: 'root',
    identityFile: '/k',
    knownHostsFile: '/kh',
    controlPath: '/c',
    extraOptions: ['-o', 'ConnectTimeout=60'],
  };
  for (const argv of [sshBaseArgs(t), freshLoginArgs(t, { user: 'codex', port: 22, identityFile: '/k2' }, ['true'])]) {
    const timeouts = argv.map((a, i) => (a.startsWith('ConnectTimeout=') ? i : -1)).filter((i) => i >= 0);
    assert.equal(argv[timeouts[0] ?? -1], 'ConnectTimeout=60', argv.join(' '));
  }
});

let sshG: boolean;
try {
  execFileSync('ssh', ['-G', '-F', '/dev/null', 'x'], { stdio: 'ignore' });
  sshG = true;
} catch {
  sshG = false;
}

/** ssh's own view of a command line (ssh -G connects nowhere), as keyword -> value. */
function sshConfig(argv: readonly string[]): Map<string, string> {
  const text = execFileSync('ssh', ['-G', '-F', '/dev/null', ...argv.slice(1)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Map(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]),
  );
}

const PINNED = [
  'hostname',
  'user',
  'port',
  'userknownhostsfile',
  'globalknownhostsfile',
  'stricthostkeychecking',
  'controlpath',
  'controlmaster',
  'identityfile',
  'hostkeyalias',
  'hostkeyalgorithms',
  'proxycommand',
  'localcommand',
  'permitlocalcommand',
  'knownhostscommand',
  'batchmode',
  'identitiesonly',
  'updatehostkeys',
];

test(
  "what passes leaves ssh's destination, host-key pin and control path as set (ssh -G, generated inputs)",
  { skip: !sshG && 'no ssh' },
  () => {
    const t: SshTarget = {
      host: '203.0.113.10',
      port: 2222,
      user: 'root',
      identityFile: key,
      knownHostsFile: '/kh/pin',
      controlPath: '/c/cm',
      extraOptions: [],
    };
    const base = sshConfig(['ssh', ...sshBaseArgs(t), 'root@203.0.113.10']);
    const words = [
      '-o',
      '-J',
      '-c',
      '-m',
      '-4',
      '-6',
      '-C',
      '-S',
      'none',
      '-p',
      '2200',
      '-l',
      'x',
      'bastion',
      'ops@b:2200',
      'ProxyJump=b',
      'ProxyJump',
      'GlobalKnownHostsFile=/tmp/kh',
      'UserKnownHostsFile=/dev/null',
      'StrictHostKeyChecking=no',
      'ServerAliveInterval=5',
      'ConnectTimeout=9',
      'Compression=yes',
      'ControlPath=none',
      'ProxyCommand=nc',
      'aes128-ctr',
      'HostKeyAlias=z',
      '-oConnectTimeout=3',
      '-4C',
      '-F',
      '/dev/null',
      '--',
      'IPQoS=ef',
      'Ciphers',
      '-Jb',
      'Hostname=evil',
    ];
    const next = prng(12);
    let accepted = 0;
    for (let n = 0; n < 1500; n++) {
      const opts = Array.from(
        { length: 1 + Math.floor(next() * 4) },
        () => words[Math.floor(next() * words.length)],
      ).join(' ');
      const r = parse(opts);
      if (r.problem) continue;
      const argv = ['ssh', ...sshBaseArgs({ ...t, extraOptions: r.value ?? [] }), 'root@203.0.113.10'];
      let got: Map<string, string>;
      try {
        got = sshConfig(argv);
      } catch (e) {
        // An algorithm name ssh does not know (-m ProxyJump): ssh refuses to start, which breaks no pin.
        assert.match(
          String((e as { stderr?: unknown }).stderr),
          /Bad SSH2 (cipher|MAC) spec|Bad SSH2 KexAlgorithms|Unknown (cipher|mac) type/,
          opts,
        );
        continue;
      }
      accepted++;
      for (const k of PINNED) assert.equal(got.get(k), base.get(k), `${JSON.stringify(opts)} changed ${k}`);
    }
    assert.ok(accepted > 40, `only ${accepted} generated inputs were accepted: the property says little`);
  },
);

test(
  "the issue's examples really change ssh's view when passed through raw (why they are refused)",
  { skip: !sshG && 'no ssh' },
  () => {
    const t: SshTarget = {
      host: '203.0.113.10',
      port: 22,
      user: 'root',
      identityFile: key,
      knownHostsFile: '/kh/pin',
      controlPath: '/c/cm',
      extraOptions: [],
    };
    const raw = (extra: string[]) =>
      sshConfig(['ssh', ...sshBaseArgs({ ...t, extraOptions: extra }), 'root@203.0.113.10']);
    assert.equal(raw([]).get('controlpath'), '/c/cm');
    assert.notEqual(raw(['-S', 'none']).get('controlpath'), '/c/cm');
    assert.equal(raw(['-o', 'GlobalKnownHostsFile=/tmp/kh']).get('globalknownhostsfile'), '/tmp/kh');
    assert.equal(raw(['evil.example.com']).get('hostname'), 'evil.example.com');
  },
);

// The pin against a real sshd that presents another key than the pinned one: refused with the launcher's options, and
// accepted once a raw `-o GlobalKnownHostsFile=` (the example, now refused) names a file with the impostor's key.
const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => existsSync(p)) ?? '';
// sshd runs as nobody (setpriv): as root it would want /run/sshd, which this machine need not have.
const canRunSshd = sshd !== '' && process.getuid?.() === 0 && existsSync('/usr/bin/setpriv');

test(
  'a real sshd with another key than the pinned one is refused; a raw GlobalKnownHostsFile would let it in',
  { skip: !canRunSshd && 'needs root and sshd' },
  async () => {
    const { spawn } = await import('node:child_process');
    const { readFileSync, chmodSync, chownSync, mkdirSync } = await import('node:fs');
    const { freePort } = await import('../net.mts');
    const { masterArgs } = await import('../../bootstrap/lib/ssh.mts');
    const d = mkdtempSync(join(tmpdir(), 'ck8s-pin-'));
    const srv = join(d, 'sshd');
    mkdirSync(srv);
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', join(srv, 'host_ecdsa')]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'host_ed25519')]);
    const port = await freePort();
    writeFileSync(
      join(srv, 'sshd_config'),
      `Port ${port}\nListenAddress 127.0.0.1\nHostKey ${join(srv, 'host_ecdsa')}\nPidFile ${join(srv, 'pid')}\n` +
        'AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n',
    );
    chmodSync(d, 0o755);
    for (const f of ['', 'host_ecdsa', 'host_ecdsa.pub', 'sshd_config']) chownSync(join(srv, f), 65534, 65534);
    // The pin: this server's name with an ED25519 key; the server only has ECDSA, as an impostor might.
    const known = join(d, 'known_hosts');
    writeFileSync(
      known,
      `[127.0.0.1]:${port} ${readFileSync(join(d, 'host_ed25519.pub'), 'utf8').split(' ').slice(0, 2).join(' ')}\n`,
    );
    const before = readFileSync(known, 'utf8');
    const daemon = spawn(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', sshd, '-D', '-e', '-f', join(srv, 'sshd_config')],
      { stdio: 'ignore' },
    );
    try {
      for (let i = 0; i < 50 && !existsSync(join(srv, 'pid')); i++) await new Promise((r) => setTimeout(r, 100));
      const connect = (extraOptions: string[]) => {
        const t: SshTarget = {
          host: '127.0.0.1',
          port,
          user: 'root',
          identityFile: key,
          knownHostsFile: known,
          controlPath: join(d, 'cm'),
          extraOptions,
        };
        const argv = masterArgs(t).filter((a) => a !== '-f');
        try {
          execFileSync(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20000 });
          return '';
        } catch (e) {
          return String((e as { stderr?: unknown }).stderr);
        }
      };
      const pinned = connect([]);
      assert.match(pinned, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/, pinned);
      assert.equal(readFileSync(known, 'utf8'), before, 'the impostor key was not added to the pin');
      const impostor = join(d, 'global_known_hosts');
      writeFileSync(
        impostor,
        `[127.0.0.1]:${port} ${readFileSync(join(srv, 'host_ecdsa.pub'), 'utf8').split(' ').slice(0, 2).join(' ')}\n`,
      );
      const raw = connect(['-o', `GlobalKnownHostsFile=${impostor}`]);
      assert.doesNotMatch(
        raw,
        /Host key verification failed|IDENTIFICATION HAS CHANGED/,
        'ssh trusts the impostor once the global file names it',
      );
      assert.match(raw, /Permission denied/, raw);
      assert.ok(parse(`-o GlobalKnownHostsFile=${impostor}`).problem, 'and the launcher refuses that option');
    } finally {
      daemon.kill();
    }
  },
);
