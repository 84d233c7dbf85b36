// The end-to-end harness: a sandbox server (test/sandbox), a local artifact mirror it can reach, an env
// file pointing the real launcher at it, and a recorder of everything that could leak a secret:
// the launcher's stdout/stderr, its log files, the argv of every ssh it starts (a PATH shim), and the
// server's logs and doubles' call records.
import { spawn } from 'node:child_process';
import {
  mkdtempSync,
  writeFileSync,
  mkdirSync,
  copyFileSync,
  readFileSync,
  readdirSync,
  existsSync,
  chmodSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import {
  startSandbox,
  startFileServer,
  prepareNodeMirror,
  REPO_ROOT,
  run as runProcess,
  shellQuote,
} from '../sandbox/sandbox.mts';
import type { Sandbox, FileServer, OverlayFile } from '../sandbox/sandbox.mts';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub } from '../fakes/github/server.mts';
import { NODE, K3S_INSTALL, HELM } from '../../bootstrap/lib/versions.mts';
import { asRoot } from '../../bootstrap/lib/ssh.mts';

export interface LauncherRun {
  code: number;
  stdout: string;
  stderr: string;
  output: string;
  seconds: number;
}

/** One line of the doubles' calls.jsonl (test/fakes/README.md). */
export interface DoubleCall {
  tool: string;
  argv: string[];
  mutating: boolean;
  exitCode: number;
  changes?: string[];
  stdinSha256?: string;
  detail?: { env?: Record<string, string> };
}

export interface Target {
  sb: Sandbox;
  mirror: FileServer;
  /** The fake GitHub API (test/fakes/github) on the sandbox's host address: host preflight and steps talk to it. */
  github: FakeGitHub;
  dir: string;
  envFile: string;
  /** The GitHub token in the config: must never show up anywhere but bootstrap.env. */
  secret: string;
  operatorKey: string;
  sshArgvLog: string;
  /** TARGET_ROOT_USER: root, or with `cloudLogin` the cloud image's sudo user (root's own login is refused). */
  login: string;
  /** A command by hand on the server as the launcher's login gets there: `ssh LOGIN@host [sudo -n --] ARGV`. */
  ssh(
    argv: readonly string[],
    opts?: { allowFail?: boolean },
  ): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  runs: LauncherRun[];
  /**
   * Runs the launcher. `opts.repoRoot`: a copy of the repository to run it from (its own git state, e.g. a snapshot
   * with app/ committed: see snapshotRepo); default the repository itself.
   */
  launch(
    args: readonly string[],
    extraEnv?: Record<string, string>,
    opts?: { repoRoot?: string },
  ): Promise<LauncherRun>;
  /** Starts the launcher and resolves once `marker` appears in its output; `done` resolves at exit. */
  launchUntil(args: readonly string[], marker: RegExp): Promise<{ pid: number; done: Promise<LauncherRun> }>;
  /** Everything captured so far, on the host and on the server, as one text per source. */
  capturedTexts(): Promise<Record<string, string>>;
  /**
   * GitHub's side of ARC, played openly: nothing in the sandbox can reach the fake GitHub API the way a real
   * listener would, so once the AutoscalingRunnerSet `set` exists on the server an online runner of that set is
   * registered in the fake (named the way ARC names them), never before; once the set is deleted again, its runners
   * leave the fake (the controller deletes the scale set in GitHub). Returns a function that stops watching.
   */
  playArcRunner(set?: string, namespace?: string): () => void;
  /** Every call the doubles (kubectl, helm, k3s installer) recorded on the server, in order. */
  doublesCalls(): Promise<DoubleCall[]>;
  /** kubectl on the server (the double), with the k3s kubeconfig; its stdout. */
  kubectl(...args: string[]): Promise<string>;
  /** `kubectl get ARGS -o json`, parsed. */
  kubeJson(...args: string[]): Promise<Record<string, any>>;
  /**
   * Journals `steps` as succeeded on the server (those without a record yet), so that a run of later steps passes
   * the launcher's "every earlier step succeeded" check while this test leaves them out.
   */
  journalAsDone(steps: readonly string[]): Promise<void>;
  /**
   * Routes `kubectl exec` into postgres-0 (psql, pg_dump, pg_restore: test/fakes/lib/postgres-exec.mts) to a real
   * PostgreSQL on this host, e.g. `startPostgres({ listen: '0.0.0.0' })`: writes the fakes' postgres.json
   * `{"host": <t.sb.hostAddr>, "port", "user", "database"}`; the double then runs the real client binaries there.
   */
  routePostgres(pg: { port: number; user: string }, database: string): Promise<void>;
  stop(): Promise<void>;
}

/** The sudo user of a cloud image (AWS, GCP and Azure name theirs ubuntu on Ubuntu). */
export const CLOUD_USER = 'ubuntu';

/**
 * A server as a cloud image leaves it: a first user with the launch key and passwordless sudo (cloud-init's
 * 90-cloud-init-users), and root's key refused the way cloud-init's disable_root does it (a forced command that
 * prints "Please login as the user ..." and exits 142).
 */
/**
 * A server as a cloud image leaves it: a first user with the launch key and passwordless sudo (cloud-init's
 * 90-cloud-init-users), and root's key refused the way cloud-init's disable_root does it (a forced command that
 * prints "Please login as the user ..." and exits 142).
 */
async function makeCloudImageLogin(sb: Sandbox, user: string): Promise<void> {
  await sb.exec([
    'sh',
    '-c',
    [
      `useradd --create-home --shell /bin/bash --uid 1000 ${user}`,
      `install -d -m 700 -o ${user} -g ${user} /home/${user}/.ssh`,
      `install -m 600 -o ${user} -g ${user} /root/.ssh/authorized_keys /home/${user}/.ssh/authorized_keys`,
      `echo '${user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-cloud-init-users`,
      'chmod 440 /etc/sudoers.d/90-cloud-init-users',
    ].join(' && '),
  ]);
  const disabled =
    'no-port-forwarding,no-agent-forwarding,no-X11-forwarding,' +
    `command="echo 'Please login as the user \\"${user}\\" rather than the user \\"root\\".';echo;sleep 10;exit 142"`;
  await sb.exec(
    [
      'sh',
      '-c',
      'o=$(cat); k=$(cat /root/.ssh/authorized_keys); printf "%s %s\\n" "$o" "$k" > /root/.ssh/authorized_keys',
    ],
    { input: disabled },
  );
}

async function overlayFiles(): Promise<OverlayFile[]> {
  const layout = join(REPO_ROOT, 'test/fakes/install-layout.mts');
  if (!existsSync(layout)) return [];
  const mod = (await import(layout)) as { fakesOverlayFiles(): OverlayFile[] };
  return mod.fakesOverlayFiles();
}

const sha256Of = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

/**
 * The doubles served where the steps download the real things (x64, the sandbox's architecture):
 *   <mirror>/k3s-install/install.sh                    test/fakes/k3s-install.sh (step 20)
 *   <mirror>/helm/helm-vX-linux-amd64.tar.gz           linux-amd64/helm = the helm double's launcher (step 30)
 * Returns the CODEXK8S_ARTIFACT_SHA256_OVERRIDES entries that make their checksums the expected ones.
 */
export async function prepareToolMirror(
  mirrorRoot: string,
  workDir: string,
): Promise<{ overrides: string[]; files: Record<string, string> }> {
  const script = join(mirrorRoot, K3S_INSTALL.name, K3S_INSTALL.files.x64);
  mkdirSync(join(mirrorRoot, K3S_INSTALL.name), { recursive: true });
  copyFileSync(join(REPO_ROOT, 'test/fakes/k3s-install.sh'), script);
  const member = HELM.member?.x64 ?? 'linux-amd64/helm';
  const stage = join(workDir, 'helm-stage');
  mkdirSync(join(stage, member, '..'), { recursive: true });
  copyFileSync(join(REPO_ROOT, 'test/fakes/bin/helm'), join(stage, member));
  chmodSync(join(stage, member), 0o755);
  const tarball = join(mirrorRoot, HELM.name, HELM.files.x64);
  mkdirSync(join(mirrorRoot, HELM.name), { recursive: true });
  await runProcess('tar', ['-czf', tarball, '--owner=0', '--group=0', '-C', stage, member]);
  return {
    overrides: [`${K3S_INSTALL.name}:x64=${sha256Of(script)}`, `${HELM.name}:x64=${sha256Of(tarball)}`],
    files: { [K3S_INSTALL.name]: script, [HELM.name]: tarball },
  };
}

/**
 * `opts.github` (with the token it accepts): a second server wired to the same repository as the first (a restore
 * onto a new server); the fake then belongs to the first target, which closes it.
 */
export async function startTarget(
  name?: string,
  opts: { github?: FakeGitHub; githubToken?: string; cloudLogin?: boolean } = {},
): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-e2e-'));
  const sb = await startSandbox({ name, overlayFiles: await overlayFiles() });
  const login = opts.cloudLogin ? CLOUD_USER : 'root';
  /** Servers started before the target is complete, closed if starting it fails. */
  const cleanups: Array<() => Promise<void>> = [];
  try {
    if (opts.cloudLogin) await makeCloudImageLogin(sb, CLOUD_USER);
    // The artifact mirror, laid out as CODEXK8S_ARTIFACT_MIRROR expects: <mirror>/<name>/<file>.
    const built = join(dir, 'built');
    const { sha256 } = await prepareNodeMirror(built);
    mkdirSync(join(dir, 'mirror', NODE.name), { recursive: true });
    copyFileSync(join(built, NODE.path, NODE.files.x64), join(dir, 'mirror', NODE.name, NODE.files.x64));
    const tools = await prepareToolMirror(join(dir, 'mirror'), join(dir, 'built'));
    const mirror = await startFileServer({ host: sb.hostAddr, root: join(dir, 'mirror') });

    await runProcess('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      'operator@e2e',
      '-f',
      join(dir, 'operator'),
    ]);
    const secret = opts.githubToken ?? `github_pat_E2E${randomBytes(24).toString('hex')}`;
    const github =
      opts.github ?? (await startFakeGitHub({ host: sb.hostAddr, token: secret, repo: 'codex-k8s/e2e-sandbox' }));
    if (!opts.github) cleanups.push(() => github.close());
    const envFile = join(dir, 'e2e.env');
    writeFileSync(
      envFile,
      [
        `TARGET_HOST=${sb.host}`,
        `TARGET_PORT=${sb.port}`,
        `TARGET_ROOT_USER=${login}`,
        `TARGET_ROOT_SSH_KEY=${sb.rootKey}`,
        `OPERATOR_SSH_PUBKEY_PATH=${join(dir, 'operator.pub')}`,
        'CODEXK8S_GITHUB_REPO=codex-k8s/e2e-sandbox',
        `CODEXK8S_GITHUB_PAT=${secret}`,
        `CODEXK8S_GITHUB_API_URL=${github.url}`,
        `CODEXK8S_GITHUB_URL=${github.url}`,
        `CODEXK8S_ARTIFACT_MIRROR=${mirror.url}`,
        `CODEXK8S_ARTIFACT_SHA256_OVERRIDES=${[`node:x64=${sha256}`, ...tools.overrides].join(',')}`,
        `CODEXK8S_HOST_STATE_DIR=${join(dir, 'state')}`,
        `CODEXK8S_HOST_LOG_DIR=${join(dir, 'logs')}`,
        // The sandbox's /var/lib is a tmpfs overlay: size it out of the decision.
        'CODEXK8S_MIN_DISK_GIB=0',
        'CODEXK8S_MIN_MEMORY_MIB=256',
        'CODEXK8S_WARN_MEMORY_MIB=256',
        // No internet in the sandbox: the outbound probes report the vendor hosts as warnings, the mirror as ok.
        'CODEXK8S_OUTBOUND_CHECK=warn',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );

    // A PATH shim that records the argv of every ssh the launcher starts, then runs the real one.
    const shimDir = join(dir, 'shim');
    mkdirSync(shimDir);
    const sshArgvLog = join(dir, 'ssh-argv.log');
    const realSsh = (await runProcess('sh', ['-c', 'command -v ssh'])).stdout.trim();
    writeFileSync(join(shimDir, 'ssh'), `#!/bin/sh\nprintf '%s\\n' "ssh $*" >>'${sshArgvLog}'\nexec ${realSsh} "$@"\n`);
    chmodSync(join(shimDir, 'ssh'), 0o755);

    const runs: LauncherRun[] = [];
    const spawnLauncher = (
      args: readonly string[],
      extraEnv: Record<string, string> = {},
      onOutput?: (all: string, pid: number) => void,
      root: string = REPO_ROOT,
    ): Promise<LauncherRun> =>
      new Promise((resolve, reject) => {
        const started = performance.now();
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', '--', 'bootstrap/host/bootstrap_remote_staging.mts', '--env-file', envFile, ...args],
          {
            cwd: root,
            env: { ...process.env, PATH: `${shimDir}:${process.env['PATH']}`, NO_COLOR: '1', ...extraEnv },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let stdout = '';
        let stderr = '';
        let output = '';
        child.stdout.on('data', (c: Buffer) => {
          stdout += c;
          output += c;
          onOutput?.(output, child.pid ?? 0);
        });
        child.stderr.on('data', (c: Buffer) => {
          stderr += c;
          output += c;
          onOutput?.(output, child.pid ?? 0);
        });
        child.on('error', reject);
        child.on('close', (code) => {
          const r = { code: code ?? 1, stdout, stderr, output, seconds: (performance.now() - started) / 1000 };
          runs.push(r);
          // Kept for whoever debugs a red CI run: test/.out/e2e-runs/<sandbox>-<n>.txt
          mkdirSync(join(REPO_ROOT, 'test/.out/e2e-runs'), { recursive: true });
          writeFileSync(
            join(REPO_ROOT, 'test/.out/e2e-runs', `${sb.name}-${runs.length}.txt`),
            `$ launcher ${args.join(' ')}\nexit ${r.code}\n${output}`,
          );
          resolve(r);
        });
      });

    const target: Target = {
      sb,
      mirror,
      github,
      dir,
      envFile,
      secret,
      operatorKey: join(dir, 'operator'),
      sshArgvLog,
      login,
      ssh: (argv, o = {}) =>
        runProcess(
          'ssh',
          [...sb.sshArgs(), `${login}@${sb.host}`, '--', asRoot({ user: login }, argv).map(shellQuote).join(' ')],
          { allowFail: o.allowFail },
        ),
      runs,
      launch: (args, extraEnv, opts) => spawnLauncher(args, extraEnv, undefined, opts?.repoRoot),
      launchUntil: (args, marker) =>
        new Promise((resolveStarted, rejectStarted) => {
          let seen = false;
          const done = spawnLauncher(args, {}, (all, pid) => {
            if (!seen && marker.test(all)) {
              seen = true;
              resolveStarted({ pid, done });
            }
          });
          done.then((r) => {
            if (!seen) rejectStarted(new Error(`launcher exited (${r.code}) before printing ${marker}:\n${r.output}`));
          }, rejectStarted);
        }),
      async capturedTexts() {
        const texts: Record<string, string> = {};
        runs.forEach((r, i) => (texts[`launcher run ${i + 1} output`] = r.output));
        const logDir = join(dir, 'logs');
        if (existsSync(logDir))
          for (const f of readdirSync(logDir)) texts[`host log ${f}`] = readFileSync(join(logDir, f), 'utf8');
        if (existsSync(sshArgvLog)) texts['argv of every ssh'] = readFileSync(sshArgvLog, 'utf8');
        const serverLogs = await sb.exec(['sh', '-c', 'cat /var/log/codex-k8s-bootstrap/*.log 2>/dev/null; true']);
        texts['server logs'] = serverLogs.stdout;
        const calls = await sb.exec(['sh', '-c', 'cat /var/lib/codex-k8s-fakes/calls.jsonl 2>/dev/null; true']);
        texts['doubles calls.jsonl'] = calls.stdout;
        const journal = await sb.exec(['sh', '-c', 'cat /var/lib/codex-k8s-bootstrap/state.json 2>/dev/null; true']);
        texts['server journal'] = journal.stdout;
        // The system journal: sshd, and sudo's record of every command it ran (a cloud login's whole argv).
        texts['server system journal'] = (await sb.exec(['journalctl', '--no-pager', '-o', 'cat'])).stdout;
        return texts;
      },
      async doublesCalls() {
        const r = await sb.exec(['sh', '-c', 'cat /var/lib/codex-k8s-fakes/calls.jsonl 2>/dev/null; true']);
        return r.stdout
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as DoubleCall);
      },
      async kubectl(...args) {
        return (await sb.exec(['kubectl', '--kubeconfig', '/etc/rancher/k3s/k3s.yaml', ...args])).stdout;
      },
      async kubeJson(...args) {
        return JSON.parse(await target.kubectl('get', ...args, '-o', 'json')) as Record<string, any>;
      },
      async journalAsDone(steps) {
        const path = '/var/lib/codex-k8s-bootstrap/state.json';
        const old = (await sb.exec(['sh', '-c', `cat ${path} 2>/dev/null; true`])).stdout;
        const j = (old.trim() ? JSON.parse(old) : { version: 1, steps: {}, history: [] }) as {
          steps: Record<string, unknown>;
        };
        const now = new Date().toISOString();
        for (const name of steps)
          j.steps[name] ??= {
            status: 'ok',
            startedAt: now,
            endedAt: now,
            changes: [],
            configHash: 'seeded-by-test',
            runId: 'seeded-by-test',
          };
        await sb.exec(['sh', '-c', `mkdir -p -m 0700 /var/lib/codex-k8s-bootstrap && umask 077 && cat > ${path}`], {
          input: JSON.stringify(j),
        });
      },
      async routePostgres(pg, database) {
        const route = { host: sb.hostAddr, port: pg.port, user: pg.user, database };
        const dir = '/var/lib/codex-k8s-fakes';
        await sb.exec(['sh', '-c', `mkdir -p ${dir} && umask 022 && cat > ${dir}/postgres.json`], {
          input: JSON.stringify(route, null, 2) + '\n',
        });
      },
      playArcRunner(set = 'codex-k8s-staging', namespace = 'arc-runners') {
        const file = `/var/lib/codex-k8s-fakes/objects/autoscalingrunnersets.actions.github.com/${namespace}/${set}.json`;
        let stopped = false;
        const loop = async () => {
          while (!stopped) {
            const r = await sb.exec(['test', '-f', file], { allowFail: true }).catch(() => ({ exitCode: 1 }));
            if (r.exitCode === 0 && !github.runners.some((x) => x.name.startsWith(`${set}-`))) {
              github.runners.push({
                id: 101,
                name: `${set}-x7k2p-runner-4q8zd`,
                os: 'Linux',
                status: 'online',
                busy: false,
                labels: [set],
              });
            }
            // The set deleted (helm uninstall): the controller deleted the scale set in GitHub, and its runners with it.
            if (r.exitCode !== 0)
              for (let i = github.runners.length - 1; i >= 0; i--)
                if (github.runners[i]?.name.startsWith(`${set}-`)) github.runners.splice(i, 1);
            await new Promise((res) => setTimeout(res, 1000));
          }
        };
        void loop();
        return () => {
          stopped = true;
        };
      },
      async stop() {
        await mirror.close();
        if (!opts.github) await github.close();
        await sb.stop();
      },
    };
    return target;
  } catch (e) {
    for (const c of cleanups) await c().catch(() => undefined);
    await sb.stop();
    throw e;
  }
}

/**
 * A copy of the repository's working tree (tracked and untracked files, not ignored ones) committed as ONE commit
 * in a fresh git repository, with node_modules linked: the launcher run from it sees a clean checkout whose HEAD is
 * known, whatever the state of the real working tree. Returns the copy's root and its commit.
 */
export async function snapshotRepo(): Promise<{ root: string; sha: string; git(...args: string[]): Promise<string> }> {
  const root = mkdtempSync(join(tmpdir(), 'ck8s-repo-'));
  const list = (
    await runProcess('git', ['-C', REPO_ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'])
  ).stdout
    .split('\0')
    .filter((f) => f !== '' && existsSync(join(REPO_ROOT, f)));
  for (const f of list) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    copyFileSync(join(REPO_ROOT, f), join(root, f));
    chmodSync(join(root, f), statSync(join(REPO_ROOT, f)).mode & 0o777);
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  const env = {
    GIT_AUTHOR_NAME: 'e2e',
    GIT_AUTHOR_EMAIL: 'e2e@example.com',
    GIT_COMMITTER_NAME: 'e2e',
    GIT_COMMITTER_EMAIL: 'e2e@example.com',
  };
  const git = async (...args: string[]) =>
    (await runProcess('git', ['-C', root, ...args], { env: { ...process.env, ...env } as Record<string, string> }))
      .stdout;
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-q', '-m', 'e2e snapshot');
  return { root, sha: (await git('rev-parse', 'HEAD')).trim(), git };
}

/** Steps and their footers, as the launcher printed them: { '00_preflight': '= unchanged', ... }. */
export function footers(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  let current: string | undefined;
  for (const line of output.split('\n')) {
    const h = /^==> \[\d+\/\d+\] (\S+)/.exec(line);
    if (h) current = h[1];
    const f = /^([=+x]) (unchanged|changed \d+|failed)/.exec(line);
    if (f && current) {
      out[current] = `${f[1]} ${f[2]}`;
      current = undefined;
    }
  }
  return out;
}
