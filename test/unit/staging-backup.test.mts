// .github/workflows/staging-backup.yml, executed: test/workflow-runner.mts runs its run: blocks with bash against the
// kubectl double, whose exec into postgres-0 reaches a real PostgreSQL (test/pg) holding rows. The `uses:` steps have
// stand-ins (checkout copies the tree, setup-node puts the server's Node 24 on PATH, npm ci links this repository's
// node_modules, the kubectl download puts the double on PATH, upload-artifact hands the file to the fake GitHub as
// the zip GitHub would keep). The artifact is then fetched the way `--restore-from github:latest` does and opened
// with the age identity: its manifest and parts must be the database's rows and the pod's credentials. Every
// kubectl call the run made must be allowed by the Role codex-k8s-backup, which allows nothing else.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { checkoutStandIn, runWorkflow, runnerBin } from '../workflow-runner.mts';
import type { StandIn, StepSpec, WorkflowResult } from '../workflow-runner.mts';
import { SERVER_NODE_BIN, REPO_ROOT, FAKES_DIR, newStateDir, seedCluster, runDouble } from '../fakes/testkit.mts';
import { readCalls } from '../fakes/lib/recorder.mts';
import { POSTGRES_ROUTE_FILE } from '../fakes/lib/postgres-exec.mts';
import { startPostgres } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';
import { startFakeGitHub } from '../fakes/github/server.mts';
import type { FakeGitHub } from '../fakes/github/server.mts';
import { zipArchive } from '../fakes/zip-writer.mts';
import { CaptureLog } from '../capture-log.mts';
import { NODE, WORKFLOW_KUBECTL } from '../../bootstrap/lib/versions.mts';
import { NAMES } from '../../bootstrap/lib/manifests.mts';
import { clusterObjects } from '../../bootstrap/remote/30_cluster_deps.mts';
import { credentialsSecret, postgresObjects } from '../../bootstrap/remote/40_postgres.mts';
import { runnerObjects } from '../../bootstrap/remote/60_runner_arc.mts';
import { BACKUP_ARTIFACT, BACKUP_ARTIFACT_FILE, downloadBackup } from '../../bootstrap/lib/backup/from-github.mts';
import { BundleReader, PART, parseSecrets } from '../../bootstrap/lib/backup/bundle.mts';
import { decryptStream, toWeb } from '../../bootstrap/lib/backup/crypt.mts';
import { createGitHub } from '../../bootstrap/lib/github/client.mts';

const WORKFLOW = join(REPO_ROOT, '.github', 'workflows', 'staging-backup.yml');
const DEPLOY_WORKFLOW = join(REPO_ROOT, '.github', 'workflows', 'staging-deploy.yml');
const STAGING_NS = 'codex-k8s-staging';
const SCALE_SET = 'codex-k8s-staging';
const REPO = 'codex-k8s/staging';
const TOKEN = 'github_pat_' + 'b'.repeat(40);
const CREDS = { user: 'codex', password: randomBytes(24).toString('base64url'), db: 'codex_k8s' };
const work = mkdtempSync(join(tmpdir(), 'ck8s-staging-backup-'));

interface Wf {
  on: Record<string, unknown>;
  permissions: Record<string, string>;
  concurrency: { group: string; 'cancel-in-progress': boolean };
  env: Record<string, string>;
  jobs: Record<string, { if?: string; 'runs-on': string; steps: StepSpec[] }>;
}
const wf = parse(readFileSync(WORKFLOW, 'utf8')) as Wf;
const deployWf = parse(readFileSync(DEPLOY_WORKFLOW, 'utf8')) as Wf;
const steps = wf.jobs['backup']?.steps ?? [];

describe('staging-backup.yml: triggers, permissions, pins, the artifact', () => {
  it('nightly and on dispatch, one at a time, never cancelled, contents: read only, on the scale set', () => {
    assert.deepEqual(Object.keys(wf.on).sort(), ['schedule', 'workflow_dispatch']);
    assert.deepEqual(wf.on['schedule'], [{ cron: '17 3 * * *' }]);
    assert.deepEqual(wf.permissions, { contents: 'read' });
    assert.deepEqual(wf.concurrency, { group: 'staging-backup', 'cancel-in-progress': false });
    assert.deepEqual(Object.keys(wf.jobs), ['backup']);
    assert.equal(wf.jobs['backup']?.['runs-on'], '${{ vars.CODEXK8S_RUNNER_SCALE_SET_NAME }}');
    assert.equal(
      wf.jobs['backup']?.if,
      "vars.CODEXK8S_RUNNER_SCALE_SET_NAME != '' && vars.CODEXK8S_BACKUP_AGE_RECIPIENT != ''",
    );
  });

  it('actions pinned as ci.yml pins them; the Node of the server; the same kubectl step as staging-deploy.yml', () => {
    const ci = readFileSync(join(REPO_ROOT, '.github', 'workflows', 'ci.yml'), 'utf8');
    for (const u of steps.map((s) => s.uses).filter((u): u is string => u !== undefined)) {
      assert.match(u, /^[a-z-]+\/[a-z-]+@[0-9a-f]{40}$/, `${u} is not pinned by commit`);
      assert.ok(ci.includes(`uses: ${u} `), `${u}: another pin than ci.yml's`);
    }
    assert.equal(steps.find((s) => s.uses?.startsWith('actions/setup-node@'))?.with?.['node-version'], NODE.version);
    assert.equal(wf.env['KUBECTL_VERSION'], WORKFLOW_KUBECTL.version);
    assert.equal(wf.env['KUBECTL_SHA256_AMD64'], WORKFLOW_KUBECTL.sha256.x64);
    assert.equal(wf.env['KUBECTL_SHA256_ARM64'], WORKFLOW_KUBECTL.sha256.arm64);
    const deployKubectl = deployWf.jobs['build']?.steps.find((s) => s.id === 'kubectl')?.run;
    assert.equal(steps.find((s) => s.id === 'kubectl')?.run, deployKubectl, 'the kubectl steps differ');
  });

  it('uploads the one bundle file under the name --restore-from github: looks for, kept as configured', () => {
    const upload = steps.find((s) => s.uses?.startsWith('actions/upload-artifact@'));
    assert.deepEqual(upload?.with, {
      name: BACKUP_ARTIFACT,
      path: `\${{ runner.temp }}/backup/${BACKUP_ARTIFACT_FILE}`,
      'retention-days': '${{ vars.CODEXK8S_BACKUP_RETENTION_DAYS }}',
      'compression-level': 0,
      'if-no-files-found': 'error',
    });
    const bundle = steps.find((s) => s.id === 'bundle');
    assert.match(bundle?.run ?? '', new RegExp(`--out "\\$RUNNER_TEMP/backup/${BACKUP_ARTIFACT_FILE}"`));
    // Secrets only through env:, never spelled into the script.
    assert.equal(bundle?.env?.['CODEXK8S_WEBHOOK_SECRET'], '${{ secrets.CODEXK8S_WEBHOOK_SECRET }}');
    assert.ok(!(bundle?.run ?? '').includes('${{'));
  });
});

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
/** RBAC's rule evaluation for one request (no wildcards: the Role has none, and the test checks that). */
const allows = (rules: Rule[], verb: string, resource: string, name: string): boolean =>
  rules.some(
    (r) =>
      r.apiGroups.includes('') &&
      r.resources.includes(resource) &&
      r.verbs.includes(verb) &&
      (r.resourceNames === undefined || r.resourceNames.includes(name)),
  );

describe('staging-backup.yml executed against the kubectl double and a real PostgreSQL', { concurrency: false }, () => {
  let pg: Postgres;
  let fakes: string;
  let kubeconfig: string;
  let shimDir: string;
  let basePath: string;
  let github: FakeGitHub;
  let identity: string;
  let recipient: string;
  const webhook = randomBytes(32).toString('hex');

  async function backup(
    vars: Record<string, string>,
  ): Promise<{ r: WorkflowResult; calls: ReturnType<typeof readCalls> }> {
    const before = readCalls(fakes).length;
    const standIns: Record<string, StandIn> = {
      'actions/checkout': checkoutStandIn(REPO_ROOT),
      'actions/setup-node': ({ step, addPath }) => {
        assert.equal(step.with?.['node-version'], NODE.version);
        addPath(dirname(SERVER_NODE_BIN));
      },
      // npm ci --omit=dev needs the registry: this repository's installed packages stand in.
      deps: ({ workspace }) => symlinkSync(join(REPO_ROOT, 'node_modules'), join(workspace, 'node_modules')),
      kubectl: ({ addPath }) => addPath(shimDir),
      'actions/upload-artifact': ({ step, env }) => {
        const file = String(step.with?.['path']).replace('${{ runner.temp }}', env['RUNNER_TEMP'] ?? '');
        if (!existsSync(file)) throw new Error(`upload-artifact: no file at ${file} (if-no-files-found: error)`);
        assert.equal(readFileSync(file).subarray(0, 22).toString('latin1'), 'age-encryption.org/v1\n');
        github.addArtifact(
          String(step.with?.['name']),
          zipArchive([{ name: BACKUP_ARTIFACT_FILE, data: readFileSync(file) }]),
        );
      },
    };
    const r = await runWorkflow({
      file: WORKFLOW,
      vars: {
        CODEXK8S_RUNNER_SCALE_SET_NAME: SCALE_SET,
        CODEXK8S_STAGING_NAMESPACE: STAGING_NS,
        CODEXK8S_MODE: 'local',
        CODEXK8S_BACKUP_RETENTION_DAYS: '30',
        ...vars,
      },
      secrets: { CODEXK8S_WEBHOOK_SECRET: webhook },
      github: { sha: 'a'.repeat(40), eventName: 'schedule', repository: REPO },
      runnerEnv: {
        PATH: basePath,
        HOME: join(work, 'home'),
        RUNNER_NAME: `${SCALE_SET}-runner-x`,
        KUBECONFIG: kubeconfig,
        CODEXK8S_FAKES_DIR: fakes,
        LANG: 'C.UTF-8',
      },
      standIns,
      workDir: work,
    });
    return { r, calls: readCalls(fakes).slice(before) };
  }

  before(async () => {
    pg = await startPostgres();
    pg.psql('postgres', 'CREATE TABLE github_deliveries (id serial PRIMARY KEY, delivery_id text, payload jsonb)');
    pg.psql(
      'postgres',
      "INSERT INTO github_deliveries (delivery_id, payload) SELECT 'd-' || g, '{}' FROM generate_series(1, 321) g",
    );
    mkdirSync(join(work, 'home'), { recursive: true });
    fakes = newStateDir();
    kubeconfig = seedCluster(fakes);
    writeFileSync(
      join(fakes, POSTGRES_ROUTE_FILE),
      JSON.stringify({ host: pg.host, port: pg.port, user: pg.user, database: 'postgres' }),
    );
    const objects = [
      ...clusterObjects({
        mode: 'local',
        stagingNamespace: STAGING_NS,
        runnerNamespace: 'arc-runners',
        registryPort: 5000,
        letsencryptServer: 'staging',
      }),
      credentialsSecret(STAGING_NS, CREDS),
      ...postgresObjects({ mode: 'local', namespace: STAGING_NS, backupSchedule: '0 3 * * *', backupKeep: 7 }),
    ];
    const seed = runDouble('kubectl', ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
      dir: fakes,
      stdin: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
    });
    assert.equal(seed.code, 0, seed.stderr);
    shimDir = join(work, 'kubectl-shim');
    mkdirSync(shimDir);
    writeFileSync(
      join(shimDir, 'kubectl'),
      `#!/bin/sh\nexec '${SERVER_NODE_BIN}' '${join(FAKES_DIR, 'kubectl.mts')}' "$@"\n`,
    );
    chmodSync(join(shimDir, 'kubectl'), 0o755);
    basePath = runnerBin(work);
    github = await startFakeGitHub({ token: TOKEN, repo: REPO });
    identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
  });
  after(async () => {
    pg?.stop();
    await github?.close();
  });

  it('a run makes the bundle of the database, encrypted to the recipient, that github:latest restores', async () => {
    const { r, calls } = await backup({ CODEXK8S_BACKUP_AGE_RECIPIENT: recipient });
    assert.equal(r.jobs['backup']?.result, 'success', r.log);
    assert.match(r.jobs['backup']?.summary ?? '', /\| 1 \| 321 \|/);
    assert.match(r.log, /==> backup: codex-k8s-staging\/postgres-0 -> .*staging-backup\.age/);
    assert.match(r.log, /1 tables, 321 rows, dump [\d.]+ (B|KiB|MiB), PostgreSQL \d+/);
    assert.ok(!r.log.includes(CREDS.password) && !r.log.includes(webhook), 'a secret is in the log');
    assert.ok(!(r.jobs['backup']?.summary ?? '').includes(CREDS.password));

    // What the launcher does with --restore-from github:latest, up to the restore itself.
    const log = new CaptureLog();
    const gh = createGitHub({ token: TOKEN, baseUrl: github.url, log, sleep: async () => undefined });
    const got = await downloadBackup(gh, { owner: 'codex-k8s', repo: 'staging' }, { run: 'latest' }, github.url, log);
    try {
      const dump: Buffer[] = [];
      const reader = new BundleReader((p) => void dump.push(Buffer.from(p)));
      const plain = await decryptStream(toWeb(createReadStream(got.file)), { identities: [identity] }, got.file);
      for await (const c of plain as unknown as AsyncIterable<Uint8Array>) await reader.push(c);
      const { manifest, parts } = reader.end();
      assert.deepEqual(manifest.postgres.rows, { 'public.github_deliveries': 321 });
      assert.deepEqual(manifest.server, {
        hostname: `staging-backup workflow of ${REPO}`,
        namespace: STAGING_NS,
        mode: 'local',
      });
      assert.deepEqual(parseSecrets(parts.get(PART.secrets)), { postgres: CREDS, webhookSecret: webhook });
      assert.deepEqual(JSON.parse(String(parts.get(PART.journal))), {});
      assert.equal(Buffer.concat(dump).subarray(0, 5).toString('latin1'), 'PGDMP');
    } finally {
      got.close();
    }
    assert.deepEqual(github.problems, []);

    // Least privilege: every call was an exec into postgres-0 that the backup Role allows, and the Role allows no more.
    const rules = (
      runnerObjects({ mode: 'local', runnerNamespace: 'arc-runners', stagingNamespace: STAGING_NS } as never).find(
        (o) => o.kind === 'Role' && o.metadata.name === NAMES.backupRole,
      ) as unknown as { rules: Rule[] }
    ).rules;
    assert.ok(calls.length >= 3, `${calls.length} kubectl calls`);
    for (const c of calls) {
      const words = c.argv.join(' ');
      assert.ok(
        !c.argv.includes('--kubeconfig'),
        `${words}: the runner uses the pod's ServiceAccount, not a kubeconfig`,
      );
      const m = /^-n (\S+) exec (?:-i )?(\S+) -c postgres -- /.exec(words);
      assert.ok(m, `${words}: not an exec into the PostgreSQL pod`);
      assert.equal(m[1], STAGING_NS);
      // kubectl exec: GET the pod, then POST (create) its exec subresource.
      assert.ok(
        allows(rules, 'get', 'pods', m[2] as string) && allows(rules, 'create', 'pods/exec', m[2] as string),
        words,
      );
    }
    assert.ok(!allows(rules, 'get', 'secrets', NAMES.postgresSecret), 'the backup Role reads no Secret');
    assert.ok(!allows(rules, 'create', 'pods/exec', 'codex-k8s-abc'), 'the backup Role execs into no other pod');
    assert.ok(!allows(rules, 'list', 'pods', 'postgres-0'));
  });

  it('the script alone: bad input is exit 2 before anything is contacted, naming the flag or setting', async () => {
    const run = (args: string[], env: Record<string, string>) =>
      new Promise<{ code: number; out: string }>((resolve) => {
        const c = spawn(SERVER_NODE_BIN, [join(REPO_ROOT, 'bootstrap/host/nightly_backup.mts'), ...args], {
          env: { PATH: `${shimDir}:/usr/bin:/bin`, KUBECONFIG: kubeconfig, CODEXK8S_FAKES_DIR: fakes, ...env },
        });
        let out = '';
        c.stdout.on('data', (b: Buffer) => (out += b));
        c.stderr.on('data', (b: Buffer) => (out += b));
        c.on('close', (code) => resolve({ code: code ?? 1, out }));
      });
    const before = readCalls(fakes).length;
    const existing = join(work, 'exists.age');
    writeFileSync(existing, 'x');
    for (const [args, env, why] of [
      [['--out', join(work, 'a.age')], { CODEXK8S_BACKUP_AGE_RECIPIENT: recipient }, /--namespace NS is required/],
      [['--namespace', STAGING_NS, '--out', existing], { CODEXK8S_BACKUP_AGE_RECIPIENT: recipient }, /exists already/],
      [['--namespace', STAGING_NS, '--out', join(work, 'b.age')], {}, /CODEXK8S_BACKUP_AGE_RECIPIENT: not set/],
      [
        ['--namespace', STAGING_NS, '--out', join(work, 'c.age')],
        { CODEXK8S_BACKUP_AGE_RECIPIENT: 'age1nope' },
        /not an age recipient/,
      ],
    ] as const) {
      const r = await run([...args], { ...env });
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, why);
    }
    assert.equal(readCalls(fakes).length, before, 'kubectl was called');
  });

  it('no recipient: the job is skipped, nothing is made', async () => {
    const before = github.artifacts.length;
    const { r, calls } = await backup({});
    assert.equal(r.jobs['backup']?.result, 'skipped');
    assert.equal(calls.length, 0);
    assert.equal(github.artifacts.length, before);
  });

  it('a secret key given as the recipient, or a database that does not answer: the run is red, nothing uploaded', async () => {
    const before = github.artifacts.length;
    const bad = await backup({ CODEXK8S_BACKUP_AGE_RECIPIENT: identity });
    assert.equal(bad.r.jobs['backup']?.result, 'failure');
    assert.match(bad.r.log, /CODEXK8S_BACKUP_AGE_RECIPIENT: this is an age SECRET key/);
    assert.ok(!bad.r.log.includes(identity), 'the secret key is echoed');
    assert.equal(bad.calls.length, 0, 'nothing was contacted');

    const route = readFileSync(join(fakes, POSTGRES_ROUTE_FILE), 'utf8');
    writeFileSync(join(fakes, POSTGRES_ROUTE_FILE), JSON.stringify({ ...JSON.parse(route), port: 1 }));
    try {
      const down = await backup({ CODEXK8S_BACKUP_AGE_RECIPIENT: recipient });
      assert.equal(down.r.jobs['backup']?.result, 'failure', down.r.log);
      const upload = down.r.jobs['backup']?.steps.find(
        (s) => s.step.startsWith('actions/upload-artifact') || s.step === 'Upload',
      );
      assert.equal(upload?.outcome, 'skipped');
      assert.ok(!down.r.log.includes(CREDS.password));
    } finally {
      writeFileSync(join(fakes, POSTGRES_ROUTE_FILE), route);
    }
    assert.equal(github.artifacts.length, before);
  });
});
