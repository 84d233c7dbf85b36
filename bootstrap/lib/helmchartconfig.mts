// Did k3s apply our HelmChartConfig? kubectl accepting the object proves nothing: k3s' helm-controller copies its
// valuesContent into the Secret chart-values-<chart> and re-runs the Job helm-install-<chart>, which runs
// `helm upgrade` with those values. The chart may refuse them (Traefik chart >= v39 enforces its values.schema.json),
// and then the Job fails and is retried forever while Traefik keeps its old settings, or, before the first install,
// never exists at all.
//
// Names and keys as helm-controller v0.17 writes them (the version every k3s v1.36 release embeds):
// pkg/controllers/chart/chart.go valuesSecret / valuesSecretAddConfig / jobName in k3s-io/helm-controller.
import type { Logger } from './log.mts';
import type { KubeObject } from './manifests.mts';
import { describeObject } from './manifests.mts';
import { getJson, readSecret, jobLogsArgv } from './kube.mts';
import { run } from './exec.mts';
import { mask } from './redact.mts';
import { OperationError } from './errors.mts';
import { pollUntil } from './poll.mts';

/** The key of chart-values-<chart> that holds the HelmChartConfig's valuesContent (helm-controller >= v0.17). */
export const CONFIG_VALUES_KEY = 'HelmChartConfigValuesContent';
const LOG_LINES = 20;

export const valuesSecretName = (chart: string): string => `chart-values-${chart}`;
export const installJobName = (chart: string): string => `helm-install-${chart}`;

interface JobCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface InstallJob {
  created: string;
  conditions: JobCondition[];
}

/** What helm-controller shows of one chart: the values it copied, and its install Job. */
export interface HelmChartState {
  /** chart-values-<chart>[HelmChartConfigValuesContent]; undefined when the Secret or the key is absent. */
  values: string | undefined;
  job: InstallJob | undefined;
}

const conditionTrue = (j: InstallJob, type: string): JobCondition | undefined =>
  j.conditions.find((c) => c.type === type && c.status === 'True');

/**
 * Pure: what is not yet true of "k3s applied this HelmChartConfig". `since` (ISO time of our apply in this run) also
 * requires the Job to be one created after it, so a Job that completed with the old values does not count.
 */
export function helmChartConfigDrift(config: KubeObject, state: HelmChartState, since?: string): string[] {
  const ns = config.metadata.namespace ?? 'kube-system';
  const chart = config.metadata.name;
  const job = `Job ${ns}/${installJobName(chart)}`;
  const want = (config['spec'] as { valuesContent?: string } | undefined)?.valuesContent ?? '';
  // helm-controller leaves the key out for an empty valuesContent.
  if ((state.values ?? '') !== want) {
    return [
      `${describeObject(config)} is not applied by k3s yet: Secret ${ns}/${valuesSecretName(chart)} holds ${state.values === undefined ? 'no HelmChartConfig values' : 'other values'}`,
    ];
  }
  if (state.job === undefined)
    return [`${job} does not exist: k3s' helm-controller has not installed the chart with these values`];
  // Kubernetes' second-resolution timestamps: a Job created in the same second as our apply counts as after it.
  if (since !== undefined && Date.parse(state.job.created) < Math.floor(Date.parse(since) / 1000) * 1000) {
    return [
      `${job} was created at ${state.job.created}, before the HelmChartConfig changed: k3s has not re-run it yet`,
    ];
  }
  const failed = conditionTrue(state.job, 'Failed');
  if (failed !== undefined) return [`${job} failed (${failed.reason ?? 'Failed'}: ${failed.message ?? 'no message'})`];
  if (conditionTrue(state.job, 'Complete') === undefined) return [`${job} has not completed yet`];
  return [];
}

export async function readHelmChartState(config: KubeObject, log?: Logger): Promise<HelmChartState> {
  const ns = config.metadata.namespace ?? 'kube-system';
  const chart = config.metadata.name;
  // The chart's values are settings, not secrets: nothing to register for masking.
  const secret = await readSecret(ns, valuesSecretName(chart), [], log);
  const job = await getJson<KubeObject & { status?: { conditions?: JobCondition[] } }>(
    'job',
    installJobName(chart),
    ns,
    log,
  );
  return {
    values: secret?.[CONFIG_VALUES_KEY],
    job:
      job === undefined
        ? undefined
        : { created: String(job.metadata['creationTimestamp'] ?? ''), conditions: job.status?.conditions ?? [] },
  };
}

async function jobLogTail(namespace: string, job: string, log: Logger): Promise<string> {
  const r = await run(jobLogsArgv(namespace, job, LOG_LINES), { allowFail: true, timeoutSeconds: 60, log });
  const text = (r.exitCode === 0 ? r.stdout : r.stderr).trim();
  return mask(text === '' ? '(no log lines)' : text);
}

/**
 * Waits (bounded) until k3s has applied `config`: its values copied and helm-install-<chart> run with them and
 * succeeded. A failed Job is an error naming the Job, with its last log lines (helm's own refusal is there).
 * Returns the change line to report.
 */
export async function awaitHelmChartConfig(
  config: KubeObject,
  opts: { since?: string; timeoutSeconds: number; log: Logger },
): Promise<string> {
  const ns = config.metadata.namespace ?? 'kube-system';
  const job = installJobName(config.metadata.name);
  const drift = await pollUntil<string[]>(
    async () => {
      const d = helmChartConfigDrift(config, await readHelmChartState(config, opts.log), opts.since);
      return d.length === 0 || / failed \(/.test(d[0] ?? '') ? { done: d } : { waiting: d[0] ?? '' };
    },
    {
      timeoutSeconds: opts.timeoutSeconds,
      progress: opts.log,
      intervalSeconds: 3,
      what: `k3s to apply ${describeObject(config)} (Job ${ns}/${job})`,
      hint: `kubectl -n ${ns} get helmchart,job,pods; kubectl -n ${ns} logs job/${job}`,
    },
  );
  if (drift.length > 0) {
    throw new OperationError(`k3s could not apply ${describeObject(config)}: ${drift[0]}`, {
      detail: `last ${LOG_LINES} log lines of job/${job}:\n${await jobLogTail(ns, job, opts.log)}`,
      hint: `the chart refused the values (see the log lines; docs/runbook.md "Traefik settings not applied"). After fixing them, re-run this step; to retry the same values: kubectl -n ${ns} delete job ${job}`,
    });
  }
  return `k3s applied ${describeObject(config)}: Job ${ns}/${job} ran with its values and succeeded`;
}
