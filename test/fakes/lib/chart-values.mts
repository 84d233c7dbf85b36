// Values documents checked against the charts' own upstream definitions at our pinned versions (vendored, with
// provenance, under test/fixtures/upstream/): Traefik's and cert-manager's values.schema.json through ajv (the draft
// each schema declares: Traefik 2020-12, cert-manager draft-07), which is what helm enforces for those charts; the
// ARC charts ship no schema, so against the key tree derived from their values.yaml and templates (keys.json).
// Errors name the offending key path, as helm's "values don't meet the specifications of the schema" does.
import { readUpstream } from './upstream.mts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import AjvDraft7 from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

const json = (rel: string): unknown => JSON.parse(readUpstream(rel));

type KeyTree = true | { readonly [key: string]: KeyTree };

/** Chart name (as in charts.json / the pins) -> how its values are checked. */
export const CHART_VALUES_SOURCES = {
  traefik: { kind: 'schema', file: 'traefik-40.1.0/values.schema.json', draft: '2020-12' },
  'cert-manager': { kind: 'schema', file: 'cert-manager-v1.21.2/values.schema.json', draft: '7' },
  'gha-runner-scale-set-controller': { kind: 'keys', file: 'arc-0.14.2/gha-runner-scale-set-controller/keys.json' },
  'gha-runner-scale-set': { kind: 'keys', file: 'arc-0.14.2/gha-runner-scale-set/keys.json' },
} as const;
export type CheckedChart = keyof typeof CHART_VALUES_SOURCES;

export function isCheckedChart(chart: string): chart is CheckedChart {
  return Object.hasOwn(CHART_VALUES_SOURCES, chart);
}

const compiled = new Map<CheckedChart, ValidateFunction>();
function schemaValidator(chart: CheckedChart, file: string, draft: string): ValidateFunction {
  let v = compiled.get(chart);
  if (!v) {
    // strict: false because upstream schemas carry keywords ajv's strict mode rejects; formats are not asserted
    // by helm either (it uses santhosh-tekuri/jsonschema without format assertion).
    const opts = { strict: false, allErrors: true, validateFormats: false } as const;
    const ajv = draft === '2020-12' ? new Ajv2020(opts) : new (AjvDraft7 as unknown as typeof Ajv2020)(opts);
    v = ajv.compile(json(file) as object);
    compiled.set(chart, v);
  }
  return v;
}

function describe(e: ErrorObject): string {
  const at = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)';
  if (e.keyword === 'additionalProperties')
    return `${at === '(root)' ? '' : at + '.'}${String(e.params.additionalProperty)}: additional property not allowed`;
  return `${at}: ${e.message ?? e.keyword}`;
}

function keyTreeProblems(tree: KeyTree, value: unknown, path: string[], out: string[]): void {
  if (tree === true || value === null || typeof value !== 'object' || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    const sub = tree[k];
    if (sub === undefined)
      out.push(`${[...path, k].join('.')}: not a value of this chart (allowed here: ${Object.keys(tree).join(', ')})`);
    else keyTreeProblems(sub, v, [...path, k], out);
  }
}

/** Problems of `values` for `chart` ([] = the real chart accepts them). */
export function chartValuesProblems(chart: CheckedChart, values: unknown): string[] {
  const src = CHART_VALUES_SOURCES[chart];
  if (src.kind === 'keys') {
    const out: string[] = [];
    keyTreeProblems(json(src.file) as KeyTree, values, [], out);
    return out;
  }
  const v = schemaValidator(chart, src.file, src.draft);
  if (v(values)) return [];
  // allErrors reports each failing branch of a oneOf/anyOf; keep distinct lines only.
  return [...new Set((v.errors ?? []).map(describe))];
}
