// Values validators for the fake helm, referenced by name from charts.json ("hooks": ["secrets-by-reference"]).
// A hook gets the merged user-supplied values of an upgrade and returns problems as "path: message" lines
// (never the values themselves: they may be secrets). ADD HOOKS HERE (e.g. ARC scale-set or cert-manager rules).

export type ValuesHook = (values: Record<string, unknown>, release: { name: string; namespace: string; chart: string; version: string }) => string[];

const SECRET_KEY = /(^|[_-])(token|password|passwd|secret|private[_-]?key|api[_-]?key)$/i;

function walk(v: unknown, p: string, visit: (path: string, key: string, value: unknown) => void): void {
  if (v === null || typeof v !== 'object') return;
  for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
    const cp = p === '' ? k : Array.isArray(v) ? `${p}[${k}]` : `${p}.${k}`;
    visit(cp, k, child);
    walk(child, cp, visit);
  }
}

export const CHART_HOOKS: Readonly<Record<string, ValuesHook>> = {
  /**
   * Secret material must reach a chart by reference (an existing Secret's name), never inline in values:
   * helm stores values in the release and prints them with `helm get values`.
   * Rejects any non-empty string under a key named like token/password/secret/privateKey/apiKey.
   */
  'secrets-by-reference': (values) => {
    const problems: string[] = [];
    walk(values, '', (p, key, value) => {
      if (typeof value === 'string' && value !== '' && SECRET_KEY.test(key)) {
        problems.push(`${p}: inline secret value in chart values (pass the name of an existing Secret instead)`);
      }
    });
    return problems;
  },
  // ---- ADD VALUES HOOKS HERE ----
};
