// The smoke checks (bootstrap/lib/smoke.mts and the CLI bootstrap/host/smoke_staging.mts) against the REAL app
// (`node app/src/server.mts` on the server's Node 24) backed by a real PostgreSQL (test/pg/postgres.mts): every
// check passes; then each broken thing makes its own check fail: a wrong expected version, an endpoint that
// accepts unsigned deliveries, an expired certificate, a certificate for another name, an untrusted chain, a
// certificate close to expiry, the DB stopped (last). Certificates come from `openssl` (a throw-away CA; `openssl
// ca` sets past dates). TLS is terminated by a small in-process proxy in front of the app, so a certificate
// problem must show as the tls ✗ alone. The CLI runs from a copy of exactly the files it may import, on plain
// Node 24 with no node_modules anywhere above it: that is how the workflow runs it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { startPostgres, postgresBinDir } from '../pg/postgres.mts';
import type { Postgres } from '../pg/postgres.mts';
import { startAppProcess } from '../app-process.mts';
import type { AppProcess } from '../app-process.mts';
import { SERVER_NODE_BIN, REPO_ROOT } from '../fakes/testkit.mts';
import {
  runSmoke,
  runSmokeWithRetries,
  formatTable,
  formatMarkdown,
  formatJson,
  signWebhook,
  runnerBelongsToScaleSet,
  parseSmokeUrl,
  CHECK_NAMES,
} from '../../bootstrap/lib/smoke.mts';
import type { CheckResult, SmokeOptions, CheckName } from '../../bootstrap/lib/smoke.mts';
import { UsageError } from '../../bootstrap/lib/errors.mts';

const SECRET = 'f3a9c1d2e4b5a6978877665544332211ffeeddccbbaa00998877665544332211';
const VERSION = '0123456789abcdef0123456789abcdef01234567';
const OTHER_VERSION = 'fedcba9876543210fedcba9876543210fedcba98';
const NAME = 'staging.test';
const APP_ENTRY = join(REPO_ROOT, 'app', 'src', 'server.mts');
const skipPg =
  postgresBinDir() === undefined ? 'PostgreSQL is not installed (apt-get install postgresql; .ci/run does)' : false;

const work = mkdtempSync(join(tmpdir(), 'ck8s-smoke-'));
after(() => rmSync(work, { recursive: true, force: true }));

// ------------------------------------------------------------------------------------------------
// Helpers: results, certificates, servers, the app, the CLI

function byName(results: readonly CheckResult[]): Record<CheckName, CheckResult> {
  return Object.fromEntries(results.map((r) => [r.name, r])) as Record<CheckName, CheckResult>;
}

/** The names of the failed checks, in order. */
function failed(results: readonly CheckResult[]): string[] {
  return results.filter((r) => !r.ok).map((r) => r.name);
}

function explain(results: readonly CheckResult[]): string {
  return '\n' + formatTable(results);
}

/** openssl's UTCTime: YYMMDDHHMMSSZ. */
function asn1Time(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (exit ${r.status}): ${r.stderr}`);
}

interface Pki {
  caPem: string;
  /** A key + certificate for `dnsName`, valid from..to (dates in the past make an expired one). */
  issue(label: string, dnsName: string, from: Date, to: Date): { key: string; cert: string };
}

/** A throw-away CA. `openssl ca` (not `x509 -days`, which cannot go back in time) sets exact validity dates. */
function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '3650',
      '-subj',
      '/CN=codex-k8s smoke test CA',
    ],
    dir,
  );
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(
    join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = test',
      '[test]',
      `database = ${dir}/index.txt`,
      `new_certs_dir = ${dir}`,
      `serial = ${dir}/serial`,
      'default_md = sha256',
      'policy = any',
      'copy_extensions = copy',
      'unique_subject = no',
      '[any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  return {
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    issue(label, dnsName, from, to) {
      openssl(
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          `${label}.key`,
          '-out',
          `${label}.csr`,
          '-subj',
          `/CN=${dnsName}`,
          '-addext',
          `subjectAltName=DNS:${dnsName}`,
        ],
        dir,
      );
      openssl(
        [
          'ca',
          '-batch',
          '-notext',
          '-config',
          'ca.cnf',
          '-cert',
          'ca.pem',
          '-keyfile',
          'ca.key',
          '-in',
          `${label}.csr`,
          '-out',
          `${label}.pem`,
          '-startdate',
          asn1Time(from),
          '-enddate',
          asn1Time(to),
        ],
        dir,
      );
      return {
        key: readFileSync(join(dir, `${label}.key`), 'utf8'),
        cert: readFileSync(join(dir, `${label}.pem`), 'utf8'),
      };
    },
  };
}

const DAY = 86_400_000;
const daysFromNow = (n: number): Date => new Date(Date.now() + n * DAY);

interface Running {
  url: string;
  /** A TLS proxy's plain-HTTP side (Traefik's web entry point): what --http-url points at. */
  httpUrl?: string;
  port: number;
  close(): Promise<void>;
}

async function listen(server: Server | NetServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

function closer(server: Server | NetServer, sockets: Set<Socket>): () => Promise<void> {
  return () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
}

function track(server: Server | NetServer): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // An https server reports its TLS sockets on secureConnection; the raw ones above are enough to close it.
  return sockets;
}

type Rewrite = (req: IncomingMessage, status: number) => number;
/** Answers a request itself (returns true) instead of forwarding it. */
type Intercept = (req: IncomingMessage, res: ServerResponse) => boolean;

/** Forwards every request to the app on `upstreamPort`; `rewrite` may change the status the client sees. */
function forward(upstreamPort: number, rewrite?: Rewrite, intercept?: Intercept) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    if (intercept?.(req, res)) return;
    const up = httpRequest(
      { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent: false },
      (ur) => {
        res.writeHead(rewrite ? rewrite(req, ur.statusCode ?? 502) : (ur.statusCode ?? 502), ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${e.message}`);
    });
    req.pipe(up);
  };
}

async function startHttpProxy(upstreamPort: number, rewrite?: Rewrite, intercept?: Intercept): Promise<Running> {
  const server = createHttpServer(forward(upstreamPort, rewrite, intercept));
  const sockets = track(server);
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, port, close: closer(server, sockets) };
}

/** What plain HTTP does in front of a TLS proxy: Traefik's web entry point with server mode's redirect, or not. */
type PlainHttp = (req: IncomingMessage, res: ServerResponse) => void;
/** Traefik's `ports.web.http.redirections.entryPoint` (to websecure, scheme https, permanent). */
const REDIRECT_308: PlainHttp = (req, res) => {
  res.writeHead(308, { location: `https://${String(req.headers.host).replace(/:\d+$/, '')}${req.url ?? '/'}` });
  res.end();
};

/**
 * TLS termination in front of the app, with the given certificate (like Traefik in front of the Service), and its
 * plain-HTTP side (`plain`, by default the permanent redirect to https that server mode configures).
 */
async function startTlsProxy(
  upstreamPort: number,
  tlsCert: { key: string; cert: string },
  plain: PlainHttp = REDIRECT_308,
): Promise<Running> {
  const server = createHttpsServer({ key: tlsCert.key, cert: tlsCert.cert }, forward(upstreamPort));
  const sockets = track(server);
  const port = await listen(server);
  const web = createHttpServer(plain);
  const webSockets = track(web);
  const webPort = await listen(web);
  const closeTls = closer(server, sockets);
  const closeWeb = closer(web, webSockets);
  return {
    url: `https://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${webPort}`,
    port,
    close: async () => {
      await closeTls();
      await closeWeb();
    },
  };
}

// The CLI from a copy of exactly the files it may import: if it imported anything else (an npm package, another
// lib module), the copy would not run. No node_modules exists above the temp dir.
const CLI_FILES = [
  'bootstrap/host/smoke_staging.mts',
  'bootstrap/lib/smoke.mts',
  'bootstrap/lib/errors.mts',
  'bootstrap/lib/redact.mts',
  'bootstrap/lib/log.mts',
  'bootstrap/lib/cli.mts',
];
const cliRoot = join(work, 'cli-copy');
for (const f of CLI_FILES) {
  mkdirSync(dirname(join(cliRoot, f)), { recursive: true });
  copyFileSync(join(REPO_ROOT, f), join(cliRoot, f));
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI copy on plain Node 24 (asynchronously: the proxies it talks to live in this process). */
function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(SERVER_NODE_BIN, [join(cliRoot, 'bootstrap/host/smoke_staging.mts'), ...args], {
      cwd: cliRoot,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: work, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------------------------------------------
// Pure parts

test('the library and the CLI import node builtins and lib/{errors,redact,log,cli,smoke}.mts only', () => {
  const allowed = new Set(CLI_FILES);
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(join(REPO_ROOT, file), 'utf8');
    assert.doesNotMatch(src, /\bimport\s*\(/, `${file}: no dynamic import`);
    assert.doesNotMatch(src, /\brequire\s*\(/, `${file}: no require`);
    for (const m of src.matchAll(
      /^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm,
    )) {
      const spec = (m[1] ?? m[2]) as string;
      if (spec.startsWith('node:')) continue;
      assert.ok(spec.startsWith('.'), `${file} imports "${spec}", which is neither node:* nor a relative file`);
      const target = relative(REPO_ROOT, join(REPO_ROOT, dirname(file), spec));
      assert.ok(allowed.has(target), `${file} imports ${target}, which the workflow's plain Node would not have`);
      visit(target);
    }
  };
  visit('bootstrap/host/smoke_staging.mts');
  assert.deepEqual([...seen].sort(), [...allowed].sort());
});

test("signWebhook is GitHub's sha256= HMAC of the raw body", () => {
  // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
  assert.equal(
    signWebhook("It's a Secret to Everybody", 'Hello, World!'),
    'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
  );
});

test('runnerBelongsToScaleSet: ARC ephemeral runner names of that scale set only', () => {
  assert.equal(runnerBelongsToScaleSet('codex-k8s-staging-x7k2p-runner-9qv4m', 'codex-k8s-staging').ok, true);
  assert.equal(
    runnerBelongsToScaleSet('codex-k8s-staging-2-x7k2p-runner-9qv4m', 'codex-k8s-staging').ok,
    false,
    'another scale set with a longer name',
  );
  assert.equal(runnerBelongsToScaleSet('GitHub Actions 2', 'codex-k8s-staging').ok, false, 'a GitHub-hosted runner');
  assert.match(runnerBelongsToScaleSet(undefined, 'codex-k8s-staging').reason, /RUNNER_NAME is not set/);
});

test('parseSmokeUrl refuses what it cannot check', () => {
  assert.equal(parseSmokeUrl('https://staging.example.com').hostname, 'staging.example.com');
  for (const bad of ['staging.example.com', 'ftp://x', 'https://u:p@x', 'http://x/?a=1'])
    assert.throws(() => parseSmokeUrl(bad), UsageError, bad);
});

// ------------------------------------------------------------------------------------------------
// Against small local servers (no app needed)

describe('transport failures', () => {
  test('a server that never answers: each HTTP check fails with the timeout, bounded', async () => {
    const server = createNetServer(() => {});
    const sockets = track(server);
    const port = await listen(server);
    try {
      const start = Date.now();
      const results = await runSmoke({ url: `http://127.0.0.1:${port}`, webhookSecret: SECRET, timeoutMs: 300 });
      assert.deepEqual(
        failed(results),
        ['healthz', 'readyz', 'version', 'webhook-unsigned', 'webhook-signed'],
        explain(results),
      );
      assert.match(byName(results).healthz.reason, /no answer within 0\.3s/);
      assert.ok(Date.now() - start < 4000, 'five timeouts of 0.3 s, not five of the default 10 s');
    } finally {
      await closer(server, sockets)();
    }
  });

  test('a server that accepts anything (202 for every request): webhook-unsigned says so', async () => {
    const server = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(202, { 'content-type': 'application/json' });
      res.end('{"stored":true}');
    });
    const sockets = track(server);
    const port = await listen(server);
    try {
      const results = await runSmoke({ url: `http://127.0.0.1:${port}`, webhookSecret: SECRET });
      const r = byName(results);
      assert.equal(r['webhook-unsigned'].ok, false);
      assert.match(r['webhook-unsigned'].reason, /endpoint accepts unsigned deliveries \(HTTP 202, want 401\)/);
      assert.match(r.healthz.reason, /HTTP 202, want 200/);
    } finally {
      await closer(server, sockets)();
    }
  });

  test('a TLS check against a plain HTTP port fails the handshake', async () => {
    const server = createHttpServer((_q, s) => s.end());
    const sockets = track(server);
    const port = await listen(server);
    try {
      const results = await runSmoke({ url: `https://127.0.0.1:${port}`, webhookSecret: SECRET, timeoutMs: 2000 });
      assert.equal(byName(results).tls.ok, false);
      assert.match(byName(results).tls.reason, /TLS handshake failed/);
    } finally {
      await closer(server, sockets)();
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Against the real app and PostgreSQL

describe('against the real app', { skip: skipPg }, () => {
  let pg: Postgres;
  let app: AppProcess;
  let pki: Pki;
  const secretFile = join(work, 'webhook-secret');
  const caFile = join(work, 'ca.pem');
  const toClose: Running[] = [];

  before(async () => {
    assert.ok(existsSync(APP_ENTRY), `${APP_ENTRY} exists`);
    writeFileSync(secretFile, SECRET + '\n', { mode: 0o600 });
    pki = makePki(join(work, 'pki'));
    writeFileSync(caFile, pki.caPem);
    pg = await startPostgres();
    app = await startAppProcess({ pg, secretFile, version: VERSION, readyTimeoutMs: 10_000 });
  });
  after(async () => {
    for (const r of toClose) await r.close();
    await app?.stop();
    pg?.stop();
  });

  const base = (): SmokeOptions => ({
    url: app.url,
    webhookSecret: SECRET,
    expectVersion: VERSION,
    runner: async () => ({ ok: true, reason: 'probe says yes' }),
  });

  async function tls(cert: { key: string; cert: string }, plain?: PlainHttp): Promise<Running> {
    const p = await startTlsProxy(app.port, cert, plain);
    toClose.push(p);
    return p;
  }

  test('plain http: every check passes, the signed delivery is stored in PostgreSQL', async () => {
    const seen: string[] = [];
    const results = await runSmoke({ ...base(), onResult: (r) => seen.push(r.name) });
    assert.deepEqual(failed(results), [], explain(results));
    assert.deepEqual(seen, [...CHECK_NAMES], 'reported in order, as each finishes');
    const r = byName(results);
    assert.equal(r.tls.skipped, true);
    assert.equal(r.version.reason, `version ${VERSION}`);
    const delivery = /delivery ([0-9a-f-]{36}) stored/.exec(r['webhook-signed'].reason)?.[1];
    assert.ok(delivery, r['webhook-signed'].reason);
    // A real effect, not printed text: the row is in the table, event ping.
    assert.equal(
      pg.psql('postgres', `SELECT event FROM github_deliveries WHERE delivery_id = '${delivery}'`).trim(),
      'ping',
    );
    assert.ok(results.every((x) => x.ms >= 0 && Number.isInteger(x.ms)));
  });

  test('https with --host-header: the certificate verifies for the name, days left reported, all checks pass', async () => {
    const p = await tls(pki.issue('good', NAME, daysFromNow(-1), daysFromNow(90)));
    const results = await runSmoke({ ...base(), url: p.url, httpUrl: p.httpUrl, hostHeader: NAME, ca: pki.caPem });
    assert.deepEqual(failed(results), [], explain(results));
    assert.match(
      byName(results).tls.reason,
      new RegExp(
        `^valid for ${NAME.replace('.', '\\.')}, 89 days left \\(until \\d{4}-\\d\\d-\\d\\d\\), issuer CN=codex-k8s smoke test CA$`,
      ),
    );
    // Too close to expiry for --min-cert-days 120: tls alone fails, and says how many days are left.
    const soon = await runSmoke({
      ...base(),
      url: p.url,
      httpUrl: p.httpUrl,
      hostHeader: NAME,
      ca: pki.caPem,
      minCertDays: 120,
    });
    assert.deepEqual(failed(soon), ['tls'], explain(soon));
    assert.match(byName(soon).tls.reason, /89 days left \(until .*\), want at least 120/);
  });

  test('plain http with --host-header: every request carries Host: NAME (an Ingress reached by IP)', async () => {
    const hosts = new Set<string | undefined>();
    const p = await startHttpProxy(app.port, undefined, (req) => {
      hosts.add(req.headers.host);
      return false;
    });
    toClose.push(p);
    const results = await runSmoke({ ...base(), url: p.url, hostHeader: NAME });
    assert.deepEqual(failed(results), [], explain(results));
    assert.deepEqual([...hosts], [NAME]);
  });

  test('an expired certificate: tls ✗ alone', async () => {
    const p = await tls(pki.issue('expired', NAME, daysFromNow(-60), daysFromNow(-2)));
    const results = await runSmoke({ ...base(), url: p.url, httpUrl: p.httpUrl, hostHeader: NAME, ca: pki.caPem });
    assert.deepEqual(failed(results), ['tls'], explain(results));
    assert.match(byName(results).tls.reason, /certificate expired on .* \(2 days ago\)/);
  });

  test('a certificate for another name: tls ✗ alone', async () => {
    const p = await tls(pki.issue('other', 'other.test', daysFromNow(-1), daysFromNow(90)));
    const results = await runSmoke({ ...base(), url: p.url, httpUrl: p.httpUrl, hostHeader: NAME, ca: pki.caPem });
    assert.deepEqual(failed(results), ['tls'], explain(results));
    assert.equal(byName(results).tls.reason, `certificate is for other.test, not ${NAME}`);
  });

  test('a certificate from a CA we do not trust: tls ✗ alone', async () => {
    const p = await tls(pki.issue('untrusted', NAME, daysFromNow(-1), daysFromNow(90)));
    const results = await runSmoke({ ...base(), url: p.url, httpUrl: p.httpUrl, hostHeader: NAME });
    assert.deepEqual(failed(results), ['tls'], explain(results));
    assert.match(byName(results).tls.reason, /chain does not verify: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
  });

  test('https: plain HTTP must redirect permanently to https at the same name and path, or https-redirect ✗ alone', async () => {
    const cert = pki.issue('redirect', NAME, daysFromNow(-1), daysFromNow(90));
    const good = await tls(cert);
    const ok = await runSmoke({ ...base(), url: good.url, httpUrl: good.httpUrl, hostHeader: NAME, ca: pki.caPem });
    assert.deepEqual(failed(ok), [], explain(ok));
    assert.match(
      byName(ok)['https-redirect'].reason,
      new RegExp(`-> HTTP 308 https://${NAME.replace('.', '\\.')}/healthz$`),
    );
    const redirect =
      (status: number, location: (host: string) => string | undefined): PlainHttp =>
      (req, res) => {
        const l = location(String(req.headers.host).replace(/:\d+$/, ''));
        res.writeHead(status, l === undefined ? {} : { location: l });
        res.end();
      };
    const cases: [string, PlainHttp, RegExp][] = [
      // Traefik without our HelmChartConfig applied: the app answers in clear.
      [
        'served in clear',
        (req, res) => forward(app.port)(req, res),
        /answered HTTP 200, want a permanent redirect \(301\/308\) to https:\/\//,
      ],
      [
        'a temporary redirect',
        redirect(302, (h) => `https://${h}/healthz`),
        /answered a temporary redirect \(HTTP 302\) to https:\/\/.*\/healthz, want a permanent redirect/,
      ],
      [
        'to plain http',
        redirect(301, (h) => `http://${h}/healthz`),
        /redirects \(HTTP 301\) to http:\/\/.*, want https:\/\//,
      ],
      [
        'to another name',
        redirect(308, () => 'https://elsewhere.test/healthz'),
        /redirects \(HTTP 308\) to https:\/\/elsewhere\.test\/healthz, want/,
      ],
      ['to another path', redirect(308, (h) => `https://${h}/`), /redirects \(HTTP 308\) to https:\/\/[^/]+\/, want/],
      ['no Location', redirect(301, () => undefined), /nowhere \(no Location header\)/],
    ];
    for (const [what, plain, reason] of cases) {
      const p = await tls(cert, plain);
      const results = await runSmoke({ ...base(), url: p.url, httpUrl: p.httpUrl, hostHeader: NAME, ca: pki.caPem });
      assert.deepEqual(failed(results), ['https-redirect'], `${what}: ${explain(results)}`);
      assert.match(byName(results)['https-redirect'].reason, reason, what);
    }
    const plainRun = await runSmoke(base());
    assert.equal(byName(plainRun)['https-redirect'].skipped, true, 'plain http (local mode): nothing to redirect');
  });

  test('the wrong expected version: version ✗ alone', async () => {
    const results = await runSmoke({ ...base(), expectVersion: OTHER_VERSION });
    assert.deepEqual(failed(results), ['version'], explain(results));
    assert.equal(byName(results).version.reason, `version ${VERSION}, want ${OTHER_VERSION}`);
  });

  test('a webhook endpoint that accepts unsigned deliveries: webhook-unsigned ✗ alone', async () => {
    // In front of the real app: whatever it refuses with 401 is answered 202, as a receiver without
    // signature verification would. Signed deliveries still reach the app and are stored.
    const p = await startHttpProxy(app.port, (req, status) => (req.method === 'POST' && status === 401 ? 202 : status));
    toClose.push(p);
    const results = await runSmoke({ ...base(), url: p.url });
    assert.deepEqual(failed(results), ['webhook-unsigned'], explain(results));
    assert.match(byName(results)['webhook-unsigned'].reason, /^endpoint accepts unsigned deliveries/);
  });

  test('a stored delivery that does not show as the latest: webhook-signed ✗ alone', async () => {
    // A service that stores (the app answers 202) but whose read side is stale, e.g. a replica lagging behind.
    const stale = '00000000-0000-4000-8000-000000000000';
    const p = await startHttpProxy(app.port, undefined, (req, res) => {
      if (req.url !== '/webhooks/github/latest') return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ delivery: stale, event: 'push', receivedAt: new Date().toISOString() }));
      return true;
    });
    toClose.push(p);
    const results = await runSmoke({ ...base(), url: p.url });
    assert.deepEqual(failed(results), ['webhook-signed'], explain(results));
    assert.match(
      byName(results)['webhook-signed'].reason,
      new RegExp(`^stored \\(HTTP 202\\) but the latest delivery is ${stale}, not [0-9a-f-]{36}$`),
    );
  });

  test('a signed delivery with another secret is refused: webhook-signed ✗ alone, with the cause', async () => {
    const results = await runSmoke({ ...base(), webhookSecret: 'another-secret-than-the-services-0123456789' });
    assert.deepEqual(failed(results), ['webhook-signed'], explain(results));
    assert.match(byName(results)['webhook-signed'].reason, /HTTP 401.*webhook secret differs/);
  });

  test('a failing runner probe: runner ✗ alone; a throwing one is a ✗ too, not a crash', async () => {
    const no = await runSmoke({
      ...base(),
      runner: async () => ({ ok: false, reason: 'scale set codex-k8s-staging not registered' }),
    });
    assert.deepEqual(failed(no), ['runner'], explain(no));
    assert.equal(byName(no).runner.reason, 'scale set codex-k8s-staging not registered');
    const boom = await runSmoke({
      ...base(),
      runner: async () => {
        throw new Error('GitHub API: 502');
      },
    });
    assert.deepEqual(failed(boom), ['runner']);
    assert.equal(byName(boom).runner.reason, 'GitHub API: 502');
  });

  test('retries: the whole set again until it passes, bounded, attempt n/N', async () => {
    // readyz answers 503 to the first two attempts (as right after a rollout), then the app's own answer.
    let readyCalls = 0;
    const p = await startHttpProxy(app.port, (req, status) =>
      req.url === '/readyz' && ++readyCalls <= 2 ? 503 : status,
    );
    toClose.push(p);
    const attempts: string[] = [];
    const run = await runSmokeWithRetries(
      { ...base(), url: p.url },
      { attempts: 5, delayMs: 20, onAttempt: (n, of) => attempts.push(`${n}/${of}`) },
    );
    assert.equal(run.ok, true, explain(run.results));
    assert.deepEqual(attempts, ['1/5', '2/5', '3/5']);
    assert.equal(run.attempt, 3);
    // Never passes: stops after the bound with the last results.
    const seen: string[] = [];
    const bad = await runSmokeWithRetries(
      { ...base(), expectVersion: OTHER_VERSION },
      { attempts: 3, delayMs: 10, onRetry: (n, of, f) => seen.push(`${n}/${of} ${f.map((x) => x.name).join(',')}`) },
    );
    assert.equal(bad.ok, false);
    assert.deepEqual(seen, ['1/3 version', '2/3 version']);
    assert.equal(bad.attempt, 3);
    assert.deepEqual(failed(bad.results), ['version']);
  });

  test('Markdown and JSON outputs', async () => {
    const run = await runSmokeWithRetries({ ...base(), expectVersion: OTHER_VERSION }, { attempts: 1, delayMs: 0 });
    const md = formatMarkdown(run);
    const rows = md.split('\n').filter((l) => /^\| [✓✗-] \| /.test(l));
    assert.deepEqual(
      rows.map((l) => l.split(' | ')[1]),
      [...CHECK_NAMES],
    );
    assert.match(md, /^### ✗ smoke checks failed/);
    assert.match(md, /\| ✗ \| version \| \d+ ms \| version 0123.*, want fedc.* \|/);
    const doc = JSON.parse(formatJson(run)) as { ok: boolean; results: CheckResult[] };
    assert.equal(doc.ok, false);
    assert.deepEqual(failed(doc.results), ['version']);
  });

  describe('the CLI (plain Node 24, no node_modules)', () => {
    const secretLeak = (r: CliResult): void => {
      assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), 'the secret is never printed');
    };

    test('all ✓ -> exit 0, one line per check with ✓ and the time', async () => {
      const r = await cli(['--url', app.url, '--expect-version', VERSION, '--webhook-secret-file', secretFile]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      for (const n of ['healthz', 'readyz', 'version', 'webhook-unsigned', 'webhook-signed'])
        assert.match(r.stdout, new RegExp(`^✓ ${n} +\\d+ ms  \\S`, 'm'));
      assert.match(r.stdout, /^- tls .*plain http/m);
      assert.match(r.stdout, /^all 5 checks passed in [\d.]+s \(3 skipped\)$/m);
      secretLeak(r);
    });

    test('https + --host-header + --ca-file + --runner-scale-set, secret from the environment, --json and --markdown', async () => {
      const p = await tls(pki.issue('cli', NAME, daysFromNow(-1), daysFromNow(30)));
      const md = join(work, 'summary.md');
      writeFileSync(md, '# earlier content\n');
      const r = await cli(
        [
          '--url',
          p.url,
          '--http-url',
          String(p.httpUrl),
          '--host-header',
          NAME,
          '--ca-file',
          caFile,
          '--expect-version',
          VERSION,
          '--runner-scale-set',
          'codex-k8s-staging',
          '--json',
          '--markdown',
          md,
        ],
        { CODEXK8S_WEBHOOK_SECRET: SECRET, RUNNER_NAME: 'codex-k8s-staging-ab12c-runner-x9z8y' },
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const doc = JSON.parse(r.stdout) as { ok: boolean; url: string; hostHeader: string; results: CheckResult[] };
      assert.equal(doc.ok, true);
      assert.equal(doc.hostHeader, NAME);
      assert.deepEqual(
        doc.results.map((x) => [x.name, x.ok, x.skipped]),
        CHECK_NAMES.map((n) => [n, true, false]),
      );
      assert.match(byName(doc.results).tls.reason, /29 days left/);
      assert.match(r.stderr, /^✓ tls /m, 'with --json the human lines go to stderr');
      const summary = readFileSync(md, 'utf8');
      assert.ok(summary.startsWith('# earlier content\n### ✓ smoke checks passed'), 'appended, not overwritten');
      assert.equal(summary.split('\n').filter((l) => l.startsWith('| ✓ |')).length, 8);
      assert.ok(!summary.includes(SECRET));
      secretLeak(r);
    });

    test('a failing check -> exit 1 and the ✗ with its reason; another runner -> runner ✗', async () => {
      const r = await cli(
        [
          '--url',
          app.url,
          '--expect-version',
          OTHER_VERSION,
          '--runner-scale-set',
          'codex-k8s-staging',
          '--retries',
          '1',
          '--retry-delay',
          '0.05',
        ],
        {
          CODEXK8S_WEBHOOK_SECRET: SECRET,
          RUNNER_NAME: 'GitHub Actions 3',
        },
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^✗ version +\\d+ ms  version ${VERSION}, want ${OTHER_VERSION}$`, 'm'));
      assert.match(
        r.stdout,
        /^✗ runner .*GitHub Actions 3, not on an ephemeral runner of scale set codex-k8s-staging/m,
      );
      assert.match(r.stdout, /^attempt 1\/2$/m);
      assert.match(r.stdout, /^attempt 1\/2: version, runner failed; next attempt in 0.05s$/m);
      assert.match(r.stdout, /^2 of 6 checks failed in [\d.]+s: version, runner \(attempt 2\/2\)$/m);
      secretLeak(r);
    });

    test('bad flags and missing secrets -> exit 2, nothing contacted', async () => {
      const env = { CODEXK8S_WEBHOOK_SECRET: SECRET };
      const cases: Array<[string[], Record<string, string>, RegExp]> = [
        [['--url', app.url, '--bogus'], env, /unknown flag '--bogus'/],
        [[], env, /--url is required/],
        [['--url', 'staging.example.com'], env, /is not a URL/],
        [['--url', app.url, '--expect-version', 'abc123'], env, /not a 40-hex git SHA/],
        [['--url', app.url, '--timeout', 'soon'], env, /--timeout: "soon" is not a number/],
        [['--url', app.url, '--retries', '1.5'], env, /--retries: "1.5" is not an integer/],
        [['--url', app.url], {}, /no webhook secret: pass --webhook-secret-file PATH or set CODEXK8S_WEBHOOK_SECRET/],
        [['--url', app.url], { CODEXK8S_WEBHOOK_SECRET: '  ' }, /CODEXK8S_WEBHOOK_SECRET is empty/],
        [['--url', app.url, '--webhook-secret-file', join(work, 'nope')], {}, /cannot read .*nope: ENOENT/],
        [['--url', app.url, '--ca-file', secretFile], env, /holds no PEM certificate/],
        // A value for the secret on the command line is refused (there is no such flag), and never echoed.
        [['--url', app.url, '--webhook-secret', SECRET], {}, /unknown flag '--webhook-secret'/],
      ];
      const answers = await Promise.all(cases.map(([args, e]) => cli(args, e)));
      for (const [i, [args, , want]] of cases.entries()) {
        const r = answers[i] as CliResult;
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout + r.stderr, want, args.join(' '));
        assert.match(r.stdout, /^Usage: /m);
        if (!args.includes(SECRET)) secretLeak(r);
      }
    });

    test('the secret is masked even when a service echoes it back', async () => {
      // A misconfigured service that prints its configuration in an error body: the reason shows *** instead.
      const p = await startHttpProxy(app.port, undefined, (req, res) => {
        if (req.url !== '/readyz') return false;
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: 'not ready', reason: `bad config: GITHUB_WEBHOOK_SECRET=${SECRET}` }));
        return true;
      });
      toClose.push(p);
      const md = join(work, 'masked.md');
      for (const [args, env] of [
        [['--url', p.url, '--json', '--markdown', md], { CODEXK8S_WEBHOOK_SECRET: SECRET }],
        [['--url', p.url, '--webhook-secret-file', secretFile], {}],
      ] as Array<[string[], Record<string, string>]>) {
        const r = await cli(args, env);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(
          r.stdout + r.stderr,
          /✗ readyz .*HTTP 503, want 200: not ready: bad config: GITHUB_WEBHOOK_SECRET=\*\*\*/,
        );
        secretLeak(r);
      }
      assert.match(readFileSync(md, 'utf8'), /GITHUB_WEBHOOK_SECRET=\*\*\*/);
      assert.ok(!readFileSync(md, 'utf8').includes(SECRET));
    });

    test('--help exits 0', async () => {
      const r = await cli(['--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^Usage: .*smoke_staging\.mts --url URL/);
      assert.match(r.stdout, /CODEXK8S_WEBHOOK_SECRET/);
    });
  });

  // Last: it stops the database for good.
  test("the DB stopped: readyz ✗ with the app's reason; the checks that need no DB still pass", async () => {
    pg.stop();
    const results = await runSmoke(base());
    const r = byName(results);
    assert.equal(r.readyz.ok, false, explain(results));
    assert.match(r.readyz.reason, /^HTTP 503, want 200: not ready: \S/);
    for (const n of ['healthz', 'version', 'webhook-unsigned', 'runner'] as const)
      assert.equal(r[n].ok, true, `${n}${explain(results)}`);
    // Storing the delivery needs the DB too: that one fails as well, and says what the service answered.
    assert.equal(r['webhook-signed'].ok, false);
    assert.match(r['webhook-signed'].reason, /HTTP 5\d\d, want 202/);
  });
});
