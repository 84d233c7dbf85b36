// k3s' helm-controller, as far as the steps can see it (k3s-io/helm-controller v0.17.7, the version k3s v1.36
// embeds; pkg/controllers/chart/chart.go). For each bundled chart (HelmChart kube-system/<chart>) it keeps:
//   Secret kube-system/chart-values-<chart>   keys HelmChartValuesContent (the HelmChart's valuesContent) and
//                                             HelmChartConfigValuesContent (a HelmChartConfig's valuesContent)
//   Job    kube-system/helm-install-<chart>   recreated whenever those values change; it runs `helm upgrade`
// The real Job runs helm, and helm refuses values that break the chart's values.schema.json. Here the Job's outcome is
// decided by the same upstream schema the helm double uses (chart-values.mts): refused values give a Failed Job whose
// log holds helm's refusal, readable with `kubectl logs job/helm-install-<chart>`.
// Not modelled: HelmChartConfig deletion (the real controller re-runs the Job without those values), the merge with
// the chart's defaults before the schema check (our values are checked alone), backoff retries of a failed Job.
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { K8sObject, KindInfo } from './kinds.mts';
import { kindByApiVersion } from './kinds.mts';
import { chartValuesProblems, isCheckedChart } from './chart-values.mts';
import type { ClusterInfo, Store } from './store.mts';

export const CONFIG_VALUES_KEY = 'HelmChartConfigValuesContent';
const CHART_VALUES_KEY = 'HelmChartValuesContent';
const NS = 'kube-system';

/** k3s' own valuesContent for its bundled Traefik (manifests/traefik.yaml), abridged: what the Secret starts with. */
const BUNDLED: Readonly<Record<string, { version: string; valuesContent: string }>> = {
  traefik: {
    version: '40.1.0+up40.1.0',
    valuesContent: 'deployment:\n  podAnnotations:\n    prometheus.io/port: "8082"\n    prometheus.io/scrape: "true"\n',
  },
};

const info = (apiVersion: string, kind: string): KindInfo => kindByApiVersion(apiVersion, kind) as KindInfo;
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const nowIso = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

function valuesSecret(chart: string, data: Record<string, string>): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `chart-values-${chart}`, namespace: NS },
    type: 'Opaque',
    data,
  };
}

function installJob(chart: string): K8sObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: `helm-install-${chart}`, namespace: NS, labels: { 'helmcharts.helm.cattle.io/chart': chart } },
    spec: {
      backoffLimit: 1000,
      template: {
        spec: {
          restartPolicy: 'OnFailure',
          serviceAccountName: `helm-${chart}`,
          containers: [{ name: 'helm', image: 'rancher/klipper-helm:v0.9.x', args: ['install'] }],
        },
      },
    },
  };
}

function failedStatus(message: string): Record<string, unknown> {
  const t = nowIso();
  return {
    failed: 1,
    active: 0,
    ready: 0,
    startTime: t,
    conditions: [
      {
        type: 'Failed',
        status: 'True',
        reason: 'BackoffLimitExceeded',
        message,
        lastProbeTime: t,
        lastTransitionTime: t,
      },
    ],
  };
}

/** What a fresh k3s server has for its bundled charts (all but the --disable'd ones). */
export function seedBundledCharts(c: ClusterInfo): K8sObject[] {
  return Object.entries(BUNDLED)
    .filter(([chart]) => !c.disabled.includes(chart))
    .flatMap(([chart, b]) => [
      {
        apiVersion: 'helm.cattle.io/v1',
        kind: 'HelmChart',
        metadata: { name: chart, namespace: NS },
        spec: {
          chart: `https://%{KUBERNETES_API}%/static/charts/${chart}-${b.version}.tgz`,
          valuesContent: b.valuesContent,
        },
      },
      valuesSecret(chart, { [CHART_VALUES_KEY]: b64(b.valuesContent) }),
      installJob(chart),
    ]);
}

function logFile(store: Store, job: string): string {
  return path.join(store.dir, 'logs', NS, 'job', `${job}.log`);
}

/** The log of a Job's pod, as `kubectl logs job/NAME` shows it; undefined when the Job never logged. */
export function jobLog(store: Store, namespace: string, job: string): string | undefined {
  if (namespace !== NS) return undefined;
  try {
    return fs.readFileSync(logFile(store, job), 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The controller's reaction to a HelmChartConfig that was just created or changed: copy its valuesContent into
 * chart-values-<chart> and re-run helm-install-<chart>. Returns the changes, in calls.jsonl's words.
 */
export function reconcileHelmChartConfig(store: Store, config: K8sObject): string[] {
  const chart = config.metadata.name;
  if ((config.metadata.namespace ?? 'default') !== NS) return [];
  const helmChart = store.get(info('helm.cattle.io/v1', 'HelmChart'), NS, chart);
  // No HelmChart of that name: the real controller keeps the config and waits for one.
  if (helmChart === undefined) return [];
  const content = String((config['spec'] as { valuesContent?: unknown } | undefined)?.valuesContent ?? '');
  const secretInfo = info('v1', 'Secret');
  const current = store.get(secretInfo, NS, `chart-values-${chart}`);
  const data = { ...((current?.['data'] as Record<string, string> | undefined) ?? {}) };
  if (content === '') delete data[CONFIG_VALUES_KEY];
  else data[CONFIG_VALUES_KEY] = b64(content);
  const secret = valuesSecret(chart, data);
  if (current === undefined) store.create(secretInfo, secret);
  else store.update(secretInfo, current, secret);

  let problems: string[];
  try {
    const values = parseYaml(content === '' ? '{}' : content) as unknown;
    problems = isCheckedChart(chart) ? chartValuesProblems(chart, values ?? {}) : [];
  } catch (err) {
    problems = [`error converting YAML to JSON: ${(err as Error).message.split('\n')[0] ?? ''}`];
  }
  const jobInfo = info('batch/v1', 'Job');
  const jobName = `helm-install-${chart}`;
  store.remove(jobInfo, NS, jobName);
  const job = store.create(jobInfo, installJob(chart));
  const lines = [
    '+ helm_v3 upgrade --install ' +
      chart +
      ` https://10.43.0.1:443/static/charts/${chart}.tgz --namespace ${NS} --values /config/values-1-000-HelmChartConfig-ValuesContent.yaml`,
  ];
  fs.mkdirSync(path.dirname(logFile(store, jobName)), { recursive: true });
  if (problems.length > 0) {
    lines.push(
      `Error: UPGRADE FAILED: values don't meet the specifications of the schema(s) in the following chart(s):`,
      `${chart}:`,
      ...problems.map((p) => `- ${p}`),
    );
    job['status'] = failedStatus('Job has reached the specified backoff limit');
    store.put(jobInfo, job);
    fs.writeFileSync(logFile(store, jobName), lines.join('\n') + '\n');
    return [
      `secret/chart-values-${chart} in ${NS} updated`,
      `job.batch/${jobName} in ${NS} failed: the chart refused the values`,
    ];
  }
  lines.push(`Release "${chart}" has been upgraded. Happy Helming!`);
  fs.writeFileSync(logFile(store, jobName), lines.join('\n') + '\n');
  return [`secret/chart-values-${chart} in ${NS} updated`, `job.batch/${jobName} in ${NS} re-run and completed`];
}
