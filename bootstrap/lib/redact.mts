// The redaction registry: every secret value the tool knows (from the config, and generated ones as they
// appear) is replaced by *** in every line that is printed or written to a log, on the host and on the server.

const MASK = '***';
/** Shorter values would mask ordinary words; the config refuses secrets this short anyway. */
const MIN_SECRET_LENGTH = 6;

const secrets = new Set<string>();
let ordered: string[] = [];

export function registerSecret(value: string | undefined): void {
  if (value === undefined) return;
  const v = value.trim();
  if (v.length < MIN_SECRET_LENGTH || secrets.has(v)) return;
  secrets.add(v);
  // Longest first, so a secret that contains another one is masked whole.
  ordered = [...secrets].sort((a, b) => b.length - a.length);
}

export function mask(text: string): string {
  let out = text;
  for (const s of ordered) {
    if (out.includes(s)) out = out.split(s).join(MASK);
  }
  return out;
}

/** For tests: the values currently registered. */
export function registeredSecrets(): readonly string[] {
  return ordered;
}

export function clearSecretsForTests(): void {
  secrets.clear();
  ordered = [];
}
