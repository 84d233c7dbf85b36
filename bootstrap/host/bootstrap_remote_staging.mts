#!/usr/bin/env -S node --import tsx --
// The launcher: run on your laptop, from the repository root. It validates the whole configuration before
// touching anything, opens ONE multiplexed SSH connection to the server as root (host key pinned), takes
// the server lock, makes sure the pinned Node.js runtime is there, uploads this tree and the config, then
// runs bootstrap/remote/NN_*.mts in order, streaming their output. See --help and docs/runbook.md.
import { createHash } from 'node:crypto';
import { readFileSync, mkdtempSync, mkdirSync, rmSync, createReadStream, writeFileSync } from 'node:fs';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { loadConfig, serializeServerEnv, configHash, describeValue, SETTINGS, SETTING_BY_NAME } from '../lib/config.mts';
import type { Config, LoadResult } from '../lib/config.mts';
import { Logger, color, formatSeconds } from '../lib/log.mts';
import { parseCli, helpText, runMain } from '../lib/cli.mts';
import type { CliSpec } from '../lib/cli.mts';
import { UsageError, OperationError, EXIT_LOCKED } from '../lib/errors.mts';
import { STEPS, stepNames, stepInfo } from '../lib/catalogue.mts';
import { selectSteps, checkPrerequisites, parseServerState, markInterrupted } from '../lib/state.mts';
import type { Journal, ServerState } from '../lib/state.mts';
import { SshSession, knownHostsPath, shellQuote, freshLoginArgs, transientSshFailure } from '../lib/ssh.mts';
import type { RemoteRunOptions } from '../lib/ssh.mts';
import { parseLockAnswer, explainHeldLock, explainRefusedLock, describeTakeover } from '../lib/lock.mts';
import { REMOTE, RESULT_MARKER, UPLOAD_ENTRIES } from '../lib/paths.mts';
import { NODE } from '../lib/versions.mts';
import { resolveArtifact } from '../lib/artifacts.mts';
import { buildUploadTree } from '../lib/upload.mts';
import { appSourceProblem, gitAppStatusArgv, gitHeadArgv, sourceJson } from '../lib/build.mts';
import { run } from '../lib/exec.mts';
import { newRunId } from '../lib/step.mts';
import type { StepResult, LoginCheck } from '../lib/step.mts';
import { canPrompt, readHidden } from '../lib/prompt.mts';
import { registerSecret } from '../lib/redact.mts';
import { pollUntil, PollTimeout } from '../lib/poll.mts';
import { preflightToken, plannedTokenChecks, webhookEvents, clientFromConfig } from '../lib/github.mts';
import { checkRunnerFreshness, RUNNER_RELEASES_REPO, RUNNER_UPDATE_LIMIT_DAYS } from '../lib/runners.mts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Column width of step names in --list, --help and the summary (the longest name, so the columns line up). */
const NAME_WIDTH = Math.max(...STEPS.map((s) => s.name.length));
const SELF = './bootstrap/host/bootstrap_remote_staging.mts';
const HELPERS = readFileSync(join(REPO_ROOT, 'bootstrap/lib/remote_helpers.sh'), 'utf8');

export const SPEC: CliSpec = {
  name: SELF,
  usage: `${SELF} [--env-file PATH] [--dry-run | --list] [--from STEP | --only STEP[,STEP]] [--yes] [--verbose]`,
  summary:
    'Bootstraps a fresh Ubuntu 24.04 server into the codex-k8s staging environment over SSH.\n' +
    'Validates every setting first (nothing is contacted when one is wrong), then runs the remote steps in order.\n' +
    'Safe to re-run: every step checks before it changes and reports "unchanged" when there is nothing to do.',
  flags: [
    { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
    { name: 'env-file', type: 'string', value: 'PATH', description: 'settings file (dotenv; default .env). Variables already in the environment win' },
    { name: 'dry-run', type: 'boolean', description: 'validate and print the plan (each step, what it checks and changes); contact nothing, no secrets needed' },
    { name: 'list', type: 'boolean', description: 'list the steps in order and exit' },
    { name: 'from', type: 'string', value: 'STEP', description: 'start at STEP (name, number or words: 10_harden_host, 10, harden_host); earlier steps must have succeeded' },
    { name: 'only', type: 'string', value: 'STEP[,STEP]', description: 'run just these steps; every step before each of them that is not named must have succeeded' },
    { name: 'yes', short: 'y', type: 'boolean', description: 'never prompt: a missing secret is an error' },
    { name: 'verbose', short: 'v', type: 'boolean', description: 'print every command, locally and on the server' },
  ],
  sections: [
    { title: 'Steps', body: STEPS.map((s) => `${s.name.padEnd(NAME_WIDTH)} ${s.title}`).join('\n') },
    {
      title: 'What it changes on the server',
      body:
        `${REMOTE.node}            pinned Node.js ${NODE.version} (sha256-verified)\n` +
        `${REMOTE.base}/{bootstrap,manifests,app,node_modules}  this tree (app/: the service's sources, no tests)\n` +
        `${REMOTE.sourceFile}  {"gitSha"}: the commit app/ is (step 50 tags the first image with it)\n` +
        `${REMOTE.envFile}   the settings (0600)\n` +
        `${REMOTE.journal}   per-step journal\n` +
        `${REMOTE.logDir}/      logs, one file per run\n` +
        'and whatever each step says under "Changes" (--dry-run prints them).',
    },
    {
      title: 'On the laptop',
      body: 'CODEXK8S_HOST_STATE_DIR/known_hosts/<host>_<port>  the pinned SSH host key of each server\nCODEXK8S_HOST_LOG_DIR/<run-id>.log                 the log of each run (secrets masked)',
    },
    { title: 'Environment', body: 'Every setting in .env.example (see docs/configuration.md). NO_COLOR=1 disables colours.' },
    { title: 'Exit codes', body: `0 done\n1 a step, the connection or an upload failed (the message says how to resume)\n2 bad flag or setting; nothing was contacted\n${EXIT_LOCKED} another run holds the server lock` },
    {
      title: 'Examples',
      body:
        `${SELF} --dry-run --env-file .env.example   # the plan, without a server\n` +
        `${SELF}                                      # full run with .env\n` +
        `${SELF} --from 10_harden_host                # resume after a failure\n` +
        `${SELF} --only 00_preflight --yes            # one step, no prompts`,
    },
  ],
};

interface Options {
  envFile: string;
  explicitEnvFile: boolean;
  dryRun: boolean;
  yes: boolean;
  verbose: boolean;
  from?: string;
  only?: string[];
}

async function main(argv: readonly string[], log: Logger): Promise<number> {
  const flags = parseCli(SPEC, argv);
  if (flags['help']) {
    process.stdout.write(helpText(SPEC));
    return 0;
  }
  if (flags['list']) {
    STEPS.forEach((s, i) => log.info(`${String(i + 1).padStart(2, '0')}  ${s.name.padEnd(NAME_WIDTH)} ${s.title}`));
    return 0;
  }
  const opts: Options = {
    envFile: (flags['env-file'] as string | undefined) ?? '.env',
    explicitEnvFile: flags['env-file'] !== undefined,
    dryRun: Boolean(flags['dry-run']),
    yes: Boolean(flags['yes']),
    verbose: Boolean(flags['verbose']),
    from: flags['from'] as string | undefined,
    only: typeof flags['only'] === 'string' ? flags['only'].split(',').map((s) => s.trim()).filter(Boolean) : undefined,
  };
  log.verbose = opts.verbose;
  const selected = selectSteps(stepNames(), { from: opts.from, only: opts.only });
  const loaded = await loadSettings(opts, log);
  return opts.dryRun ? printPlan(loaded, selected, log) : realRun(opts, loaded.config, selected, log);
}

/** Validation of everything, all problems at once; prompts for missing secrets on a terminal. */
async function loadSettings(opts: Options, log: Logger): Promise<LoadResult> {
  const base = { envFile: opts.envFile, explicitEnvFile: opts.explicitEnvFile, side: 'host' as const };
  let loaded = loadConfig({ ...base, strict: !opts.dryRun });
  if (!opts.dryRun && loaded.missingSecrets.length > 0 && !opts.yes && canPrompt()) {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const name of loaded.missingSecrets) {
      const s = SETTING_BY_NAME.get(name);
      const value = await readHidden(`${name} (${s?.description.split('.')[0] ?? 'secret'}): `);
      registerSecret(value);
      env[name] = value;
    }
    loaded = loadConfig({ ...base, strict: true, env });
  }
  if (!opts.dryRun) loaded.problems.push(...(await operatorKeyProblems(loaded.config, log)));
  for (const w of loaded.warnings) log.warn(w);
  if (loaded.problems.length > 0) {
    log.error(`${loaded.problems.length} problem(s) in the settings (from ${opts.envFile} and the environment); nothing was contacted:`);
    throw new UsageError(loaded.problems);
  }
  return loaded;
}

/**
 * OPERATOR_SSH_KEY must be the private half of OPERATOR_SSH_PUBKEY (type and base64 compared, not the comment), or the
 * login check after hardening fails and rolls back. `-P ''` never prompts: an encrypted key cannot be compared here.
 */
async function operatorKeyProblems(c: Config, log: Logger): Promise<string[]> {
  const key = c.maybe('OPERATOR_SSH_KEY');
  const pub = c.maybe('OPERATOR_SSH_PUBKEY');
  if (!key || !pub) return [];
  const r = await run(['ssh-keygen', '-y', '-P', '', '-f', key], { allowFail: true, log, timeoutSeconds: 15 });
  if (r.exitCode !== 0) {
    if (/passphrase/i.test(r.stderr)) {
      log.warn(`OPERATOR_SSH_KEY: ${key} is passphrase-protected, so it was not compared with OPERATOR_SSH_PUBKEY here; the login check uses your ssh-agent`);
      return [];
    }
    return [`OPERATOR_SSH_KEY: ssh-keygen cannot read ${key} (${r.stderr.trim().split('\n').pop() ?? ''}); expected the operator's OpenSSH private key`];
  }
  const ident = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(' ');
  if (ident(r.stdout) === ident(pub)) return [];
  return [`OPERATOR_SSH_KEY: ${key} is not the private key of OPERATOR_SSH_PUBKEY (${ident(pub).slice(0, 40)}...); expected the two settings to name one key pair`];
}

function printPlan(loaded: LoadResult, selected: readonly string[], log: Logger): number {
  const c = loaded.config;
  const node = resolveArtifact(NODE, 'x64', c.maybe('CODEXK8S_ARTIFACT_MIRROR'), c.maybe('CODEXK8S_ARTIFACT_SHA256_OVERRIDES'));
  log.info(color.bold(`Plan (dry run: nothing is contacted, nothing changes)`));
  log.info(`target   ${c.get('TARGET_ROOT_USER')}@${c.get('TARGET_HOST')}:${c.get('TARGET_PORT')}   mode ${c.get('CODEXK8S_MODE')}   repo ${c.get('CODEXK8S_GITHUB_REPO')}`);
  log.info('');
  log.info(color.bold('Settings'));
  for (const s of SETTINGS) {
    const v = c[s.name];
    if (v === undefined) continue;
    log.info(`  ${s.name.padEnd(34)} ${describeValue(s.name, v)}${loaded.sources[s.name] === 'default' ? color.dim('  (default)') : ''}`);
  }
  log.info('');
  if (usesGitHub(selected)) {
    webhookEvents(c);
    log.info(color.bold('GitHub token check (on this machine, before the server is touched; a missing permission exits 2)'));
    for (const line of plannedTokenChecks(c)) log.info(`  - ${line}`);
    log.info(`  - runner freshness: GET /repos/${RUNNER_RELEASES_REPO.owner}/${RUNNER_RELEASES_REPO.repo}/releases against ${c.get('CODEXK8S_RUNNER_IMAGE')} (${RUNNER_UPDATE_LIMIT_DAYS} days past a newer release: ${enforcesRunnerFreshness(selected) ? 'exit 2' : 'a warning'})`);
    log.info('');
  }
  log.info(color.bold('Prepare'));
  log.info(`  - connect over SSH once (multiplexed), host key pinned in ${knownHostsPath(c.get('CODEXK8S_HOST_STATE_DIR'), c.get('TARGET_HOST'), c.get('TARGET_PORT'))}`);
  log.info(`  - take the server lock ${REMOTE.lockDir}`);
  log.info(`  - Node.js ${node.version} in ${REMOTE.node} unless already there (${node.url}, sha256 ${node.sha256.slice(0, 12)}..., arm64 likewise)`);
  log.info(`  - upload ${UPLOAD_ENTRIES.join(', ')} (those that exist) to ${REMOTE.base} unless identical`);
  log.info(`  - source.json: the commit of app/ (git rev-parse HEAD); ${DEPLOY_STEP} refuses to run (exit 2) when app/ has uncommitted changes`);
  log.info(`  - write ${REMOTE.envFile} (0600, via stdin) unless identical`);
  log.info('');
  log.info(color.bold('Steps'));
  selected.forEach((name, i) => {
    const info = stepInfo(name);
    log.stepHeader(i + 1, selected.length, name);
    log.info(`    ${info.title}`);
    for (const x of info.checks) log.info(`    checks:  ${x}`);
    for (const x of info.changes) log.info(`    changes: ${x}`);
  });
  log.info('');
  const secrets = SETTINGS.filter((s) => s.secret);
  const missing = new Set(loaded.missingSecrets);
  log.info(color.bold('Secrets a real run needs'));
  for (const s of secrets) log.info(`  ${s.name.padEnd(34)} ${missing.has(s.name) ? 'not set: a real run asks for it on a terminal (or fails with --yes)' : 'set'}`);
  return 0;
}

/** The step that builds the first image from the uploaded app/ and so needs source.json. */
const DEPLOY_STEP = '50_deploy_codex_k8s';

/**
 * source.json for the upload: the commit app/ is, when app/ has no uncommitted change. When it has (or this is no
 * git checkout) and the deploy step is selected, the run stops here with exit 2: the first image would carry the
 * tag of a commit it is not. Otherwise the upload simply goes without source.json.
 */
async function appSource(selected: readonly string[], log: Logger): Promise<Record<string, string>> {
  const failed = (e: unknown) => ({ exitCode: 127, stdout: '', stderr: (e as Error).message });
  const head = await run(gitHeadArgv(REPO_ROOT), { allowFail: true, log, timeoutSeconds: 30 }).catch(failed);
  const status = head.exitCode === 0 ? await run(gitAppStatusArgv(REPO_ROOT), { allowFail: true, log, timeoutSeconds: 30 }).catch(failed) : undefined;
  const problem = appSourceProblem(head, status);
  if (problem === undefined) return { 'source.json': sourceJson(head.stdout.trim()) };
  if (selected.includes(DEPLOY_STEP)) throw new UsageError([`${DEPLOY_STEP} is selected, but ${problem}`]);
  log.detail(`the upload goes without source.json: ${problem}`);
  return {};
}

/** Whether any selected step talks to GitHub (then the token is checked first). */
function usesGitHub(selected: readonly string[]): boolean {
  return selected.some((n) => stepInfo(n).usesGitHub === true);
}

/** Steps that install the runners or wait for them: a runner GitHub no longer serves fails them. */
function enforcesRunnerFreshness(selected: readonly string[]): boolean {
  return selected.includes('60_runner_arc') || selected.includes('80_deploy_loop_check');
}

interface Ctx {
  cfg: Config;
  log: Logger;
  ssh: SshSession;
  runId: string;
  lockToken: string;
  sshHint: string;
}

/** Runs one subcommand of bootstrap/lib/remote_helpers.sh on the server (plain bash: no Node needed there yet). */
async function helper(ctx: Ctx, args: string[], opts: Pick<RemoteRunOptions, 'input' | 'allowFail'> = {}) {
  return ctx.ssh.run(['bash', '-c', HELPERS, 'remote_helpers', ...args], { ...opts, display: ['remote_helpers', ...args] });
}

async function realRun(opts: Options, cfg: Config, selected: readonly string[], log: Logger): Promise<number> {
  const started = performance.now();
  const runId = newRunId();
  log.setFile(join(cfg.get('CODEXK8S_HOST_LOG_DIR'), `${runId}.log`));
  const host = cfg.get('TARGET_HOST');
  const port = cfg.get('TARGET_PORT');
  const user = cfg.get('TARGET_ROOT_USER');
  const key = cfg.get('TARGET_ROOT_SSH_KEY');
  const extra = cfg.maybe('CODEXK8S_SSH_EXTRA_OPTS') ?? [];
  const sshHint = ['ssh', '-p', String(port), '-i', key, ...extra, `${user}@${host}`].map(shellQuote).join(' ');
  log.info(color.bold(`codex-k8s staging bootstrap: ${user}@${host}:${port}, mode ${cfg.get('CODEXK8S_MODE')}, run ${runId}`));
  log.info(color.dim(`log: ${log.filePath}`));
  // Before anything is contacted: a deploy from an app/ that is not a commit stops the run (exit 2).
  const generated = await appSource(selected, log);
  // Before the first connection: a token that cannot do what the selected steps need stops the run here (exit 2).
  if (usesGitHub(selected)) {
    webhookEvents(cfg);
    log.info(color.bold(`==> GitHub token: what ${cfg.get('CODEXK8S_GITHUB_REPO')} needs (${cfg.get('CODEXK8S_GITHUB_API_URL')})`));
    const gh = clientFromConfig(cfg, log);
    await preflightToken(cfg, log, gh);
    await checkRunnerFreshness(cfg, log, gh, enforcesRunnerFreshness(selected));
  }

  const ssh = await SshSession.connect({ host, port, user, identityFile: key, knownHostsFile: knownHostsPath(cfg.get('CODEXK8S_HOST_STATE_DIR'), host, port), extraOptions: extra, log });
  const ctx: Ctx = { cfg, log, ssh, runId, lockToken: randomBytes(12).toString('hex'), sshHint };
  let locked = false;
  // Ctrl-C / SIGTERM: release the lock, close the connection, exit 130. The main flow keeps running meanwhile
  // (its remote command dies with the connection); whatever it ends with, it waits for this cleanup.
  // A second Ctrl-C kills the launcher at once.
  let interrupted: Promise<never> | undefined;
  const onSignal = () => {
    log.error('interrupted; releasing the server lock');
    interrupted = (async () => {
      if (locked) await helper(ctx, ['lock-release', REMOTE.lockDir, ctx.lockToken], { allowFail: true }).catch(() => undefined);
      await ssh.close().catch(() => undefined);
      process.exit(130);
    })();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const outcome = await runLocked().then(
    (code) => ({ code }),
    (error: unknown) => ({ error }),
  );
  if (interrupted) await interrupted;
  if ('error' in outcome) throw outcome.error;
  return outcome.code;

  async function runLocked(): Promise<number> {
    try {
      const answer = await begin(ctx);
      locked = true;
      try {
        const server = serverState(ctx, answer);
        const pre = checkPrerequisites(stepNames(), selected, server.journal, configHash(cfg));
        for (const w of pre.warnings) log.warn(w);
        if (pre.problems.length > 0) throw new UsageError(pre.problems);
        await prepare(ctx, server, generated);
        const results = await runSteps(ctx, selected, opts);
        const finalJournal = await finish(ctx);
        locked = false;
        printSummary(ctx, selected, results, finalJournal, (performance.now() - started) / 1000);
        const failed = selected.find((n) => results.get(n)?.status === 'failed');
        if (failed) {
          const r = results.get(failed);
          const resume = `${SELF}${opts.explicitEnvFile ? ` --env-file ${opts.envFile}` : ''} --from ${failed}`;
          throw new OperationError(`step ${failed} failed: ${r?.error ?? 'see the output above'}`, {
            hint: `${r?.hint ?? 'fix the cause'}, then resume with: ${resume}`,
            // A step that crashed before reporting gave no detail: its stderr is the best we have.
            detail: r?.detail ?? (r?.crashed ? r.stderrTail : undefined),
            // A step that refused a setting of the server's (exit 2) changed nothing: the launcher says the same.
            exitCode: r?.exitCode === 2 ? 2 : 1,
          });
        }
        return 0;
      } finally {
        if (locked) await helper(ctx, ['lock-release', REMOTE.lockDir, ctx.lockToken], { allowFail: true });
        locked = false;
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (!interrupted) await ssh.close();
    }
  }
}

/**
 * The first round trip: take the server lock and learn what is installed (runtime, tree, settings, journal;
 * parsed by serverState once the caller knows it holds the lock). A converged re-run needs nothing else
 * before its steps.
 */
async function begin(ctx: Ctx): Promise<string> {
  const holder = `${userInfo().username}@${hostname()} pid ${process.pid} run ${ctx.runId}`;
  const stale = String(ctx.cfg.get('CODEXK8S_LOCK_STALE_AFTER'));
  const r = await helper(ctx, ['begin', REMOTE.lockDir, ctx.lockToken, holder, ctx.runId, stale, REMOTE.node, REMOTE.treeHashFile, REMOTE.envFile, REMOTE.journal], { allowFail: true });
  if (r.exitCode === 4 && r.stdout.startsWith('not-root')) {
    throw new OperationError(`${ctx.cfg.get('TARGET_ROOT_USER')} on the server is not root (${r.stdout.trim().slice('not-root '.length)}); the bootstrap needs root`, {
      hint: 'set TARGET_ROOT_USER=root (and a key that root accepts); nothing was changed',
    });
  }
  if (r.exitCode !== 0 && r.exitCode !== EXIT_LOCKED) throw new OperationError('could not take the server lock', { detail: r.stderr });
  const answer = parseLockAnswer(r.stdout);
  if (answer.kind === 'refused' || answer.kind === 'held') {
    const { message, hint } = answer.kind === 'refused' ? explainRefusedLock(answer.reason, ctx.sshHint) : explainHeldLock(answer, Number(stale), ctx.sshHint);
    throw new OperationError(message, { hint, exitCode: EXIT_LOCKED });
  }
  if (answer.kind === 'took-over') {
    ctx.log.warn(describeTakeover(answer));
    await recordInterrupted(ctx, answer.previous.run, r.stdout);
  }
  ctx.log.detail(`lock ${REMOTE.lockDir} taken`);
  return r.stdout;
}

/** The dead run's steps that the journal still calls `running` are marked `interrupted`, on the server. */
async function recordInterrupted(ctx: Ctx, deadRun: string, beginStdout: string): Promise<void> {
  const { journal, steps } = markInterrupted(serverState(ctx, beginStdout).journal, deadRun, new Date().toISOString());
  if (steps.length === 0) return;
  await helper(ctx, ['write-private', REMOTE.journal], { input: JSON.stringify(journal, null, 2) + '\n' });
  ctx.log.warn(`journal: ${steps.join(', ')} marked interrupted (run ${deadRun || 'unknown'} died while it ran); this run repeats it`);
}

/** The last round trip: release the lock and read the journal for the summary. */
async function finish(ctx: Ctx): Promise<Journal> {
  const r = await helper(ctx, ['finish', REMOTE.lockDir, ctx.lockToken, REMOTE.journal]);
  return serverState(ctx, r.stdout).journal;
}

function serverState(ctx: Ctx, stdout: string): ServerState {
  try {
    return parseServerState(stdout);
  } catch (e) {
    throw new OperationError(`the journal ${REMOTE.journal} on the server is unreadable (${(e as Error).message})`, {
      hint: `inspect it (${ctx.sshHint} cat ${REMOTE.journal}); moving it aside makes every step run again, which is safe`,
    });
  }
}

/** Runtime, tree and settings on the server; each skipped when already identical. */
async function prepare(ctx: Ctx, server: ServerState, generated: Record<string, string>): Promise<void> {
  const { cfg, log } = ctx;
  const t0 = performance.now();
  log.info(color.bold('==> prepare: runtime, files and settings on the server'));
  let changed = 0;
  const mirror = cfg.maybe('CODEXK8S_ARTIFACT_MIRROR');
  const overrides = cfg.maybe('CODEXK8S_ARTIFACT_SHA256_OVERRIDES');
  const x64 = resolveArtifact(NODE, 'x64', mirror, overrides);
  const arm64 = resolveArtifact(NODE, 'arm64', mirror, overrides);
  for (const a of [x64, arm64]) if (a.overriddenFrom) log.warn(`checksum of ${a.name} ${a.version} (${a.arch}) overridden: ${a.sha256} instead of the pinned ${a.overriddenFrom}`);
  if (server.node === `v${NODE.version}`) log.info(`  = Node.js unchanged v${NODE.version}`);
  else {
    const node = await helper(ctx, ['ensure-node', REMOTE.node, NODE.version, x64.url, x64.sha256, arm64.url, arm64.sha256], { allowFail: true });
    if (node.exitCode !== 0) throw new OperationError(`installing Node.js ${NODE.version} on the server failed`, { detail: node.stderr, hint: `check that the server can reach ${x64.url} (or set CODEXK8S_ARTIFACT_MIRROR)` });
    const nodeOut = node.stdout.trim();
    if (nodeOut.startsWith('installed')) changed++;
    log.info(`  ${nodeOut.startsWith('installed') ? '+' : '='} Node.js ${nodeOut}`);
  }

  const tree = buildUploadTree(REPO_ROOT, generated);
  if (server.tree === tree.hash) log.info(`  = tree unchanged (${tree.files.length} files, ${tree.hash.slice(0, 12)})`);
  else {
    const dir = mkdtempSync(join(tmpdir(), 'ck8s-upload-'));
    try {
      const list = join(dir, 'files');
      const tar = join(dir, 'tree.tar');
      writeFileSync(list, tree.files.join('\n') + '\n');
      await run(['tar', '-cf', tar, '-C', REPO_ROOT, '-T', list], { env: { COPYFILE_DISABLE: '1' }, log });
      // Generated files are appended from a directory of their own (one -C per tar call works with GNU and BSD tar).
      const names = Object.keys(tree.generated).sort();
      if (names.length > 0) {
        const stage = join(dir, 'generated');
        mkdirSync(stage);
        for (const n of names) writeFileSync(join(stage, n), tree.generated[n] as string);
        await run(['tar', '-rf', tar, '-C', stage, ...names], { env: { COPYFILE_DISABLE: '1' }, log });
      }
      await helper(ctx, ['install-tree', REMOTE.base, tree.hash, ...tree.entries], { input: createReadStream(tar) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    changed++;
    log.info(`  + tree uploaded (${tree.files.length} files, ${tree.hash.slice(0, 12)})`);
  }

  const envText = serializeServerEnv(cfg);
  const envHash = createHash('sha256').update(envText).digest('hex');
  if (server.env === envHash) log.info(`  = ${REMOTE.envFile} unchanged`);
  else {
    await helper(ctx, ['write-private', REMOTE.envFile], { input: envText });
    changed++;
    log.info(`  + ${REMOTE.envFile} written (0600)`);
  }
  log.stepFooter({ status: changed ? 'changed' : 'unchanged', changed, seconds: (performance.now() - t0) / 1000 });
}

/** A step's result as the launcher saw it; `crashed` when the step died without reporting one. */
type LaunchResult = StepResult & { stderrTail?: string; crashed?: boolean; exitCode?: number };

async function runSteps(ctx: Ctx, selected: readonly string[], opts: Options): Promise<Map<string, LaunchResult>> {
  const results = new Map<string, LaunchResult>();
  for (const [i, name] of selected.entries()) {
    ctx.log.stepHeader(i + 1, selected.length, name);
    const t0 = performance.now();
    let result: LaunchResult | undefined;
    const stderr: string[] = [];
    const r = await ctx.ssh.run(
      [
        'env', 'CODEXK8S_LAUNCHER=1', `CODEXK8S_RUN_ID=${ctx.runId}`, `CODEXK8S_LOCK_TOKEN=${ctx.lockToken}`,
        // Node keeps the stripped and compiled modules of the steps there: a converged re-run starts each step faster.
        `NODE_COMPILE_CACHE=${REMOTE.compileCache}`,
        // `--` keeps node from reading a later --env-file as its own option (node scans the whole argv).
        REMOTE.nodeBin, '--', `${REMOTE.base}/bootstrap/remote/${name}.mts`, ...(opts.verbose ? ['--verbose'] : []),
      ],
      {
        allowFail: true,
        onStdoutLine: (line) => {
          if (line.startsWith(RESULT_MARKER)) result = JSON.parse(line.slice(RESULT_MARKER.length)) as StepResult;
          else ctx.log.info(`    ${line}`);
        },
        onStderrLine: (line) => {
          stderr.push(line);
          ctx.log.info(`    ${line}`);
        },
      },
    );
    const seconds = (performance.now() - t0) / 1000;
    if (!result) result = { status: 'failed', changes: [], drift: [], seconds, error: `the step exited with code ${r.exitCode} without reporting a result`, crashed: true };
    else if (r.exitCode !== 0 && result.status !== 'failed') result = { ...result, status: 'failed', error: `exit code ${r.exitCode}` };
    result.stderrTail = stderr.slice(-15).join('\n') || undefined;
    result.exitCode = r.exitCode;
    if (result.loginCheck) result = await proveLogin(ctx, name, result, result.loginCheck, opts);
    result.seconds = (performance.now() - t0) / 1000; // wall time as seen from here: node start-up, SSH and the login check included
    results.set(name, result);
    ctx.log.stepFooter({ status: result.status, changed: result.changes.length, seconds: result.seconds });
    if (result.status === 'failed') break;
  }
  return results;
}

/** Runs `<step> --confirm` or `--rollback` over the master connection (the one that is known to work). */
async function runStepMode(ctx: Ctx, name: string, mode: 'confirm' | 'rollback', opts: Options) {
  return ctx.ssh.run(
    ['env', 'CODEXK8S_LAUNCHER=1', `CODEXK8S_RUN_ID=${ctx.runId}`, `CODEXK8S_LOCK_TOKEN=${ctx.lockToken}`, `NODE_COMPILE_CACHE=${REMOTE.compileCache}`, REMOTE.nodeBin, '--', `${REMOTE.base}/bootstrap/remote/${name}.mts`, `--${mode}`, ...(opts.verbose ? ['--verbose'] : [])],
    { allowFail: true, onStdoutLine: (l) => ctx.log.info(`    ${l}`), onStderrLine: (l) => ctx.log.info(`    ${l}`) },
  );
}

const LOGIN_ATTEMPTS = 30;
const LOGIN_INTERVAL_MS = 500;

/**
 * The no-lockout rule: after a step changed the operator account, sshd or the firewall, a NEW connection as the operator, with the
 * operator's key, must log in and run `sudo -n true`. Transient refusals (sshd re-executing, the socket being
 * re-bound) are retried, bounded; anything else fails at once. Success confirms the change on the server;
 * failure rolls it back over the master connection, which is still open, and fails the step with the reason.
 */
async function proveLogin(ctx: Ctx, name: string, result: LaunchResult, lc: LoginCheck, opts: Options): Promise<LaunchResult> {
  const { log, cfg } = ctx;
  const key = cfg.get('OPERATOR_SSH_KEY');
  const where = `${lc.user}@${cfg.get('TARGET_HOST')}:${lc.port}`;
  log.info(`    login check: a new connection as ${where} with ${key}, then sudo -n true`);
  let last = { exitCode: 0, stderr: '' };
  const ok = await pollUntil<boolean>(
    async (i) => {
      const r = await run(freshLoginArgs(ctx.ssh.target, { user: lc.user, port: lc.port, identityFile: key }, ['sudo', '-n', 'true']), { allowFail: true, log, timeoutSeconds: 30 });
      last = r;
      if (r.exitCode === 0) {
        log.info(`    + a new login as ${where} works and has sudo (attempt ${i}/${LOGIN_ATTEMPTS})`);
        return { done: true };
      }
      return transientSshFailure(r.exitCode, r.stderr) ? { waiting: r.stderr.trim().split('\n').pop() ?? '' } : { done: false };
    },
    {
      attempts: LOGIN_ATTEMPTS,
      intervalSeconds: LOGIN_INTERVAL_MS / 1000,
      what: `a new login as ${where}`,
      onWait: (i, why) => log.detail(`login check attempt ${i}/${LOGIN_ATTEMPTS}: ${why}`),
    },
  ).catch((e: unknown) => {
    if (e instanceof PollTimeout) return false; // still refused after every attempt: the rollback below
    throw e;
  });
  if (ok) {
    const c = await runStepMode(ctx, name, 'confirm', opts);
    if (c.exitCode === 0) return result;
    return { ...result, status: 'failed', error: `the login check passed but --confirm failed (exit ${c.exitCode}); ${lc.unit}.timer will roll the change back`, detail: c.stderr, hint: `confirm by hand within ${lc.rollbackSeconds}s: ${ctx.sshHint} ${REMOTE.base}/bootstrap/remote/${name}.mts --confirm` };
  }
  const reason = last.stderr.trim() || `exit code ${last.exitCode}`;
  log.error(`a new login as ${where} failed after: ${lc.reasons.join('; ')}`);
  for (const line of reason.split('\n')) log.info(`    | ${line}`);
  let undone: string;
  try {
    const rb = await runStepMode(ctx, name, 'rollback', opts);
    undone = rb.exitCode === 0 ? 'the change was rolled back over the open connection' : `the rollback failed (exit ${rb.exitCode}); ${lc.unit}.timer retries it within ${lc.rollbackSeconds}s`;
  } catch (e) {
    undone = `the server could not be reached to roll back (${(e as Error).message}); ${lc.unit}.timer rolls back within ${lc.rollbackSeconds}s`;
  }
  // The step failed by itself after a guarded change: its own error says what to fix; the login only explains the rollback.
  if (result.status === 'failed') return { ...result, error: `${result.error ?? 'the step failed'}; a new login as ${where} then failed too, and ${undone}` };
  return {
    ...result,
    status: 'failed',
    error: `a new login as ${where} with OPERATOR_SSH_KEY failed after changing the operator account, sshd or the firewall; ${undone}`,
    detail: reason,
    hint: `check that OPERATOR_SSH_KEY (${key}) is the private key of OPERATOR_SSH_PUBKEY (ssh-keygen -y -f ${key}) and that port ${lc.port} is reachable from here`,
  };
}

function printSummary(ctx: Ctx, selected: readonly string[], results: Map<string, LaunchResult>, journal: Journal, seconds: number): void {
  const { log, cfg } = ctx;
  log.info('');
  log.info(color.bold('Summary'));
  let changedSteps = 0;
  for (const s of STEPS) {
    const r = results.get(s.name);
    const rec = journal.steps[s.name];
    let state: string;
    if (r) {
      state = r.status === 'changed' ? `changed ${r.changes.length}` : r.status;
      if (r.status === 'changed') changedSteps++;
    } else if (selected.includes(s.name)) state = 'not run (an earlier step failed)';
    else state = `skipped (last: ${rec ? `${rec.status} ${rec.endedAt ?? rec.startedAt}` : 'never ran'})`;
    const time = r ? formatSeconds(r.seconds) : '';
    log.info(`  ${s.name.padEnd(NAME_WIDTH)} ${state.padEnd(16)} ${time}`);
  }
  const ran = selected.filter((n) => results.has(n)).length;
  log.info(`  ${ran} step(s) run, ${changedSteps} changed, total ${formatSeconds(seconds)}`);
  if (selected.every((n) => results.get(n) && results.get(n)?.status !== 'failed')) {
    log.info('');
    log.info(color.bold('Next'));
    log.info(`  log in as the operator:  ssh -p ${cfg.get('CODEXK8S_SSH_PORT')} -i ${cfg.get('OPERATOR_SSH_KEY')} ${cfg.get('OPERATOR_USER')}@${cfg.get('TARGET_HOST')}`);
    if (cfg.get('CODEXK8S_SSH_PORT') !== cfg.get('TARGET_PORT')) log.info(`  sshd now listens on ${cfg.get('CODEXK8S_SSH_PORT')}: set TARGET_PORT=${cfg.get('CODEXK8S_SSH_PORT')} for the next run`);
    log.info(`  check a step by hand:    ${ctx.sshHint} ${REMOTE.base}/bootstrap/remote/10_harden_host.mts --check`);
    const rel = relative(process.cwd(), log.filePath ?? '');
    log.info(`  this run's log:          ${rel.startsWith('..') ? log.filePath : rel}`);
  }
}

if (import.meta.filename === process.argv[1]) {
  const log = new Logger();
  await runMain(SPEC, log, () => main(process.argv.slice(2), log));
}
