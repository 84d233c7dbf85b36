// Strict validation of one manifest object, as the kubectl double applies it.
//
// 1. Built-in kinds: the kubernetes-models class for apiVersion+kind is constructed and its .validate() runs: wrong
//    types, bad enums, missing required fields. kubernetes-models 5.1.0 is generated from the Kubernetes v1.36.0
//    OpenAPI spec (its CHANGELOG 5.0.0 and scripts/generate.ts; the README badge still says 1.27.1): the pinned k3s
//    minor. What that leaves unchecked: test/fakes/README.md "Kubernetes schemas: the gap to the pinned 1.36".
// 2. Unknown fields: kubernetes-models keeps no JSON schema at run time, only ajv "standalone" validators compiled
//    from it (node_modules/kubernetes-models/_schemas/*.js). Those validators read every property their schema
//    declares (`void 0 === data.imagePullPolicy || ...`) and enumerate the keys of maps (labels, data ...). So the
//    object is validated through a Proxy that records, per object node, which keys the validator read and whether
//    it enumerated the node: a key that was never read, in a node whose schema declared properties, is an unknown
//    field ("spec.template.spec.containers[0].imagePullPolicyy: unknown field"). Nodes the schema leaves free-form
//    (read nothing, enumerated nothing: RawExtension, JSON `default`s in CRD schemas) are not judged.
//    A few properties are compiled away by kubernetes-models' generator (they have no checks of their own): they
//    are listed in SKIPPED_BY_COMPILED_VALIDATORS so they are not reported.
// 3. API-server rules the schema can't express: metadata.name syntax, label syntax, the appArmorProfile
//    type/localhostProfile pairing, KindInfo.check.
// 4. Extension (CRD) kinds: metadata is validated with the ObjectMeta model (same strictness), top-level fields
//    against KindInfo.topLevel, then KindInfo.check.
import type { K8sObject, KindInfo } from './kinds.mts';
import { isObj, splitApiVersion } from './kinds.mts';

interface AccessRecord {
  gets: Set<string>;
  enumerated: boolean;
}

/**
 * Properties that kubernetes-models' compiled validators never read (their schema has no checks), keyed by a
 * signature of keys that identifies the schema type: when a node's read keys include all of `signature`, the keys in
 * `alsoKnown` are valid there too. Found by comparing the .d.ts interfaces with the compiled validators.
 */
const SKIPPED_BY_COMPILED_VALIDATORS: readonly {
  readonly type: string;
  readonly signature: readonly string[];
  readonly alsoKnown: readonly string[];
}[] = [
  {
    type: 'apiextensions.k8s.io/v1 JSONSchemaProps',
    signature: ['$schema', '$ref', 'additionalProperties'],
    alsoKnown: [
      'description',
      'x-kubernetes-embedded-resource',
      'x-kubernetes-int-or-string',
      'x-kubernetes-list-map-keys',
      'x-kubernetes-list-type',
      'x-kubernetes-map-type',
      'x-kubernetes-preserve-unknown-fields',
      'x-kubernetes-validations',
    ],
  },
  {
    type: 'apiextensions.k8s.io/v1 CustomResourceColumnDefinition',
    signature: ['jsonPath', 'priority'],
    alsoKnown: ['description'],
  },
  { type: 'apiextensions.k8s.io/v1 ExternalDocumentation', signature: ['url'], alsoKnown: ['description'] },
  {
    type: 'scheduling.k8s.io/v1 PriorityClass',
    signature: ['globalDefault', 'preemptionPolicy', 'value'],
    alsoKnown: ['description'],
  },
];

function tracked(value: unknown, records: WeakMap<object, AccessRecord>): unknown {
  if (value === null || typeof value !== 'object') return value;
  let rec = records.get(value);
  if (rec === undefined) {
    rec = { gets: new Set(), enumerated: false };
    records.set(value, rec);
  }
  const r = rec;
  return new Proxy(value, {
    get(target, key, receiver): unknown {
      if (typeof key === 'string') r.gets.add(key);
      return tracked(Reflect.get(target, key, receiver), records);
    },
    has(target, key): boolean {
      if (typeof key === 'string') r.gets.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target): ArrayLike<string | symbol> {
      r.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

/** `spec.template.spec.containers[0].name`, `metadata.labels["app.kubernetes.io/name"]`. */
export function joinPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (/^[A-Za-z_$][\w$-]*$/.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key)}]`;
}

function unknownFields(value: unknown, pathSoFar: string, records: WeakMap<object, AccessRecord>, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, joinPath(pathSoFar, i), records, out));
    return;
  }
  const rec = records.get(value);
  if (rec === undefined) return; // the validator never looked inside: free-form
  const typed = !rec.enumerated && rec.gets.size > 0;
  const extra = new Set<string>();
  if (typed) {
    for (const rule of SKIPPED_BY_COMPILED_VALIDATORS) {
      if (rule.signature.every((k) => rec.gets.has(k))) for (const k of rule.alsoKnown) extra.add(k);
    }
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const p = joinPath(pathSoFar, k);
    if (typed && !rec.gets.has(k) && !extra.has(k)) {
      out.push(`${p}: unknown field`);
      continue;
    }
    unknownFields(v, p, records, out);
  }
}

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

function pointerToPath(pointer: string): string {
  if (pointer === '') return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out = joinPath(out, /^\d+$/.test(seg) ? Number(seg) : seg);
  }
  return out;
}

function ajvErrorLine(e: AjvError): string {
  const p = pointerToPath(e.instancePath);
  if (e.keyword === 'required') return `${joinPath(p, String(e.params['missingProperty']))}: Required value`;
  const where = p === '' ? '(root)' : p;
  if (e.keyword === 'enum')
    return `${where}: Unsupported value: must be one of ${JSON.stringify(e.params['allowedValues'])}`;
  return `${where}: Invalid value: ${e.message ?? e.keyword}`;
}

export type ModelClass = (new (data: unknown) => { validate(): void }) & { apiVersion?: string; kind?: string };

async function importModel(specifier: string, kind: string): Promise<ModelClass | undefined> {
  try {
    const mod = (await import(specifier)) as Record<string, unknown>;
    return mod[kind] as ModelClass | undefined;
  } catch (err) {
    if (
      (err as NodeJS.ErrnoException).code === 'ERR_PACKAGE_PATH_NOT_EXPORTED' ||
      (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND'
    )
      return undefined;
    throw err;
  }
}

/** The kubernetes-models module for a built-in apiVersion + kind. */
export function modelSpecifier(apiVersion: string, kind: string): string {
  const { group, version } = splitApiVersion(apiVersion);
  return group === '' ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`;
}

/** Runs a model's validator on `data` through the tracking proxy; returns schema errors + unknown fields. */
export function runModel(Model: ModelClass, data: unknown, prefix: string): string[] {
  const instance = new Model(data); // constructing it is part of the contract: the model must accept the object
  const records = new WeakMap<object, AccessRecord>();
  const plain = JSON.parse(JSON.stringify(data)) as unknown;
  const errors: string[] = [];
  try {
    // The model's own validate(), run with the tracking proxy as `this`.
    instance.validate.call(tracked(plain, records));
  } catch (err) {
    const list = (err as { errors?: AjvError[] }).errors;
    if (!Array.isArray(list)) throw err;
    for (const e of list) errors.push(ajvErrorLine(e));
  }
  unknownFields(plain, '', records, errors);
  const uniq = [...new Set(errors)];
  return prefix === '' ? uniq : uniq.map((l) => `${prefix}.${l}`);
}

/**
 * securityContext.appArmorProfile (pod and container level; since 1.36 the only way to set AppArmor): the model
 * checks its type enum and keys; the API server also pairs type and localhostProfile, which the schema can't say.
 */
function appArmorPairing(node: unknown, where: string, out: string[]): void {
  if (Array.isArray(node)) {
    node.forEach((x, i) => appArmorPairing(x, joinPath(where, i), out));
    return;
  }
  if (!isObj(node)) return;
  const profile = node['appArmorProfile'];
  if (/(^|\.)securityContext$/.test(where) && isObj(profile)) {
    const at = joinPath(joinPath(where, 'appArmorProfile'), 'localhostProfile');
    const local = profile['localhostProfile'];
    const localhost = profile['type'] === 'Localhost';
    if (localhost && (typeof local !== 'string' || local.trim() === ''))
      out.push(`${at}: Required value: must be set when type is Localhost`);
    if (!localhost && local !== undefined) out.push(`${at}: Invalid value: may only be set when type is Localhost`);
  }
  for (const [k, v] of Object.entries(node)) appArmorPairing(v, joinPath(where, k), out);
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
/** Kinds whose names must be DNS-1123 labels (no dots, <= 63). */
const LABEL_NAMED_KINDS = new Set(['Namespace', 'Service']);

function metadataRules(obj: K8sObject): string[] {
  const errors: string[] = [];
  const name = obj.metadata.name;
  if (LABEL_NAMED_KINDS.has(obj.kind)) {
    if (name.length > 63 || !DNS1123_LABEL.test(name))
      errors.push(
        `metadata.name: Invalid value: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-' (at most 63)`,
      );
  } else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    errors.push(
      `metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
    );
  }
  const labels = obj.metadata.labels;
  if (isObj(labels)) {
    for (const [k, v] of Object.entries(labels)) {
      const slash = k.lastIndexOf('/');
      const prefix = slash === -1 ? '' : k.slice(0, slash);
      const nm = slash === -1 ? k : k.slice(slash + 1);
      if ((prefix !== '' && !DNS1123_SUBDOMAIN.test(prefix)) || nm.length > 63 || !LABEL_NAME.test(nm))
        errors.push(`metadata.labels[${JSON.stringify(k)}]: Invalid value: not a valid label key`);
      if (typeof v === 'string' && (v.length > 63 || !LABEL_VALUE.test(v)))
        errors.push(`metadata.labels[${JSON.stringify(k)}]: Invalid value: not a valid label value`);
    }
  }
  return errors;
}

/**
 * All problems with `obj` (empty when valid). The caller has already resolved `info` from apiVersion+kind.
 * Messages are "path: problem" and never contain field values (a Secret's data must not leak into an error).
 */
export async function validateObject(obj: K8sObject, info: KindInfo): Promise<string[]> {
  const errors: string[] = [];
  const meta = obj.metadata as unknown;
  if (!isObj(meta)) return ['metadata: Required value'];
  if (typeof meta['name'] !== 'string' || meta['name'] === '') {
    return [
      meta['generateName'] !== undefined
        ? 'metadata.name: Required value (generateName is not supported by apply)'
        : 'metadata.name: Required value',
    ];
  }
  if (info.providedBy === undefined) {
    const Model = await importModel(modelSpecifier(obj.apiVersion, obj.kind), obj.kind);
    if (Model === undefined || Model.kind !== obj.kind || Model.apiVersion !== obj.apiVersion) {
      throw new Error(
        `kubernetes-models has no model for ${obj.apiVersion} ${obj.kind}: fix its row in test/fakes/lib/kinds.mts`,
      );
    }
    errors.push(...runModel(Model, obj, ''));
    appArmorPairing(obj, '', errors);
  } else {
    const ObjectMeta = await importModel('@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta', 'ObjectMeta');
    if (ObjectMeta === undefined) throw new Error('@kubernetes-models/apimachinery ObjectMeta model not found');
    errors.push(...runModel(ObjectMeta, obj.metadata, 'metadata'));
    const allowed = info.topLevel ?? ['apiVersion', 'kind', 'metadata', 'spec'];
    for (const k of Object.keys(obj)) if (!allowed.includes(k)) errors.push(`${k}: unknown field`);
  }
  errors.push(...metadataRules(obj));
  if (info.check !== undefined) errors.push(...info.check(obj));
  return [...new Set(errors)];
}
