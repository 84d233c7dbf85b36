// What `kubectl exec` into the PostgreSQL pod does in the fake cluster: the pod postgres-0 of the StatefulSet
// postgres (manifests/postgres) in the namespace given with -n, its container postgres, and exactly four commands
// (lib/exec-targets.mts POSTGRES_EXEC; flags in any order):
//
//       printenv NAME...                                       the container's env as the pod spec gives it
//                                                              (value, or secretKeyRef into a Secret), one value
//                                                              per line; exit 1 when a NAME is not set (printenv's
//                                                              own rule). The nightly backup reads its credentials so.
//
//   -i  psql -X -q -At -v ON_ERROR_STOP=1 -U USER -d DB        stdin and stdout stream live (a session kept open)
//       pg_dump -Fc -U USER -d DB [--snapshot=ID]              no -i; the binary dump streams on stdout
//   -i  pg_restore --exit-on-error --single-transaction [--clean [--if-exists]] --no-owner --no-privileges
//       -U USER -d DB                                          the dump streams on stdin; --clean/--if-exists as
//                                                              the product's restore gives them (real pg_restore
//                                                              checks them)
//
// The pod must exist (else kubectl's `pods "postgres-0" not found`) and be ready; USER and DB must be
// POSTGRES_USER and POSTGRES_DB of the Secret postgres-credentials (base64 data), else the command fails the way
// the real one does in the pod (`FATAL:  role "X" does not exist` / `database "X" does not exist` over the pod's
// socket; psql exit 2, pg_dump and pg_restore exit 1) and kubectl prints `command terminated with exit code N`.
//
// Routing: nothing runs in a pod. The double runs the REAL binary of this machine (Debian's postgresql-client,
// test/sandbox/packages.txt) against the real PostgreSQL that `postgres.json` in the state dir names:
//   {"host": "10.200.3.1", "port": 40123, "user": "postgres", "database": "codex_k8s"}
// (test/e2e/harness.mts routePostgres writes it; unknown fields are an error). -U and -d are replaced by its user
// and database, PGHOST/PGPORT set to its host and port. The child's stdout and stderr are the double's (inherited:
// streaming, binary-safe); stdin goes through the double, which forwards each chunk as it arrives, ends the child's
// stdin at EOF and records the sha256 of what it forwarded (calls.jsonl stdinSha256). The child runs after the
// state lock is released (Outcome.unlocked), so a psql session can stay open while a pg_dump of its snapshot runs.
// The remote exit code is kubectl's (`command terminated with exit code N`); a signal is 128 + its number.
// Recorded: pg_dump never mutating; psql mutating once it ran (what it committed before an error stays
// committed); pg_restore mutating when it succeeded (--single-transaction: a failed restore changed nothing).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { K8sObject, KindInfo } from './kinds.mts';
import { at, isObj, kindByApiVersion } from './kinds.mts';
import type { Store } from './store.mts';
import { DoubleError } from './cli.mts';
import type { Outcome, ToolIO } from './cli.mts';
import { execNote as note, POSTGRES, terminated } from './exec-targets.mts';

/** The file in the state dir that says which real PostgreSQL the exec reaches. */
export const POSTGRES_ROUTE_FILE = 'postgres.json';

/** The real PostgreSQL behind postgres-0 (postgres.json). */
export interface PostgresRoute {
  host: string;
  port: number;
  user: string;
  database: string;
}

export type PostgresTool = 'psql' | 'pg_dump' | 'pg_restore';

/** A checked exec, ready to run. */
export interface PostgresPlan {
  readonly tool: PostgresTool;
  /** The argv of the real binary (after the tool name): the same flags, -U/-d of the route. */
  readonly args: readonly string[];
  /** -i: stdin is forwarded (psql, pg_restore). */
  readonly stdin: boolean;
  readonly route: PostgresRoute;
  readonly namespace: string;
  /** The database the command named (the Secret's POSTGRES_DB). */
  readonly database: string;
}

function kind(apiVersion: string, k: string): KindInfo {
  const info = kindByApiVersion(apiVersion, k);
  if (info === undefined) throw new Error(`no kind row for ${apiVersion} ${k}`);
  return info;
}

// ---------------------------------------------------------------------------------------------------------------
// The three command lines

interface CommandSpec {
  /** Short flags without a value, all required (`-At` is -A and -t). */
  readonly shortBools: readonly string[];
  /** Short flags with a value, all required; a string is the only value accepted, null any non-empty one. */
  readonly shortValues: Readonly<Record<string, string | null>>;
  /** Long flags without a value, all required. */
  readonly longBools: readonly string[];
  /** Long flags without a value, optional. */
  readonly optionalLongBools: readonly string[];
  /** Long flags with a value (`--x=V` or `--x V`), optional. */
  readonly longValues: readonly string[];
  /** Whether the command reads stdin (kubectl exec -i required), or refuses -i. */
  readonly stdin: boolean;
  /** Exit code of a connection failure (psql: 2, pg_dump / pg_restore: 1). */
  readonly connectFailure: number;
}

const COMMANDS: Readonly<Record<PostgresTool, CommandSpec>> = {
  psql: {
    shortBools: ['X', 'q', 'A', 't'],
    shortValues: { v: 'ON_ERROR_STOP=1', U: null, d: null },
    longBools: [],
    optionalLongBools: [],
    longValues: [],
    stdin: true,
    connectFailure: 2,
  },
  pg_dump: {
    shortBools: [],
    shortValues: { F: 'c', U: null, d: null },
    longBools: [],
    optionalLongBools: [],
    longValues: ['snapshot'],
    stdin: false,
    connectFailure: 1,
  },
  pg_restore: {
    shortBools: [],
    shortValues: { U: null, d: null },
    longBools: ['exit-on-error', 'single-transaction', 'no-owner', 'no-privileges'],
    // What bootstrap/lib/backup/database.mts adds; the real pg_restore refuses --if-exists without --clean.
    optionalLongBools: ['clean', 'if-exists'],
    longValues: [],
    stdin: true,
    connectFailure: 1,
  },
};

interface ParsedCommand {
  tool: PostgresTool;
  user: string;
  database: string;
  snapshot: string | undefined;
  /** The optional long flags given (pg_restore --clean, --if-exists), passed on as they are. */
  options: string[];
}

function isTool(name: string | undefined): name is PostgresTool {
  return name === 'psql' || name === 'pg_dump' || name === 'pg_restore';
}

/**
 * Parses the words after `--` as one of the three commands; throws the double's refusal (what is wrong, what is
 * supported) for anything else: another program, a path, an unknown, missing, repeated or differently valued flag,
 * a positional argument.
 */
export function parsePostgresCommand(command: readonly string[]): ParsedCommand {
  const shown = JSON.stringify(command.join(' '));
  const refuse = (why: string): DoubleError =>
    new DoubleError(`error: the fake kubectl cannot run ${shown} in ${POSTGRES.pod}` + note(why));
  const tool = command[0];
  if (!isTool(tool)) throw refuse('only printenv, psql, pg_dump and pg_restore, by these names');
  const spec = COMMANDS[tool];
  const seen = new Map<string, string | true>();
  const put = (flag: string, value: string | true): void => {
    if (seen.has(flag)) throw refuse(`${flag} given twice`);
    seen.set(flag, value);
  };
  const words = command.slice(1);
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as string;
    if (w.startsWith('--') && w.length > 2) {
      const eq = w.indexOf('=');
      const name = eq === -1 ? w.slice(2) : w.slice(2, eq);
      if (spec.longBools.includes(name) || spec.optionalLongBools.includes(name)) {
        if (eq !== -1) throw refuse(`--${name} takes no value`);
        put(`--${name}`, true);
      } else if (spec.longValues.includes(name)) {
        const value = eq !== -1 ? w.slice(eq + 1) : words[++i];
        if (value === undefined || value === '') throw refuse(`--${name} needs a value`);
        put(`--${name}`, value);
      } else {
        throw refuse(`${tool} flag --${name} is not supported`);
      }
      continue;
    }
    if (w.startsWith('-') && w.length > 1) {
      for (let j = 1; j < w.length; j++) {
        const letter = w[j] as string;
        if (spec.shortBools.includes(letter)) {
          put(`-${letter}`, true);
          continue;
        }
        if (letter in spec.shortValues) {
          const value = j + 1 < w.length ? w.slice(j + 1) : words[++i];
          if (value === undefined || value === '') throw refuse(`-${letter} needs a value`);
          put(`-${letter}`, value);
          break;
        }
        throw refuse(`${tool} flag -${letter} is not supported`);
      }
      continue;
    }
    throw refuse(`no positional arguments (${JSON.stringify(w)}): name the database with -d`);
  }
  const missing = [
    ...spec.shortBools.map((l) => `-${l}`),
    ...Object.keys(spec.shortValues).map((l) => `-${l}`),
    ...spec.longBools.map((n) => `--${n}`),
  ].filter((f) => !seen.has(f));
  if (missing.length > 0) throw refuse(`${tool} without ${missing.join(' ')}`);
  for (const [letter, want] of Object.entries(spec.shortValues)) {
    const got = seen.get(`-${letter}`);
    if (want !== null && got !== want) throw refuse(`-${letter} ${String(got)} (only -${letter} ${want})`);
  }
  const snapshot = seen.get('--snapshot');
  return {
    tool,
    user: seen.get('-U') as string,
    database: seen.get('-d') as string,
    snapshot: typeof snapshot === 'string' ? snapshot : undefined,
    options: spec.optionalLongBools.map((n) => `--${n}`).filter((f) => seen.has(f)),
  };
}

/** The real binary's arguments: the fixed flags in a fixed order, user and database of the route. */
function realArgs(c: ParsedCommand, route: PostgresRoute): string[] {
  const who = ['-U', route.user, '-d', route.database];
  switch (c.tool) {
    case 'psql':
      return ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', ...who];
    case 'pg_dump':
      return ['-Fc', ...(c.snapshot !== undefined ? [`--snapshot=${c.snapshot}`] : []), ...who];
    case 'pg_restore':
      return ['--exit-on-error', '--single-transaction', ...c.options, '--no-owner', '--no-privileges', ...who];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// postgres.json

/** Reads and checks postgres.json; throws the double's error when it is missing or malformed. */
export function readPostgresRoute(dir: string): PostgresRoute {
  const file = path.join(dir, POSTGRES_ROUTE_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new DoubleError(
      `error: the kubectl double has no PostgreSQL to exec into: write ${file} (test/e2e/harness.mts routePostgres)` +
        note(`${POSTGRES.pod} is routed to the real PostgreSQL that ${POSTGRES_ROUTE_FILE} names`),
    );
  }
  const bad = (why: string): DoubleError =>
    new DoubleError(
      `error: the kubectl double cannot use ${file}: ${why} ` +
        `(want {"host": "...", "port": N, "user": "...", "database": "..."}, test/e2e/harness.mts routePostgres)`,
    );
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  if (!isObj(raw)) throw bad('not a JSON object');
  const known = ['host', 'port', 'user', 'database'];
  const unknown = Object.keys(raw).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw bad(`unknown field ${unknown.join(', ')}`);
  for (const k of ['host', 'user', 'database']) {
    if (typeof raw[k] !== 'string' || raw[k] === '') throw bad(`${k} must be a non-empty string`);
  }
  const port = raw['port'];
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw bad('port must be an integer 1..65535');
  return { host: raw['host'] as string, port, user: raw['user'] as string, database: raw['database'] as string };
}

// ---------------------------------------------------------------------------------------------------------------
// The pod

function decoded(secret: K8sObject, key: string): string | undefined {
  const v = at(secret, 'data', key);
  return typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : undefined;
}

function notRunning(why: string): DoubleError {
  return new DoubleError(
    `error: unable to upgrade connection: container not found ("${POSTGRES.container}")\n(fake kubectl: ${why})`,
  );
}

/**
 * Checks `kubectl -n NS exec [-i] postgres-0 -c CONTAINER -- COMMAND...` the way the cluster and the command in the
 * pod would, and returns what to run; throws kubectl's (or the command's) error otherwise. Nothing is started yet.
 */
export function checkPostgresExec(
  store: Store,
  dir: string,
  namespace: string,
  container: string | undefined,
  command: readonly string[],
  withStdin: boolean,
): PostgresPlan {
  checkPostgresContainer(store, namespace, container);
  return planPostgresCommand(store, dir, namespace, command, withStdin);
}

/**
 * `printenv NAME...` in postgres-0's container: its env entries as the pod spec states them (a literal value, or a
 * secretKeyRef resolved from the Secret; a missing Secret or key means the container never started). Like
 * printenv: the values of the names that are set, one per line, exit 1 when any is not.
 */
export function postgresPrintenv(
  store: Store,
  namespace: string,
  container: string | undefined,
  command: readonly string[],
  withStdin: boolean,
): { stdout: string; exitCode: number } {
  const pod = checkPostgresContainer(store, namespace, container);
  const names = command.slice(1);
  const refuse = (why: string): DoubleError =>
    new DoubleError(
      `error: the fake kubectl cannot run ${JSON.stringify(command.join(' '))} in ${POSTGRES.pod}` + note(why),
    );
  if (names.length === 0) throw refuse('printenv without names would print the whole environment: name the variables');
  if (names.some((n) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)))
    throw refuse('printenv takes variable names only, no flags');
  if (withStdin) throw refuse('printenv reads no stdin: no -i');
  const spec = ((at(pod, 'spec', 'containers') as unknown[] | undefined) ?? []).find(
    (c) => isObj(c) && c['name'] === POSTGRES.container,
  );
  const env = new Map<string, string>();
  for (const e of (isObj(spec) && Array.isArray(spec['env']) ? spec['env'] : []) as unknown[]) {
    if (!isObj(e) || typeof e['name'] !== 'string') continue;
    if (typeof e['value'] === 'string') env.set(e['name'], e['value']);
    const ref = at(e, 'valueFrom', 'secretKeyRef');
    if (!isObj(ref)) continue;
    const secretName = String(ref['name']);
    const secret = store.get(kind('v1', 'Secret'), namespace, secretName);
    const value = secret === undefined ? undefined : decoded(secret, String(ref['key']));
    if (value === undefined)
      throw notRunning(
        `the container cannot start (CreateContainerConfigError): ${secret === undefined ? `secret "${secretName}" not found` : `couldn't find key ${String(ref['key'])} in Secret ${namespace}/${secretName}`}`,
      );
    env.set(e['name'], value);
  }
  const set = names.filter((n) => env.has(n));
  return {
    stdout: set.map((n) => `${env.get(n)}\n`).join(''),
    exitCode: set.length === names.length ? 0 : 1,
  };
}

/** The pod postgres-0 of the namespace exists, is ready, and `container` is its postgres container; the pod. */
function checkPostgresContainer(store: Store, namespace: string, container: string | undefined): K8sObject {
  const sts = store.get(kind('apps/v1', 'StatefulSet'), namespace, POSTGRES.statefulSet);
  const pod = store.get(kind('v1', 'Pod'), namespace, POSTGRES.pod);
  if (sts === undefined || pod === undefined) {
    throw new DoubleError(
      `Error from server (NotFound): pods "${POSTGRES.pod}" not found` +
        note(
          `${POSTGRES.pod} exists while the StatefulSet ${namespace}/${POSTGRES.statefulSet} exists with replicas >= 1`,
        ),
    );
  }
  const owner = at(pod, 'metadata', 'ownerReferences', 0, 'name');
  if (owner !== POSTGRES.statefulSet) {
    throw new DoubleError(
      `error: the fake kubectl cannot exec into pod ${namespace}/${POSTGRES.pod}` +
        note(`only the pod of the StatefulSet ${POSTGRES.statefulSet}`),
    );
  }
  const conditions = at(pod, 'status', 'conditions');
  const ready =
    Array.isArray(conditions) && conditions.some((c) => isObj(c) && c['type'] === 'Ready' && c['status'] === 'True');
  if (!ready) {
    const waiting = at(pod, 'status', 'containerStatuses', 0, 'state', 'waiting', 'reason');
    throw notRunning(
      `${namespace}/${POSTGRES.pod} is not ready (phase ${String(at(pod, 'status', 'phase'))}` +
        (typeof waiting === 'string' ? `, ${waiting}` : '') +
        ')',
    );
  }
  if (container === undefined) {
    throw new DoubleError(
      'error: the fake kubectl requires -c/--container for exec (the real one picks the default container and says so on stderr)' +
        note('no -c'),
    );
  }
  const names = ((at(pod, 'spec', 'containers') as unknown[] | undefined) ?? []).map((c) =>
    isObj(c) ? String(c['name']) : '',
  );
  if (!names.includes(container)) {
    throw new DoubleError(
      `Error from server (BadRequest): container ${container} is not valid for pod ${POSTGRES.pod}` +
        note(`the pod's containers are: ${names.join(', ')}`),
    );
  }
  if (container !== POSTGRES.container) {
    throw new DoubleError(
      `error: the fake kubectl cannot exec into container ${container}` +
        note(`only the ${POSTGRES.container} container`),
    );
  }
  return pod;
}

function planPostgresCommand(
  store: Store,
  dir: string,
  namespace: string,
  command: readonly string[],
  withStdin: boolean,
): PostgresPlan {
  const parsed = parsePostgresCommand(command);
  const spec = COMMANDS[parsed.tool];
  if (spec.stdin && !withStdin) {
    throw new DoubleError(
      `error: the fake kubectl refuses ${parsed.tool} without -i: it reads stdin, and without -i it would get none` +
        note(`kubectl exec -i for ${parsed.tool}`),
    );
  }
  if (!spec.stdin && withStdin) {
    throw new DoubleError(
      `error: the fake kubectl refuses ${parsed.tool} with -i: it reads no stdin` + note(`no -i for ${parsed.tool}`),
    );
  }
  const secret = store.get(kind('v1', 'Secret'), namespace, POSTGRES.secret);
  if (secret === undefined)
    throw notRunning(`the pod cannot start: secret "${POSTGRES.secret}" not found in ${namespace}`);
  const user = decoded(secret, POSTGRES.userKey);
  const db = decoded(secret, POSTGRES.dbKey);
  if (user === undefined || db === undefined) {
    throw notRunning(
      `the pod cannot start: couldn't find key ${user === undefined ? POSTGRES.userKey : POSTGRES.dbKey} in Secret ${namespace}/${POSTGRES.secret}`,
    );
  }
  const fatal = (what: string): DoubleError =>
    new DoubleError(
      `${parsed.tool}: error: connection to server on socket "${POSTGRES.socket}" failed: FATAL:  ${what} does not exist\n` +
        terminated(spec.connectFailure),
      spec.connectFailure,
    );
  if (parsed.user !== user) throw fatal(`role "${parsed.user}"`);
  if (parsed.database !== db) throw fatal(`database "${parsed.database}"`);
  const route = readPostgresRoute(dir);
  return {
    tool: parsed.tool,
    args: realArgs(parsed, route),
    stdin: spec.stdin,
    route,
    namespace,
    database: parsed.database,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Running it

const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** Environment of the real binary: PGHOST/PGPORT of the route, nothing else that would redirect it. */
function childEnv(route: PostgresRoute): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['PGUSER', 'PGDATABASE', 'PGHOSTADDR', 'PGSERVICE', 'PGSERVICEFILE', 'PGOPTIONS', 'PGPASSFILE'])
    delete env[k];
  return { ...env, PGHOST: route.host, PGPORT: String(route.port), PGCONNECT_TIMEOUT: '10' };
}

/**
 * Runs the plan's real binary against the routed PostgreSQL (after the state lock is released): stdout and stderr
 * inherited, stdin streamed through `io.pipeStdin` with -i; fills `out` (exit code, mutating, changes).
 */
export async function runPostgresExec(plan: PostgresPlan, io: ToolIO, out: Outcome): Promise<void> {
  const child = spawn(plan.tool, plan.args, {
    env: childEnv(plan.route),
    stdio: [plan.stdin ? 'pipe' : 'ignore', 'inherit', 'inherit'],
  });
  const started = new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  try {
    await started;
  } catch (err) {
    throw new DoubleError(
      `error: the kubectl double cannot start ${plan.tool} on this machine (${(err as Error).message}): ` +
        'install postgresql-client (test/sandbox/packages.txt has it for the sandbox)',
    );
  }
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, forward);
  let pipe: { done: Promise<void>; stop(): void } | undefined;
  let stdinError: Error | undefined;
  if (plan.stdin && child.stdin !== null) {
    // The remote process may exit before reading all of stdin (psql stopping on an error): ignore EPIPE there.
    child.stdin.on('error', () => undefined);
    pipe = io.pipeStdin(child.stdin);
    pipe.done.catch((err: Error) => {
      stdinError = err;
    });
  }
  const { code, signal } = await exited;
  for (const s of FORWARDED_SIGNALS) process.off(s, forward);
  pipe?.stop();
  await pipe?.done.catch(() => undefined);
  const exitCode = code ?? 128 + (signal !== null ? (os.constants.signals[signal] ?? 0) : 0);
  const target = `${plan.namespace}/${POSTGRES.pod}`;
  const routed = `routed to ${plan.route.user}@${plan.route.host}:${plan.route.port}/${plan.route.database}`;
  if (plan.tool === 'psql') {
    out.mutating = true;
    out.changes.push(`psql session on database ${plan.database} in ${target} (${routed}), exit ${exitCode}`);
  } else if (plan.tool === 'pg_restore' && exitCode === 0) {
    out.mutating = true;
    out.changes.push(`pg_restore into database ${plan.database} in ${target} (${routed})`);
  }
  if (stdinError !== undefined) out.stderr += `(fake kubectl: reading stdin failed: ${stdinError.message})\n`;
  if (exitCode !== 0) throw new DoubleError(terminated(exitCode), exitCode);
}
