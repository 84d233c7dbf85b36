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
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Target } from './harness.mts';
import { startPostgres } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';
import { startAppProcess } from '../app-process.mts';
import type { AppProcess } from '../app-process.mts';
import { freePort } from '../net.mts';

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

/**
 * `opts.routeDatabase`: the PostgreSQL pod of the server is this staging's database too: `kubectl exec postgres-0`
 * (psql, pg_dump, pg_restore) reaches it (t.routePostgres), so backups and restores move the app's real rows.
 */
export async function startStaging(t: Target, opts: { routeDatabase?: boolean } = {}): Promise<Staging> {
  const pg = await startPostgres(opts.routeDatabase ? { listen: '0.0.0.0' } : {});
  if (opts.routeDatabase) await t.routePostgres(pg, 'postgres');
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-staging-'));
  const secretFile = join(dir, 'github-webhook-secret');
  const port = await freePort('0.0.0.0');
  const url = `http://${t.sb.hostAddr}:${port}`;
  let app: AppProcess | undefined;
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
    await app?.stop();
    app = undefined;
  }

  async function serve(version: string): Promise<void> {
    if (app) out += app.output();
    await stopApp();
    await syncSecret();
    app = await startAppProcess({ pg, secretFile, version, port });
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
    logs: () => out + (app?.output() ?? ''),
    async stop() {
      t.github.actions.onRun = undefined;
      await pending.catch(() => undefined);
      await stopApp();
      pg.stop();
    },
  };
}
