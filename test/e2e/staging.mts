// "Staging" for end-to-end runs that include 80_deploy_loop_check: the real app (app/src/server.mts on the
// server's Node 24, with a real PostgreSQL from test/pg) on this host, listening on every address so the sandbox
// reaches it at the host address, like the fake GitHub API. The sandbox has no real cluster, so the harness plays
// the deploy: it follows the fake GitHub's runs (test/fakes/github `actions.onRun`). A run that will succeed
// leaves the app serving its commit (restarted while the run is in progress, so step 80 sees the run finish only
// once staging serves it); a run that will fail leaves staging as it was (the workflow rolled it back).
// The webhook secret is the server's (generated there by 50 or 70): copied before each restart; until it exists
// the app answers every webhook 401, as it would with an unmounted Secret.
//
//   const staging = await startStaging(t);     // before the first launcher run; appends CODEXK8S_SMOKE_URL to t.envFile
//   ...
//   await staging.stop();
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Target } from './harness.mts';
import { startPostgres } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';
import { SERVER_NODE_BIN, REPO_ROOT } from '../fakes/testkit.mts';

/** Where steps 50 and 70 keep the webhook secret on the server (REMOTE.webhookSecretFile). */
const SERVER_SECRET_FILE = '/etc/codex-k8s-bootstrap/secrets/github-webhook-secret';

export interface Staging {
  /** What the sandbox reaches: http://<host address>:<port>; step 80 gets it as CODEXK8S_SMOKE_URL. */
  readonly url: string;
  readonly pg: Postgres;
  /** The commit the app reports at /version now. */
  version(): string;
  /** The server's webhook secret as the app has it ('' before the server has one). */
  secret(): string;
  /** Restarts the app reporting `version` (what a deploy of that commit leaves running). */
  serve(version: string): Promise<void>;
  /** Waits until the restarts started by runs are done. */
  settled(): Promise<void>;
  /** Rows in github_deliveries (the smoke checks' signed test deliveries land there). */
  deliveries(): number;
  /** The app's log lines so far. */
  logs(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export async function startStaging(t: Target): Promise<Staging> {
  const pg = await startPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-staging-'));
  const secretFile = join(dir, 'github-webhook-secret');
  const port = await freePort();
  const url = `http://${t.sb.hostAddr}:${port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let current = '';
  let secret = '';
  let out = '';
  let pending: Promise<void> = Promise.resolve();

  async function syncSecret(): Promise<void> {
    const r = await t.sb.exec(['cat', SERVER_SECRET_FILE], { allowFail: true });
    const value = r.exitCode === 0 ? r.stdout.trim() : '';
    if (value !== '' && value !== secret) {
      secret = value;
      writeFileSync(secretFile, value + '\n', { mode: 0o600 });
    }
  }

  async function stopApp(): Promise<void> {
    if (child && child.exitCode === null) child.kill('SIGTERM');
    await exited;
  }

  async function serve(version: string): Promise<void> {
    await stopApp();
    await syncSecret();
    const c = spawn(SERVER_NODE_BIN, [join(REPO_ROOT, 'app', 'src', 'server.mts')], {
      cwd: join(REPO_ROOT, 'app'),
      env: { PATH: '/usr/bin:/bin', PORT: String(port), DATABASE_URL: `postgres://${pg.user}@${pg.host}:${pg.port}/postgres`, GITHUB_WEBHOOK_SECRET_FILE: secretFile, CODEXK8S_VERSION: version },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    c.stdout?.on('data', (b: Buffer) => (out += b));
    c.stderr?.on('data', (b: Buffer) => (out += b));
    exited = new Promise<void>((r) => c.once('exit', () => r()));
    for (let i = 1; ; i++) {
      if (c.exitCode !== null) throw new Error(`the staging app exited (${c.exitCode}):\n${out}`);
      if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
      if (i === 150) {
        c.kill('SIGKILL');
        throw new Error(`the staging app did not answer /healthz within 15 s:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    current = version;
  }

  await serve(t.github.actions.headSha);
  t.github.actions.onRun = (run) => {
    if (run.plan.conclusion !== 'success') return undefined;
    pending = pending.catch(() => undefined).then(() => serve(run.headSha));
    return pending;
  };
  // The step reads its settings from the env file the launcher uploads.
  appendFileSync(t.envFile, `CODEXK8S_SMOKE_URL=${url}\n`);

  return {
    url,
    pg,
    version: () => current,
    secret: () => secret,
    serve: (v) => (pending = pending.catch(() => undefined).then(() => serve(v))),
    settled: () => pending,
    deliveries: () => Number(pg.psql('postgres', 'SELECT count(*) FROM github_deliveries')),
    logs: () => out,
    async stop() {
      t.github.actions.onRun = undefined;
      await pending.catch(() => undefined);
      await stopApp();
      pg.stop();
    },
  };
}
