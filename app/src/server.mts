// Process entry: `node src/server.mts` (in the image) or `node app/src/server.mts` (from a checkout, pg resolved
// from the repository's node_modules). Reads the environment, starts the service, and turns SIGTERM/SIGINT into a
// graceful shutdown. Exit codes: 0 stopped cleanly, 1 failed (or in-flight requests had to be cut off), 2 bad env.
import { startServer, type RunningServer } from './app.mts';
import { ConfigError, loadConfig, type AppConfig } from './config.mts';

function fatal(msg: string, fields: Record<string, unknown>, code: number): never {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: 'error', msg, ...fields }) + '\n');
  process.exit(code);
}

let config: AppConfig;
try {
  config = loadConfig(process.env);
} catch (e) {
  if (e instanceof ConfigError) fatal('invalid configuration', { problems: e.problems }, 2);
  throw e;
}

let running: RunningServer;
try {
  running = await startServer(config);
} catch (e) {
  // startServer masks what it logs; its error message is already masked too (it comes from the migration retry).
  fatal('start-up failed', { error: (e as Error).message }, 1);
}

process.on('uncaughtException', (e) => {
  running.log.error('uncaught exception', { error: running.log.mask(e.stack ?? e.message) });
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  running.log.error('unhandled rejection', {
    error: running.log.mask(e instanceof Error ? (e.stack ?? e.message) : String(e)),
  });
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    running.log.info('shutdown requested', { signal });
    // A second signal while draining means "now".
    process.once(signal, () => process.exit(1));
    running.close().then(
      ({ forced }) => process.exit(forced ? 1 : 0),
      (e: unknown) => {
        running.log.error('shutdown failed', { error: running.log.mask(String(e)) });
        process.exit(1);
      },
    );
  });
}
