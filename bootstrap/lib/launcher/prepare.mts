// The first round trip and the upload: take the lock (a dead holder taken over), read the server's state, install
// Node.js, upload the tree and the settings; and the last round trip that releases the lock.
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, createReadStream, writeFileSync, statSync } from 'node:fs';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { serializeServerEnv } from '../config.mts';
import { color, formatBytes, moved } from '../log.mts';
import { OperationError, EXIT_LOCKED } from '../errors.mts';
import { sudoRefusal } from '../ssh.mts';
import { parseServerState, markInterrupted } from '../state.mts';
import type { Journal, ServerState } from '../state.mts';
import { parseLockAnswer, explainHeldLock, explainRefusedLock, describeTakeover } from '../lock.mts';
import { REMOTE } from '../paths.mts';
import { NODE } from '../versions.mts';
import { resolveArtifact } from '../artifacts.mts';
import { buildUploadTree } from '../upload.mts';
import { run } from '../exec.mts';
import { REPO_ROOT, helper } from './context.mts';
import type { Ctx } from './context.mts';

/**
 * The first round trip: take the server lock and learn what is installed (runtime, tree, settings, journal;
 * parsed by serverState once the caller knows it holds the lock). A converged re-run needs nothing else
 * before its steps.
 */
export async function begin(ctx: Ctx): Promise<string> {
  const holder = `${userInfo().username}@${hostname()} pid ${process.pid} run ${ctx.runId}`;
  const stale = String(ctx.cfg.get('CODEXK8S_LOCK_STALE_AFTER'));
  const r = await helper(
    ctx,
    [
      'begin',
      REMOTE.lockDir,
      ctx.lockToken,
      holder,
      ctx.runId,
      stale,
      REMOTE.node,
      REMOTE.treeHashFile,
      REMOTE.envFile,
      REMOTE.journal,
    ],
    { allowFail: true },
  );
  // The first command of the run: a login whose sudo wants a password fails here, before anything changed.
  const sudo = sudoRefusal(ctx.ssh.target, r.exitCode, r.stderr);
  if (sudo) throw new OperationError(sudo.message, { hint: sudo.hint, detail: r.stderr, exitCode: 2 });
  if (r.exitCode === 4 && r.stdout.startsWith('not-root')) {
    throw new OperationError(
      `${ctx.cfg.get('TARGET_ROOT_USER')} on the server is not root (${r.stdout.trim().slice('not-root '.length)}); the bootstrap needs root`,
      {
        hint: 'set TARGET_ROOT_USER=root (and a key that root accepts), or a user with passwordless sudo; nothing was changed',
      },
    );
  }
  if (r.exitCode !== 0 && r.exitCode !== EXIT_LOCKED)
    throw new OperationError('could not take the server lock', { detail: r.stderr });
  const answer = parseLockAnswer(r.stdout);
  if (answer.kind === 'refused' || answer.kind === 'held') {
    const { message, hint } =
      answer.kind === 'refused'
        ? explainRefusedLock(answer.reason, ctx.sshHint)
        : explainHeldLock(answer, Number(stale), ctx.sshHint);
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
export async function recordInterrupted(ctx: Ctx, deadRun: string, beginStdout: string): Promise<void> {
  const { journal, steps } = markInterrupted(serverState(ctx, beginStdout).journal, deadRun, new Date().toISOString());
  if (steps.length === 0) return;
  await helper(ctx, ['write-private', REMOTE.journal], { input: JSON.stringify(journal, null, 2) + '\n' });
  ctx.log.warn(
    `journal: ${steps.join(', ')} marked interrupted (run ${deadRun || 'unknown'} died while it ran); this run repeats it`,
  );
}

/** The last round trip: release the lock and read the journal for the summary. */
export async function finish(ctx: Ctx): Promise<Journal> {
  const r = await helper(ctx, ['finish', REMOTE.lockDir, ctx.lockToken, REMOTE.journal]);
  return serverState(ctx, r.stdout).journal;
}

export function serverState(ctx: Ctx, stdout: string): ServerState {
  try {
    return parseServerState(stdout);
  } catch (e) {
    throw new OperationError(`the journal ${REMOTE.journal} on the server is unreadable (${(e as Error).message})`, {
      hint: `inspect it (${ctx.sshHint} cat ${REMOTE.journal}); moving it aside makes every step run again, which is safe`,
    });
  }
}

/** Runtime, tree and settings on the server; each skipped when already identical. */
/**
 * Node.js, the tree and the settings on the server. Returns the settings file the steps read: the server's own,
 * or for --check, when the laptop's settings differ from it, a separate file (the server's stays as it is).
 */
export async function prepare(
  ctx: Ctx,
  server: ServerState,
  generated: Record<string, string>,
  /** check and teardown leave the server's settings file as it is (they use one of their own when it differs). */
  purpose: 'run' | 'check' | 'teardown' = 'run',
): Promise<string> {
  const { cfg, log } = ctx;
  const t0 = performance.now();
  log.info(color.bold('==> prepare: runtime, files and settings on the server'));
  let changed = 0;
  const mirror = cfg.maybe('CODEXK8S_ARTIFACT_MIRROR');
  const overrides = cfg.maybe('CODEXK8S_ARTIFACT_SHA256_OVERRIDES');
  const x64 = resolveArtifact(NODE, 'x64', mirror, overrides);
  const arm64 = resolveArtifact(NODE, 'arm64', mirror, overrides);
  for (const a of [x64, arm64])
    if (a.overriddenFrom)
      log.warn(
        `checksum of ${a.name} ${a.version} (${a.arch}) overridden: ${a.sha256} instead of the pinned ${a.overriddenFrom}`,
      );
  if (server.node === `v${NODE.version}`) log.info(`  = Node.js unchanged v${NODE.version}`);
  else {
    const node = await helper(
      ctx,
      ['ensure-node', REMOTE.node, NODE.version, x64.url, x64.sha256, arm64.url, arm64.sha256],
      { allowFail: true },
    );
    if (node.exitCode !== 0)
      throw new OperationError(`installing Node.js ${NODE.version} on the server failed`, {
        detail: node.stderr,
        hint: `check that the server can reach ${x64.url} (or set CODEXK8S_ARTIFACT_MIRROR)`,
      });
    const nodeOut = node.stdout.trim();
    const installed = nodeOut.startsWith('installed');
    if (installed) changed++;
    // An upgrade says from what, like the steps' journal lines; a first install keeps its own words.
    const line =
      installed && /^v\d/.test(server.node)
        ? moved('Node.js', server.node, `v${NODE.version}`, nodeOut)
        : `Node.js ${nodeOut}`;
    log.info(`  ${installed ? '+' : '='} ${line}`);
  }

  const tree = buildUploadTree(REPO_ROOT, generated);
  if (server.tree === tree.hash) log.info(`  = tree unchanged (${tree.files.length} files, ${tree.hash.slice(0, 12)})`);
  else {
    const dir = mkdtempSync(join(tmpdir(), 'ck8s-upload-'));
    let transfer = '';
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
      const bytes = statSync(tar).size;
      const t1 = performance.now();
      await helper(ctx, ['install-tree', REMOTE.base, tree.hash, ...tree.entries], { input: createReadStream(tar) });
      transfer = ` ${formatBytes(bytes)} in ${((performance.now() - t1) / 1000).toFixed(1)}s, ${formatBytes(bytes / Math.max(0.001, (performance.now() - t1) / 1000))}/s;`;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    changed++;
    log.info(`  + tree uploaded (${tree.files.length} files,${transfer} ${tree.hash.slice(0, 12)})`);
  }

  const envText = serializeServerEnv(cfg);
  const envHash = createHash('sha256').update(envText).digest('hex');
  let settingsFile: string = REMOTE.envFile;
  if (server.env === envHash) log.info(`  = ${REMOTE.envFile} unchanged`);
  else if (purpose !== 'run') {
    settingsFile = REMOTE.checkEnvFile;
    await helper(ctx, ['write-private', settingsFile], { input: envText });
    changed++;
    log.info(`  + ${settingsFile} written (0600, for this ${purpose} only; ${REMOTE.envFile} is left as it is)`);
  } else {
    await helper(ctx, ['write-private', REMOTE.envFile], { input: envText });
    changed++;
    log.info(`  + ${REMOTE.envFile} written (0600)`);
  }
  log.stepFooter({ status: changed ? 'changed' : 'unchanged', changed, seconds: (performance.now() - t0) / 1000 });
  return settingsFile;
}
