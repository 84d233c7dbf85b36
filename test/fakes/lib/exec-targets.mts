// What `kubectl exec` reaches in the fake cluster, in one place: the names of both exec targets, the exact forms
// the double supports (SUPPORTED_EXEC, quoted in every refusal), and the line kubectl prints for a remote exit.
// Used by lib/buildkit.mts (build.sh in buildkitd-0) and lib/postgres-exec.mts (psql, pg_dump, pg_restore in
// postgres-0, routed to a real PostgreSQL). A leaf module: it imports nothing, so both can import it.

/** The names of manifests/buildkit (NAMES in bootstrap/lib/manifests.mts; a unit test keeps them equal). */
export const BUILDKIT = {
  namespace: 'codex-k8s-system',
  statefulSet: 'buildkitd',
  pod: 'buildkitd-0',
  container: 'buildkitd',
  scriptDir: '/opt/codex-k8s-build',
  scriptFile: 'build.sh',
  script: '/opt/codex-k8s-build/build.sh',
  scriptsConfigMap: 'buildkit-scripts',
  registryName: 'registry',
  repository: 'codex-k8s',
} as const;

/**
 * The names of manifests/postgres (NAMES in bootstrap/lib/manifests.mts; a unit test keeps them equal). The
 * StatefulSet may live in any namespace (the staging one); `socket` is where psql in the pod connects by default.
 */
export const POSTGRES = {
  statefulSet: 'postgres',
  pod: 'postgres-0',
  container: 'postgres',
  secret: 'postgres-credentials',
  userKey: 'POSTGRES_USER',
  dbKey: 'POSTGRES_DB',
  socket: '/var/run/postgresql/.s.PGSQL.5432',
} as const;

const BUILD_EXEC = `kubectl -n ${BUILDKIT.namespace} exec [-i] ${BUILDKIT.pod} -c ${BUILDKIT.container} -- ${BUILDKIT.script} exists TAG | build TAG GIT_SHA`;
const IN_POSTGRES = `${POSTGRES.pod} -c ${POSTGRES.container} --`;

/** The four commands, exactly (flags in any order); USER/DB: the Secret's POSTGRES_USER/POSTGRES_DB. */
export const POSTGRES_EXEC = [
  `kubectl -n NS exec ${IN_POSTGRES} printenv NAME...`,
  `kubectl -n NS exec -i ${IN_POSTGRES} psql -X -q -At -v ON_ERROR_STOP=1 -U USER -d DB`,
  `kubectl -n NS exec ${IN_POSTGRES} pg_dump -Fc -U USER -d DB [--snapshot=ID]`,
  `kubectl -n NS exec -i ${IN_POSTGRES} pg_restore --exit-on-error --single-transaction [--clean [--if-exists]] --no-owner --no-privileges -U USER -d DB`,
] as const;

export const SUPPORTED_EXEC =
  `${BUILD_EXEC}; ${POSTGRES_EXEC.join('; ')} ` +
  `(NS: a namespace with the StatefulSet ${POSTGRES.statefulSet}; USER, DB: ${POSTGRES.userKey}, ${POSTGRES.dbKey} ` +
  `of its Secret ${POSTGRES.secret})`;

/** The line the double adds to a refusal: why, and everything it can exec. */
export function execNote(why: string): string {
  return `\n(fake kubectl: ${why}; it supports exactly: ${SUPPORTED_EXEC})`;
}

/** The command exited: kubectl prints this on stderr and exits with the same code. */
export function terminated(code: number): string {
  return `command terminated with exit code ${code}`;
}
