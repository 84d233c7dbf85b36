// What happens in the sandbox stays in the sandbox: users, sudoers, sshd files and nftables of the host are unchanged
// after a sandbox ran and was changed (as root) inside. Needs root and systemd-nspawn (fails otherwise, on purpose).
// Run: node --import tsx --test test/e2e/host-untouched.test.mts
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';

import { hostSnapshot, run, sandboxPreflight, startSandbox } from '../sandbox/sandbox.mts';
import type { Sandbox } from '../sandbox/sandbox.mts';

// Counted as a failure (not a skip) with the preflight's message when this machine cannot run the sandbox.
it('this machine can run the test sandbox (preflight)', async () => {
  await sandboxPreflight();
});

describe('host stays untouched', () => {
  let sb: Sandbox | undefined;
  after(async () => {
    await sb?.stop();
  });

  it('has the same users, /etc/ssh, sudoers and nftables after a sandbox was changed inside', async () => {
    const before = await hostSnapshot();
    sb = await startSandbox();

    // Change, as root inside the sandbox, exactly what the hardening step changes on a server.
    await sb.exec(['useradd', '--create-home', '--shell', '/bin/bash', 'codexops']);
    await sb.exec(['sh', '-c', 'umask 337 && cat > /etc/sudoers.d/x && visudo -cf /etc/sudoers.d/x'], {
      input: 'codexops ALL=(ALL) NOPASSWD:ALL\n',
    });
    await sb.exec(['sh', '-c', 'echo "PasswordAuthentication no" > /etc/ssh/sshd_config.d/00-codex.conf && sshd -t']);
    await sb.exec(['sh', '-c', 'echo "codexops:$(head -c 12 /dev/urandom | base64)" | chpasswd']);
    await sb.exec(['nft', 'add', 'table', 'inet', 'codex_host_untouched']);
    await sb.exec([
      'nft',
      'add',
      'chain',
      'inet',
      'codex_host_untouched',
      'input',
      '{ type filter hook input priority 0; policy accept; }',
    ]);
    // Also over a real SSH login (sshd, PAM and the journal of the sandbox at work).
    await sb.ssh(['groupadd', 'codexgroup']);

    // The changes did happen in there (so the comparison below is not vacuous)...
    assert.match((await sb.exec(['id', 'codexops'])).stdout, /codexops/);
    assert.match((await sb.exec(['cat', '/etc/sudoers.d/x'])).stdout, /NOPASSWD/);
    assert.match((await sb.exec(['nft', 'list', 'tables'])).stdout, /codex_host_untouched/);
    assert.match((await sb.exec(['getent', 'group', 'codexgroup'])).stdout, /codexgroup/);

    // ...and not on the host, neither while the sandbox runs nor after it is gone.
    assert.doesNotMatch(readFileSync('/etc/passwd', 'utf8'), /^codexops:/m);
    assert.doesNotMatch((await run('nft', ['list', 'ruleset'])).stdout, /codex_host_untouched/);
    const during = await hostSnapshot();
    const name = sb.name;
    await sb.stop();
    const afterStop = await hostSnapshot();
    assert.equal(during, before);
    assert.equal(afterStop, before);
    assert.doesNotMatch(readFileSync('/proc/mounts', 'utf8'), new RegExp(`codex-k8s-sandbox-${name}\\b`));
  });
});
