// A real, throw-away PostgreSQL for tests: Debian's server binaries (`.ci/run` installs the postgresql package),
// `initdb` in a temp dir, a free port on 127.0.0.1, trust auth for the one local user, stopped and removed by stop().
// PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user the package creates.
// `startPostgres({ listen: '0.0.0.0' })` listens on every address (a sandbox reaches it at its hostAddr); pg_hba
// trusts TCP connections from anywhere then (a throw-away test database); `host` stays 127.0.0.1 for this host.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, rmSync, chownSync, readFileSync } from 'node:fs';
import { freePort } from '../net.mts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Postgres {
  host: string;
  port: number;
  user: string;
  /** PGHOST/PGPORT/PGUSER for psql, pg_dump and pg_restore. */
  env: Record<string, string>;
  /** Runs psql -At with `sql` on `db`; its stdout. Throws with stderr on failure. */
  psql(db: string, sql: string): string;
  stop(): void;
}

/** The newest server binaries installed under /usr/lib/postgresql, or undefined. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

function runOk(argv: string[], asUser: string | undefined, env: Record<string, string> = {}): string {
  const [cmd, ...args] = asUser ? ['runuser', '-u', asUser, '--', ...argv] : argv;
  const r = spawnSync(cmd as string, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface StartOptions {
  /**
   * listen_addresses: '127.0.0.1' (default), or '0.0.0.0' so that a sandbox connects at its `t.sb.hostAddr` (then
   * every TCP client is trusted); another single address is used as `host` too.
   */
  listen?: string;
}

export async function startPostgres(opts: StartOptions = {}): Promise<Postgres> {
  const listen = opts.listen ?? '127.0.0.1';
  const bin = postgresBinDir();
  if (!bin)
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql (see .ci/run)',
    );
  const asUser = process.getuid?.() === 0 ? 'postgres' : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-pg-'));
  if (asUser) {
    const pw = spawnSync('id', ['-u', asUser], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', asUser], { encoding: 'utf8' });
    if (pw.status !== 0) throw new Error(`user ${asUser} does not exist: install the postgresql package`);
    chownSync(dir, Number(pw.stdout), Number(gid.stdout));
  }
  const data = join(dir, 'data');
  const port = await freePort(listen === '*' ? '0.0.0.0' : listen);
  runOk([join(bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'], asUser);
  // initdb's trust covers local sockets and loopback only; a sandbox connects over TCP from its own address.
  if (listen !== '127.0.0.1')
    appendFileSync(
      join(data, 'pg_hba.conf'),
      '# test/pg/postgres.mts: a throw-away test database reached from a sandbox\n' +
        'host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n',
    );
  runOk(
    [
      join(bin, 'pg_ctl'),
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=${listen} -c fsync=off`,
      'start',
    ],
    asUser,
  );
  // Listening on every address includes loopback: this host keeps connecting there.
  const host = listen === '0.0.0.0' || listen === '*' ? '127.0.0.1' : listen;
  const env = { PGHOST: host, PGPORT: String(port), PGUSER: 'postgres' };
  let stopped = false;
  return {
    host,
    port,
    user: 'postgres',
    env,
    psql: (db, sql) => runOk([join(bin, 'psql'), '-v', 'ON_ERROR_STOP=1', '-At', '-d', db, '-c', sql], undefined, env),
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        runOk([join(bin, 'pg_ctl'), '-D', data, '-m', 'fast', '-w', 'stop'], asUser);
      } catch (e) {
        const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8') : '';
        throw new Error(`${(e as Error).message}\n${log}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
