#!/usr/bin/env -S node --import tsx --
// Smoke checks of the codex-k8s staging service (bootstrap/lib/smoke.mts): TLS certificate, /healthz, /readyz,
// /version, unsigned and signed webhook deliveries, and optionally the runner scale set this job runs on.
// Run by the staging-deploy workflow's smoke job (a failure there rolls the Deployment back), by step 80 from
// the server, and by hand. It must also run as `node bootstrap/host/smoke_staging.mts` on a plain Node 24 with
// no node_modules (the workflow does no `npm ci`): import node builtins and lib/{errors,redact,log,cli,smoke}.mts only.
import { appendFileSync, readFileSync } from 'node:fs';
import { UsageError } from '../lib/errors.mts';
import { Logger, color } from '../lib/log.mts';
import { parseCli, helpText, runMain } from '../lib/cli.mts';
import type { CliSpec, FlagValues } from '../lib/cli.mts';
import { mask, registerSecret } from '../lib/redact.mts';
import {
  CHECK_NAMES,
  DEFAULT_MIN_CERT_DAYS,
  DEFAULT_TIMEOUT_MS,
  formatJson,
  formatMarkdown,
  formatResult,
  parseSmokeUrl,
  runnerBelongsToScaleSet,
  runSmokeWithRetries,
  summaryLine,
} from '../lib/smoke.mts';
import type { CheckResult, SmokeOptions, SmokeRun } from '../lib/smoke.mts';

const SELF = './bootstrap/host/smoke_staging.mts';
export const SECRET_ENV = 'CODEXK8S_WEBHOOK_SECRET';
const DEFAULT_RETRY_DELAY_S = 5;

export const SPEC: CliSpec = {
  name: SELF,
  usage: `${SELF} --url URL [--expect-version SHA] [--webhook-secret-file PATH] [--host-header NAME] [--http-url URL] [--ca-file PATH] [--runner-scale-set NAME] [--min-cert-days N] [--timeout S] [--retries N] [--retry-delay S] [--json] [--markdown FILE]`,
  summary:
    'Smoke-checks the codex-k8s staging service and prints one line per check: ✓ (passed), ✗ (failed) or - (skipped),\n' +
    'its name, the time it took and what was seen. Checks, in order: ' +
    CHECK_NAMES.join(', ') +
    '.\n' +
    'Read-only except for two test deliveries (event "ping") sent to the webhook endpoint.',
  flags: [
    { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
    {
      name: 'url',
      type: 'string',
      value: 'URL',
      description: 'base URL of the service: https://<domain> (server mode) or http://<address> (local mode)',
    },
    {
      name: 'expect-version',
      type: 'string',
      value: 'SHA',
      description:
        'the 40-hex git SHA /version must report (the commit just deployed); without it the version is only read',
    },
    {
      name: 'webhook-secret-file',
      type: 'string',
      value: 'PATH',
      description: `file holding the webhook secret (wins over ${SECRET_ENV}); one of the two is required`,
    },
    {
      name: 'host-header',
      type: 'string',
      value: 'NAME',
      description:
        "send Host: NAME (and, for https, SNI NAME; the certificate must be valid for NAME) while connecting to the URL's address: an Ingress by IP",
    },
    {
      name: 'http-url',
      type: 'string',
      value: 'URL',
      description:
        'with an https --url: where plain HTTP is served (default http://<host of --url>, port 80); its /healthz must redirect permanently to https',
    },
    {
      name: 'ca-file',
      type: 'string',
      value: 'PATH',
      description: 'extra trusted CA certificates (PEM) for the tls check: a private CA',
    },
    {
      name: 'runner-scale-set',
      type: 'string',
      value: 'NAME',
      description:
        'check that this job runs on an ephemeral runner of scale set NAME (env RUNNER_NAME); inside a workflow job only',
    },
    {
      name: 'min-cert-days',
      type: 'string',
      value: 'N',
      description: `the certificate must be valid for at least N more days (default ${DEFAULT_MIN_CERT_DAYS})`,
    },
    {
      name: 'timeout',
      type: 'string',
      value: 'S',
      description: `per-request deadline in seconds (default ${DEFAULT_TIMEOUT_MS / 1000})`,
    },
    {
      name: 'retries',
      type: 'string',
      value: 'N',
      description: 'retry the whole set up to N more times while any check fails (default 0): right after a rollout',
    },
    {
      name: 'retry-delay',
      type: 'string',
      value: 'S',
      description: `seconds between attempts (default ${DEFAULT_RETRY_DELAY_S})`,
    },
    { name: 'json', type: 'boolean', description: 'print the result as JSON on stdout (the check lines go to stderr)' },
    {
      name: 'markdown',
      type: 'string',
      value: 'FILE',
      description: 'append the result as a Markdown table to FILE (e.g. "$GITHUB_STEP_SUMMARY")',
    },
  ],
  sections: [
    {
      title: 'Environment',
      body:
        `${SECRET_ENV}  the webhook secret, when --webhook-secret-file is not given (never pass it as a flag)\n` +
        'RUNNER_NAME              set by GitHub Actions in a job; read by --runner-scale-set\n' +
        'NO_COLOR=1               no colours',
    },
    {
      title: 'Exit codes',
      body: '0 every check passed (or was skipped)\n1 at least one check failed\n2 bad flag, unreadable or empty secret',
    },
    {
      title: 'Examples',
      body:
        `${SELF} --url https://staging.example.com --webhook-secret-file /etc/codex-k8s-bootstrap/secrets/github-webhook-secret\n` +
        `${SECRET_ENV}=... ${SELF} --url http://10.0.0.5 --host-header staging.example.com --expect-version "$(git rev-parse HEAD)"\n` +
        `${SELF} --url "$URL" --expect-version "$GITHUB_SHA" --runner-scale-set codex-k8s-staging --retries 5 --markdown "$GITHUB_STEP_SUMMARY"`,
    },
  ],
};

function str(flags: FlagValues, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v.trim() : undefined;
}

function number(
  flags: FlagValues,
  name: string,
  def: number,
  check: { min: number; max: number; integer?: boolean },
): number {
  const raw = str(flags, name);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (
    !/^\d+(\.\d+)?$/.test(raw) ||
    !Number.isFinite(n) ||
    n < check.min ||
    n > check.max ||
    (check.integer && !Number.isInteger(n))
  ) {
    throw new UsageError(
      `--${name}: "${raw}" is not ${check.integer ? 'an integer' : 'a number'} in ${check.min}..${check.max}`,
    );
  }
  return n;
}

/** The webhook secret from the file or the environment; never from a flag value (argv is visible to every user). */
export function readWebhookSecret(file: string | undefined, env: NodeJS.ProcessEnv): string {
  if (file !== undefined) {
    let value: string;
    try {
      value = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new UsageError(
        `--webhook-secret-file: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    if (!value) throw new UsageError(`--webhook-secret-file: ${file} is empty`);
    registerSecret(value);
    return value;
  }
  const fromEnv = env[SECRET_ENV];
  if (fromEnv === undefined)
    throw new UsageError(`no webhook secret: pass --webhook-secret-file PATH or set ${SECRET_ENV}`);
  const value = fromEnv.trim();
  // An unset GitHub secret expands to an empty string in a workflow: say so instead of skipping the check.
  if (!value) throw new UsageError(`${SECRET_ENV} is empty (in a workflow: is the repository secret set?)`);
  registerSecret(value);
  return value;
}

export interface ParsedArgs {
  smoke: SmokeOptions;
  attempts: number;
  retryDelayMs: number;
  json: boolean;
  markdown: string | undefined;
}

export function parseSmokeArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedArgs | 'help' {
  const flags = parseCli(SPEC, argv);
  if (flags['help']) return 'help';
  const url = str(flags, 'url');
  if (!url) throw new UsageError('--url is required');
  parseSmokeUrl(url);
  const expect = str(flags, 'expect-version')?.toLowerCase();
  if (expect !== undefined && !/^[0-9a-f]{40}$/.test(expect))
    throw new UsageError(`--expect-version: "${expect}" is not a 40-hex git SHA`);
  const hostHeader = str(flags, 'host-header');
  if (hostHeader !== undefined && !/^[A-Za-z0-9.-]+(:\d+)?$/.test(hostHeader))
    throw new UsageError(`--host-header: "${hostHeader}" is not a host name`);
  const httpUrl = str(flags, 'http-url');
  if (httpUrl !== undefined && parseSmokeUrl(httpUrl).protocol !== 'http:')
    throw new UsageError(`--http-url: "${httpUrl}" is not an http:// URL`);
  const caFile = str(flags, 'ca-file');
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new UsageError(
        `--ca-file: cannot read ${caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----'))
      throw new UsageError(`--ca-file: ${caFile} holds no PEM certificate`);
  }
  const scaleSet = str(flags, 'runner-scale-set');
  if (scaleSet !== undefined && !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(scaleSet))
    throw new UsageError(`--runner-scale-set: "${scaleSet}" is not a scale set name (a DNS label)`);
  const minCertDays = number(flags, 'min-cert-days', DEFAULT_MIN_CERT_DAYS, { min: 0, max: 3650, integer: true });
  const timeoutS = number(flags, 'timeout', DEFAULT_TIMEOUT_MS / 1000, { min: 0.1, max: 300 });
  const retries = number(flags, 'retries', 0, { min: 0, max: 100, integer: true });
  const retryDelayS = number(flags, 'retry-delay', DEFAULT_RETRY_DELAY_S, { min: 0, max: 600 });
  const webhookSecret = readWebhookSecret(str(flags, 'webhook-secret-file'), env);
  const runnerName = env['RUNNER_NAME'];
  const smoke: SmokeOptions = {
    url,
    webhookSecret,
    minCertDays,
    timeoutMs: Math.round(timeoutS * 1000),
    ...(hostHeader !== undefined ? { hostHeader } : {}),
    ...(httpUrl !== undefined ? { httpUrl } : {}),
    ...(ca !== undefined ? { ca } : {}),
    ...(expect !== undefined ? { expectVersion: expect } : {}),
    ...(scaleSet !== undefined ? { runner: async () => runnerBelongsToScaleSet(runnerName, scaleSet) } : {}),
  };
  return {
    smoke,
    attempts: retries + 1,
    retryDelayMs: Math.round(retryDelayS * 1000),
    json: flags['json'] === true,
    markdown: str(flags, 'markdown'),
  };
}

function paintLine(r: CheckResult): string {
  const line = formatResult(r);
  return r.skipped ? color.dim(line) : r.ok ? color.green(line.slice(0, 1)) + line.slice(1) : color.red(line);
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, log: Logger): Promise<number> {
  const args = parseSmokeArgs(argv, env);
  if (args === 'help') {
    process.stdout.write(helpText(SPEC));
    return 0;
  }
  // With --json, stdout carries the document only; the human lines go to stderr.
  const say = (s: string): void => {
    if (args.json) process.stderr.write(mask(s) + '\n');
    else log.info(s);
  };
  const target = args.smoke.hostHeader ? `${args.smoke.url} (Host: ${args.smoke.hostHeader})` : args.smoke.url;
  say(`smoke checks against ${target}`);
  const run: SmokeRun = await runSmokeWithRetries(
    { ...args.smoke, onResult: (r) => say(paintLine(r)) },
    {
      attempts: args.attempts,
      delayMs: args.retryDelayMs,
      onAttempt: (n, of) => {
        if (of > 1) say(color.bold(`attempt ${n}/${of}`));
      },
      onRetry: (n, of, failed) =>
        say(
          `attempt ${n}/${of}: ${failed.map((r) => r.name).join(', ')} failed; next attempt in ${args.retryDelayMs / 1000}s`,
        ),
    },
  );
  const summary = summaryLine(run.results) + (run.attempts > 1 ? ` (attempt ${run.attempt}/${run.attempts})` : '');
  say(run.ok ? color.green(summary) : color.red(summary));
  if (args.json) process.stdout.write(formatJson(run) + '\n');
  if (args.markdown) appendFileSync(args.markdown, formatMarkdown(run) + '\n');
  return run.ok ? 0 : 1;
}

if (import.meta.filename === process.argv[1]) {
  const log = new Logger();
  await runMain(SPEC, log, () => main(process.argv.slice(2), process.env, log));
}
