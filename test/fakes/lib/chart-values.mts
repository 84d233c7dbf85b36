// Values documents checked against the charts' own upstream definitions at our pinned versions (vendored, with
// provenance, under test/fixtures/upstream/): Traefik's and cert-manager's values.schema.json through ajv (the draft
// each schema declares: Traefik 2020-12, cert-manager draft-07), which is what helm enforces for those charts; the
// ARC charts ship no schema, so against the key tree derived from their values.yaml and templates (keys.json), per
// ARC version: each release's values are checked against that version's own tree (0.14.1 for the upgrade test's
// bootstrap, 0.14.2 our pin); an ARC version with no vendored tree is refused, never checked against another's.
// Errors name the offending key path, as helm's "values don't meet the specifications of the schema" does.
import { readUpstream } from './upstream.mts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import AjvDraft7 from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

const json = (rel: string): unknown => JSON.parse(readUpstream(rel));

type KeyTree = true | { readonly [key: string]: KeyTree };

/**
 * Chart name (as in charts.json / the pins) -> how its values are checked. A schema is the one of our pin, whatever
 * version is asked; ARC's key trees are per chart version (`byVersion`: exact version -> vendored keys.json).
 */
export const CHART_VALUES_SOURCES = {
  traefik: { kind: 'schema', file: 'traefik-40.1.0/values.schema.json', draft: '2020-12' },
  'cert-manager': { kind: 'schema', file: 'cert-manager-v1.21.2/values.schema.json', draft: '7' },
  'gha-runner-scale-set-controller': {
    kind: 'keys',
    byVersion: {
      '0.14.1': 'arc-0.14.1/gha-runner-scale-set-controller/keys.json',
      '0.14.2': 'arc-0.14.2/gha-runner-scale-set-controller/keys.json',
    },
  },
  'gha-runner-scale-set': {
    kind: 'keys',
    byVersion: {
      '0.14.1': 'arc-0.14.1/gha-runner-scale-set/keys.json',
      '0.14.2': 'arc-0.14.2/gha-runner-scale-set/keys.json',
    },
  },
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

/** The vendored key tree of ARC `chart` at `version`, or the problem saying why there is none. */
function arcKeyTree(
  chart: CheckedChart,
  byVersion: { readonly [version: string]: string },
  version: string | undefined,
): { tree: KeyTree } | { problem: string } {
  const have = Object.keys(byVersion).join(', ');
  if (version === undefined)
    return { problem: `${chart}: no chart version given; its values are checked per version (vendored: ${have})` };
  if (!Object.hasOwn(byVersion, version))
    return {
      problem:
        `${chart} ${version}: no key tree vendored for this version (vendored: ${have}), so its values cannot be checked; ` +
        `vendor it as test/fixtures/upstream/arc-${version}/${chart}/ (values.yaml, template-value-refs.json, keys.json: ` +
        `PROVENANCE.md, "ARC") and add it to CHART_VALUES_SOURCES in test/fakes/lib/chart-values.mts`,
    };
  return { tree: json(byVersion[version] as string) as KeyTree };
}

/**
 * Problems of `values` for `chart` at chart `version` ([] = the real chart accepts them). `version` selects ARC's
 * key tree (required for ARC charts: an ARC version without a vendored tree is a problem); schemas ignore it.
 */
export function chartValuesProblems(chart: CheckedChart, values: unknown, version?: string): string[] {
  const src = CHART_VALUES_SOURCES[chart];
  if (src.kind === 'keys') {
    const found = arcKeyTree(chart, src.byVersion, version);
    if ('problem' in found) return [found.problem];
    const out: string[] = [];
    keyTreeProblems(found.tree, values, [], out);
    return out;
  }
  const v = schemaValidator(chart, src.file, src.draft);
  if (v(values)) return [];
  // allErrors reports each failing branch of a oneOf/anyOf; keep distinct lines only.
  return [...new Set((v.errors ?? []).map(describe))];
}
