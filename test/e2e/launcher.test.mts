// The launcher end to end, over real SSH, against a disposable Debian server (test/sandbox) set up as a cloud image
// leaves it: the login is `ubuntu` with passwordless sudo, root's own key login is refused (cloud-init's way), so
// every server-side command of every run goes through `sudo -n`. (The other e2e files log in as root.)
// The tests run in order on one sandbox, like an operator's week: first run, re-run, single steps,
// a failure and its resume, a concurrent run, a step by hand, and finally a server whose host key changed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { startStaging } from './staging.mts';
import type { Staging } from './staging.mts';
import { run as runProcess, hostSnapshot } from '../sandbox/sandbox.mts';
import { RESULT_MARKER } from '../../bootstrap/lib/paths.mts';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';
import { NODE } from '../../bootstrap/lib/versions.mts';

let t: Target;
let hostBefore: string;
let serverBefore: string[];
let stopRunner: (() => void) | undefined;
let staging: Staging | undefined;
const ALL = stepNames();
const unchangedAll = (names: readonly string[]) => Object.fromEntries(names.map((n) => [n, '= unchanged']));

const IMAGE_DROPIN = '/etc/ssh/sshd_config.d/60-hardened-image.conf';

/**
 * What a teardown must give back, as text to diff: every file under /etc with its hash, mode and owner, every
 * directory and link, the systemd unit files and their state, the nftables ruleset, and the accounts.
 */
async function serverState(): Promise<string[]> {
  const script = [
    "find /etc -xdev -type f -printf '%m %u:%g ' -exec sha256sum {} \\; | sed 's/  / /'",
    "find /etc -xdev \\( -type d -o -type l \\) -printf '%y %m %u:%g %p %l\\n'",
    'systemctl list-unit-files --no-legend --no-pager | sed "s/^/unit /"',
    'nft list ruleset | sed "s/^/nft /"',
    'getent passwd | sed "s/^/user /"',
  ].join('; ');
  const out = (await t.sb.exec(['sh', '-c', script])).stdout;
  return out.split('\n').filter(Boolean).sort();
}

/**
 * The operator is kept by --uninstall, with its sudo: these files differ by its account, and only by that. ops2 and
 * plain are accounts earlier tests of this file make on purpose (the operator refusals), not the bootstrap's.
 */
const OPERATOR_FILES =
  /^\S+ \S+ [0-9a-f]{64} \/etc\/((passwd|group|shadow|gshadow|subuid|subgid)-?|sudoers\.d\/codex-k8s-operator)$|^user (codex|ops2|plain):/;

const mutatingCalls = async () => (await t.doublesCalls()).filter((c) => c.mutating).length;

async function operatorLogin(argv: string[]) {
  return runProcess(
    'ssh',
    [
      '-i',
      t.operatorKey,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
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

describe('launcher against a sandbox server', { concurrency: false }, () => {
  before(async () => {
    hostBefore = await hostSnapshot();
    t = await startTarget(undefined, { cloudLogin: true });
    // A hardened image says no root login at all: the tool's drop-in (read first, so it wins) must keep that.
    await t.sb.exec(['sh', '-c', `echo 'PermitRootLogin no' > ${IMAGE_DROPIN}`]);
    stopRunner = t.playArcRunner();
    // What --uninstall must give back, and objects of someone else's in the repository that it must leave alone.
    serverBefore = await serverState();
    const now = new Date().toISOString();
    t.github.variables.set('THEIR_VARIABLE', { value: 'theirs', created_at: now, updated_at: now });
    t.github.secrets.set('THEIR_SECRET', { value: 'theirs', created_at: now, updated_at: now });
    // 80_deploy_loop_check smoke-checks a real app: the one on this host, playing the cluster's deployment.
    // Its PostgreSQL is the server's database too: --uninstall's final dump reads real rows.
    staging = await startStaging(t, { routeDatabase: true });
  });
  after(async () => {
    stopRunner?.();
    await staging?.stop();
    await t?.stop();
  });

  it('a full run as a sudo user succeeds, every step in order, over one SSH connection (plus the login checks)', async () => {
    const before = await t.sb.countAcceptedSsh();
    const r = await t.launch(['--yes']);
    assert.equal(r.code, 0, r.output);
    const f = footers(r.output);
    assert.deepEqual(Object.keys(f), ALL, r.output);
    assert.equal(f['00_preflight'], '= unchanged');
    for (const name of ALL.slice(1)) assert.match(f[name] ?? '', /^\+ changed \d+$/, `${name}\n${r.output}`);
    assert.match(r.output, new RegExp(`^==> \\[01/${String(ALL.length).padStart(2, '0')}\\] 00_preflight$`, 'm'));
    assert.match(r.output, /^\s+ok\s+os\s+Debian GNU\/Linux 12/m, 'the preflight table is streamed');
    assert.match(
      r.output,
      new RegExp(`^\\s+\\+ Node\\.js installed v${NODE.version.replaceAll('.', '\\.')} x64$`, 'm'),
    );
    assert.match(
      r.output,
      /^\s+\+ tree uploaded \(\d+ files, [\d.]+ (KiB|MiB) in [\d.]+s, [\d.]+ (B|KiB|MiB|GiB)\/s; [0-9a-f]{12}\)$/m,
    );
    assert.match(r.output, /^Summary$/m);
    assert.ok(!r.output.includes(RESULT_MARKER), 'the result marker is not shown');
    // The master, and the fresh logins (the operator's, then ubuntu's own) that prove the sshd/firewall change did
    // not lock anyone out.
    assert.equal(
      (await t.sb.countAcceptedSsh()) - before,
      3,
      'one multiplexed connection for the whole run, plus the two login checks',
    );
    assert.match(r.output, /\+ a new login as codex@\S+ works and has sudo/);
    assert.match(r.output, /\+ a new login as ubuntu@\S+ works and has sudo/);
    // Every server-side command ran through sudo as ubuntu: sudo recorded them.
    const sudo = (await t.sb.exec(['journalctl', '--no-pager', '-o', 'cat', '-t', 'sudo'])).stdout;
    assert.match(sudo, /^\s*ubuntu : .*USER=root ; COMMAND=\/usr\/bin\/bash -c /m);
    assert.match(sudo, /^\s*ubuntu : .*USER=root ; COMMAND=\/usr\/bin\/env CODEXK8S_LAUNCHER=1 /m);
    // GET: preflight's reachability probes are HEAD requests.
    assert.equal(t.mirror.requests.filter((q) => q.method === 'GET' && q.path.endsWith('.tar.xz')).length, 1);
  });

  it('the run had real effects: the operator logs in with its key and has passwordless sudo', async () => {
    const r = await operatorLogin(['sudo', '-n', 'true']);
    assert.equal(r.exitCode, 0, r.stderr);
    // The image's "PermitRootLogin no" was not loosened to prohibit-password.
    assert.match((await t.sb.exec(['sshd', '-T'])).stdout, /^permitrootlogin no$/m);
    assert.match(
      (await t.sb.exec(['cat', '/etc/ssh/sshd_config.d/00-codex-k8s.conf'])).stdout,
      /^PermitRootLogin no$/m,
    );
    const modes = await t.sb.exec([
      'stat',
      '-c',
      '%a %U %n',
      '/home/codex/.ssh',
      '/home/codex/.ssh/authorized_keys',
      '/etc/sudoers.d/codex-k8s-operator',
      '/etc/codex-k8s-bootstrap/bootstrap.env',
    ]);
    assert.deepEqual(modes.stdout.trim().split('\n'), [
      '700 codex /home/codex/.ssh',
      '600 codex /home/codex/.ssh/authorized_keys',
      '440 root /etc/sudoers.d/codex-k8s-operator',
      '600 root /etc/codex-k8s-bootstrap/bootstrap.env',
    ]);
    const journal = JSON.parse((await t.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout) as {
      steps: Record<string, { status: string }>;
    };
    for (const name of ALL) assert.equal(journal.steps[name]?.status, 'ok', name);
  });

  it('the second run reports everything unchanged and changes nothing', async () => {
    const downloads = () => t.mirror.requests.filter((q) => q.method === 'GET').length;
    const tarballs = downloads();
    const calls = await mutatingCalls();
    const githubWrites = t.github.calls.filter((c) => c.write).length;
    const before = await t.sb.countAcceptedSsh();
    const r = await t.launch(['--yes']);
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(footers(r.output), unchangedAll(ALL), r.output);
    assert.match(r.output, new RegExp(`^\\s+= Node\\.js unchanged v${NODE.version.replaceAll('.', '\\.')}$`, 'm'));
    assert.match(r.output, /^\s+= tree unchanged/m);
    assert.match(r.output, /^\s+= \/etc\/codex-k8s-bootstrap\/bootstrap\.env unchanged$/m);
    assert.match(r.output, /^= unchanged \(/m, 'prepare is unchanged too');
    assert.equal(downloads(), tarballs, 'nothing downloaded');
    assert.equal(await mutatingCalls(), calls, 'the doubles recorded no mutating call');
    assert.equal(t.github.calls.filter((c) => c.write).length, githubWrites, 'no write call to GitHub');
    assert.equal((await t.sb.countAcceptedSsh()) - before, 1);
  });

  it('--status: one screen of the converged staging, read without the lock and changing nothing; a lost CronJob is a failure', async () => {
    const calls = await mutatingCalls();
    const githubWrites = t.github.calls.filter((c) => c.write).length;
    const journal = async () => (await t.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout;
    const journalBefore = await journal();
    const before = await t.sb.countAcceptedSsh();
    const r = await t.launch(['--yes', '--status', '--json']);
    assert.equal(r.code, 0, r.output);
    const report = JSON.parse(r.stdout) as {
      healthy: boolean;
      lines: { area: string; level: string; text: string; action?: string }[];
    };
    assert.equal(report.healthy, true);
    const line = (area: string, re: RegExp) => report.lines.find((l) => l.area === area && re.test(l.text));
    const shown = report.lines.map((l) => `${l.level} ${l.area}: ${l.text}`).join('\n');
    assert.equal(line('cluster', /^1\/1 node\(s\) Ready$/)?.level, 'ok', shown);
    assert.equal(line('cluster', /k3s v\S+ \(the pin\)$/)?.level, 'ok', shown);
    assert.equal(line('charts', /^cert-manager\/cert-manager: cert-manager-v\S+ \(the pin\)$/)?.level, 'ok', shown);
    assert.equal(line('charts', /^arc-systems\/arc: gha-runner-scale-set-controller-\S+ \(the pin\)$/)?.level, 'ok');
    assert.equal(
      line('images', /^docker\.io\/pgvector\/pgvector:\S+ \(the pin\) in codex-k8s-staging\/postgres/)?.level,
      'ok',
      shown,
    );
    assert.equal(line('postgres', /^ready \(1\/1\)/)?.level, 'ok', shown);
    assert.equal(line('postgres', /no backup yet: the CronJob is .* old and runs nightly/)?.level, 'info', shown);
    assert.equal(line('service', /^codex-k8s 1\/1 ready, image of commit [0-9a-f]{12}$/)?.level, 'ok', shown);
    assert.equal(line('runners', /^1 online in GitHub/)?.level, 'ok', shown);
    assert.equal(line('deploys', /^last deploy #\d+ of [0-9a-f]{12}, .* ago: success http/)?.level, 'ok', shown);
    assert.equal(line('tls', /^local mode/)?.level, 'info');
    assert.equal(line('host', /^disk under \/var\/lib: .* free of /)?.level, 'ok', shown);
    assert.equal(line('journal', /^last run \S+, .* ago; every step ok$/)?.level, 'ok', shown);
    // The same screen for a person: words, not symbols, off a terminal.
    assert.match(r.stderr, /^ {2}cluster +ok {4}1\/1 node\(s\) Ready$/m);
    assert.match(r.stderr, /^healthy/m);
    // Read only: no lock, no upload, no write anywhere; one SSH connection.
    assert.doesNotMatch(r.stderr, /==> prepare|lock .* taken/);
    assert.equal(await mutatingCalls(), calls, 'the doubles recorded no mutating call');
    assert.equal(t.github.calls.filter((c) => c.write).length, githubWrites, 'no write call to GitHub');
    assert.equal(await journal(), journalBefore);
    assert.equal((await t.sb.countAcceptedSsh()) - before, 1);

    // Trouble is named with the command that repairs it, and the exit code says so.
    await t.kubectl('delete', 'cronjob', 'postgres-backup', '-n', 'codex-k8s-staging');
    const broken = await t.launch(['--yes', '--status']);
    assert.equal(broken.code, 1, broken.output);
    assert.match(
      broken.output,
      /^ {2}postgres +ok .*\n +FAIL {2}CronJob codex-k8s-staging\/postgres-backup is missing$/m,
    );
    assert.match(broken.output, /^ +-> \.\/bootstrap\/host\/bootstrap_remote_staging\.mts --only 40_postgres$/m);
    assert.match(broken.output, /^1 problem\(s\)/m);
    const repaired = await t.launch(['--yes', '--only', '40']);
    assert.equal(repaired.code, 0, repaired.output);
  });

  it('--check: a live plan of real drift, changing nothing; --json for machines; a run repairs, then it is converged', async () => {
    const DROPIN = '/etc/ssh/sshd_config.d/00-codex-k8s.conf';
    const calls = await mutatingCalls();
    const githubWrites = t.github.calls.filter((c) => c.write).length;
    const stamp = async () =>
      (
        await t.sb.exec([
          'sh',
          '-c',
          `sha256sum ${DROPIN} /etc/codex-k8s-bootstrap/bootstrap.env /var/lib/codex-k8s-bootstrap/state.json`,
        ])
      ).stdout;

    const clean = await t.launch(['--yes', '--check']);
    assert.equal(clean.code, 0, clean.output);
    assert.equal(await mutatingCalls(), calls, 'a converged check makes no mutating call');
    assert.match(clean.output, /converged: 9 step\(s\) checked, nothing to change/);
    assert.doesNotMatch(clean.output, /\bdrift\b/);

    // Real drift: a hand edit of the sshd drop-in, a deleted NetworkPolicy, and a setting changed on the laptop only.
    await t.sb.exec(['sh', '-c', `echo 'MaxSessions 99' >> ${DROPIN}`]);
    await t.kubectl('delete', 'networkpolicy', 'baseline', '-n', 'codex-k8s-staging');
    const before = await stamp();
    const callsBefore = await mutatingCalls();
    const drift = await t.launch(['--yes', '--check', '--json'], { CODEXK8S_ROLLOUT_TIMEOUT: '7m' });
    assert.equal(drift.code, 1, drift.output);
    const report = JSON.parse(drift.stdout) as {
      converged: boolean;
      steps: { name: string; status: string; drift: string[] }[];
    };
    const by = Object.fromEntries(report.steps.map((x) => [x.name, x]));
    assert.equal(report.converged, false);
    assert.equal(by['10_harden_host']?.status, 'drift');
    assert.ok(
      by['10_harden_host']?.drift.some((d) => d.includes('00-codex-k8s.conf')),
      JSON.stringify(by['10_harden_host']),
    );
    assert.equal(by['30_cluster_deps']?.status, 'drift');
    assert.ok(
      by['30_cluster_deps']?.drift.some((d) => /NetworkPolicy .*baseline/.test(d)),
      JSON.stringify(by['30_cluster_deps']),
    );
    assert.equal(by['00_preflight']?.status, 'ok');
    assert.match(drift.stderr, /\/run\/lock\/codex-k8s-bootstrap\/check\.env written \(0600, for this check only/);
    assert.match(drift.stderr, /of 9 step\(s\) would change something/);
    assert.equal(await stamp(), before, 'the drop-in, the server settings and the journal are as they were');
    assert.equal(
      (await t.sb.exec(['test', '-e', '/run/lock/codex-k8s-bootstrap/check.env'], { allowFail: true })).exitCode,
      1,
      'the check settings went with the released lock',
    );
    assert.equal(await mutatingCalls(), callsBefore, 'the doubles recorded no mutating call');
    assert.equal(t.github.calls.filter((c) => c.write).length, githubWrites, 'no write call to GitHub');

    const repaired = await t.launch(['--yes', '--only', '10,30']);
    assert.equal(repaired.code, 0, repaired.output);
    assert.match(footers(repaired.output)['10_harden_host'] ?? '', /^\+ changed/, repaired.output);
    assert.match(footers(repaired.output)['30_cluster_deps'] ?? '', /^\+ changed/, repaired.output);
    const again = await t.launch(['--yes', '--check', '--only', '10,30']);
    assert.equal(again.code, 0, again.output);
    assert.match(again.output, /converged: 2 step\(s\) checked/);
  });

  it('--only runs just the named step; --from starts there', async () => {
    const only = await t.launch(['--yes', '--only', '10']);
    assert.equal(only.code, 0, only.output);
    assert.deepEqual(footers(only.output), { '10_harden_host': '= unchanged' });
    assert.match(only.output, /00_preflight\s+skipped \(last: ok/);
    const from = await t.launch(['--yes', '--from', 'harden_host']);
    assert.equal(from.code, 0, from.output);
    assert.deepEqual(footers(from.output), unchangedAll(ALL.slice(1)));
  });

  it('a step run by hand on the server: --check reports drift, apply repairs it', async () => {
    const step = '/opt/codex-k8s-bootstrap/bootstrap/remote/10_harden_host.mts';
    assert.equal((await t.ssh([step, '--check'], { allowFail: true })).exitCode, 0);
    await t.sb.exec(['rm', '/etc/sudoers.d/codex-k8s-operator']);
    const drift = await t.ssh([step, '--check'], { allowFail: true });
    assert.equal(drift.exitCode, 1);
    assert.match(drift.stdout, /~ \/etc\/sudoers\.d\/codex-k8s-operator is missing/);
    const fix = await t.ssh([step], { allowFail: true });
    assert.equal(fix.exitCode, 0, fix.stdout + fix.stderr);
    // A sudo grant is guarded like sshd: run by hand, it stays only when a new login confirms it.
    assert.match(fix.stdout, /\+ \/etc\/sudoers\.d\/codex-k8s-operator: codex may sudo without a password/);
    assert.match(fix.stdout + fix.stderr, /10_harden_host\.mts --confirm/);
    const confirmed = await operatorLogin(['sudo', '-n', step, '--confirm']);
    assert.equal(confirmed.exitCode, 0, confirmed.stdout + confirmed.stderr);
    assert.match(confirmed.stdout + confirmed.stderr, /kept the change/);
    assert.equal((await t.ssh([step, '--check'], { allowFail: true })).exitCode, 0);
  });

  it('a step that fails mid-way stops the run, names the step and the resume command; the resume completes', async () => {
    // The new operator's home path is taken by a file: useradd cannot create the home.
    await t.sb.exec(['sh', '-c', 'echo not-a-dir > /home/ops2']);
    const failed = await t.launch(['--yes'], { OPERATOR_USER: 'ops2' });
    assert.equal(failed.code, 1, failed.output);
    assert.equal(footers(failed.output)['10_harden_host'], 'x failed');
    assert.match(failed.output, /error: step 10_harden_host failed: /);
    assert.match(failed.output, /\/home\/ops2/);
    const resume = `next: move it aside on the server (mv /home/ops2 /home/ops2.bak), then resume with: ./bootstrap/host/bootstrap_remote_staging.mts --env-file ${t.envFile} --from 10_harden_host`;
    assert.ok(failed.output.includes(resume), failed.output);
    const journal = JSON.parse((await t.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout) as {
      steps: Record<string, { status: string; error?: string }>;
    };
    assert.equal(journal.steps['10_harden_host']?.status, 'failed');
    assert.equal(
      (await t.sb.exec(['test', '-d', '/run/lock/codex-k8s-bootstrap'], { allowFail: true })).exitCode,
      1,
      'the lock was released',
    );
    // The half-made account went with the rollback; the file in the way of its home stayed.
    assert.match(failed.output, /removed user ops2 \(it did not exist before\)/);
    assert.equal((await t.sb.exec(['getent', 'passwd', 'ops2'], { allowFail: true })).exitCode, 2);
    assert.equal((await t.sb.exec(['cat', '/home/ops2'])).stdout, 'not-a-dir\n');

    await t.sb.exec(['mv', '/home/ops2', '/home/ops2.bak']);
    const resumed = await t.launch(['--yes', '--from', '10_harden_host'], { OPERATOR_USER: 'ops2' });
    assert.equal(resumed.code, 0, resumed.output);
    assert.match(footers(resumed.output)['10_harden_host'] ?? '', /^\+ changed/);
    assert.equal((await t.sb.exec(['stat', '-c', '%U', '/home/ops2'])).stdout.trim(), 'ops2');
  });

  it('a second concurrent run is refused by the lock, with the holder and its live connection named', async () => {
    // Freeze the first launcher while it holds the lock (SIGSTOP), so the race is not left to timing.
    // One step is enough: the lock is taken before any step and held until the last.
    const first = await t.launchUntil(['--yes', '--only', '10'], /==> prepare/);
    process.kill(first.pid, 'SIGSTOP');
    let second;
    try {
      second = await t.launch(['--yes', '--only', '10']);
    } finally {
      process.kill(first.pid, 'SIGCONT');
    }
    const done = await first.done;
    assert.equal(second.code, 3, second.output);
    assert.match(
      second.output,
      /another bootstrap run holds the server lock: \S+@\S+ pid \d+ run \S+, since .* step .*; its SSH connection is still open \(sshd pid \d+ on the server\)/,
    );
    assert.doesNotMatch(second.output, /rm -rf/);
    assert.equal(done.code, 0, done.output);
  });

  it('SIGKILL mid-step: refused while the orphaned step lives, then taken over with no manual step; no SSH master left', async () => {
    const lock = '/run/lock/codex-k8s-bootstrap';
    const owner = async () => (await t.sb.exec(['sh', '-c', `cat ${lock}/owner 2>/dev/null; true`])).stdout;
    const field = (text: string, k: string) => (text.match(new RegExp(`^${k}=(.*)$`, 'm')) ?? [])[1] ?? '';
    // k3s --version (step 20's check) takes 20 s for this run: the step is surely still alive when it is frozen.
    await t.sb.exec([
      'sh',
      '-c',
      'mv /usr/local/bin/k3s /usr/local/bin/k3s.real && printf "#!/bin/sh\\nsleep 20\\nexec /usr/local/bin/k3s.real \\"\\$@\\"\\n" > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s',
    ]);
    const run = await t.launchUntil(['--yes'], /==> \[03\/\d+\] 20_install_k3s/);
    // Hold the step still the moment it has recorded itself, so "the orphan still runs" is not left to timing.
    let stepPid = '';
    for (let i = 0; i < 200 && !stepPid; i++) {
      const o = await owner();
      if (field(o, 'step') === '20_install_k3s' && field(o, 'step_pid')) stepPid = field(o, 'step_pid');
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(stepPid, `step 20 never recorded itself in the lock:\n${await owner()}`);
    await t.sb.exec(['kill', '-STOP', stepPid]);
    const deadRun = field(await owner(), 'run');
    process.kill(run.pid, 'SIGKILL');
    await run.done;
    const masters = () =>
      readdirSync(tmpdir())
        .filter((n) => n.startsWith('ck8s-ssh-'))
        .filter((n) => {
          try {
            return readFileSync(join(tmpdir(), n, 'launcher.pid'), 'utf8').trim() === String(run.pid);
          } catch {
            return false;
          }
        });
    assert.equal(masters().length, 1, 'the killed launcher left its SSH master behind (what the next run must sweep)');

    const refused = await t.launch(['--yes']);
    assert.equal(refused.code, 3, refused.output);
    assert.match(refused.output, /closed the SSH connection that a killed launcher \(pid \d+\) left open/);
    assert.match(refused.output, new RegExp(`its step still runs on the server as pid ${stepPid}`));
    assert.match(refused.output, new RegExp(`kill ${stepPid}\\)`));
    assert.deepEqual(masters(), [], 'the orphaned master was closed and its directory removed');

    // What the hint says: stop the hung step. Then a plain re-run completes.
    await t.sb.exec(['kill', '-KILL', stepPid]);
    await t.sb.exec(['mv', '-f', '/usr/local/bin/k3s.real', '/usr/local/bin/k3s']);
    const resumed = await t.launch(['--yes']);
    assert.equal(resumed.code, 0, resumed.output);
    assert.match(
      resumed.output,
      new RegExp(
        `took over the lock of \\S+@\\S+ pid ${run.pid} run ${deadRun} \\(step 20_install_k3s\\): its holder is gone`,
      ),
    );
    assert.match(resumed.output, /journal: 20_install_k3s marked interrupted/);
    const journal = JSON.parse((await t.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout);
    assert.ok(
      journal.history.some(
        (h: { step: string; status: string; runId: string }) =>
          h.step === '20_install_k3s' && h.status === 'interrupted' && h.runId === deadRun,
      ),
      JSON.stringify(journal.history.slice(-12)),
    );
    assert.equal(journal.steps['20_install_k3s'].status, 'ok');
    assert.equal((await t.sb.exec(['test', '-e', lock], { allowFail: true })).exitCode, 1, 'released at the end');
  });

  it('a lock that records no process is held until the stale limit, then taken over', async () => {
    const lock = '/run/lock/codex-k8s-bootstrap';
    const legacy = (since: number) =>
      t.sb.exec([
        'sh',
        '-c',
        `mkdir -m 700 -p ${lock} && printf "token=x\\nholder=ghost@old-laptop pid 1\\nsince=${since}\\nstep=10_harden_host\\n" > ${lock}/owner`,
      ]);
    await legacy(Math.floor(Date.now() / 1000));
    const young = await t.launch(['--yes', '--only', '00_preflight']);
    assert.equal(young.code, 3, young.output);
    assert.match(
      young.output,
      /another bootstrap run holds the server lock: ghost@old-laptop pid 1, since .*It records no process/,
    );
    assert.match(young.output, /taken over once older than CODEXK8S_LOCK_STALE_AFTER \(2h\)/);
    assert.doesNotMatch(young.output, /rm -rf/);
    await t.sb.exec(['rm', '-rf', lock]);
    await legacy(1000);
    const old = await t.launch(['--yes', '--only', '00_preflight']);
    assert.equal(old.code, 0, old.output);
    assert.match(
      old.output,
      /took over the lock of ghost@old-laptop pid 1 \(step 10_harden_host\): its holder is gone \(it records no process and is older than the stale limit/,
    );
  });

  it('a lock directory that another local user created is refused and left in place', async () => {
    const lock = '/run/lock/codex-k8s-bootstrap';
    await t.sb.exec(['sh', '-c', `mkdir -m 700 ${lock} && chown 65534:65534 ${lock}`]);
    try {
      const r = await t.launch(['--yes', '--only', '00_preflight']);
      assert.equal(r.code, 3, r.output);
      assert.match(r.output, new RegExp(`the server lock is not trusted: ${lock} belongs to uid 65534, not root`));
      assert.equal((await t.sb.exec(['stat', '-c', '%u', lock])).stdout.trim(), '65534', 'not removed, not reused');
    } finally {
      await t.sb.exec(['rm', '-rf', lock]);
    }
  });

  it('Ctrl-C during a run releases the server lock and exits 130', async () => {
    const run = await t.launchUntil(['--yes'], /==> prepare/);
    process.kill(run.pid, 'SIGINT');
    const r = await run.done;
    assert.equal(r.code, 130, r.output);
    assert.match(r.output, /interrupted; releasing the server lock/);
    assert.equal(
      (await t.sb.exec(['test', '-e', '/run/lock/codex-k8s-bootstrap'], { allowFail: true })).exitCode,
      1,
      'no lock left behind',
    );
  });

  it('a login whose sudo wants a password is refused (exit 2) with the fix, before anything changes', async () => {
    await t.sb.exec([
      'sh',
      '-c',
      'useradd -m plain && install -d -m 700 -o plain /home/plain/.ssh && install -m 600 -o plain /home/ubuntu/.ssh/authorized_keys /home/plain/.ssh/',
    ]);
    const r = await t.launch(['--yes'], { TARGET_ROOT_USER: 'plain' });
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /error: plain on the server needs a password for sudo; the bootstrap never types one/);
    assert.match(r.output, /give plain passwordless sudo on the server .*NOPASSWD:ALL.*or set TARGET_ROOT_USER=root/);
    assert.doesNotMatch(r.output, /==> prepare/);
    assert.equal((await t.sb.exec(['test', '-e', '/run/lock/codex-k8s-bootstrap'], { allowFail: true })).exitCode, 1);
  });

  it('no secret from the config appears in any output, log, argv or record', async () => {
    const texts = await t.capturedTexts();
    assert.ok(Object.keys(texts).length >= 6);
    for (const [where, text] of Object.entries(texts))
      assert.ok(!text.includes(t.secret), `the GitHub token leaked into: ${where}`);
    // It did reach the one place it must: the 0600 settings file on the server.
    assert.match((await t.sb.exec(['cat', '/etc/codex-k8s-bootstrap/bootstrap.env'])).stdout, new RegExp(t.secret));
  });

  it('--uninstall: the plan, then everything it made removed last step first; the server is as before, a fresh bootstrap works', async () => {
    const writesBefore = t.github.writes().length;
    const ours = [...t.github.variables.keys()].filter((n) => n.startsWith('CODEXK8S_'));
    assert.ok(ours.length > 0, 'the bootstrap created variables');
    const r = await t.launch(['--yes', '--uninstall', '--confirm-host', t.sb.host]);
    assert.equal(r.code, 0, r.output);
    // The plan first, step by step, last step first, with what is kept.
    assert.match(r.output, /^Uninstall plan for \S+ \(nothing removed yet\)$/m);
    const planAt = r.output.indexOf('Uninstall plan');
    const plan = r.output.slice(planAt, r.output.indexOf('Kept:', planAt));
    assert.match(
      plan,
      /^ {2}70_github_repo +remove\n +- GitHub variable CODEXK8S_\w+ in \S+ \(created by this tool\)$/m,
      plan,
    );
    assert.match(plan, /^ {2}20_install_k3s +remove/m, plan);
    assert.match(plan, /^ {2}10_harden_host +remove\n(.*\n)* +- .*codex-k8s-firewall\.service/m, plan);
    assert.ok(plan.indexOf('70_github_repo') < plan.indexOf('10_harden_host'), 'last step first');
    assert.match(r.output, /^ {2}= PostgreSQL: a final dump of the database in \/var\/backups\/codex-k8s-bootstrap/m);
    assert.match(r.output, /\+ a new login as ubuntu@\S+ works and has sudo/, 'the server is still reachable');
    assert.match(r.output, /^Uninstalled: \d+ thing\(s\) removed from /m);

    // The server is as it was before the bootstrap, but for what is kept: the operator and the final dump.
    const after = await serverState();
    const changed = (a: string[], b: string[]) => a.filter((l) => !b.includes(l) && !OPERATOR_FILES.test(l));
    assert.deepEqual(changed(after, serverBefore), [], 'nothing of ours is left');
    assert.deepEqual(changed(serverBefore, after), [], "nothing of the server's own is gone");
    const gone = await t.sb.exec(
      ['ls', '-d', '/opt/codex-k8s-bootstrap', '/var/lib/codex-k8s-bootstrap', '/usr/local/bin/k3s'],
      { allowFail: true },
    );
    assert.equal(gone.stdout, '', gone.stdout);
    const dumps = await t.sb.exec([
      'sh',
      '-c',
      'stat -c "%a %s %n" /var/backups/codex-k8s-bootstrap /var/backups/codex-k8s-bootstrap/*.dump',
    ]);
    assert.match(
      dumps.stdout,
      /^700 \d+ \/var\/backups\/codex-k8s-bootstrap\n600 [1-9]\d* \/var\/backups\/codex-k8s-bootstrap\/\S+\.dump$/m,
    );
    assert.equal((await operatorLogin(['sudo', '-n', 'true'])).exitCode, 0, 'the operator is kept');

    // GitHub: only what this tool created went, by DELETE; someone else's names stay.
    const writes = t.github.writes().slice(writesBefore);
    assert.ok(writes.length > 0);
    for (const w of writes) assert.equal(w.method, 'DELETE', `${w.method} ${w.path}`);
    for (const n of ours) assert.equal(t.github.variables.has(n), false, n);
    assert.equal(t.github.variables.get('THEIR_VARIABLE')?.value, 'theirs');
    assert.ok(t.github.secrets.has('THEIR_SECRET'));
    assert.equal(t.github.secrets.has('CODEXK8S_WEBHOOK_SECRET'), false);
    assert.equal(t.github.runners.length, 0, 'the scale set took its runners with it');

    // Again: nothing is left to remove.
    const again = await t.launch(['--yes', '--uninstall', '--confirm-host', t.sb.host]);
    assert.equal(again.code, 0, again.output);
    for (const name of ALL) assert.match(again.output, new RegExp(`^ {2}${name} +nothing$`, 'm'), again.output);

    // And the same server bootstraps from scratch.
    const fresh = await t.launch(['--yes']);
    assert.equal(fresh.code, 0, fresh.output);
    const f = footers(fresh.output);
    for (const name of ALL.slice(1)) assert.match(f[name] ?? '', /^\+ changed \d+$/, `${name}\n${fresh.output}`);
  });

  it('an IPv6 literal as TARGET_HOST: the same server over IPv6, its host key pinned under its own name', async () => {
    // A ULA on both ends of the sandbox's veth (host vcksN, sandbox host0); the rest of the run stays on IPv4.
    const index = t.sb.host.split('.')[2];
    const v6 = `fd42:200:${index}::2`;
    // nodad: usable at once (duplicate address detection would hold both addresses tentative for a second or two).
    await runProcess('ip', ['-6', 'addr', 'replace', `fd42:200:${index}::1/64`, 'dev', `vcks${index}`, 'nodad']);
    await t.sb.exec(['ip', '-6', 'addr', 'replace', `${v6}/64`, 'dev', 'host0', 'nodad']);
    try {
      const r = await t.launch(['--yes', '--only', '10'], { TARGET_HOST: `[${v6}]` });
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, new RegExp(`^codex-k8s staging bootstrap: ubuntu@${v6.replaceAll(':', '\\:')}:\\d+`, 'm'));
      assert.deepEqual(footers(r.output), { '10_harden_host': '= unchanged' }, r.output);
      const pinned = readdirSync(join(t.dir, 'state', 'known_hosts'));
      assert.ok(
        pinned.some((n) => n.startsWith(`fd42_200_${index}__2_`)),
        pinned.join(', '),
      );
    } finally {
      await t.sb.exec(['ip', '-6', 'addr', 'del', `${v6}/64`, 'dev', 'host0'], { allowFail: true });
      await runProcess('ip', ['-6', 'addr', 'del', `fd42:200:${index}::1/64`, 'dev', `vcks${index}`], {
        allowFail: true,
      });
    }
  });

  it('a changed host key is refused before anything is sent', async () => {
    await t.sb.rekey();
    const before = await t.sb.countAcceptedSsh();
    const r = await t.launch(['--yes']);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /the SSH host key of \S+:22 differs from the one pinned in /);
    assert.match(r.output, /ssh-keygen -R/);
    assert.doesNotMatch(r.output, /==> prepare/);
    assert.equal(await t.sb.countAcceptedSsh(), before, 'no login happened');
  });

  it('the test host itself is untouched: users, /etc/ssh, sudoers and nftables', async () => {
    await t.stop();
    assert.equal(await hostSnapshot(), hostBefore);
  });
});
