// A small interpreter for GitHub Actions workflows, for tests: it runs the `run:` blocks of each job with bash, in
// order, the way the runner does, so a test can execute a workflow against the doubles (kubectl) and a local app
// instead of only linting it. Deliberately narrow: whatever it does not know is a test error, never a guess.
//
//   jobs       in `needs` order; a job whose needs did not all succeed is skipped; a job-level `if:` may only
//              compare repository variables with strings: vars.X != '' (or ==), joined by &&
//   steps      `run:` with bash -eo pipefail (the runner's default shell), cwd = the job's workspace;
//              `uses:` replaced by a stand-in the test gives, looked up by the step's id, else by the action's name
//              (`actions/checkout`), and refused when none is given; a stand-in given for a step id replaces a
//              `run:` step too (a download the test machine cannot make)
//   if:        absent (= success()), success(), failure(), always()
//   ${{ }}     in env:, outputs:, runs-on: only, and only vars.X, secrets.X, github.sha, needs.J.outputs.O,
//              steps.S.outputs.O, env.X
//   files      GITHUB_OUTPUT, GITHUB_ENV (name=value and name<<DELIM heredocs), GITHUB_PATH, GITHUB_STEP_SUMMARY,
//              fresh per step, read after it (whatever its result, like the runner)
//   env        the runner's environment, then GitHub's default variables, then workflow, job and step `env:`
//              (later wins), with what earlier steps wrote to GITHUB_ENV before the job and step `env:`
// Refused: shell:, working-directory:, continue-on-error:, container:, services:, strategy:, other job-level if:,
// expressions inside run: (the workflows pass them through env:, which is also what keeps secrets out of scripts).
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export interface StandInContext {
  job: string;
  step: StepSpec;
  workspace: string;
  /** The step's environment, as a run: block would get it. */
  env: Record<string, string>;
  addPath(dir: string): void;
  setOutput(name: string, value: string): void;
  summary(markdown: string): void;
  log(line: string): void;
}

export type StandIn = (ctx: StandInContext) => void | Promise<void>;

export interface WorkflowRunOptions {
  file: string;
  vars: Record<string, string>;
  secrets: Record<string, string>;
  github: { sha: string; eventName: string; event?: unknown; repository?: string; ref?: string };
  /** The runner machine's environment (PATH, HOME, RUNNER_NAME, ...). */
  runnerEnv: Record<string, string>;
  /** By step id, or by action name without the @ref. */
  standIns: Record<string, StandIn>;
  /** Where job workspaces and temp dirs are made. */
  workDir: string;
  /** Per step (default 120 s). */
  stepTimeoutMs?: number;
}

export interface StepSpec {
  id?: string;
  name?: string;
  run?: string;
  uses?: string;
  if?: string;
  env?: Record<string, string>;
  with?: Record<string, unknown>;
}

export interface StepResult {
  job: string;
  step: string;
  id?: string;
  outcome: 'success' | 'failure' | 'skipped';
  exitCode?: number;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
}

export interface JobResult {
  name: string;
  result: 'success' | 'failure' | 'skipped';
  runsOn?: string;
  outputs: Record<string, string>;
  steps: StepResult[];
  /** Everything the job's steps wrote to GITHUB_STEP_SUMMARY. */
  summary: string;
}

export interface WorkflowResult {
  jobs: Record<string, JobResult>;
  /** Every step's stdout and stderr, in order, as the run's log would show it (unmasked: a test checks secrets). */
  log: string;
}

interface JobSpec {
  needs?: string | string[];
  'runs-on'?: string;
  env?: Record<string, string>;
  outputs?: Record<string, string>;
  steps: StepSpec[];
  [key: string]: unknown;
}

const JOB_KEYS = new Set([
  'needs',
  'if',
  'runs-on',
  'env',
  'outputs',
  'steps',
  'timeout-minutes',
  'name',
  'permissions',
]);
const STEP_KEYS = new Set(['id', 'name', 'run', 'uses', 'if', 'env', 'with', 'timeout-minutes']);

export class WorkflowTestError extends Error {}

/** Parses a GITHUB_OUTPUT / GITHUB_ENV file: name=value lines and name<<DELIM ... DELIM blocks. */
export function parseCommandFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line === '') continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delim] = heredoc as unknown as [string, string, string];
      const body: string[] = [];
      i++;
      while (i < lines.length && lines[i] !== delim) body.push(lines[i++] as string);
      if (i >= lines.length) throw new WorkflowTestError(`unterminated ${name}<<${delim} in a command file`);
      out[name] = body.join('\n');
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new WorkflowTestError(`bad command file line ${JSON.stringify(line)}`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

interface Scope {
  vars: Record<string, string>;
  secrets: Record<string, string>;
  sha: string;
  needs: Record<string, JobResult>;
  steps: Record<string, Record<string, string>>;
  /** Ids of every step of the job (a skipped or failed step has no outputs: they read as ''). */
  stepIds?: ReadonlySet<string>;
  env: Record<string, string>;
}

/** Replaces each ${{ expr }} of `text`; only the simple references the workflows use are known. */
export function evaluate(text: string, s: Scope, where: string): string {
  return text.replace(/\$\{\{\s*(.*?)\s*\}\}/gs, (_m, expr: string) => {
    let m: RegExpExecArray | null;
    if ((m = /^vars\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(expr))) return s.vars[m[1] as string] ?? '';
    if ((m = /^secrets\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(expr))) return s.secrets[m[1] as string] ?? '';
    if (expr === 'github.sha') return s.sha;
    if ((m = /^env\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(expr))) return s.env[m[1] as string] ?? '';
    if ((m = /^needs\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)$/.exec(expr))) {
      const job = s.needs[m[1] as string];
      if (!job) throw new WorkflowTestError(`${where}: ${expr}: job ${m[1]} is not in needs`);
      return job.outputs[m[2] as string] ?? '';
    }
    if ((m = /^steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)$/.exec(expr))) {
      const step = s.steps[m[1] as string];
      if (!step && !s.stepIds?.has(m[1] as string))
        throw new WorkflowTestError(`${where}: ${expr}: no step with id ${m[1]}`);
      return step?.[m[2] as string] ?? '';
    }
    throw new WorkflowTestError(`${where}: the expression \${{ ${expr} }} is not one the test interpreter knows`);
  });
}

function evalMap(map: Record<string, unknown> | undefined, s: Scope, where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(map ?? {})) out[k] = evaluate(String(v), s, `${where} ${k}`);
  return out;
}

/** A job-level `if:`: `vars.X != 'literal'` or `vars.X == 'literal'`, or several of them joined by `&&`. */
export function jobCondition(cond: string | undefined, vars: Record<string, string>, where: string): boolean {
  if (cond === undefined) return true;
  const c = cond.trim().replace(/^\$\{\{\s*(.*?)\s*\}\}$/s, '$1');
  return c.split('&&').every((part) => {
    const m = /^vars\.([A-Za-z_][A-Za-z0-9_]*)\s*(!=|==)\s*'([^']*)'$/.exec(part.trim());
    if (!m)
      throw new WorkflowTestError(
        `${where}: if: ${cond} is not one the test interpreter knows (vars.X != '...' [&& ...])`,
      );
    const equal = (vars[m[1] as string] ?? '') === m[3];
    return m[2] === '==' ? equal : !equal;
  });
}

/** Whether a step runs, given its `if:` and whether an earlier step of the job failed. */
export function shouldRun(cond: string | undefined, failedBefore: boolean, where: string): boolean {
  const c = (cond ?? 'success()').trim().replace(/^\$\{\{\s*(.*?)\s*\}\}$/s, '$1');
  if (c === 'success()') return !failedBefore;
  if (c === 'failure()') return failedBefore;
  if (c === 'always()') return true;
  throw new WorkflowTestError(
    `${where}: if: ${cond} is not one the test interpreter knows (success(), failure(), always())`,
  );
}

function order(jobs: Record<string, JobSpec>): string[] {
  const done: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (done.includes(name)) return;
    if (path.includes(name)) throw new WorkflowTestError(`needs cycle: ${[...path, name].join(' -> ')}`);
    const job = jobs[name];
    if (!job) throw new WorkflowTestError(`unknown job ${name} in needs`);
    for (const n of needsOf(job)) visit(n, [...path, name]);
    done.push(name);
  };
  for (const name of Object.keys(jobs)) visit(name, []);
  return done;
}

function needsOf(job: JobSpec): string[] {
  return job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs];
}

function runBash(
  script: string,
  cwd: string,
  env: Record<string, string>,
  timeoutMs: number,
  dir: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = join(dir, `step-${Date.now()}-${Math.random().toString(36).slice(2)}.sh`);
  writeFileSync(file, script);
  return new Promise((resolve, reject) => {
    // The runner's bash: `bash --noprofile --norc -eo pipefail {0}`.
    const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', file], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 124 : 1),
        stdout,
        stderr: stderr + (signal ? `\n(killed by ${signal} after ${timeoutMs} ms)` : ''),
      });
    });
  });
}

export async function runWorkflow(opts: WorkflowRunOptions): Promise<WorkflowResult> {
  const wf = parse(readFileSync(opts.file, 'utf8')) as { env?: Record<string, string>; jobs: Record<string, JobSpec> };
  const results: Record<string, JobResult> = {};
  let log = '';
  const eventFile = join(mkdtempSync(join(opts.workDir, 'event-')), 'event.json');
  writeFileSync(eventFile, JSON.stringify(opts.github.event ?? {}));

  for (const name of order(wf.jobs)) {
    const job = wf.jobs[name] as JobSpec;
    for (const k of Object.keys(job))
      if (!JOB_KEYS.has(k))
        throw new WorkflowTestError(`job ${name}: ${k}: is not something the test interpreter runs`);
    const needs: Record<string, JobResult> = {};
    for (const n of needsOf(job)) needs[n] = results[n] as JobResult;
    const result: JobResult = { name, result: 'success', outputs: {}, steps: [], summary: '' };
    results[name] = result;
    if (
      Object.values(needs).some((n) => n.result !== 'success') ||
      !jobCondition(job['if'] as string | undefined, opts.vars, `job ${name}`)
    ) {
      result.result = 'skipped';
      continue;
    }
    const root = mkdtempSync(join(opts.workDir, `job-${name}-`));
    const workspace = join(root, 'workspace');
    const temp = join(root, 'runner-temp');
    mkdirSync(workspace);
    mkdirSync(temp);
    const stepIds = new Set(job.steps.map((st) => st.id).filter((id): id is string => id !== undefined));
    const scope: Scope = {
      vars: opts.vars,
      secrets: opts.secrets,
      sha: opts.github.sha,
      needs,
      steps: {},
      stepIds,
      env: {},
    };
    result.runsOn = evaluate(String(job['runs-on'] ?? ''), scope, `job ${name} runs-on`);
    const defaults: Record<string, string> = {
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_SHA: opts.github.sha,
      GITHUB_EVENT_NAME: opts.github.eventName,
      GITHUB_EVENT_PATH: eventFile,
      GITHUB_JOB: name,
      GITHUB_REPOSITORY: opts.github.repository ?? 'codex-k8s/staging',
      GITHUB_REF: opts.github.ref ?? 'refs/heads/main',
      GITHUB_WORKSPACE: workspace,
      RUNNER_TEMP: temp,
    };
    const workflowEnv = evalMap(wf.env, scope, 'workflow env');
    scope.env = { ...workflowEnv };
    const jobEnv = evalMap(job.env, { ...scope }, `job ${name} env`);
    scope.env = { ...workflowEnv, ...jobEnv };
    const fromGithubEnv: Record<string, string> = {};
    const paths: string[] = [];
    let failed = false;

    for (const [i, step] of job.steps.entries()) {
      const label = step.name ?? step.id ?? step.uses ?? `#${i + 1}`;
      const where = `job ${name}, step ${label}`;
      for (const k of Object.keys(step))
        if (!STEP_KEYS.has(k))
          throw new WorkflowTestError(`${where}: ${k}: is not something the test interpreter runs`);
      const sr: StepResult = {
        job: name,
        step: label,
        ...(step.id ? { id: step.id } : {}),
        outcome: 'skipped',
        stdout: '',
        stderr: '',
        outputs: {},
      };
      result.steps.push(sr);
      if (!shouldRun(step.if, failed, where)) continue;
      if (step.run !== undefined && /\$\{\{/.test(step.run))
        throw new WorkflowTestError(`${where}: an expression inside run: (pass it through env:)`);
      const files = {
        GITHUB_OUTPUT: join(temp, `output-${i}`),
        GITHUB_ENV: join(temp, `env-${i}`),
        GITHUB_PATH: join(temp, `path-${i}`),
        GITHUB_STEP_SUMMARY: join(temp, `summary-${i}`),
      };
      for (const f of Object.values(files)) writeFileSync(f, '');
      const stepEnv = evalMap(step.env, { ...scope, env: { ...scope.env, ...fromGithubEnv } }, where);
      const basePath = opts.runnerEnv['PATH'] ?? '/usr/bin:/bin';
      const env: Record<string, string> = {
        ...opts.runnerEnv,
        ...defaults,
        ...scope.env,
        ...fromGithubEnv,
        ...stepEnv,
        ...files,
        PATH: [...paths.slice().reverse(), basePath].join(':'),
      };
      let code = 0;
      const standIn =
        (step.id ? opts.standIns[step.id] : undefined) ??
        (step.uses ? opts.standIns[step.uses.split('@')[0] as string] : undefined);
      if (step.run !== undefined && !standIn) {
        const r = await runBash(step.run, workspace, env, opts.stepTimeoutMs ?? 120_000, temp);
        code = r.code;
        sr.stdout = r.stdout;
        sr.stderr = r.stderr;
      } else if (standIn || step.uses !== undefined) {
        if (!standIn) throw new WorkflowTestError(`${where}: uses: ${step.uses} has no stand-in in this test`);
        try {
          await standIn({
            job: name,
            step,
            workspace,
            env,
            addPath: (d) => appendFileSync(files.GITHUB_PATH, `${d}\n`),
            setOutput: (k, v) => appendFileSync(files.GITHUB_OUTPUT, `${k}=${v}\n`),
            summary: (md) => appendFileSync(files.GITHUB_STEP_SUMMARY, md),
            log: (l) => (sr.stdout += `${l}\n`),
          });
        } catch (e) {
          code = 1;
          sr.stderr = `${(e as Error).message}\n`;
        }
      } else {
        throw new WorkflowTestError(`${where}: neither run: nor uses:`);
      }
      sr.exitCode = code;
      sr.outcome = code === 0 ? 'success' : 'failure';
      if (code !== 0) failed = true;
      // Processed whatever the step's result, as the runner does.
      sr.outputs = parseCommandFile(readFileSync(files.GITHUB_OUTPUT, 'utf8'));
      if (step.id) scope.steps[step.id] = sr.outputs;
      Object.assign(fromGithubEnv, parseCommandFile(readFileSync(files.GITHUB_ENV, 'utf8')));
      paths.push(
        ...readFileSync(files.GITHUB_PATH, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== ''),
      );
      result.summary += readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8');
      log += `##[group]${name} / ${label} (exit ${code})\n${sr.stdout}${sr.stderr}##[endgroup]\n`;
    }
    result.result = failed ? 'failure' : 'success';
    result.outputs = evalMap(job.outputs, scope, `job ${name} outputs`);
  }
  return { jobs: results, log };
}

// ---------------------------------------------------------------------------------------------------------------
// What the workflow tests share

/** A bin directory like the ARC runner image's, under `work`: the system tools, but no node (setup-node brings it). */
export function runnerBin(work: string): string {
  const bin = join(work, 'runner-bin');
  mkdirSync(bin, { recursive: true });
  for (const d of ['/usr/bin', '/bin'])
    for (const name of readdirSync(d)) {
      if (/^(node|nodejs|npm|npx|corepack)$/.test(name) || existsSync(join(bin, name))) continue;
      symlinkSync(join(d, name), join(bin, name));
    }
  return bin;
}

/**
 * actions/checkout's stand-in: the repository's files at this commit (the tree of `repoRoot` without node_modules,
 * .git and test output) in the job's workspace. The workflows check out without persisted credentials.
 */
export function checkoutStandIn(repoRoot: string): StandIn {
  return async ({ workspace, step }) => {
    if (step.with?.['persist-credentials'] !== false)
      throw new WorkflowTestError('actions/checkout without persist-credentials: false');
    await new Promise<void>((resolve, reject) => {
      const c = spawn('bash', [
        '-c',
        'tar -C "$1" --exclude=./node_modules --exclude=./.git --exclude=./test/.out -c . | tar -C "$2" -x',
        'copy',
        repoRoot,
        workspace,
      ]);
      c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`copying the checkout failed (${code})`))));
    });
  };
}
