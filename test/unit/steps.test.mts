// The pure parts of the remote steps, and the generated files being current.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate, formatTable, operatorCheck } from '../../bootstrap/lib/preflight.mts';
import type { Facts } from '../../bootstrap/lib/preflight.mts';
import {
  parsePasswd,
  withKey,
  keyIdentity,
  sudoersContent,
  operatorVerdict,
  accountCommands,
  OPERATOR_GECOS,
} from '../../bootstrap/lib/harden/operator.mts';
import { GENERATED } from '../../bootstrap/host/gen_config_docs.mts';
import { SETTINGS } from '../../bootstrap/lib/config.mts';
import { olderCheckoutProblem } from '../../bootstrap/lib/launcher/source.mts';
import { parseJournal } from '../../bootstrap/lib/state.mts';
import { pinVersions } from '../../bootstrap/lib/versions.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n';
const GOOD: Facts = { osRelease: UBUNTU, uid: 0, arch: 'x64', cpus: 4, memoryMiB: 8192, varLibFreeGiB: 80 };
const LIMITS = { minMemoryMiB: 2048, warnMemoryMiB: 4096, minDiskGiB: 15 };
const status = (f: Partial<Facts>) =>
  Object.fromEntries(evaluate({ ...GOOD, ...f }, LIMITS).map((c) => [c.name, c.status]));

test('preflight: a good Ubuntu 24.04 passes every check', () => {
  assert.deepEqual(status({}), { os: 'ok', root: 'ok', arch: 'ok', cpus: 'ok', memory: 'ok', disk: 'ok' });
});

test('preflight: Debian 12 is accepted and says so; other systems fail with what was found', () => {
  const deb = evaluate(
    { ...GOOD, osRelease: 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' },
    LIMITS,
  )[0];
  assert.equal(deb?.status, 'ok');
  assert.match(deb?.reason ?? '', /Debian GNU\/Linux 12.*accepted/);
  const old = evaluate(
    { ...GOOD, osRelease: 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n' },
    LIMITS,
  )[0];
  assert.equal(old?.status, 'fail');
  assert.match(old?.reason ?? '', /found Ubuntu 22\.04\.4 LTS/);
  assert.match(old?.fix ?? '', /Ubuntu 24\.04/);
});

test('preflight: thresholds fail and warn where configured', () => {
  assert.equal(status({ uid: 1000 }).root, 'fail');
  assert.equal(status({ arch: 'ia32' }).arch, 'fail');
  assert.equal(status({ cpus: 1 }).cpus, 'warn');
  assert.equal(status({ memoryMiB: 1900 }).memory, 'fail');
  assert.equal(status({ memoryMiB: 3000 }).memory, 'warn');
  assert.equal(status({ varLibFreeGiB: 10 }).disk, 'fail');
  const lines = formatTable(evaluate({ ...GOOD, varLibFreeGiB: 10 }, LIMITS));
  assert.ok(
    lines.some((l) =>
      /fail\s+disk\s+10\.0 GiB free under \/var\/lib, below the minimum 15 GiB\s+-> grow the disk/.test(l),
    ),
    lines.join('\n'),
  );
});

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop';

test('operator user: authorized_keys keeps other keys and never duplicates ours', () => {
  assert.equal(withKey(undefined, KEY), KEY + '\n');
  const other = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@else';
  assert.equal(withKey(other + '\n', KEY), `${other}\n${KEY}\n`);
  const sameKeyOtherComment = KEY.replace('op@laptop', 'renamed');
  assert.equal(withKey(`${other}\n${sameKeyOtherComment}\n`, KEY), `${other}\n${sameKeyOtherComment}\n`);
  assert.equal(
    keyIdentity(`from="10.0.0.1" ${KEY}`),
    keyIdentity(KEY),
    'options before the key do not change its identity',
  );
  assert.equal(keyIdentity('# comment'), undefined);
});

test('operator user: passwd parsing and the sudoers line', () => {
  assert.deepEqual(parsePasswd('codex:x:1001:1001:codex-k8s operator:/home/codex:/bin/bash\n'), {
    name: 'codex',
    uid: 1001,
    gid: 1001,
    gecos: 'codex-k8s operator',
    home: '/home/codex',
    shell: '/bin/bash',
  });
  assert.equal(parsePasswd('garbage'), undefined);
  assert.match(sudoersContent('codex'), /^codex ALL=\(ALL:ALL\) NOPASSWD: ALL$/m);
});

test('operator user: only an account this tool created, or one adopted on purpose; never root or a system account', () => {
  const acct = (line: string) => parsePasswd(line);
  const ours = acct('codex:x:1001:1001:codex-k8s operator:/home/codex:/bin/bash');
  const alice = acct('alice:x:1002:1002:Alice,,,:/home/alice:/bin/zsh');
  const sshd = acct('sshd:x:105:65534::/run/sshd:/usr/sbin/nologin');
  const nobody = acct('nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin');
  const uid0 = acct('toor:x:0:0:codex-k8s operator:/root:/bin/bash');
  assert.equal(operatorVerdict('codex', undefined, false).kind, 'create');
  assert.equal(operatorVerdict('codex', ours, false).kind, 'ours');
  assert.equal(
    operatorVerdict('codex', acct('codex:x:1001:1001:codex-k8s operator,,,:/home/codex:/bin/bash'), false).kind,
    'ours',
    'chfn adds ,,, after the full name',
  );
  assert.equal(operatorVerdict('alice', alice, true).kind, 'adopted');
  const cases: [string, ReturnType<typeof acct>, boolean, RegExp][] = [
    [
      'alice',
      alice,
      false,
      /^OPERATOR_USER=alice is an existing account \(uid 1002, comment "Alice,,,"\) that this tool did not create$/,
    ],
    ['sshd', sshd, true, /^OPERATOR_USER=sshd is a system account on the server \(uid 105, home \/run\/sshd\)$/],
    ['nobody', nobody, true, /^OPERATOR_USER=nobody is a system account on the server \(uid 65534/],
    ['root', undefined, true, /^OPERATOR_USER=root is root \(uid 0\)$/],
    ['toor', uid0, true, /^OPERATOR_USER=toor is root \(uid 0\)$/],
  ];
  for (const [name, a, adopt, reason] of cases) {
    const v = operatorVerdict(name, a, adopt);
    assert.equal(v.kind, 'refused', name);
    if (v.kind === 'refused') assert.match(v.reason, reason);
  }
  const alone = operatorVerdict('alice', alice, false);
  assert.ok(
    alone.kind === 'refused' && alone.fix.includes('OPERATOR_ADOPT_EXISTING=true'),
    'the refusal names the setting that adopts',
  );
  assert.deepEqual(
    accountCommands.create('codex'),
    ['useradd', '--create-home', '--shell', '/bin/bash', '--user-group', '--comment', OPERATOR_GECOS, 'codex'],
    'what useradd writes is what the verdict recognises',
  );
  assert.deepEqual(operatorCheck('alice', alone), {
    name: 'operator',
    status: 'fail',
    reason: alone.kind === 'refused' ? alone.reason : '',
    fix: alone.kind === 'refused' ? alone.fix : '',
  });
  assert.equal(operatorCheck('alice', operatorVerdict('alice', alice, true)).status, 'warn');
  assert.equal(operatorCheck('codex', operatorVerdict('codex', undefined, false)).status, 'ok');
});

test('.env.example and docs/configuration.md are generated from the schema and current', () => {
  for (const g of GENERATED)
    assert.equal(
      readFileSync(join(ROOT, g.path), 'utf8'),
      g.render(),
      `${g.path} is stale: run ./bootstrap/host/gen_config_docs.mts`,
    );
});

test('.env.example lists exactly the settings of the schema', () => {
  const text = readFileSync(join(ROOT, '.env.example'), 'utf8');
  const names = [...text.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]);
  assert.deepEqual([...names].sort(), SETTINGS.map((s) => s.name).sort());
});

test('an older checkout is refused unless it contains the commit that converged the server; the record round-trips', () => {
  const commit = 'a'.repeat(40);
  const tool = { commit, pins: { ...pinVersions(), k3s: 'v9.0.0+k3s1' }, at: '2026-12-08T00:00:00.000Z' };
  const problem = olderCheckoutProblem(tool, pinVersions(), false) ?? '';
  assert.match(
    problem,
    /^this checkout is older than the one that last converged the server \(commit aaaaaaaaaaaa, 2026-12-08T00:00:00\.000Z\): the server has k3s v9\.0\.0\+k3s1 \(here v\S+\); nothing was changed\. Pull that commit/,
  );
  assert.equal(
    olderCheckoutProblem(tool, pinVersions(), true),
    undefined,
    'a newer commit moved the pin back on purpose',
  );
  assert.equal(
    olderCheckoutProblem(undefined, pinVersions(), false),
    undefined,
    'a server converged before the record',
  );
  assert.equal(olderCheckoutProblem({ ...tool, pins: pinVersions() }, pinVersions(), false), undefined, 'same pins');
  const olderServer = { ...tool, pins: { ...pinVersions(), k3s: 'v1.0.0+k3s1' } };
  assert.equal(olderCheckoutProblem(olderServer, pinVersions(), false), undefined, 'an upgrade is not refused');
  // The journal keeps it exactly; a commit that is not one is refused.
  const j = { version: 1, steps: {}, history: [], tool };
  assert.deepEqual(parseJournal(JSON.stringify(j)).tool, tool);
  assert.throws(
    () => parseJournal(JSON.stringify({ ...j, tool: { ...tool, commit: 'HEAD' } })),
    /the tool section is not/,
  );
  assert.throws(() => parseJournal(JSON.stringify({ ...j, tool: { ...tool, pins: [1] } })), /the tool section's pins/);
});
