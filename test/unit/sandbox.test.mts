// The test sandbox itself (test/sandbox/): a real Debian server with systemd and sshd, isolated from the host.
// Needs root and systemd-nspawn; on a machine that cannot run it these tests FAIL with the preflight message.
// Run: node --import tsx --test test/unit/sandbox.test.mts
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { run, sandboxPreflight, startFileServer, startSandbox } from '../sandbox/sandbox.mts';
import type { FileServer, Sandbox } from '../sandbox/sandbox.mts';

/** Exists and is not a zombie (a detached process's zombie waits for PID 1, which here may be slow to reap it). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// Counted as a failure (not a skip) with the preflight's message when this machine cannot run the sandbox.
it('this machine can run the test sandbox (preflight)', async () => {
  await sandboxPreflight();
});

describe('test sandbox', () => {
  let sb: Sandbox;
  let second: Sandbox | undefined;
  let server: FileServer | undefined;
  let tmp: string;

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'sandbox-test-'));
    // Two at once: they must get different addresses and not disturb each other.
    [sb, second] = await Promise.all([
      startSandbox({
        overlayFiles: [{ content: '#!/bin/sh\necho "fake kubectl $*"\n', dest: 'usr/local/bin/kubectl', mode: 0o755 }],
      }),
      startSandbox(),
    ]);
  });

  after(async () => {
    await server?.close();
    await Promise.all([sb?.stop(), second?.stop()]);
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it('logs in over SSH as root with the generated key', async () => {
    const r = await sb.ssh(['sh', '-c', 'echo "$(id -un) $(hostname) $1"', 'sh', 'it is a "quoted" arg']);
    assert.equal(r.stdout.trim(), `root ${sb.name} it is a "quoted" arg`);
    assert.match(sb.host, /^10\.200\.\d+\.2$/);
    assert.match(sb.hostAddr, /^10\.200\.\d+\.1$/);
    assert.equal(sb.port, 22);
  });

  it('runs two sandboxes at once on different addresses', async () => {
    assert.ok(second);
    assert.notEqual(second.host, sb.host);
    assert.equal((await second.ssh(['hostname'])).stdout.trim(), second.name);
    // Each has its own filesystem.
    await second.exec(['touch', '/etc/only-in-second']);
    assert.equal((await sb.exec(['test', '-e', '/etc/only-in-second'], { allowFail: true })).exitCode, 1);
  });

  it('runs a real systemd', async () => {
    const r = await sb.exec(['systemctl', 'is-system-running', '--wait'], { allowFail: true, timeoutMs: 30_000 });
    const state = r.stdout.trim();
    if (state !== 'running') {
      const failed = await sb.exec(['systemctl', '--failed', '--no-legend', '--plain'], { allowFail: true });
      assert.equal(state, 'degraded', `systemctl is-system-running: ${state}; failed units:\n${failed.stdout}`);
    }
    assert.equal((await sb.exec(['systemctl', 'is-active', 'ssh.service'])).stdout.trim(), 'active');
  });

  it('has useradd, visudo, sshd -t and nft, and they work', async () => {
    await sb.exec(['useradd', '--create-home', '--shell', '/bin/bash', 'alice']);
    assert.match((await sb.exec(['id', 'alice'])).stdout, /uid=\d+\(alice\)/);

    await sb.exec(['sh', '-c', 'cat > /tmp/good && visudo -cf /tmp/good'], { input: 'alice ALL=(ALL) NOPASSWD:ALL\n' });
    const bad = await sb.exec(['sh', '-c', 'cat > /tmp/bad && visudo -cf /tmp/bad'], {
      input: 'alice ALL=(ALL NOPASSWD ALL\n',
      allowFail: true,
    });
    assert.equal(bad.exitCode, 1);

    await sb.exec(['sshd', '-t']);
    await sb.exec(['sh', '-c', 'echo "BogusOption yes" > /etc/ssh/sshd_config.d/99-bogus.conf']);
    assert.equal((await sb.exec(['sshd', '-t'], { allowFail: true })).exitCode, 255);
    await sb.exec(['rm', '/etc/ssh/sshd_config.d/99-bogus.conf']);

    await sb.exec(['nft', 'add', 'table', 'inet', 'sandbox_probe']);
    assert.match((await sb.exec(['nft', 'list', 'tables'])).stdout, /table inet sandbox_probe/);

    for (const tool of ['curl', 'fail2ban-client', 'unattended-upgrade', 'sudo', 'jq', 'xz']) {
      assert.equal(
        (await sb.exec(['sh', '-c', `command -v ${tool}`], { allowFail: true })).exitCode,
        0,
        `${tool} missing`,
      );
    }
    assert.equal((await sb.exec(['kubectl', 'get', 'pods'])).stdout.trim(), 'fake kubectl get pods');
    assert.equal((await sb.exec(['stat', '-c', '%a %U', '/usr/local/bin/kubectl'])).stdout.trim(), '755 root');
    assert.equal((await sb.exec(['stat', '-c', '%a', '/usr/local/bin'])).stdout.trim(), '755');
  });

  it("keeps nft rules applied inside out of the host's ruleset", async () => {
    await sb.exec(['nft', 'add', 'table', 'inet', 'sandbox_only_table']);
    await sb.exec([
      'nft',
      'add',
      'chain',
      'inet',
      'sandbox_only_table',
      'input',
      '{ type filter hook input priority 0; policy accept; }',
    ]);
    assert.match((await sb.exec(['nft', 'list', 'ruleset'])).stdout, /sandbox_only_table/);
    const host = await run('nft', ['list', 'ruleset']);
    assert.doesNotMatch(host.stdout, /sandbox_only_table|sandbox_probe/);
  });

  it('exec does not count as an SSH login; ssh does', async () => {
    const before = await sb.countAcceptedSsh();
    assert.ok(before >= 1, 'the readiness check of up is one login');
    for (let i = 0; i < 3; i += 1) await sb.exec(['true']);
    assert.equal(await sb.countAcceptedSsh(), before);
    await sb.ssh(['true']);
    assert.equal(await sb.countAcceptedSsh(), before + 1);
  });

  it('passes exit codes and stdin through exec and ssh', async () => {
    assert.equal((await sb.exec(['sh', '-c', 'exit 7'], { allowFail: true })).exitCode, 7);
    assert.equal((await sb.ssh(['sh', '-c', 'exit 9'], { allowFail: true })).exitCode, 9);
    assert.equal((await sb.exec(['cat'], { input: 'via exec' })).stdout, 'via exec');
    assert.equal((await sb.ssh(['cat'], { input: 'via ssh' })).stdout, 'via ssh');
    await assert.rejects(sb.exec(['false']), /exited with 1/);
  });

  it('rekey changes the host key, and a client pinned to the old key is refused', async () => {
    const oldKnownHosts = path.join(tmp, 'known_hosts.old');
    await fs.copyFile(sb.knownHostsPath, oldKnownHosts);
    const oldPub = readFileSync(sb.hostPubKeyPath, 'utf8');
    const before = await sb.hostKeyFingerprint();

    const newPubPath = await sb.rekey();
    assert.equal(newPubPath, sb.hostPubKeyPath);
    assert.notEqual(readFileSync(sb.hostPubKeyPath, 'utf8'), oldPub);
    const afterFp = await sb.hostKeyFingerprint();
    assert.notEqual(afterFp, before);
    const fileFp = await run('ssh-keygen', ['-l', '-f', sb.hostPubKeyPath]);
    assert.ok(fileFp.stdout.includes(afterFp), 'hostPubKeyPath holds the key sshd offers');

    // The sandbox's own known_hosts follows the new key...
    assert.equal((await sb.ssh(['echo', 'ok'])).stdout.trim(), 'ok');
    // ...a client that pinned the old key refuses to connect.
    const args = sb
      .sshArgs()
      .map((a) => (a.startsWith('UserKnownHostsFile=') ? `UserKnownHostsFile=${oldKnownHosts}` : a));
    const refused = await run('ssh', [...args, `root@${sb.host}`, 'true'], { allowFail: true });
    assert.equal(refused.exitCode, 255);
    assert.match(refused.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('reaches a file server on the host address from inside the sandbox', async () => {
    const root = path.join(tmp, 'www');
    await fs.mkdir(path.join(root, 'dir'), { recursive: true });
    await fs.writeFile(path.join(root, 'dir', 'hello.txt'), 'hello from the host\n');
    server = await startFileServer({ host: sb.hostAddr, root });
    assert.equal((await sb.exec(['curl', '-fsS', `${server.url}/dir/hello.txt`])).stdout, 'hello from the host\n');
    const missing = await sb.exec(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', `${server.url}/nope.txt`]);
    assert.equal(missing.stdout, '404');
    const traversal = await sb.exec([
      'curl',
      '-sS',
      '--path-as-is',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `${server.url}/../../etc/passwd`,
    ]);
    assert.equal(traversal.stdout, '404');
    assert.deepEqual(server.requests.slice(0, 2), [
      { method: 'GET', path: '/dir/hello.txt', status: 200 },
      { method: 'GET', path: '/nope.txt', status: 404 },
    ]);
    await server.close();
    server = undefined;
  });

  it('stop tears everything down', async () => {
    const { runDir, name, index, pid } = sb;
    const started = Date.now();
    await sb.stop();
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 15_000, `stop took ${elapsed} ms`);
    assert.equal(existsSync(runDir), false, `${runDir} is left`);
    assert.equal(processAlive(pid), false, 'the unshare process is left');
    const mounts = readFileSync('/proc/mounts', 'utf8');
    assert.ok(!mounts.includes(runDir) && !mounts.includes(`codex-k8s-sandbox-${name}`), 'a mount is left');
    const link = await run('ip', ['link', 'show', `vcks${index}`], { allowFail: true });
    assert.notEqual(link.exitCode, 0, `veth vcks${index} is left`);
    for (const cg of ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
      assert.equal(
        existsSync(path.join(cg, 'codex-k8s-sandbox', name)),
        false,
        `cgroup ${cg}/codex-k8s-sandbox/${name} is left`,
      );
    }
    await sb.stop(); // idempotent
    // The other sandbox is unaffected.
    assert.ok(second);
    assert.equal((await second.ssh(['true'])).exitCode, 0);
  });
});
