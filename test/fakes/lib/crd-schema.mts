// Custom resources checked against their CRD's own openAPIV3Schema, vendored from upstream at the version k3s embeds
// (test/fixtures/upstream/, PROVENANCE.md), the way the API server checks a structural schema with kubectl's default
// strict field validation: an unknown field is an error unless x-kubernetes-preserve-unknown-fields, then type and
// enum of every value. metadata is ObjectMeta (lib/validate.mts checks it); `default`s are the server's business.
import { parse as parseYaml } from 'yaml';
import { readUpstream } from './upstream.mts';

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
}

/** Kind (group/kind) -> its vendored CRD file. */
const CRDS: Readonly<Record<string, string>> = {
  'helm.cattle.io/HelmChartConfig': 'helm-controller-v0.17.7/helm.cattle.io_helmchartconfigs.yaml',
};

const loaded = new Map<string, Schema>();
function schemaOf(key: string, version: string): Schema | undefined {
  const file = CRDS[key];
  if (file === undefined) return undefined;
  const id = `${key}@${version}`;
  if (!loaded.has(id)) {
    const crd = parseYaml(readUpstream(file)) as {
      spec: { versions: { name: string; schema: { openAPIV3Schema: Schema } }[] };
    };
    const v = crd.spec.versions.find((x) => x.name === version);
    if (v === undefined) return undefined;
    loaded.set(id, v.schema.openAPIV3Schema);
  }
  return loaded.get(id);
}

const typeOf = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;

function walk(s: Schema, v: unknown, at: string, out: string[]): void {
  if (s['x-kubernetes-preserve-unknown-fields'] === true && s.type === undefined) return;
  if (s['x-kubernetes-int-or-string'] === true) {
    if (!['integer', 'string'].includes(typeOf(v)))
      out.push(`${at}: Invalid value: "${typeOf(v)}": ${at} must be an integer or a string`);
    return;
  }
  const t = typeOf(v);
  if (s.type !== undefined && !(s.type === t || (s.type === 'number' && t === 'integer'))) {
    out.push(`${at}: Invalid value: "${t}": ${at} in body must be of type ${s.type}`);
    return;
  }
  if (s.enum !== undefined && !s.enum.includes(v))
    out.push(
      `${at}: Unsupported value: ${JSON.stringify(v)}: supported values: ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`,
    );
  if (t === 'array' && s.items !== undefined)
    (v as unknown[]).forEach((x, i) => walk(s.items as Schema, x, `${at}[${i}]`, out));
  if (t !== 'object') return;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const sub = s.properties?.[k] ?? (typeof s.additionalProperties === 'object' ? s.additionalProperties : undefined);
    const here = at === '' ? k : `${at}.${k}`;
    if (sub !== undefined) walk(sub, x, here, out);
    else if (s['x-kubernetes-preserve-unknown-fields'] !== true && s.additionalProperties !== true)
      out.push(`unknown field "${here}"`);
  }
}

/** Problems of a custom resource under its CRD's schema (metadata excluded); [] = the API server accepts it. */
export function crdSchemaProblems(
  group: string,
  version: string,
  kind: string,
  obj: Record<string, unknown>,
): string[] {
  const s = schemaOf(`${group}/${kind}`, version);
  if (s === undefined) return [`no vendored CRD schema for ${group}/${version} ${kind}`];
  const out: string[] = [];
  const { metadata: _ignored, ...rest } = obj;
  walk(
    { ...s, properties: { ...s.properties, metadata: { 'x-kubernetes-preserve-unknown-fields': true } } },
    { ...rest, metadata: {} },
    '',
    out,
  );
  return out;
}
