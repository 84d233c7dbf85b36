// Environment -> validated settings. Every problem is reported at once, so a broken Deployment shows all its
// mistakes in the first crash log instead of one per restart.
import { LOG_LEVELS, type LogLevel } from './log.mts';

export interface AppConfig {
  port: number;
  /** Interface to bind; undefined = every address (what a pod needs). */
  host?: string;
  databaseUrl: string;
  webhookSecretFile: string;
  /** 40 hex git SHA baked into the image, or "unknown". */
  version: string;
  readyTimeoutMs: number;
  logLevel: LogLevel;
  /** How long SIGTERM waits for in-flight requests before closing their connections. */
  shutdownTimeoutMs: number;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export const DEFAULTS = {
  port: 8080,
  readyTimeoutMs: 2000,
  shutdownTimeoutMs: 10_000,
  logLevel: 'info' as LogLevel,
} as const;

const SHA_RE = /^[0-9a-f]{40}$/;

function intSetting(
  env: NodeJS.ProcessEnv,
  name: string,
  def: number,
  min: number,
  max: number,
  problems: string[],
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    problems.push(`${name}=${JSON.stringify(raw)} is not an integer between ${min} and ${max}`);
    return def;
  }
  return Number(raw);
}

export function loadConfig(env: NodeJS.ProcessEnv): AppConfig {
  const problems: string[] = [];
  const port = intSetting(env, 'PORT', DEFAULTS.port, 0, 65535, problems);
  const readyTimeoutMs = intSetting(env, 'READY_TIMEOUT_MS', DEFAULTS.readyTimeoutMs, 1, 60_000, problems);
  const shutdownTimeoutMs = intSetting(env, 'SHUTDOWN_TIMEOUT_MS', DEFAULTS.shutdownTimeoutMs, 0, 300_000, problems);

  const databaseUrl = env['DATABASE_URL'] ?? '';
  if (databaseUrl === '') problems.push('DATABASE_URL is required (postgres://user:password@host:5432/db)');
  else if (!/^postgres(ql)?:\/\//.test(databaseUrl))
    problems.push('DATABASE_URL must start with postgres:// or postgresql://');

  const webhookSecretFile = env['GITHUB_WEBHOOK_SECRET_FILE'] ?? '';
  if (webhookSecretFile === '')
    problems.push('GITHUB_WEBHOOK_SECRET_FILE is required (path of the file holding the GitHub webhook secret)');

  // Empty means the image was built without --build-arg GIT_SHA: say "unknown" rather than pretend.
  const rawVersion = env['CODEXK8S_VERSION'] ?? '';
  const version = rawVersion === '' ? 'unknown' : rawVersion;
  if (version !== 'unknown' && !SHA_RE.test(version)) {
    problems.push(
      `CODEXK8S_VERSION=${JSON.stringify(rawVersion)} is not a 40-hex git SHA (the image's build arg GIT_SHA)`,
    );
  }

  const rawLevel = env['LOG_LEVEL'] ?? '';
  let logLevel: LogLevel = DEFAULTS.logLevel;
  if (rawLevel !== '') {
    if ((LOG_LEVELS as readonly string[]).includes(rawLevel)) logLevel = rawLevel as LogLevel;
    else problems.push(`LOG_LEVEL=${JSON.stringify(rawLevel)} is not one of ${LOG_LEVELS.join(', ')}`);
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return { port, databaseUrl, webhookSecretFile, version, readyTimeoutMs, logLevel, shutdownTimeoutMs };
}

/** The password inside a postgres:// URL (decoded), so the logger can mask it; undefined when there is none. */
export function databasePassword(databaseUrl: string): string | undefined {
  try {
    const pw = new URL(databaseUrl).password;
    return pw === '' ? undefined : decodeURIComponent(pw);
  } catch {
    return undefined;
  }
}
