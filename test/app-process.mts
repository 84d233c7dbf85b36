// The real staging app (app/src/server.mts) as a process on the server's Node 24, against a real PostgreSQL
// (test/pg), the way a pod runs it: PORT, DATABASE_URL, the webhook secret in a file, the version from the image.
// Used by the smoke tests, the workflow test and the e2e "staging" (test/e2e/staging.mts).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Postgres } from './pg/postgres.mts';
import { COMPILE_CACHE_ENV, SERVER_NODE_BIN, REPO_ROOT } from './fakes/testkit.mts';
import { freePort } from './net.mts';

export interface AppProcess {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** stdout and stderr so far (the app's JSON log lines). */
  output(): string;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

export interface AppOptions {
  pg: Postgres;
  secretFile: string;
  version: string;
  /** Default: a free port on 127.0.0.1. The app listens on every address either way. */
  port?: number;
  /** How long /healthz may take to answer (the app migrates the schema first). Default 15 s. */
  readyTimeoutMs?: number;
}

/** Starts the app and waits, bounded, until /healthz answers 200; throws with the app's output otherwise. */
export async function startAppProcess(o: AppOptions): Promise<AppProcess> {
  const port = o.port ?? (await freePort());
  const child = spawn(SERVER_NODE_BIN, [join(REPO_ROOT, 'app', 'src', 'server.mts')], {
    cwd: join(REPO_ROOT, 'app'),
    env: {
      PATH: '/usr/bin:/bin',
      PORT: String(port),
      DATABASE_URL: `postgres://${o.pg.user}@${o.pg.host}:${o.pg.port}/postgres`,
      GITHUB_WEBHOOK_SECRET_FILE: o.secretFile,
      CODEXK8S_VERSION: o.version,
      ...COMPILE_CACHE_ENV,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const attempts = Math.ceil((o.readyTimeoutMs ?? 15_000) / 100);
  for (let i = 1; ; i++) {
    if (child.exitCode !== null)
      throw new Error(`the app exited (${child.exitCode}) before answering /healthz:\n${out}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.status === 200,
        () => false,
      )
    )
      break;
    if (i === attempts) {
      child.kill('SIGKILL');
      throw new Error(`the app did not answer /healthz within ${attempts / 10} s (attempt ${i}/${attempts}):\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
