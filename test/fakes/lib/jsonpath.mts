// The subset of kubectl's JSONPath the double supports (anything else is refused, never guessed):
//   literal text around {...} blocks          'name={.metadata.name}'
//   {.a.b}  {.a[0]}  {.a[*].b}  {.a[-1]}       fields, indexes, wildcard
//   {.data.tls\.crt}  {.metadata.annotations['x.y/z']}   keys with dots
//   {.status.conditions[?(@.type=="Ready")].status}       equality filter on a string field
//   {"\n"}                                    string literal
// Missing fields print nothing (kubectl's allowMissingKeys). Several results are joined by a space; maps and
// lists print as JSON, like kubectl.

type Step =
  | { kind: 'field'; name: string }
  | { kind: 'index'; index: number }
  | { kind: 'all' }
  | { kind: 'filter'; field: string; value: string };

export class JsonPathError extends Error {}

function parseExpr(expr: string): Step[] | string {
  const e = expr.trim();
  if (e.startsWith('"') && e.endsWith('"') && e.length >= 2) return JSON.parse(e) as string;
  if (/^(range|end)\b/.test(e))
    throw new JsonPathError(`unsupported JSONPath "${expr}" (range/end): the fake kubectl supports simple paths only`);
  let s = e.startsWith('$') ? e.slice(1) : e;
  if (!s.startsWith('.') && !s.startsWith('['))
    throw new JsonPathError(`unsupported JSONPath "${expr}": expected a path starting with "."`);
  const steps: Step[] = [];
  while (s.length > 0) {
    if (s.startsWith('.')) {
      s = s.slice(1);
      let name = '';
      while (s.length > 0 && s[0] !== '.' && s[0] !== '[') {
        if (s[0] === '\\' && s.length > 1) {
          name += s[1];
          s = s.slice(2);
        } else {
          name += s[0];
          s = s.slice(1);
        }
      }
      if (name === '*') steps.push({ kind: 'all' });
      else if (name !== '') steps.push({ kind: 'field', name });
      continue;
    }
    if (s.startsWith('[')) {
      const close = s.indexOf(']');
      if (close === -1) throw new JsonPathError(`unsupported JSONPath "${expr}": unclosed [`);
      const inner = s.slice(1, close);
      s = s.slice(close + 1);
      let m: RegExpMatchArray | null;
      if (inner === '*') steps.push({ kind: 'all' });
      else if (/^-?\d+$/.test(inner)) steps.push({ kind: 'index', index: Number(inner) });
      else if ((m = /^'([^']*)'$/.exec(inner)) !== null || (m = /^"([^"]*)"$/.exec(inner)) !== null)
        steps.push({ kind: 'field', name: m[1] as string });
      else if ((m = /^\?\(@\.([\w-]+)\s*==\s*(?:"([^"]*)"|'([^']*)')\)$/.exec(inner)) !== null)
        steps.push({ kind: 'filter', field: m[1] as string, value: (m[2] ?? m[3]) as string });
      else
        throw new JsonPathError(
          `unsupported JSONPath "${expr}" ([${inner}]): the fake kubectl supports simple paths only`,
        );
      continue;
    }
    throw new JsonPathError(`unsupported JSONPath "${expr}"`);
  }
  return steps;
}

function evaluate(steps: Step[], data: unknown): unknown[] {
  let cur: unknown[] = [data];
  for (const st of steps) {
    const next: unknown[] = [];
    for (const v of cur) {
      if (st.kind === 'field') {
        if (v !== null && typeof v === 'object' && !Array.isArray(v) && st.name in v)
          next.push((v as Record<string, unknown>)[st.name]);
      } else if (st.kind === 'index') {
        if (Array.isArray(v)) {
          const i = st.index < 0 ? v.length + st.index : st.index;
          if (i >= 0 && i < v.length) next.push(v[i]);
        }
      } else if (st.kind === 'all') {
        if (Array.isArray(v)) next.push(...v);
        else if (v !== null && typeof v === 'object') next.push(...Object.values(v));
      } else if (Array.isArray(v)) {
        for (const item of v) {
          if (item !== null && typeof item === 'object' && (item as Record<string, unknown>)[st.field] === st.value)
            next.push(item);
        }
      }
    }
    cur = next;
  }
  return cur;
}

function show(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Renders a kubectl -o jsonpath template against `data`. */
export function renderJsonPath(template: string, data: unknown): string {
  let out = '';
  let rest = template;
  if (!rest.includes('{')) rest = `{${rest}}`; // kubectl accepts a bare path
  while (rest.length > 0) {
    const open = rest.indexOf('{');
    if (open === -1) {
      out += rest;
      break;
    }
    out += rest.slice(0, open);
    const close = rest.indexOf('}', open);
    if (close === -1) throw new JsonPathError(`unclosed { in JSONPath template "${template}"`);
    const parsed = parseExpr(rest.slice(open + 1, close));
    out += typeof parsed === 'string' ? parsed : evaluate(parsed, data).map(show).join(' ');
    rest = rest.slice(close + 1);
  }
  return out;
}
