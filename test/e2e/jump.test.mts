// The launcher through a jump host, over real SSH: a second sandbox is the bastion, joined to the server by a link of
// their own (a veth pair between the two namespaces; the host is not part of it), and the server drops SSH from
// anywhere else. The bastion's host key is pinned in the tool's own known_hosts, like the server's, and the login
// checks after hardening go through the same hop.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { startSandbox, run as runProcess } from '../sandbox/sandbox.mts';
import type { Sandbox } from '../sandbox/sandbox.mts';

let t: Target;
let bastion: Sandbox;
let env: Record<string, string>;
/** The link between bastion and server: 10.201.<server index>.1 (bastion) and .2 (server). */
let serverOnLink = '';
let bastionOnLink = '';

/** The server's journal lines "Accepted publickey for USER from ADDRESS". */
async function acceptedFrom(): Promise<string[]> {
  const j = (await t.sb.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', 'ssh'])).stdout;
  return [...j.matchAll(/Accepted publickey for \S+ from (\S+)/g)].map((m) => m[1] as string);
}

describe('launcher through a jump host (a second sandbox as the bastion)', { concurrency: false }, () => {
  before(async () => {
    t = await startTarget();
    bastion = await startSandbox();
    bastionOnLink = `10.201.${t.sb.index}.1`;
    serverOnLink = `10.201.${t.sb.index}.2`;
    // One veth pair, each end created straight in its sandbox's network namespace.
    await runProcess('ip', [
      'link',
      'add',
      'name',
      'jmp0',
      'netns',
      String(bastion.leader),
      'type',
      'veth',
      'peer',
      'name',
      'jmp0',
      'netns',
      String(t.sb.leader),
    ]);
    await bastion.exec(['sh', '-c', `ip addr add ${bastionOnLink}/30 dev jmp0 && ip link set jmp0 up`]);
    await t.sb.exec(['sh', '-c', `ip addr add ${serverOnLink}/30 dev jmp0 && ip link set jmp0 up`]);
    // SSH on the server only over the link: a table of the test's own (10_harden_host manages inet codex_k8s only).
    await t.sb.exec(['nft', '-f', '-'], {
      input:
        'table inet e2e_bastion_only {\n  chain input {\n    type filter hook input priority -10; policy accept;\n    iifname "host0" tcp dport 22 drop\n  }\n}\n',
    });
    env = {
      TARGET_HOST: serverOnLink,
      CODEXK8S_SSH_JUMP: `root@${bastion.host}:${bastion.port}`,
      CODEXK8S_SSH_JUMP_KEY: bastion.rootKey,
    };
  });
  after(async () => {
    await bastion?.stop();
    await t?.stop();
  });

  it('the server takes SSH only from the bastion', async () => {
    const direct = await runProcess('ssh', [...t.sb.sshArgs(), '-o', 'ConnectTimeout=3', `root@${t.sb.host}`, 'true'], {
      allowFail: true,
    });
    assert.equal(direct.exitCode, 255, 'a direct connection from the laptop got in');
    const hop = await bastion.exec(['bash', '-c', `exec 3<>/dev/tcp/${serverOnLink}/22 && head -c 7 <&3`]);
    assert.equal(hop.stdout, 'SSH-2.0', 'the bastion reaches the server over the link');
  });

  it("a run through the jump host: 00 and 10 converge, the bastion's key is pinned, every login came from it", async () => {
    const earlier = (await acceptedFrom()).length; // the sandbox's own readiness login, before the firewall
    const r = await t.launch(['--yes', '--only', '00,10'], env);
    assert.equal(r.code, 0, r.output);
    assert.match(
      r.output,
      new RegExp(
        `^via the jump host root@${bastion.host}:22 \\(its host key pinned in .*known_hosts/${bastion.host}_22\\)$`,
        'm',
      ),
    );
    assert.match(footers(r.output)['10_harden_host'] ?? '', /^\+ changed/, r.output);
    assert.match(r.output, /login check: a new connection as codex@\S+ through the jump host root@/);
    assert.match(r.output, new RegExp(`\\+ a new login as codex@${serverOnLink}:22 works and has sudo`));
    assert.match(r.output, new RegExp(`\\+ a new login as root@${serverOnLink}:22 works and has root`));
    // Pinned: the bastion under its own name, beside the server's; the key is the one the bastion's sshd offers.
    const pins = readdirSync(join(t.dir, 'state', 'known_hosts'));
    assert.ok(pins.includes(`${bastion.host}_22`), pins.join(', '));
    const offered = readFileSync(bastion.hostPubKeyPath, 'utf8').trim().split(/\s+/)[1] as string;
    assert.ok(readFileSync(join(t.dir, 'state', 'known_hosts', `${bastion.host}_22`), 'utf8').includes(offered));
    assert.ok(pins.includes(`${serverOnLink}_22`), pins.join(', '));
    // The master and both fresh logins, each from the bastion's end of the link.
    const from = (await acceptedFrom()).slice(earlier);
    assert.ok(from.length >= 3, from.join(', '));
    assert.deepEqual([...new Set(from)], [bastionOnLink]);
    // Never ssh's own ProxyJump, whose hop would be checked against ~/.ssh/known_hosts.
    assert.doesNotMatch(readFileSync(t.sshArgvLog, 'utf8'), /ProxyJump|\s-J\s/);
  });

  it('a second run through the jump host is all unchanged', async () => {
    const r = await t.launch(['--yes', '--only', '00,10'], env);
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(footers(r.output), { '00_preflight': '= unchanged', '10_harden_host': '= unchanged' });
  });

  it('a bastion whose host key changed stops the run before anything is sent', async () => {
    const before = (await acceptedFrom()).length;
    await bastion.rekey();
    const r = await t.launch(['--yes', '--only', '00'], env);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /the SSH host key of the jump host root@\S+:22 differs from the one pinned in /);
    assert.match(r.output, /ssh-keygen -R '10\.200\.\d+\.2' -f /);
    assert.equal((await acceptedFrom()).length, before, 'the server saw no login');
  });

  it('no secret from the config appears in any output, log, argv or record', async () => {
    for (const [where, text] of Object.entries(await t.capturedTexts()))
      assert.ok(!text.includes(t.secret), `the GitHub token leaked into: ${where}`);
  });
});
