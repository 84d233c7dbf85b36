// --status: reads the facts for the one-screen status (lib/status.mts makes the lines) and prints them. Nothing is
// changed anywhere and the server lock is not taken, so it also answers while a run is going on. The server's side
// needs no Node.js and no upload: its `status` helper (bash), kubectl and helm, over the one SSH connection, side by
// side; GitHub's side is read from the laptop with the token.
import { OperationError } from '../errors.mts';
import { color } from '../log.mts';
import { sudoRefusal } from '../ssh.mts';
import { parseJournal } from '../state.mts';
import { REMOTE } from '../paths.mts';
import { getJsonArgv, helmArgv, kubectlArgv } from '../kube.mts';
import type { HelmListEntry } from '../kube.mts';
import { DEPLOY_WORKFLOW, listRuns } from '../actions.mts';
import { clientFromConfig, githubMessage, repoRef } from '../github/client.mts';
import { RUNNER_RELEASES_REPO, isRunnerOf } from '../runners.mts';
import type { ReleaseLike } from '../runners.mts';
import { formatStatus, parseStatusAnswer, statusReport } from '../status.mts';
import type { ClusterFacts, GitHubFacts, GitHubRunner, KubeItem, Read, StatusSettings } from '../status.mts';
import { helper } from './context.mts';
import type { Ctx } from './context.mts';

/** The file system that holds k3s, the volumes and the registry: its headroom is the one that matters. */
const DATA_DIR = '/var/lib';
/** The ingress certificate's Secret (manifests/app/ingress.server.yaml). */
const TLS_SECRET = 'codex-k8s-tls';

function settingsOf(ctx: Ctx): StatusSettings {
  const c = ctx.cfg;
  const domain = c.maybe('CODEXK8S_STAGING_DOMAIN');
  return {
    mode: c.get('CODEXK8S_MODE'),
    host: c.get('TARGET_HOST'),
    ...(domain !== undefined ? { domain } : {}),
    stagingNamespace: c.get('CODEXK8S_STAGING_NAMESPACE'),
    runnerNamespace: c.get('CODEXK8S_RUNNER_NAMESPACE'),
    scaleSetName: c.get('CODEXK8S_RUNNER_SCALE_SET_NAME'),
    runnerImage: c.get('CODEXK8S_RUNNER_IMAGE'),
    repo: c.get('CODEXK8S_GITHUB_REPO'),
  };
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .filter((l) => l.trim() !== '')
      .pop() ?? 'no output'
  );
}

async function read<T>(f: () => Promise<T>): Promise<Read<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    return { ok: false, error: e instanceof OperationError ? e.message : githubMessage(e) || String(e) };
  }
}

/** One read-only command on the server; its stdout, or an error naming the command's last stderr line. */
async function remote(ctx: Ctx, argv: string[]): Promise<string> {
  const r = await ctx.ssh.run(argv, { allowFail: true, timeoutSeconds: 60 });
  if (r.exitCode !== 0) {
    const shown = argv.filter((a, i) => a !== '--kubeconfig' && argv[i - 1] !== '--kubeconfig').slice(0, 4);
    throw new OperationError(`${shown.join(' ')}: ${lastLine(r.stderr)}`);
  }
  return r.stdout;
}

function items(stdout: string): KubeItem[] {
  return ((JSON.parse(stdout || '{"items":[]}') as { items?: KubeItem[] }).items ?? []) as KubeItem[];
}

function one(stdout: string): KubeItem | undefined {
  return stdout.trim() === '' ? undefined : (JSON.parse(stdout) as KubeItem);
}

async function clusterFacts(ctx: Ctx, s: StatusSettings): Promise<ClusterFacts> {
  const [nodes, deployments, statefulSets, backupCronJob, scaleSet, releases, volumes, certificate] = await Promise.all(
    [
      read(async () => items(await remote(ctx, kubectlArgv('get', 'nodes', '-o', 'json')))),
      read(async () => items(await remote(ctx, kubectlArgv('get', 'deployments', '-A', '-o', 'json')))),
      read(async () => items(await remote(ctx, kubectlArgv('get', 'statefulsets', '-A', '-o', 'json')))),
      read(async () => one(await remote(ctx, getJsonArgv('cronjob', 'postgres-backup', s.stagingNamespace)))),
      read(async () =>
        one(
          await remote(ctx, getJsonArgv('autoscalingrunnersets.actions.github.com', s.scaleSetName, s.runnerNamespace)),
        ),
      ),
      read(
        async () =>
          JSON.parse((await remote(ctx, helmArgv('list', '-A', '--all', '-o', 'json'))) || '[]') as HelmListEntry[],
      ),
      read(async () => items(await remote(ctx, kubectlArgv('get', 'pv', '-o', 'json')))),
      s.mode === 'server'
        ? read(async () => {
            const b64 = await remote(
              ctx,
              kubectlArgv(
                '--namespace',
                s.stagingNamespace,
                'get',
                'secret',
                TLS_SECRET,
                '--ignore-not-found',
                '-o',
                'jsonpath={.data.tls\\.crt}',
              ),
            );
            return b64.trim() === '' ? undefined : Buffer.from(b64.trim(), 'base64').toString('utf8');
          })
        : Promise.resolve(undefined),
    ],
  );
  // The kinds are put on the objects: `kubectl get KIND -o json` gives a List whose items may omit them.
  const workloads: Read<KubeItem[]> =
    deployments.ok && statefulSets.ok
      ? {
          ok: true,
          value: [
            ...deployments.value.map((o) => ({ ...o, kind: 'Deployment' })),
            ...statefulSets.value.map((o) => ({ ...o, kind: 'StatefulSet' })),
          ],
        }
      : { ok: false, error: deployments.ok ? (statefulSets as { error: string }).error : deployments.error };
  return {
    nodes,
    workloads,
    backupCronJob,
    scaleSet,
    releases,
    ...(certificate !== undefined ? { certificate } : {}),
    postgresBytes: volumes.ok
      ? await read(() => postgresBytes(ctx, volumes.value, s.stagingNamespace))
      : { ok: false, error: volumes.error },
  };
}

/** `du` of the local-path volume bound to postgres-0's claim (data-postgres-0), on the server. */
async function postgresBytes(ctx: Ctx, pvs: KubeItem[], namespace: string): Promise<number | undefined> {
  const pv = pvs.find((p) => {
    const ref = (p.spec?.['claimRef'] ?? {}) as { name?: string; namespace?: string };
    return ref.name === 'data-postgres-0' && ref.namespace === namespace;
  });
  const spec = (pv?.spec ?? {}) as { hostPath?: { path?: string }; local?: { path?: string } };
  const path = spec.hostPath?.path ?? spec.local?.path;
  if (path === undefined || !path.startsWith('/')) return undefined;
  const out = await remote(ctx, ['du', '-sb', '--', path]);
  const bytes = Number(out.trim().split(/\s+/)[0]);
  return Number.isFinite(bytes) ? bytes : undefined;
}

async function githubFacts(ctx: Ctx, s: StatusSettings): Promise<GitHubFacts> {
  const gh = clientFromConfig(ctx.cfg, ctx.log);
  const ref = repoRef(ctx.cfg);
  const [lastDeploy, runners, runnerReleases] = await Promise.all([
    read(async () => (await listRuns(gh, ref, DEPLOY_WORKFLOW, { perPage: 1 }))[0]),
    read(async (): Promise<GitHubRunner[]> => {
      const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/runners', { ...ref, per_page: 100 });
      return all
        .filter((r) => isRunnerOf({ name: r.name, labels: r.labels.map((l) => l.name) }, s.scaleSetName))
        .map((r) => ({ name: r.name, status: r.status, busy: r.busy }));
    }),
    read(
      async () =>
        (await gh.request('GET /repos/{owner}/{repo}/releases', { ...RUNNER_RELEASES_REPO, per_page: 100 }))
          .data as ReleaseLike[],
    ),
  ]);
  return { lastDeploy, runners, runnerReleases };
}

/** --status: exit 0 when no line is a failure, 1 otherwise (warnings do not change it). */
export async function statusRun(ctx: Ctx, json: boolean): Promise<number> {
  const s = settingsOf(ctx);
  const r = await helper(ctx, ['status', REMOTE.lockDir, REMOTE.journal, DATA_DIR], { allowFail: true });
  const sudo = sudoRefusal(ctx.ssh.target, r.exitCode, r.stderr);
  if (sudo) throw new OperationError(sudo.message, { hint: sudo.hint, detail: r.stderr, exitCode: 2 });
  if (r.exitCode === 4)
    throw new OperationError(`${ctx.cfg.get('TARGET_ROOT_USER')} on the server is not root (${r.stdout.trim()})`, {
      hint: 'set TARGET_ROOT_USER=root, or a user with passwordless sudo',
      exitCode: 2,
    });
  if (r.exitCode !== 0) throw new OperationError('the server did not answer the status query', { detail: r.stderr });
  let server;
  try {
    server = parseStatusAnswer(r.stdout, parseJournal);
  } catch (e) {
    throw new OperationError(`the journal ${REMOTE.journal} on the server is unreadable (${(e as Error).message})`, {
      hint: `inspect it (${ctx.sshHint} cat ${REMOTE.journal})`,
    });
  }
  const [cluster, gh] = await Promise.all([clusterFacts(ctx, s), githubFacts(ctx, s)]);
  const report = statusReport(s, server, cluster, gh);
  ctx.log.info(color.bold(`Status of staging on ${s.host} (nothing was changed)`));
  const tty = Boolean(process.stdout.isTTY) && !json;
  for (const line of formatStatus(report, tty)) ctx.log.info(line);
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return report.healthy ? 0 : 1;
}
