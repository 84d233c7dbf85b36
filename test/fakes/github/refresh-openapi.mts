// Refreshes test/fakes/github/openapi-fixture.json: the few GitHub REST operations the bootstrap uses, cut out of
// GitHub's own OpenAPI description (the npm package @octokit/openapi, 385 MB unpacked, so it is NOT a dependency).
//
//   node --import tsx test/fakes/github/refresh-openapi.mts                # npm-installs it into a temp dir
//   node --import tsx test/fakes/github/refresh-openapi.mts --from DIR     # DIR/node_modules/@octokit/openapi exists
//   ... --version 23.0.2                                                   # another release of the package
//
// The fake GitHub API (server.mts) serves exactly the operations in the fixture and validates every request body
// (and the fake's own 2xx answers, where the schema is small) against these schemas with ajv. To use a new
// endpoint: add it to OPERATIONS below, run this script, then add its handler in server.mts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
export const FIXTURE = join(HERE, 'openapi-fixture.json');
const SPEC = 'api.github.com.deref.json';
/** Response schemas bigger than this are left out (GET /repos/{owner}/{repo} alone is ~90 kB). */
const MAX_RESPONSE_SCHEMA = 20_000;

/** Every operation the bootstrap (lib/github/, lib/actions.mts, steps 60, 70 and 80) calls. */
export const OPERATIONS: ReadonlyArray<readonly [string, string]> = [
  ['get', '/repos/{owner}/{repo}'],
  ['get', '/repos/{owner}/{repo}/actions/variables'],
  ['post', '/repos/{owner}/{repo}/actions/variables'],
  ['get', '/repos/{owner}/{repo}/actions/variables/{name}'],
  ['patch', '/repos/{owner}/{repo}/actions/variables/{name}'],
  ['delete', '/repos/{owner}/{repo}/actions/variables/{name}'],
  ['get', '/repos/{owner}/{repo}/actions/secrets'],
  ['get', '/repos/{owner}/{repo}/actions/secrets/public-key'],
  ['get', '/repos/{owner}/{repo}/actions/secrets/{secret_name}'],
  ['put', '/repos/{owner}/{repo}/actions/secrets/{secret_name}'],
  ['delete', '/repos/{owner}/{repo}/actions/secrets/{secret_name}'],
  ['get', '/repos/{owner}/{repo}/hooks'],
  ['post', '/repos/{owner}/{repo}/hooks'],
  ['get', '/repos/{owner}/{repo}/hooks/{hook_id}'],
  ['patch', '/repos/{owner}/{repo}/hooks/{hook_id}'],
  ['delete', '/repos/{owner}/{repo}/hooks/{hook_id}'],
  ['get', '/repos/{owner}/{repo}/actions/workflows'],
  ['get', '/repos/{owner}/{repo}/actions/runners'],
  ['post', '/repos/{owner}/{repo}/actions/runners/registration-token'],
  // --uninstall: a runner of our scale set that GitHub still lists once the scale set is gone.
  ['delete', '/repos/{owner}/{repo}/actions/runners/{runner_id}'],
  // 80_deploy_loop_check: dispatch staging-deploy.yml, find and follow its run, read its jobs.
  ['post', '/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches'],
  ['get', '/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs'],
  ['get', '/repos/{owner}/{repo}/actions/runs/{run_id}'],
  ['get', '/repos/{owner}/{repo}/actions/runs/{run_id}/jobs'],
  // The launcher's runner-freshness check: the releases of actions/runner.
  ['get', '/repos/{owner}/{repo}/releases'],
  // --restore-from github:latest | github:RUN_ID: the nightly backup's artifact (staging-backup.yml).
  ['get', '/repos/{owner}/{repo}/actions/artifacts'],
  ['get', '/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts'],
  ['get', '/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}'],
];

export interface FixtureParameter {
  name: string;
  in: string;
  required: boolean;
  schema: unknown;
}

export interface FixtureOperation {
  method: string;
  path: string;
  operationId: string;
  summary: string;
  docs: string;
  parameters: FixtureParameter[];
  /** JSON schema of the request body, when the operation takes one. */
  requestBody?: { required: boolean; schema: unknown };
  /** Status codes GitHub documents for the operation. */
  statuses: string[];
  /** JSON schemas of the 2xx answers, by status; absent when too large (see responsesOmitted). */
  responses: Record<string, unknown>;
  responsesOmitted?: string[];
}

export interface Fixture {
  source: { package: string; version: string; spec: string; refreshedAt: string };
  operations: FixtureOperation[];
}

interface OpenApiOperation {
  operationId: string;
  summary?: string;
  externalDocs?: { url?: string };
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>;
  requestBody?: { required?: boolean; content?: Record<string, { schema?: unknown }> };
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

/** Removes what only documents (descriptions, examples): the fixture stays small and diffs stay readable. */
function strip(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(strip);
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === 'description' || k === 'example' || k === 'examples' || k === 'title') continue;
    out[k] = strip(x);
  }
  return out;
}

export function extract(spec: { paths: Record<string, Record<string, OpenApiOperation>> }, version: string): Fixture {
  const operations: FixtureOperation[] = [];
  for (const [method, path] of OPERATIONS) {
    const op = spec.paths[path]?.[method];
    if (!op) throw new Error(`${method.toUpperCase()} ${path} is not in ${SPEC} of @octokit/openapi ${version}`);
    const body = op.requestBody?.content?.['application/json']?.schema;
    const responses: Record<string, unknown> = {};
    const omitted: string[] = [];
    for (const [status, r] of Object.entries(op.responses)) {
      if (!/^2\d\d$/.test(status)) continue;
      const schema = r.content?.['application/json']?.schema;
      if (schema === undefined) continue;
      const s = strip(schema);
      if (JSON.stringify(s).length > MAX_RESPONSE_SCHEMA) omitted.push(status);
      else responses[status] = s;
    }
    operations.push({
      method: method.toUpperCase(),
      path,
      operationId: op.operationId,
      summary: op.summary ?? '',
      docs: op.externalDocs?.url ?? '',
      parameters: (op.parameters ?? []).map((p) => ({
        name: p.name,
        in: p.in,
        required: p.required ?? false,
        schema: strip(p.schema ?? {}),
      })),
      ...(body !== undefined
        ? { requestBody: { required: op.requestBody?.required ?? false, schema: strip(body) } }
        : {}),
      statuses: Object.keys(op.responses),
      responses,
      ...(omitted.length ? { responsesOmitted: omitted } : {}),
    });
  }
  return {
    source: { package: '@octokit/openapi', version, spec: SPEC, refreshedAt: new Date().toISOString().slice(0, 10) },
    operations,
  };
}

if (import.meta.filename === process.argv[1]) {
  const { values } = parseArgs({ options: { from: { type: 'string' }, version: { type: 'string' } }, strict: true });
  let dir = values.from;
  let temp: string | undefined;
  if (!dir) {
    temp = mkdtempSync(join(tmpdir(), 'octokit-openapi-'));
    dir = temp;
    const pkg = `@octokit/openapi${values.version ? `@${values.version}` : ''}`;
    process.stderr.write(`installing ${pkg} into ${temp} (about 385 MB) ...\n`);
    writeFileSync(join(temp, 'package.json'), '{"private":true}\n');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', pkg], {
      cwd: temp,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }
  try {
    const root = join(dir, 'node_modules', '@octokit', 'openapi');
    if (!existsSync(join(root, 'generated', SPEC))) throw new Error(`${root}/generated/${SPEC} not found`);
    const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
    const fixture = extract(JSON.parse(readFileSync(join(root, 'generated', SPEC), 'utf8')), version);
    writeFileSync(FIXTURE, JSON.stringify(fixture, null, 1) + '\n');
    process.stderr.write(
      `wrote ${FIXTURE}: ${fixture.operations.length} operations from @octokit/openapi ${version}\n`,
    );
  } finally {
    if (temp) rmSync(temp, { recursive: true, force: true });
  }
}
