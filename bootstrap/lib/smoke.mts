// Smoke checks of a running codex-k8s staging service: the TLS certificate, the plain-HTTP redirect to HTTPS,
// /healthz, /readyz, /version, the
// webhook endpoint (unsigned must be refused, signed must be stored and show as the latest delivery) and an
// optional runner probe. Used by bootstrap/host/smoke_staging.mts, the staging-deploy workflow's smoke job and
// step 80.
//
// The workflow runs this with a plain Node 24 and no `npm ci`: import node builtins and
// lib/{errors,redact,log,cli}.mts ONLY (test/unit/smoke.test.mts checks the whole import graph).
//
// Certificate problems are reported by the `tls` check alone. The HTTP checks do not verify the certificate
// again, so an expired certificate reads as one ✗ and the other lines still tell whether the app itself works.
// They only ever send a test ping signed with HMAC: nothing secret travels to an unverified server.
import { createHmac, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { connect as tlsConnect, checkServerIdentity } from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import { UsageError } from './errors.mts';
import { mask, registerSecret } from './redact.mts';

export const CHECK_NAMES = [
  'tls',
  'https-redirect',
  'healthz',
  'readyz',
  'version',
  'webhook-unsigned',
  'webhook-signed',
  'runner',
] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

export interface CheckResult {
  name: CheckName;
  /** False only for a failed check; a skipped check is ok (it has nothing to say). */
  ok: boolean;
  skipped: boolean;
  /** Wall time of the check, milliseconds. */
  ms: number;
  /** What was seen: the reason of a ✗, the evidence of a ✓ (masked). */
  reason: string;
}

export interface RunnerProbeResult {
  ok: boolean;
  reason: string;
}

export interface SmokeOptions {
  /** Base URL of the service: http://... or https://... (a path prefix is kept). */
  url: string;
  /** Sent as Host (and, for https, used as SNI and as the name the certificate must be valid for). */
  hostHeader?: string;
  /**
   * For an https URL: where plain HTTP is served (default http://HOST, port 80). Its /healthz must answer a
   * permanent redirect to the https URL: Traefik's web entry point in server mode (manifests/cluster/traefik.server.yaml).
   */
  httpUrl?: string;
  /** Extra trusted CA certificates (PEM) for the tls check: a private CA, tests. */
  ca?: string;
  /** 40-hex git SHA the service must report; when absent the version is only read. */
  expectVersion?: string;
  /** Webhook secret for the signed delivery; when absent that check is skipped. */
  webhookSecret?: string;
  /** The certificate must be valid for at least this many more days (default 14). */
  minCertDays?: number;
  /** Per request (and per TLS handshake / runner probe) deadline, milliseconds (default 10000). */
  timeoutMs?: number;
  /** Optional probe: is the runner scale set there? */
  runner?: () => Promise<RunnerProbeResult>;
  /** Called as each check finishes (the CLI prints it right away). */
  onResult?: (r: CheckResult) => void;
}

export interface RetryOptions {
  /** Total attempts of the whole set, >= 1 (bounded: never loops forever). */
  attempts: number;
  delayMs: number;
  /** Called before an attempt (n from 1). */
  onAttempt?: (n: number, of: number) => void;
  /** Called after a failed attempt that will be retried. */
  onRetry?: (n: number, of: number, failed: readonly CheckResult[]) => void;
}

export interface SmokeRun {
  ok: boolean;
  url: string;
  hostHeader: string | undefined;
  /** The attempt whose results these are (1-based) and the bound. */
  attempt: number;
  attempts: number;
  startedAt: string;
  seconds: number;
  results: CheckResult[];
}

export const DEFAULT_MIN_CERT_DAYS = 14;
export const DEFAULT_TIMEOUT_MS = 10_000;
const BODY_LIMIT = 64 * 1024;
const REASON_LIMIT = 400;
const DAY_MS = 86_400_000;

/** Parses and checks the base URL: http(s), no credentials, no query or fragment. */
export function parseSmokeUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`--url: "${raw}" is not a URL; expected http://HOST[:PORT] or https://HOST[:PORT]`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new UsageError(`--url: scheme ${u.protocol} is not http: or https:`);
  if (u.username || u.password) throw new UsageError('--url: credentials in the URL are not supported');
  if (u.search || u.hash) throw new UsageError('--url: the base URL takes no query or fragment');
  return u;
}

/** GitHub's signature header value for `body`: sha256=<hex HMAC-SHA256>. */
export function signWebhook(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** ARC names ephemeral runners <scale set>-<5 random>-runner-<5 random> (EphemeralRunnerSet + EphemeralRunner
 * generateName); RUNNER_NAME in a job is that name. So a job can tell which scale set it runs on. */
export function runnerBelongsToScaleSet(runnerName: string | undefined, scaleSet: string): RunnerProbeResult {
  if (!runnerName) return { ok: false, reason: 'RUNNER_NAME is not set: not running inside a GitHub Actions job' };
  const prefix = `${scaleSet}-`;
  if (runnerName.startsWith(prefix) && /^[a-z0-9]+-runner-[a-z0-9]+$/.test(runnerName.slice(prefix.length))) {
    return { ok: true, reason: `this job runs on ${runnerName}, an ephemeral runner of scale set ${scaleSet}` };
  }
  return {
    ok: false,
    reason: `this job runs on ${runnerName}, not on an ephemeral runner of scale set ${scaleSet} (${scaleSet}-xxxxx-runner-xxxxx)`,
  };
}

// ------------------------------------------------------------------------------------------------
// Transport

interface Target {
  url: URL;
  hostHeader: string | undefined;
  ca: string | undefined;
  timeoutMs: number;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** The address to connect to: URL.hostname keeps IPv6 brackets, sockets want them off. */
function connectHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

function connectPort(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/** The name the certificate must be valid for and the SNI we send (never an IP: TLS forbids IPs in SNI). */
function tlsName(t: Target): string {
  return t.hostHeader ? t.hostHeader.replace(/:\d+$/, '') : connectHost(t.url);
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))}s`;
}

function describeNetError(e: unknown, t: Target): string {
  const err = e as NodeJS.ErrnoException;
  const where = `${connectHost(t.url)}:${connectPort(t.url)}`;
  switch (err.code) {
    case 'ECONNREFUSED':
      return `connection refused by ${where}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve ${connectHost(t.url)} (${err.code})`;
    case 'ECONNRESET':
      return `connection reset by ${where}`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${where} is unreachable (${err.code})`;
    default:
      return err.message || String(e);
  }
}

function httpCall(
  t: Target,
  method: 'GET' | 'POST',
  path: string,
  opts: { headers?: OutgoingHttpHeaders; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const https = t.url.protocol === 'https:';
    const headers: OutgoingHttpHeaders = {
      'user-agent': 'codex-k8s-smoke',
      accept: 'application/json',
      ...opts.headers,
    };
    if (t.hostHeader) headers['host'] = t.hostHeader;
    if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body);
    const name = tlsName(t);
    const options = {
      method,
      host: connectHost(t.url),
      port: connectPort(t.url),
      path: t.url.pathname.replace(/\/+$/, '') + path,
      headers,
      agent: false as const,
      // See the header comment: the tls check owns certificate verification.
      ...(https
        ? { rejectUnauthorized: false, ...(isIP(name) ? {} : { servername: name }), ...(t.ca ? { ca: t.ca } : {}) }
        : {}),
    };
    let settled = false;
    const finish = (err: Error | undefined, answer?: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(answer as Answer);
    };
    const req = (https ? httpsRequest : httpRequest)(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size >= BODY_LIMIT) return;
        chunks.push(c);
        size += c.length;
      });
      res.on('end', () =>
        finish(undefined, {
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8').slice(0, BODY_LIMIT),
        }),
      );
      res.on('error', (e) => finish(e));
    });
    const timer = setTimeout(() => {
      const e = new Error(`no answer within ${seconds(t.timeoutMs)} (${method} ${path})`);
      finish(e);
      req.destroy(e);
    }, t.timeoutMs);
    req.on('error', (e) => finish(new Error(describeNetError(e, t))));
    req.end(opts.body);
  });
}

function parseJson(body: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(body);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function snippet(body: string): string {
  const one = body.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}

/** "HTTP 503, want 200: not ready: <reason>" with the service's own words when it gave any. */
function unexpected(a: Answer, want: number): string {
  const j = parseJson(a.body);
  const words = j
    ? [j['status'], j['reason'], j['error']].filter((x): x is string => typeof x === 'string').join(': ')
    : '';
  const said = words || snippet(a.body);
  return `HTTP ${a.status}, want ${want}${said ? `: ${said}` : ''}`;
}

// ------------------------------------------------------------------------------------------------
// Checks

type Outcome = { ok: boolean; reason: string; skipped?: boolean };

function certName(c: PeerCertificate): string {
  const san = c.subjectaltname;
  if (san) return san.replace(/DNS:|IP Address:/g, '');
  return c.subject?.CN ? `CN=${String(c.subject.CN)}` : 'no name';
}

function issuerName(c: PeerCertificate): string {
  const i = c.issuer;
  if (!i) return 'unknown issuer';
  const parts = [i.O ? String(i.O) : '', i.CN ? `CN=${String(i.CN)}` : ''].filter(Boolean);
  return parts.join(' ') || 'unknown issuer';
}

function dateOnly(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

async function checkTls(t: Target, minDays: number): Promise<Outcome> {
  if (t.url.protocol !== 'https:') return { ok: true, skipped: true, reason: 'plain http: no certificate to check' };
  const name = tlsName(t);
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    const socket = tlsConnect({
      host: connectHost(t.url),
      port: connectPort(t.url),
      ...(isIP(name) ? {} : { servername: name }),
      ...(t.ca ? { ca: t.ca } : {}),
      // Collect every problem instead of failing on the first: the chain here, the name and the dates below.
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(
      () => done({ ok: false, reason: `no TLS handshake within ${seconds(t.timeoutMs)}` }),
      t.timeoutMs,
    );
    socket.on('error', (e) => done({ ok: false, reason: `TLS handshake failed: ${describeNetError(e, t)}` }));
    socket.on('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      if (!cert || !cert.valid_to) return done({ ok: false, reason: 'the server sent no certificate' });
      const notAfter = Date.parse(cert.valid_to);
      const notBefore = Date.parse(cert.valid_from);
      const now = Date.now();
      const daysLeft = Math.floor((notAfter - now) / DAY_MS);
      const problems: string[] = [];
      const chain = socket.authorizationError as unknown as string | Error | null;
      const chainCode = chain
        ? typeof chain === 'string'
          ? chain
          : ((chain as NodeJS.ErrnoException).code ?? chain.message)
        : '';
      if (notAfter <= now)
        problems.push(`certificate expired on ${cert.valid_to} (${Math.floor((now - notAfter) / DAY_MS)} days ago)`);
      else if (notBefore > now) problems.push(`certificate is not valid before ${cert.valid_from}`);
      if (chainCode && chainCode !== 'CERT_HAS_EXPIRED' && chainCode !== 'CERT_NOT_YET_VALID') {
        problems.push(`chain does not verify: ${chainCode} (issuer ${issuerName(cert)}; a private CA needs --ca-file)`);
      }
      const idErr = checkServerIdentity(name, cert);
      if (idErr) problems.push(`certificate is for ${certName(cert)}, not ${name}`);
      if (notAfter > now && daysLeft < minDays)
        problems.push(`${daysLeft} days left (until ${dateOnly(notAfter)}), want at least ${minDays}`);
      if (problems.length > 0) return done({ ok: false, reason: problems.join('; ') });
      done({
        ok: true,
        reason: `valid for ${name}, ${daysLeft} days left (until ${dateOnly(notAfter)}), issuer ${issuerName(cert)}`,
      });
    });
  });
}

/** Permanent redirects only: a temporary one (302/307) would not be cached and says the redirect is not ours. */
const PERMANENT_REDIRECTS = [301, 308];

/**
 * Server mode: plain HTTP on port 80 must send every request to HTTPS, permanently, at the same name and path.
 * Traefik does this at the web entry point; if k3s never applied our HelmChartConfig, /healthz is served in clear.
 */
async function checkHttpsRedirect(t: Target, httpUrl: string | undefined): Promise<Outcome> {
  if (t.url.protocol !== 'https:')
    return { ok: true, skipped: true, reason: 'plain http: no redirect to https expected' };
  const plain =
    httpUrl !== undefined
      ? parseSmokeUrl(httpUrl)
      : new URL(`http://${t.url.host.replace(/:\d+$/, '')}${t.url.pathname}`);
  const name = tlsName(t);
  const path = '/healthz';
  const want = `https://${name}${t.url.pathname.replace(/\/+$/, '')}${path}`;
  const a = await httpCall({ ...t, url: plain }, 'GET', path);
  const location = typeof a.headers.location === 'string' ? a.headers.location : undefined;
  const from = `http://${plain.host}${path}`;
  if (!PERMANENT_REDIRECTS.includes(a.status)) {
    const what = a.status >= 300 && a.status < 400 ? `a temporary redirect (HTTP ${a.status})` : `HTTP ${a.status}`;
    return {
      ok: false,
      reason: `${from} answered ${what}${location ? ` to ${location}` : ''}, want a permanent redirect (301/308) to ${want}`,
    };
  }
  let target: URL | undefined;
  try {
    target = location !== undefined ? new URL(location, from) : undefined;
  } catch {
    target = undefined;
  }
  const samePort = target !== undefined && (target.port === '' || target.port === '443' || target.port === t.url.port);
  if (
    target === undefined ||
    target.protocol !== 'https:' ||
    target.hostname !== name ||
    !samePort ||
    target.pathname !== new URL(want).pathname
  ) {
    return {
      ok: false,
      reason: `${from} redirects (HTTP ${a.status}) to ${location ?? 'nowhere (no Location header)'}, want ${want}`,
    };
  }
  return { ok: true, reason: `${from} -> HTTP ${a.status} ${location}` };
}

async function checkStatus(t: Target, path: string): Promise<Outcome> {
  const a = await httpCall(t, 'GET', path);
  if (a.status !== 200) return { ok: false, reason: unexpected(a, 200) };
  return { ok: true, reason: `HTTP 200 ${snippet(a.body)}` };
}

async function checkVersion(t: Target, expect: string | undefined): Promise<Outcome> {
  const a = await httpCall(t, 'GET', '/version');
  if (a.status !== 200) return { ok: false, reason: unexpected(a, 200) };
  const v = parseJson(a.body)?.['version'];
  if (typeof v !== 'string') return { ok: false, reason: `no "version" string in the answer: ${snippet(a.body)}` };
  if (expect === undefined) return { ok: true, reason: `version ${v} (no expected version given)` };
  if (v.toLowerCase() !== expect.toLowerCase()) return { ok: false, reason: `version ${v}, want ${expect}` };
  return { ok: true, reason: `version ${v}` };
}

function webhookHeaders(delivery: string): OutgoingHttpHeaders {
  return { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': delivery };
}

function pingBody(kind: string): string {
  return JSON.stringify({
    zen: `codex-k8s smoke check (${kind})`,
    hook_id: 0,
    smoke: { at: new Date().toISOString() },
  });
}

async function checkWebhookUnsigned(t: Target): Promise<Outcome> {
  const a = await httpCall(t, 'POST', '/webhooks/github', {
    headers: webhookHeaders(randomUUID()),
    body: pingBody('unsigned'),
  });
  if (a.status === 401) return { ok: true, reason: 'unsigned delivery refused with HTTP 401' };
  if (a.status >= 200 && a.status < 300)
    return { ok: false, reason: `endpoint accepts unsigned deliveries (HTTP ${a.status}, want 401)` };
  return { ok: false, reason: unexpected(a, 401) };
}

async function checkWebhookSigned(t: Target, secret: string | undefined): Promise<Outcome> {
  if (secret === undefined) return { ok: true, skipped: true, reason: 'no webhook secret given' };
  const delivery = randomUUID();
  const body = pingBody('signed');
  const headers = { ...webhookHeaders(delivery), 'x-hub-signature-256': signWebhook(secret, body) };
  const a = await httpCall(t, 'POST', '/webhooks/github', { headers, body });
  if (a.status === 401)
    return { ok: false, reason: `signed delivery refused (HTTP 401): the service's webhook secret differs from ours` };
  if (a.status !== 202) return { ok: false, reason: `delivery ${delivery}: ${unexpected(a, 202)}` };
  const l = await httpCall(t, 'GET', '/webhooks/github/latest');
  if (l.status !== 200)
    return { ok: false, reason: `stored (HTTP 202) but GET /webhooks/github/latest: ${unexpected(l, 200)}` };
  const latest = parseJson(l.body);
  if (latest?.['delivery'] !== delivery) {
    return {
      ok: false,
      reason: `stored (HTTP 202) but the latest delivery is ${String(latest?.['delivery'] ?? snippet(l.body))}, not ${delivery}`,
    };
  }
  return { ok: true, reason: `delivery ${delivery} stored (HTTP 202) and shown as the latest` };
}

async function checkRunner(t: Target, probe: SmokeOptions['runner']): Promise<Outcome> {
  if (!probe) return { ok: true, skipped: true, reason: 'no runner probe requested' };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Outcome>((resolve) => {
    timer = setTimeout(
      () => resolve({ ok: false, reason: `runner probe gave no answer within ${seconds(t.timeoutMs)}` }),
      t.timeoutMs,
    );
  });
  try {
    const r = await Promise.race([probe(), deadline]);
    return { ok: r.ok, reason: r.reason };
  } finally {
    clearTimeout(timer);
  }
}

/** One pass over every check, in order. Never throws for a failing service: each problem is a ✗ with its reason. */
export async function runSmoke(opts: SmokeOptions): Promise<CheckResult[]> {
  const url = parseSmokeUrl(opts.url);
  registerSecret(opts.webhookSecret);
  const t: Target = { url, hostHeader: opts.hostHeader, ca: opts.ca, timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  const minDays = opts.minCertDays ?? DEFAULT_MIN_CERT_DAYS;
  const checks: Record<CheckName, () => Promise<Outcome>> = {
    tls: () => checkTls(t, minDays),
    'https-redirect': () => checkHttpsRedirect(t, opts.httpUrl),
    healthz: () => checkStatus(t, '/healthz'),
    readyz: () => checkStatus(t, '/readyz'),
    version: () => checkVersion(t, opts.expectVersion),
    'webhook-unsigned': () => checkWebhookUnsigned(t),
    'webhook-signed': () => checkWebhookSigned(t, opts.webhookSecret),
    runner: () => checkRunner(t, opts.runner),
  };
  const results: CheckResult[] = [];
  for (const name of CHECK_NAMES) {
    const start = performance.now();
    let o: Outcome;
    try {
      o = await checks[name]();
    } catch (e) {
      o = { ok: false, reason: (e as Error).message || String(e) };
    }
    const reason = mask(o.reason.length > REASON_LIMIT ? `${o.reason.slice(0, REASON_LIMIT)}…` : o.reason);
    const r: CheckResult = {
      name,
      ok: o.ok,
      skipped: o.skipped ?? false,
      ms: Math.round(performance.now() - start),
      reason,
    };
    results.push(r);
    opts.onResult?.(r);
  }
  return results;
}

/**
 * Runs the whole set up to `attempts` times, `delayMs` apart, until every check passes (right after a rollout
 * old pods may still answer for a moment). Bounded: the last attempt's results are returned, failed or not.
 */
export async function runSmokeWithRetries(opts: SmokeOptions, retry: RetryOptions): Promise<SmokeRun> {
  const attempts = Math.max(1, Math.floor(retry.attempts));
  const started = Date.now();
  let results: CheckResult[] = [];
  let n = 0;
  for (n = 1; n <= attempts; n++) {
    retry.onAttempt?.(n, attempts);
    results = await runSmoke(opts);
    const failed = results.filter((r) => !r.ok);
    if (failed.length === 0 || n === attempts) break;
    retry.onRetry?.(n, attempts, failed);
    // Not lib/poll.mts: that imports zx, and this module must run without npm ci (see the top of the file).
    await new Promise((r) => setTimeout(r, retry.delayMs));
  }
  return {
    ok: results.every((r) => r.ok),
    url: opts.url,
    hostHeader: opts.hostHeader,
    attempt: Math.min(n, attempts),
    attempts,
    startedAt: new Date(started).toISOString(),
    seconds: Number(((Date.now() - started) / 1000).toFixed(1)),
    results,
  };
}

// ------------------------------------------------------------------------------------------------
// Output

export function mark(r: CheckResult): string {
  return r.skipped ? '-' : r.ok ? '✓' : '✗';
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

const NAME_WIDTH = Math.max(...CHECK_NAMES.map((n) => n.length));

/** One line: "✓ healthz            3 ms  HTTP 200 {...}". */
export function formatResult(r: CheckResult): string {
  return mask(`${mark(r)} ${r.name.padEnd(NAME_WIDTH)} ${formatMs(r.ms).padStart(8)}  ${r.reason}`);
}

export function summaryLine(results: readonly CheckResult[]): string {
  const failed = results.filter((r) => !r.ok);
  const ran = results.filter((r) => !r.skipped).length;
  const total = `${(results.reduce((s, r) => s + r.ms, 0) / 1000).toFixed(1)}s`;
  if (failed.length === 0)
    return `all ${ran} checks passed in ${total}${ran < results.length ? ` (${results.length - ran} skipped)` : ''}`;
  return `${failed.length} of ${ran} checks failed in ${total}: ${failed.map((r) => r.name).join(', ')}`;
}

/** The plain-text table: one line per check, then the summary. */
export function formatTable(results: readonly CheckResult[]): string {
  return [...results.map(formatResult), summaryLine(results)].join('\n');
}

function mdCell(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/[\r\n]+/g, ' ')
    .replace(/`/g, "'");
}

/** A Markdown table for a job summary ($GITHUB_STEP_SUMMARY). */
export function formatMarkdown(run: SmokeRun): string {
  const head = run.ok ? '✓ smoke checks passed' : '✗ smoke checks failed';
  const target = run.hostHeader ? `${run.url} (Host: ${run.hostHeader})` : run.url;
  const lines = [
    `### ${head}`,
    '',
    `${mdCell(target)}, attempt ${run.attempt}/${run.attempts}, ${mdCell(summaryLine(run.results))}`,
    '',
    '| | check | time | result |',
    '|---|---|---:|---|',
    ...run.results.map((r) => `| ${mark(r)} | ${r.name} | ${formatMs(r.ms)} | ${mdCell(r.reason)} |`),
    '',
  ];
  return mask(lines.join('\n'));
}

/** The --json document. */
export function formatJson(run: SmokeRun): string {
  return mask(JSON.stringify(run, null, 2));
}
