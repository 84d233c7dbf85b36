// The journal (/var/lib/codex-k8s-bootstrap/state.json): per step, the last status, times, what changed and
// the hash of the config it ran with. The remote step runner writes it; the launcher reads it for
// --from / --only and for the summary. Selection and resume rules are pure functions, tested without a server.
import { readFileSync, writeFileSync, renameSync, mkdirSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from './errors.mts';

/** `interrupted`: its run died while it ran (killed launcher, lost connection, reboot); the next run repeats it. */
export type StepStatus = 'running' | 'ok' | 'failed' | 'interrupted';

export interface StepRecord {
  status: StepStatus;
  startedAt: string;
  endedAt?: string;
  seconds?: number;
  changes: string[];
  configHash: string;
  runId: string;
  error?: string;
}

export interface Journal {
  version: 1;
  steps: Record<string, StepRecord>;
  /** The last runs of any step, newest last (bounded). */
  history: Array<{ step: string; status: StepStatus; at: string; runId: string; changed: number }>;
  /** What the tool wrote to GitHub (lib/github/wiring.mts). Optional: journals written before it existed stay valid. */
  github?: GitHubJournal;
  /** The last commit the deploy loop was proven for (80_deploy_loop_check). Optional, like `github`. */
  deployLoop?: DeployLoopRecord;
  /** The checkout of this tool that last converged a step from the launcher, with its pins (see ToolRecord). */
  tool?: ToolRecord;
}

/**
 * Which checkout of the tool last converged a step here (the launcher's git HEAD) and the pins it had. The launcher
 * refuses an OLDER checkout, one that would move a pin back without containing that commit (lib/launcher/run.mts).
 */
export interface ToolRecord {
  commit: string;
  pins: Record<string, string>;
  at: string;
}

/**
 * A green staging-deploy run followed by passing smoke checks from the server, for one commit of the default branch.
 * 80_deploy_loop_check reports no drift only while this is the newest commit deployed (a push to main makes it stale)
 * and the tool's pins are still the ones it was proven with (an upgrade makes it stale too).
 */
export interface DeployLoopRecord {
  /** owner/name */
  repo: string;
  branch: string;
  /** The commit the run deployed and the smoke checks found live (40 hex). */
  headSha: string;
  runId: number;
  runUrl: string;
  /** The URL the smoke checks used. */
  smokeUrl: string;
  provenAt: string;
  /**
   * The pins (lib/versions.mts pinVersions: name -> version) the loop was proven with. Optional: records written
   * before it existed stay readable, and 80_deploy_loop_check treats them as drift.
   */
  pins?: Record<string, string>;
}

/** A secret this tool wrote: GitHub secrets are write-only, so a keyed hash of the value says whether to write again. */
export interface GitHubSecretRecord {
  /** HMAC-SHA256(salt, "secret" \0 name \0 value). */
  fingerprint: string;
  /** GitHub's updated_at right after our write; another value later means someone changed it by hand. */
  updatedAt?: string;
  /** true when this tool created it (only then may it delete it). */
  created: boolean;
  /**
   * Journaled before the PUT and cleared once its read-back confirms it: a run that stopped in between still owns
   * what it may have created, and the next run writes the value again (it cannot know whether GitHub has it).
   */
  pending?: true;
}

export interface GitHubWebhookRecord {
  id: number;
  url: string;
  /** HMAC-SHA256(salt, "webhook" \0 secret): GitHub never shows a hook's secret again. */
  secretFingerprint: string;
  created: boolean;
}

/** The names this tool manages in one repository. Only names it created are ever deleted. */
export interface GitHubJournal {
  /**
   * GitHub's canonical full_name (owner/name as GitHub spells it) of the repository the names below belong to.
   * Journals written before `repoId` existed hold the configured string here, in whatever case it was typed.
   */
  repo: string;
  /** GitHub's repository id: what identifies the repository (it survives renames and the case of the setting). */
  repoId?: number;
  /** Random key of the fingerprints (per server). */
  salt: string;
  /** Variables this tool created. */
  variables: string[];
  secrets: Record<string, GitHubSecretRecord>;
  webhooks: GitHubWebhookRecord[];
  /**
   * URLs of webhooks whose create was sent but whose answer (the id) never came back: a hook with such a URL that
   * the journal does not know is the one this tool created, so it is adopted as created, and deleted when unused.
   */
  pendingWebhooks?: string[];
}

const HISTORY_LIMIT = 200;

export function emptyJournal(): Journal {
  return { version: 1, steps: {}, history: [] };
}

export function parseJournal(text: string): Journal {
  if (text.trim() === '') return emptyJournal();
  const j = JSON.parse(text) as Partial<Journal>;
  if (j.version !== 1 || typeof j.steps !== 'object' || j.steps === null) throw new Error('not a version 1 journal');
  const out: Journal = { version: 1, steps: j.steps, history: Array.isArray(j.history) ? j.history : [] };
  if (j.github !== undefined) out.github = parseGitHubJournal(j.github);
  if (j.deployLoop !== undefined) out.deployLoop = parseDeployLoop(j.deployLoop);
  if (j.tool !== undefined) out.tool = parseTool(j.tool);
  return out;
}

function parseTool(t: unknown): ToolRecord {
  const x = t as Partial<ToolRecord> | null;
  if (!x || typeof x.commit !== 'string' || !/^[0-9a-f]{40}$/.test(x.commit) || typeof x.at !== 'string')
    throw new Error('the tool section is not {commit (40 hex digits), pins, at}');
  return { commit: x.commit, pins: parsePins(x.pins, 'tool'), at: x.at };
}

function parseDeployLoop(d: unknown): DeployLoopRecord {
  const x = d as Partial<DeployLoopRecord> | null;
  const strings = ['repo', 'branch', 'headSha', 'runUrl', 'smokeUrl', 'provenAt'] as const;
  if (!x || strings.some((k) => typeof x[k] !== 'string') || typeof x.runId !== 'number')
    throw new Error('the deployLoop section is not {repo, branch, headSha, runId, runUrl, smokeUrl, provenAt}');
  return {
    repo: x.repo!,
    branch: x.branch!,
    headSha: x.headSha!,
    runId: x.runId,
    runUrl: x.runUrl!,
    smokeUrl: x.smokeUrl!,
    provenAt: x.provenAt!,
    ...(x.pins !== undefined ? { pins: parsePins(x.pins, 'deployLoop') } : {}),
  };
}

function parsePins(p: unknown, section: string): Record<string, string> {
  if (typeof p !== 'object' || p === null || Array.isArray(p) || Object.values(p).some((v) => typeof v !== 'string'))
    throw new Error(`the ${section} section's pins is not an object of name: version strings`);
  return p as Record<string, string>;
}

function parseGitHubJournal(g: unknown): GitHubJournal {
  const x = g as Partial<GitHubJournal> | null;
  if (
    !x ||
    typeof x.repo !== 'string' ||
    typeof x.salt !== 'string' ||
    !Array.isArray(x.variables) ||
    typeof x.secrets !== 'object' ||
    x.secrets === null ||
    !Array.isArray(x.webhooks)
  )
    throw new Error('the github section is not {repo, salt, variables, secrets, webhooks}');
  if (x.repoId !== undefined && !Number.isSafeInteger(x.repoId))
    throw new Error("the github section's repoId is not an integer");
  if (
    x.pendingWebhooks !== undefined &&
    (!Array.isArray(x.pendingWebhooks) || x.pendingWebhooks.some((u) => typeof u !== 'string'))
  )
    throw new Error("the github section's pendingWebhooks is not a list of URLs");
  return {
    repo: x.repo,
    ...(x.repoId !== undefined ? { repoId: x.repoId } : {}),
    salt: x.salt,
    variables: x.variables,
    secrets: x.secrets,
    webhooks: x.webhooks,
    ...(x.pendingWebhooks?.length ? { pendingWebhooks: x.pendingWebhooks } : {}),
  };
}

export function readJournal(path: string): Journal {
  if (!existsSync(path)) return emptyJournal();
  return parseJournal(readFileSync(path, 'utf8'));
}

/** Atomic: a crash mid-write leaves the previous journal intact. */
export function writeJournal(path: string, j: Journal): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(j, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, path);
}

export function recordStep(j: Journal, step: string, rec: StepRecord): Journal {
  const steps = { ...j.steps, [step]: rec };
  const history =
    rec.status === 'running'
      ? j.history
      : [
          ...j.history,
          { step, status: rec.status, at: rec.endedAt ?? rec.startedAt, runId: rec.runId, changed: rec.changes.length },
        ].slice(-HISTORY_LIMIT);
  return { ...j, version: 1, steps, history };
}

/** The journal without the step's record (its --uninstall removed what it made); its history stays. */
export function forgetStep(j: Journal, step: string): Journal {
  if (!(step in j.steps)) return j;
  const steps = { ...j.steps };
  delete steps[step];
  return { ...j, steps };
}

/**
 * The steps a dead run left `running` become `interrupted` (called once its lock was taken over). Returns the
 * journal unchanged (the same object) when that run left nothing running.
 */
export function markInterrupted(j: Journal, runId: string, at: string): { journal: Journal; steps: string[] } {
  const steps = Object.entries(j.steps)
    .filter(([, r]) => r.status === 'running' && (runId === '' || r.runId === runId))
    .map(([n]) => n);
  let out = j;
  for (const name of steps) {
    const rec = out.steps[name] as StepRecord;
    out = recordStep(out, name, {
      ...rec,
      status: 'interrupted',
      endedAt: at,
      error: `interrupted: run ${rec.runId} ended while this step ran (its launcher or connection died); the next run repeats it`,
    });
  }
  return { journal: out, steps };
}

/** Accepts the full name (10_harden_host), its number (10) or its words (harden_host). */
export function resolveStepName(all: readonly string[], given: string, flag: string): string {
  const g = given.trim();
  const hit = all.find((n) => n === g || n.split('_')[0] === g || n.slice(n.indexOf('_') + 1) === g);
  if (!hit) throw new UsageError(`${flag}: "${given}" is not a step; expected one of: ${all.join(', ')}`);
  return hit;
}

export interface Selection {
  from?: string;
  only?: readonly string[];
}

/** The steps a run executes, in catalogue order. */
export function selectSteps(all: readonly string[], sel: Selection): string[] {
  if (sel.from !== undefined && sel.only !== undefined)
    throw new UsageError('--from and --only cannot be combined; expected one of them');
  if (sel.only !== undefined) {
    const wanted = new Set(sel.only.map((s) => resolveStepName(all, s, '--only')));
    return all.filter((n) => wanted.has(n));
  }
  if (sel.from !== undefined) {
    const start = resolveStepName(all, sel.from, '--from');
    return all.slice(all.indexOf(start));
  }
  return [...all];
}

/**
 * Every selected step relies on all the steps before it in the catalogue. Those this run does not execute (skipped
 * by --from / --only, including gaps between two --only steps) must have succeeded on this server before. Returns
 * problems (refuse to run) and warnings (ran with another config).
 */
export function checkPrerequisites(
  all: readonly string[],
  selected: readonly string[],
  j: Journal,
  configHash: string,
): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  const chosen = new Set(selected);
  const last = Math.max(-1, ...selected.map((n) => all.indexOf(n)));
  for (const [i, name] of all.slice(0, last + 1).entries()) {
    if (chosen.has(name)) continue;
    // The first selected step after this one is the one that needs it.
    const needer = all.slice(i + 1).find((n) => chosen.has(n)) as string;
    const rec = j.steps[name];
    if (!rec)
      problems.push(
        `${name} has never run on this server; it must succeed before ${needer}. Run without --from/--only, or with --from ${name}`,
      );
    else if (rec.status !== 'ok')
      problems.push(
        `${name} is ${rec.status} on this server (since ${rec.endedAt ?? rec.startedAt}); it must succeed before ${needer}. Resume with --from ${name}`,
      );
    else if (rec.configHash !== configHash)
      warnings.push(
        `${name} last succeeded with a different configuration (config hash ${rec.configHash}, now ${configHash}); consider --from ${name}`,
      );
  }
  return { problems, warnings };
}

/** What the launcher learns about the server in its first round trip (remote_helpers.sh begin). */
export interface ServerState {
  /** Version stamp of the installed Node.js runtime ("v24.19.0"), or "" when absent. */
  node: string;
  /** Hash of the uploaded tree, or "". */
  tree: string;
  /** sha256 of bootstrap.env, or "". */
  env: string;
  journal: Journal;
}

const JOURNAL_SEPARATOR = '--- journal';

/** Splits the output of `begin` (after its first line, "acquired") and of `finish` (after its first line). */
export function parseServerState(stdout: string): ServerState {
  const at = stdout.indexOf(`\n${JOURNAL_SEPARATOR}\n`);
  if (at < 0) throw new Error(`no journal section in the server's answer: ${stdout.slice(0, 200)}`);
  const kv: Record<string, string> = {};
  for (const line of stdout.slice(0, at).split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return {
    node: kv['node'] ?? '',
    tree: kv['tree'] ?? '',
    env: kv['env'] ?? '',
    journal: parseJournal(stdout.slice(at + JOURNAL_SEPARATOR.length + 2)),
  };
}
