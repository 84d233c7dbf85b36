// The HTTP service: node:http, one pg pool, no framework. startServer() migrates, listens and returns a handle whose
// close() is the graceful shutdown (stop accepting, let in-flight requests finish within a bound, close the pool).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { databasePassword, type AppConfig } from './config.mts';
import { isPayloadRejected, latestDelivery, migrate, ping, storeDelivery } from './db.mts';
import { createLogger, type Logger, type LogSink } from './log.mts';
import { WebhookSecret } from './secret.mts';
import { deliveryHeaders, MAX_BODY_BYTES, verifySignature } from './webhook.mts';

export interface StartOptions extends AppConfig {
  /** Where log lines go (default stdout). Tests capture them. */
  logSink?: LogSink;
  /** Start-up migration attempts while PostgreSQL is not reachable yet (default 5, delays 1, 2, 4, 8 s). */
  migrateAttempts?: number;
  migrateFirstDelayMs?: number;
}

export interface RunningServer {
  port: number;
  /** http://127.0.0.1:<port> (or the bound host). */
  url: string;
  log: Logger;
  /** Graceful shutdown; resolves once the pool is closed. forced = in-flight requests had to be cut off. */
  close(): Promise<{ forced: boolean }>;
}

const JSON_TYPE = 'application/json; charset=utf-8';
// Probes hit these every few seconds: their successes are debug lines, everything else is info.
const PROBE_PATHS = new Set(['/healthz', '/readyz']);

class HttpError extends Error {
  readonly status: number;
  /** Said in the log only (the response carries `message`). */
  readonly detail: string | undefined;
  constructor(status: number, message: string, detail?: string) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

/**
 * True for errors that mean "PostgreSQL cannot be reached or is not accepting work" (a 503, worth retrying), as
 * opposed to a query the server rejected (a bug, 500): connection errors carry no SQLSTATE; classes 08 (connection),
 * 53 (resources) and 57P (shutdown, starting up) are the server saying "not now".
 */
function databaseUnavailable(e: unknown): boolean {
  if (!(e instanceof pg.DatabaseError)) return true;
  return /^(08|53|57P)/.test(e.code ?? '');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': JSON_TYPE,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

type BodyResult = { ok: true; body: Buffer } | { ok: false; tooLarge: true };

/**
 * Reads the request body up to `limit` bytes. Past the limit it stops reading at once (the caller answers 413 and
 * closes the connection), so a large or endless upload never sits in memory.
 */
function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve({ ok: false, tooLarge: true });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        chunks.length = 0;
        resolve({ ok: false, tooLarge: true });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ ok: true, body: Buffer.concat(chunks, size) });
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(new HttpError(400, `request body could not be read: ${e.message}`));
    };
    const onAborted = (): void => {
      cleanup();
      // The client went away mid-upload: nothing to answer and nothing wrong with the service.
      reject(new HttpError(400, 'client aborted the request'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

export async function startServer(opts: StartOptions): Promise<RunningServer> {
  const log = createLogger(opts.logLevel, opts.logSink);
  const dbPassword = databasePassword(opts.databaseUrl);
  if (dbPassword !== undefined) log.addSecret(dbPassword);
  const secret = new WebhookSecret(opts.webhookSecretFile, log);

  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: 5,
    application_name: 'codex-k8s',
    // A dead database must not hang requests: connecting and each statement are bounded.
    connectionTimeoutMillis: Math.max(opts.readyTimeoutMs, 1000),
    statement_timeout: 10_000,
    query_timeout: 15_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client whose server went away (restart, failover) emits 'error' on the pool; without a listener
  // that would crash the process. The pool drops the client and the next query connects again.
  pool.on('error', (e) => log.warn('idle PostgreSQL connection lost', { error: log.mask(e.message) }));

  const attempts = opts.migrateAttempts ?? 5;
  let delay = opts.migrateFirstDelayMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      await migrate(pool);
      log.info('database schema ready', { table: 'github_deliveries', attempt });
      break;
    } catch (e) {
      const reason = log.mask((e as Error).message);
      if (attempt >= attempts) {
        await pool.end().catch(() => undefined);
        throw new Error(`database migration failed after ${attempts} attempts: ${reason}`);
      }
      log.warn('database not ready for the migration, retrying', {
        attempt: `${attempt}/${attempts}`,
        error: reason,
        retryInMs: delay,
      });
      await sleep(delay);
      delay *= 2;
    }
  }

  let shuttingDown = false;
  const inFlight = new Set<ServerResponse>();
  let drained: (() => void) | undefined;

  /** Runs a database call; an unreachable database becomes a 503 (the reason goes to the log, not the client). */
  async function db<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof HttpError || !databaseUnavailable(e)) throw e;
      throw new HttpError(503, 'database unavailable', log.mask((e as Error).message));
    }
  }

  async function route(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    fields: Record<string, string>,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    const only = (allowed: string): void => {
      if (method !== allowed && !(allowed === 'GET' && method === 'HEAD'))
        throw new HttpError(405, `method ${method} not allowed`);
    };
    switch (path) {
      case '/healthz':
        only('GET');
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz': {
        only('GET');
        if (shuttingDown) return sendJson(res, 503, { status: 'not ready', reason: 'shutting down' });
        const s = await secret.current();
        if (!s.ok) return sendJson(res, 503, { status: 'not ready', reason: s.problem });
        try {
          await ping(pool, opts.readyTimeoutMs);
        } catch (e) {
          return sendJson(res, 503, { status: 'not ready', reason: `database: ${log.mask((e as Error).message)}` });
        }
        return sendJson(res, 200, { status: 'ready' });
      }
      case '/version':
        only('GET');
        return sendJson(res, 200, { version: opts.version });
      case '/webhooks/github/latest': {
        only('GET');
        const latest = await db(() => latestDelivery(pool));
        if (latest === undefined) return sendJson(res, 404, { error: 'no deliveries yet' });
        return sendJson(res, 200, latest);
      }
      case '/webhooks/github':
        only('POST');
        return receiveWebhook(req, res, fields);
      default:
        throw new HttpError(404, 'not found');
    }
  }

  async function receiveWebhook(
    req: IncomingMessage,
    res: ServerResponse,
    fields: Record<string, string>,
  ): Promise<void> {
    const read = await readBody(req, MAX_BODY_BYTES);
    if (!read.ok) {
      // Closing the connection is what stops the upload; keeping it open would mean reading (or buffering) the rest.
      fields['error'] = 'body too large';
      res.once('finish', () => req.socket.destroy());
      return sendJson(res, 413, { error: `body over ${MAX_BODY_BYTES} bytes` }, { connection: 'close' });
    }
    const s = await secret.current();
    if (!s.ok) throw new HttpError(401, 'webhook secret not configured');
    const sig = req.headers['x-hub-signature-256'];
    if (sig === undefined) throw new HttpError(401, 'missing X-Hub-Signature-256');
    if (Array.isArray(sig) || !verifySignature(s.value, read.body, sig))
      throw new HttpError(401, 'bad X-Hub-Signature-256');
    const h = deliveryHeaders(req.headers);
    if (!h.ok) throw new HttpError(400, h.error);
    fields['delivery'] = h.delivery;
    fields['event'] = h.event;
    const text = read.body.toString('utf8');
    try {
      JSON.parse(text);
    } catch {
      throw new HttpError(400, 'body is not JSON (configure the webhook with content type application/json)');
    }
    const stored = await db(async () => {
      try {
        return await storeDelivery(pool, h.delivery, h.event, text);
      } catch (e) {
        if (isPayloadRejected(e)) throw new HttpError(400, `payload rejected by PostgreSQL: ${(e as Error).message}`);
        throw e;
      }
    });
    return sendJson(res, stored ? 202 : 200, { stored, delivery: h.delivery });
  }

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    // Path only: a query string is the one place a client might put a token.
    const path = (req.url ?? '/').split('?')[0]?.slice(0, 200) ?? '/';
    const fields: Record<string, string> = {};
    inFlight.add(res);
    if (shuttingDown) res.setHeader('connection', 'close');
    res.once('close', () => {
      inFlight.delete(res);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // 499 (nginx's "client closed request") when the connection closed before the response was complete.
      const status = res.writableFinished ? res.statusCode : 499;
      const line = { method, path, status, ms: Math.round(ms * 10) / 10, ...fields };
      if (PROBE_PATHS.has(path) && status === 200) log.debug('request', line);
      else log.info('request', line);
      if (shuttingDown && inFlight.size === 0) drained?.();
    });
    route(req, res, path, fields).catch((e: unknown) => {
      if (e instanceof HttpError) {
        fields['error'] = e.detail === undefined ? e.message : `${e.message}: ${e.detail}`;
        const headers: Record<string, string> =
          e.status === 405 ? { allow: path === '/webhooks/github' ? 'POST' : 'GET, HEAD' } : {};
        if (!res.headersSent) sendJson(res, e.status, { error: e.message }, headers);
        return;
      }
      log.error('request failed', {
        method,
        path,
        error: log.mask(e instanceof Error ? (e.stack ?? e.message) : String(e)),
      });
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  // Bounds for slow or stuck clients: a webhook body is at most 1 MiB.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = opts.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
  log.info('listening', { port: addr.port, version: opts.version });

  let closing: Promise<{ forced: boolean }> | undefined;
  async function close(): Promise<{ forced: boolean }> {
    shuttingDown = true;
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    let forced = false;
    if (inFlight.size > 0) {
      log.info('shutting down: waiting for in-flight requests', {
        inFlight: inFlight.size,
        timeoutMs: opts.shutdownTimeoutMs,
      });
      const allDone = new Promise<void>((resolve) => {
        drained = resolve;
      });
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), opts.shutdownTimeoutMs);
      });
      forced = await Promise.race([allDone.then(() => false), timedOut]);
      clearTimeout(timer);
      if (forced)
        log.warn('shutdown bound reached: closing connections with requests still running', {
          inFlight: inFlight.size,
        });
    }
    server.closeAllConnections();
    await serverClosed;
    await pool
      .end()
      .catch((e: Error) => log.warn('closing the PostgreSQL pool failed', { error: log.mask(e.message) }));
    log.info('stopped', { forced });
    return { forced };
  }

  return {
    port: addr.port,
    url,
    log,
    close: () => (closing ??= close()),
  };
}
