// JSON-line logs on stdout (one object per line: time, level, msg, fields), which is what `kubectl logs` and any
// log shipper read best. Every registered secret is replaced by *** before a line is written, whatever field it
// ended up in (an error message quoting a connection string, say).
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Masks `value` (and its URL-encoded form) in every later line. Values shorter than 4 characters are ignored. */
  addSecret(value: string): void;
  /** `text` with every registered secret replaced by ***. */
  mask(text: string): string;
}

export type LogSink = (line: string) => void;

const stdoutSink: LogSink = (line) => {
  process.stdout.write(line + '\n');
};

export function createLogger(level: LogLevel, sink: LogSink = stdoutSink): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const secrets = new Set<string>();

  const mask = (text: string): string => {
    let out = text;
    // Longest first, so a secret that contains another one is masked whole.
    for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('***');
    return out;
  };

  const write = (lvl: LogLevel, msg: string, fields: LogFields = {}): void => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) record[k] = v;
    sink(mask(JSON.stringify(record)));
  };

  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    addSecret(value) {
      if (value.length < 4) return;
      secrets.add(value);
      // JSON.stringify escapes quotes and backslashes: mask the form that actually appears in the line too.
      secrets.add(JSON.stringify(value).slice(1, -1));
      const encoded = encodeURIComponent(value);
      if (encoded !== value) secrets.add(encoded);
    },
    mask,
  };
}
