// --status: one screen of how staging is doing. Pure: the launcher reads the facts (lib/launcher/status.mts: the
// server's `status` helper, kubectl and helm over the SSH connection, the GitHub API from the laptop) and this
// module turns them into lines, each with a level and, when it needs action, the command or runbook section.
// A fact that could not be read is a line of its own ("unknown: why"), never a crash and never a silent gap.
import { X509Certificate } from 'node:crypto';
import { formatAge } from './lock.mts';
import { formatBytes, color } from './log.mts';
import type { Journal } from './state.mts';
import type { RunInfo } from './actions.mts';
import type { HelmListEntry } from './kube.mts';
import type { Mode } from './manifests.mts';
import { runnerBumpHint, runnerFreshness, runnerImageVersion } from './runners.mts';
import type { ReleaseLike } from './runners.mts';
import {
  ARC_CONTROLLER_CHART,
  ARC_SCALE_SET_CHART,
  CERT_MANAGER_CHART,
  IMAGES,
  K3S_VERSION,
  pinMoves,
  pinVersions,
} from './versions.mts';

/** ok: nothing to do; warn: look at it soon; fail: broken now (exit 1); info: a fact without a verdict. */
export type Level = 'ok' | 'warn' | 'fail' | 'info';

export interface StatusLine {
  area: string;
  level: Level;
  text: string;
  /** The command or runbook section that deals with it (lines that need action). */
  action?: string;
}

export interface StatusReport {
  /** No line is `fail`. */
  healthy: boolean;
  at: string;
  lines: StatusLine[];
}

/** A fact that was read, or why it could not be. */
export type Read<T> = { ok: true; value: T } | { ok: false; error: string };

export interface ServerFacts {
  /** The server's clock (epoch seconds): ages are measured against it. */
  now: number;
  /** lock_holder_state: free | alive step PID | alive connection PID | gone WHY | unknown */
  lock: string;
  lockOwner: Record<string, string>;
  diskBytes?: number;
  diskAvailBytes?: number;
  memKib?: number;
  memAvailKib?: number;
  journal: Journal;
}

/** What kubectl and helm said; `postgresBytes` is `du` of the database volume. */
export interface ClusterFacts {
  nodes: Read<KubeItem[]>;
  workloads: Read<KubeItem[]>;
  backupCronJob: Read<KubeItem | undefined>;
  scaleSet: Read<KubeItem | undefined>;
  releases: Read<HelmListEntry[]>;
  /** server mode: the PEM of the ingress certificate (the tls.crt of its Secret), undefined when there is none. */
  certificate?: Read<string | undefined>;
  postgresBytes: Read<number | undefined>;
}

export interface GitHubRunner {
  name: string;
  status: string;
  busy: boolean;
}

export interface GitHubFacts {
  lastDeploy: Read<RunInfo | undefined>;
  runners: Read<GitHubRunner[]>;
  runnerReleases: Read<ReleaseLike[]>;
}

export interface StatusSettings {
  mode: Mode;
  host: string;
  domain?: string;
  stagingNamespace: string;
  runnerNamespace: string;
  scaleSetName: string;
  runnerImage: string;
  repo: string;
}

/** The loosely typed objects of `kubectl get -o json` that the status reads. */
export interface KubeItem {
  kind?: string;
  metadata: { name: string; namespace?: string; creationTimestamp?: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** The backup CronJob runs nightly (manifests/postgres/backup.yaml): a day and a bit without a success is late. */
export const BACKUP_LATE_HOURS = 26;
/** Certificates: cert-manager renews 30 days before the end; below 14 days left the renewal is failing. */
export const CERT_WARN_DAYS = 14;
export const DISK_WARN_FRACTION = 0.15;
export const DISK_FAIL_FRACTION = 0.05;
export const MEM_WARN_FRACTION = 0.1;

const RUNBOOK = 'docs/runbook.md';
const section = (title: string) => `${RUNBOOK} "${title}"`;
const SELF = './bootstrap/host/bootstrap_remote_staging.mts';

// ---- the report -------------------------------------------------------------------------------------------------

export function statusReport(
  s: StatusSettings,
  server: ServerFacts,
  cluster: ClusterFacts,
  gh: GitHubFacts,
): StatusReport {
  const now = server.now * 1000;
  const lines: StatusLine[] = [
    ...nodeLines(cluster.nodes),
    ...chartLines(cluster.releases, s),
    ...imageLines(cluster.workloads, cluster.scaleSet, s),
    ...postgresLines(cluster, s, now),
    ...serviceLines(cluster.workloads, s),
    ...runnerLines(cluster.scaleSet, gh, s, now),
    ...deployLines(gh.lastDeploy, server.journal, now),
    ...tlsLines(cluster.certificate, s, now),
    ...hostLines(server),
    ...journalLines(server, now),
  ];
  return { healthy: lines.every((l) => l.level !== 'fail'), at: new Date(now).toISOString(), lines };
}

function unknown(area: string, what: string, error: string, action?: string): StatusLine {
  return { area, level: 'warn', text: `${what}: unknown (${error})`, ...(action ? { action } : {}) };
}

function conditionTrue(o: KubeItem, type: string): boolean {
  const conditions = (o.status?.['conditions'] ?? []) as Array<{ type?: string; status?: string }>;
  return conditions.some((c) => c.type === type && c.status === 'True');
}

function nodeLines(nodes: Read<KubeItem[]>): StatusLine[] {
  const area = 'cluster';
  const action = section('k3s down or the node NotReady');
  if (!nodes.ok) return [{ area, level: 'fail', text: `the API server does not answer: ${nodes.error}`, action }];
  const notReady = nodes.value.filter((n) => !conditionTrue(n, 'Ready')).map((n) => n.metadata.name);
  const out: StatusLine[] = [
    notReady.length === 0 && nodes.value.length > 0
      ? { area, level: 'ok', text: `${nodes.value.length}/${nodes.value.length} node(s) Ready` }
      : {
          area,
          level: 'fail',
          text: `${nodes.value.length - notReady.length}/${nodes.value.length} node(s) Ready${notReady.length ? `; NotReady: ${notReady.join(', ')}` : ''}`,
          action,
        },
  ];
  for (const n of nodes.value) {
    const v = ((n.status?.['nodeInfo'] ?? {}) as { kubeletVersion?: string }).kubeletVersion ?? '?';
    out.push(
      v === K3S_VERSION
        ? { area, level: 'ok', text: `${n.metadata.name}: k3s ${v} (the pin)` }
        : {
            area,
            level: 'warn',
            text: `${n.metadata.name}: k3s ${v}, the pin is ${K3S_VERSION}`,
            action: `${SELF} --check, then ${SELF} --only 20_install_k3s`,
          },
    );
  }
  return out;
}

function chartLines(releases: Read<HelmListEntry[]>, s: StatusSettings): StatusLine[] {
  const area = 'charts';
  if (!releases.ok) return [unknown(area, 'helm releases', releases.error)];
  const wanted = [
    {
      release: CERT_MANAGER_CHART.release,
      namespace: CERT_MANAGER_CHART.namespace,
      chart: CERT_MANAGER_CHART.chart,
      version: CERT_MANAGER_CHART.version,
      step: '30_cluster_deps',
    },
    {
      release: ARC_CONTROLLER_CHART.release,
      namespace: ARC_CONTROLLER_CHART.namespace,
      chart: ARC_CONTROLLER_CHART.chart,
      version: ARC_CONTROLLER_CHART.version,
      step: '60_runner_arc',
    },
    {
      release: s.scaleSetName,
      namespace: s.runnerNamespace,
      chart: ARC_SCALE_SET_CHART.chart,
      version: ARC_SCALE_SET_CHART.version,
      step: '60_runner_arc',
    },
  ];
  return wanted.map((w) => {
    const r = releases.value.find((x) => x.name === w.release && x.namespace === w.namespace);
    const pinned = `${w.chart}-${w.version}`;
    const name = `${w.namespace}/${w.release}`;
    if (!r)
      return {
        area,
        level: 'fail',
        text: `${name}: not installed (pin ${pinned})`,
        action: `${SELF} --from ${w.step}`,
      };
    if (r.status !== 'deployed')
      return { area, level: 'fail', text: `${name}: ${r.chart} is ${r.status}`, action: `${SELF} --from ${w.step}` };
    return r.chart === pinned
      ? { area, level: 'ok', text: `${name}: ${r.chart} (the pin)` }
      : {
          area,
          level: 'warn',
          text: `${name}: ${r.chart}, the pin is ${pinned}`,
          action: `${SELF} --check, then ${SELF} --only ${w.step}`,
        };
  });
}

/** Every container of a Deployment, StatefulSet or the scale set's runner template. */
function containers(o: KubeItem): Array<{ name: string; image: string }> {
  const template = (o.spec?.['template'] ?? {}) as { spec?: { containers?: Array<{ name: string; image: string }> } };
  return template.spec?.containers ?? [];
}

/** `docker.io/library/registry:3.1.1` -> `docker.io/library/registry` (a digest and a tag dropped). */
export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0] as string;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

function imageLines(
  workloads: Read<KubeItem[]>,
  scaleSet: Read<KubeItem | undefined>,
  s: StatusSettings,
): StatusLine[] {
  const area = 'images';
  if (!workloads.ok) return [unknown(area, 'workload images', workloads.error)];
  const pins: Array<{ pin: string; step: string }> = [
    { pin: IMAGES.registry, step: '30_cluster_deps' },
    { pin: IMAGES.postgres, step: '40_postgres' },
    { pin: IMAGES.buildkit, step: '50_deploy_codex_k8s' },
  ];
  const found = workloads.value.flatMap((o) =>
    containers(o).map((c) => ({ where: `${o.metadata.namespace ?? ''}/${o.metadata.name}`, image: c.image })),
  );
  if (scaleSet.ok && scaleSet.value)
    for (const c of containers(scaleSet.value))
      found.push({
        where: `${scaleSet.value.metadata.namespace ?? ''}/${scaleSet.value.metadata.name}`,
        image: c.image,
      });
  const all = [...pins, { pin: s.runnerImage, step: '60_runner_arc' }];
  return all.map(({ pin, step }) => {
    const repo = imageRepository(pin);
    const running = found.filter((f) => imageRepository(f.image) === repo);
    if (running.length === 0) return { area, level: 'info', text: `${repo}: not running (pin ${pin})` };
    const off = running.filter((f) => f.image !== pin);
    if (off.length === 0)
      return { area, level: 'ok', text: `${pin} (the pin) in ${[...new Set(running.map((f) => f.where))].join(', ')}` };
    return {
      area,
      level: 'warn',
      text: `${off.map((f) => `${f.where} runs ${f.image}`).join('; ')}; the pin is ${pin}`,
      action: `${SELF} --check, then ${SELF} --only ${step}`,
    };
  });
}

function readyReplicas(o: KubeItem | undefined): { ready: number; want: number } {
  return { ready: Number(o?.status?.['readyReplicas'] ?? 0), want: Number(o?.spec?.['replicas'] ?? 1) };
}

function find(workloads: KubeItem[], kind: string, namespace: string, name: string): KubeItem | undefined {
  return workloads.find((o) => o.kind === kind && o.metadata.namespace === namespace && o.metadata.name === name);
}

function postgresLines(c: ClusterFacts, s: StatusSettings, now: number): StatusLine[] {
  const area = 'postgres';
  const out: StatusLine[] = [];
  const action = section('PostgreSQL crash-loops, or its volume is full');
  if (!c.workloads.ok) out.push(unknown(area, 'readiness', c.workloads.error));
  else {
    const sts = find(c.workloads.value, 'StatefulSet', s.stagingNamespace, 'postgres');
    const r = readyReplicas(sts);
    const size = c.postgresBytes.ok
      ? c.postgresBytes.value === undefined
        ? 'size on disk unknown (no local volume found)'
        : `${formatBytes(c.postgresBytes.value)} on disk`
      : `size on disk unknown (${c.postgresBytes.error})`;
    out.push(
      !sts
        ? {
            area,
            level: 'fail',
            text: `StatefulSet ${s.stagingNamespace}/postgres is missing`,
            action: `${SELF} --from 40_postgres`,
          }
        : r.ready >= r.want
          ? { area, level: 'ok', text: `ready (${r.ready}/${r.want}), ${size}` }
          : { area, level: 'fail', text: `not ready (${r.ready}/${r.want}), ${size}`, action },
    );
  }
  const backupAction = section('Restore PostgreSQL from a backup');
  if (!c.backupCronJob.ok) out.push(unknown(area, 'the nightly backup', c.backupCronJob.error));
  else if (!c.backupCronJob.value)
    out.push({
      area,
      level: 'fail',
      text: `CronJob ${s.stagingNamespace}/postgres-backup is missing`,
      action: `${SELF} --only 40_postgres`,
    });
  else {
    const cj = c.backupCronJob.value;
    const last = cj.status?.['lastSuccessfulTime'] as string | undefined;
    const created = Date.parse(cj.metadata.creationTimestamp ?? '');
    const lateMs = BACKUP_LATE_HOURS * 3_600_000;
    if (last) {
      const age = Math.max(0, Math.round((now - Date.parse(last)) / 1000));
      out.push(
        age * 1000 <= lateMs
          ? { area, level: 'ok', text: `last successful backup ${formatAge(age)} ago (${last})` }
          : {
              area,
              level: 'warn',
              text: `last successful backup ${formatAge(age)} ago (${last}), later than ${BACKUP_LATE_HOURS}h`,
              action: backupAction,
            },
      );
    } else if (Number.isFinite(created) && now - created <= lateMs)
      out.push({
        area,
        level: 'info',
        text: `no backup yet: the CronJob is ${formatAge(Math.round((now - created) / 1000))} old and runs nightly`,
      });
    else out.push({ area, level: 'warn', text: 'no successful backup yet', action: backupAction });
  }
  return out;
}

/** The service's image tag is the commit it was built from (50_deploy_codex_k8s, the deploy workflow). */
function serviceLines(workloads: Read<KubeItem[]>, s: StatusSettings): StatusLine[] {
  const area = 'service';
  if (!workloads.ok) return [unknown(area, 'codex-k8s', workloads.error)];
  const d = find(workloads.value, 'Deployment', s.stagingNamespace, 'codex-k8s');
  if (!d)
    return [
      {
        area,
        level: 'fail',
        text: `Deployment ${s.stagingNamespace}/codex-k8s is missing`,
        action: `${SELF} --from 50_deploy_codex_k8s`,
      },
    ];
  const r = readyReplicas(d);
  const image = containers(d)[0]?.image ?? '?';
  // appImageTag (lib/manifests.mts): `sha-` and the commit's first 12 hex digits.
  const commit = /:sha-([0-9a-f]{12})$/.exec(image)?.[1];
  const text = `codex-k8s ${r.ready}/${r.want} ready, image ${commit ? `of commit ${commit}` : image}`;
  return [
    r.ready >= r.want && r.want > 0
      ? { area, level: 'ok', text }
      : { area, level: 'fail', text, action: section('A staging deploy is red, or 80_deploy_loop_check fails') },
  ];
}

function runnerLines(
  scaleSet: Read<KubeItem | undefined>,
  gh: GitHubFacts,
  s: StatusSettings,
  now: number,
): StatusLine[] {
  const area = 'runners';
  const action = section('Runners offline, or jobs stuck "waiting for a runner"');
  const out: StatusLine[] = [];
  if (!scaleSet.ok) out.push(unknown(area, `scale set ${s.scaleSetName}`, scaleSet.error));
  else if (!scaleSet.value)
    out.push({
      area,
      level: 'fail',
      text: `scale set ${s.runnerNamespace}/${s.scaleSetName} is missing`,
      action: `${SELF} --from 60_runner_arc`,
    });
  else {
    const st = (scaleSet.value.status ?? {}) as {
      currentRunners?: number;
      runningEphemeralRunners?: number;
      pendingEphemeralRunners?: number;
    };
    out.push({
      area,
      level: 'info',
      text: `scale set ${s.scaleSetName}: ${st.currentRunners ?? 0} runner pod(s) (${st.runningEphemeralRunners ?? 0} running, ${st.pendingEphemeralRunners ?? 0} pending)`,
    });
  }
  if (!gh.runners.ok) out.push(unknown(area, 'runners registered in GitHub', gh.runners.error));
  else {
    const mine = gh.runners.value;
    const online = mine.filter((r) => r.status === 'online');
    const idle = online.filter((r) => !r.busy);
    const text = `${online.length} online in GitHub (${idle.length} idle, ${online.length - idle.length} busy), ${mine.length - online.length} offline`;
    // Server mode scales to zero between jobs: no runner online is normal there.
    out.push(
      online.length > 0 || s.mode === 'server'
        ? {
            area,
            level: online.length > 0 ? 'ok' : 'info',
            text: online.length > 0 ? text : `${text}; the scale set starts runners when jobs are queued`,
          }
        : { area, level: 'fail', text, action },
    );
  }
  const version = runnerImageVersion(s.runnerImage);
  if (!gh.runnerReleases.ok)
    out.push(unknown(area, `runner ${version ?? s.runnerImage} freshness`, gh.runnerReleases.error));
  else if (version) {
    const f = runnerFreshness(version, gh.runnerReleases.value, now);
    if (f.kind === 'current')
      out.push({ area, level: 'ok', text: `runner ${version}: no newer actions/runner release` });
    else
      out.push({
        area,
        level: f.kind === 'expired' ? 'fail' : 'warn',
        text:
          f.kind === 'expired'
            ? `runner ${version} is past GitHub's limit since ${f.deadline}: jobs stay queued (latest ${f.latest})`
            : `runner ${version} is behind ${f.latest}: GitHub stops queueing jobs to it on ${f.deadline} (${f.days} day(s) left)`,
        action: runnerBumpHint(s.runnerImage, f.latest),
      });
  }
  return out;
}

function deployLines(last: Read<RunInfo | undefined>, journal: Journal, now: number): StatusLine[] {
  const area = 'deploys';
  const action = section('A staging deploy is red, or 80_deploy_loop_check fails');
  const out: StatusLine[] = [];
  if (!last.ok) out.push(unknown(area, 'the last staging-deploy run', last.error));
  else if (!last.value)
    out.push({ area, level: 'info', text: 'no staging-deploy run yet: a push to the default branch starts one' });
  else {
    const r = last.value;
    const age = formatAge(Math.max(0, Math.round((now - Date.parse(r.createdAt)) / 1000)));
    const what = `last deploy #${r.runNumber} of ${r.headSha.slice(0, 12)}, ${age} ago: ${r.status === 'completed' ? (r.conclusion ?? 'unknown') : r.status} ${r.htmlUrl}`;
    out.push(
      r.status !== 'completed' || r.conclusion === 'success'
        ? { area, level: r.status === 'completed' ? 'ok' : 'info', text: what }
        : { area, level: 'fail', text: what, action },
    );
  }
  const proven = journal.deployLoop;
  out.push(
    proven
      ? {
          area,
          level: 'info',
          text: `deploy loop last proven for ${proven.headSha.slice(0, 12)} at ${proven.provenAt}${pinsNote(proven.pins)}`,
        }
      : {
          area,
          level: 'warn',
          text: 'the deploy loop was never proven on this server',
          action: `${SELF} --only 80_deploy_loop_check`,
        },
  );
  return out;
}

/** After an upgrade the proof is of the old cluster: say so (80_deploy_loop_check proves it again on the next run). */
function pinsNote(pins: Record<string, string> | undefined): string {
  if (pins === undefined) return ' (before the pins were recorded)';
  return pinMoves(pins, pinVersions()).length === 0
    ? ''
    : ', with other pins than this checkout (a run proves it again: --only 80_deploy_loop_check)';
}

function tlsLines(cert: Read<string | undefined> | undefined, s: StatusSettings, now: number): StatusLine[] {
  const area = 'tls';
  if (s.mode === 'local' || cert === undefined)
    return [{ area, level: 'info', text: 'local mode: plain HTTP, no certificate' }];
  const action = section('The TLS certificate was not issued');
  if (!cert.ok) return [unknown(area, `the certificate of ${s.domain}`, cert.error, action)];
  if (!cert.value)
    return [
      {
        area,
        level: 'fail',
        text: `no certificate for ${s.domain} yet (Secret codex-k8s-tls is empty or missing)`,
        action,
      },
    ];
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert.value);
  } catch (e) {
    return [
      {
        area,
        level: 'fail',
        text: `the certificate in codex-k8s-tls does not parse (${(e as Error).message})`,
        action,
      },
    ];
  }
  const days = Math.floor((Date.parse(x.validTo) - now) / 86_400_000);
  const text = `${s.domain}: ${days} day(s) left (until ${new Date(Date.parse(x.validTo)).toISOString().slice(0, 10)}), issuer ${x.issuer.split('\n').find((l) => l.startsWith('CN=')) ?? x.issuer}`;
  if (days < 0)
    return [{ area, level: 'fail', text: `${s.domain}: the certificate expired ${-days} day(s) ago`, action }];
  return [days < CERT_WARN_DAYS ? { area, level: 'warn', text, action } : { area, level: 'ok', text }];
}

function hostLines(f: ServerFacts): StatusLine[] {
  const area = 'host';
  const out: StatusLine[] = [];
  if (f.diskBytes && f.diskAvailBytes !== undefined) {
    const frac = f.diskAvailBytes / f.diskBytes;
    const text = `disk under /var/lib: ${formatBytes(f.diskAvailBytes)} free of ${formatBytes(f.diskBytes)} (${Math.round(frac * 100)}%)`;
    const action = section('PostgreSQL crash-loops, or its volume is full');
    out.push(
      frac < DISK_FAIL_FRACTION
        ? { area, level: 'fail', text, action }
        : frac < DISK_WARN_FRACTION
          ? { area, level: 'warn', text, action }
          : { area, level: 'ok', text },
    );
  } else out.push({ area, level: 'warn', text: 'disk under /var/lib: unknown (df gave no answer)' });
  if (f.memKib && f.memAvailKib !== undefined) {
    const frac = f.memAvailKib / f.memKib;
    const text = `memory: ${formatBytes(f.memAvailKib * 1024)} available of ${formatBytes(f.memKib * 1024)} (${Math.round(frac * 100)}%)`;
    out.push(frac < MEM_WARN_FRACTION ? { area, level: 'warn', text } : { area, level: 'ok', text });
  }
  return out;
}

function journalLines(f: ServerFacts, now: number): StatusLine[] {
  const area = 'journal';
  const last = f.journal.history.at(-1);
  const out: StatusLine[] = [
    last
      ? lastRunLine(f.journal, last, now)
      : { area, level: 'warn', text: 'no run recorded on this server', action: SELF },
  ];
  if (f.lock.startsWith('alive'))
    out.push({
      area,
      level: 'info',
      text: `a run is going on: ${f.lockOwner['holder'] ?? '?'}, step ${f.lockOwner['step'] || '-'} (${f.lock})`,
    });
  else if (f.lock !== 'free')
    out.push({
      area,
      level: 'info',
      text: `a lock of a run that ended is left (${f.lock.replace(/^gone /, '')}): the next run takes it over`,
      action: section('Another run holds the server lock'),
    });
  return out;
}

/** The newest run, and the steps whose last run did not end ok (the first of them is where to resume). */
function lastRunLine(journal: Journal, last: Journal['history'][number], now: number): StatusLine {
  const area = 'journal';
  const age = formatAge(Math.max(0, Math.round((now - Date.parse(last.at)) / 1000)));
  const unfinished = Object.entries(journal.steps)
    .filter(([, r]) => r.status !== 'ok')
    .map(([name, r]) => `${name} ${r.status}`)
    .sort();
  if (unfinished.length === 0) return { area, level: 'ok', text: `last run ${last.runId}, ${age} ago; every step ok` };
  return {
    area,
    level: 'warn',
    text: `last run ${last.runId}, ${age} ago; ${unfinished.join(', ')}`,
    action: `${SELF} --from ${unfinished[0]?.split(' ')[0]}`,
  };
}

// ---- parsing the server's answer --------------------------------------------------------------------------------

/** remote_helpers.sh status: key=value lines, `--- journal`, the journal. */
export function parseStatusAnswer(stdout: string, parseJournal: (text: string) => Journal): ServerFacts {
  const sep = stdout.indexOf('\n--- journal\n');
  if (sep < 0) throw new Error(`no journal section in the server's status answer: ${stdout.slice(0, 200)}`);
  const kv: Record<string, string> = {};
  for (const line of stdout.slice(0, sep).split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv[line.slice(0, i)] = line.slice(i + 1);
  }
  const num = (k: string) => (kv[k] !== undefined && /^\d+$/.test(kv[k]) ? Number(kv[k]) : undefined);
  const lockOwner: Record<string, string> = {};
  for (const [k, v] of Object.entries(kv)) if (k.startsWith('lock.')) lockOwner[k.slice(5)] = v;
  const facts: ServerFacts = {
    now: num('now') ?? Math.floor(Date.now() / 1000),
    lock: kv['lock'] ?? 'free',
    lockOwner,
    journal: parseJournal(stdout.slice(sep + '\n--- journal\n'.length)),
  };
  const d = num('disk_bytes');
  const da = num('disk_avail_bytes');
  const m = num('mem_kib');
  const ma = num('mem_avail_kib');
  if (d !== undefined) facts.diskBytes = d;
  if (da !== undefined) facts.diskAvailBytes = da;
  if (m !== undefined) facts.memKib = m;
  if (ma !== undefined) facts.memAvailKib = ma;
  return facts;
}

// ---- the screen -------------------------------------------------------------------------------------------------

const MARK: Record<Level, { tty: string; plain: string; paint: (s: string) => string }> = {
  ok: { tty: '✓', plain: 'ok  ', paint: color.green },
  warn: { tty: '!', plain: 'warn', paint: color.yellow },
  fail: { tty: '✗', plain: 'FAIL', paint: color.red },
  info: { tty: '·', plain: 'info', paint: color.dim },
};

/** One line per fact, grouped by area; an action under the line that needs it. `tty`: symbols instead of words. */
export function formatStatus(r: StatusReport, tty: boolean): string[] {
  const w = Math.max(...r.lines.map((l) => l.area.length));
  const out: string[] = [];
  let area = '';
  for (const l of r.lines) {
    const m = MARK[l.level];
    out.push(`  ${(l.area === area ? '' : l.area).padEnd(w)}  ${m.paint(tty ? m.tty : m.plain)}  ${l.text}`);
    if (l.action) out.push(`  ${' '.repeat(w)}  ${tty ? ' ' : '    '}  -> ${l.action}`);
    area = l.area;
  }
  const counts = (['fail', 'warn'] as const).map((lv) => r.lines.filter((l) => l.level === lv).length);
  out.push(
    r.healthy
      ? color.green(`healthy${counts[1] ? `, ${counts[1]} warning(s)` : ''} (at ${r.at})`)
      : color.red(`${counts[0]} problem(s), ${counts[1]} warning(s) (at ${r.at})`),
  );
  return out;
}
