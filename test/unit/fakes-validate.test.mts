// The kubectl double's validator (test/fakes/lib/validate.mts) at the pinned Kubernetes minor: kubernetes-models
// must model the fields a 1.36 API server serves (a field added in 1.34 is accepted, not reported as unknown), and
// stay strict (a misspelt key next to it is refused). Runs in-process on the tests' Node (20 in CI) like
// manifests.test.mts; the doubles run the same code on the server's Node 24 (fakes-kubectl.test.mts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateObject } from '../fakes/lib/validate.mts';
import { kindByApiVersion } from '../fakes/lib/kinds.mts';
import type { K8sObject, KindInfo } from '../fakes/lib/kinds.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const info = (apiVersion: string, kind: string): KindInfo => kindByApiVersion(apiVersion, kind) as KindInfo;
const pod = (container: Record<string, unknown>): K8sObject => {
  const spec = { restartPolicy: 'Never', containers: [{ name: 'c', image: 'x:1', ...container }] };
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec } as K8sObject;
};

test('the installed kubernetes-models is the pinned release generated from the Kubernetes v1.36.0 spec', () => {
  const read = (rel: string) =>
    JSON.parse(readFileSync(join(ROOT, rel), 'utf8')) as { version?: string; devDependencies?: Record<string, string> };
  const pins = read('package.json').devDependencies ?? {};
  // kubernetes-models 5.0.0 moved to the v1.36.0 spec (its CHANGELOG); a stale node_modules would fail the tests below obscurely.
  assert.equal(pins['kubernetes-models'], '5.1.0');
  assert.equal(
    read('node_modules/kubernetes-models/package.json').version,
    pins['kubernetes-models'],
    'node_modules is stale: run npm ci',
  );
  const apimachinery = read('node_modules/@kubernetes-models/apimachinery/package.json').version;
  assert.equal(apimachinery, pins['@kubernetes-models/apimachinery'], 'ObjectMeta of the same generation');
});

test('a field added in Kubernetes 1.34 (container restartPolicyRules) is accepted; a misspelt key beside it is refused', async () => {
  const rules = [{ action: 'Restart', exitCodes: { operator: 'In', values: [42] } }];
  assert.deepEqual(
    await validateObject(pod({ restartPolicy: 'Never', restartPolicyRules: rules }), info('v1', 'Pod')),
    [],
  );
  assert.deepEqual(
    await validateObject(
      pod({ restartPolicy: 'Never', restartPolicyRules: [{ ...rules[0], exitCodez: {} }] }),
      info('v1', 'Pod'),
    ),
    ['spec.containers[0].restartPolicyRules[0].exitCodez: unknown field'],
  );
  assert.deepEqual(
    await validateObject(pod({ restartPolicy: 'Never', restartPolicyRulez: rules }), info('v1', 'Pod')),
    ['spec.containers[0].restartPolicyRulez: unknown field'],
  );
  // The same for a field of the 1.34 PodSpec (hostnameOverride), one level up.
  const spec = (extra: Record<string, unknown>) =>
    ({ ...pod({}), spec: { containers: [{ name: 'c', image: 'x:1' }], ...extra } }) as K8sObject;
  assert.deepEqual(await validateObject(spec({ hostnameOverride: 'box' }), info('v1', 'Pod')), []);
  assert.deepEqual(await validateObject(spec({ hostnameOverridee: 'box' }), info('v1', 'Pod')), [
    'spec.hostnameOverridee: unknown field',
  ]);
});

test("securityContext.appArmorProfile (what buildkitd sets) is the model's own field now, still strict", async () => {
  const sc = (appArmorProfile: unknown) => pod({ securityContext: { appArmorProfile } });
  const podInfo = info('v1', 'Pod');
  assert.deepEqual(await validateObject(sc({ type: 'Unconfined' }), podInfo), []);
  assert.deepEqual(
    await validateObject(sc({ type: 'Localhost', localhostProfile: 'codex-k8s-buildkit' }), podInfo),
    [],
  );
  assert.deepEqual(await validateObject(sc({ type: 'Bogus' }), podInfo), [
    'spec.containers[0].securityContext.appArmorProfile.type: Unsupported value: must be one of ["Localhost","RuntimeDefault","Unconfined"]',
  ]);
  assert.deepEqual(await validateObject(sc({ type: 'Unconfined', extra: 1 }), podInfo), [
    'spec.containers[0].securityContext.appArmorProfile.extra: unknown field',
  ]);
  // API-server rules the schema can't express: type and localhostProfile go together.
  assert.deepEqual(await validateObject(sc({ type: 'Localhost' }), podInfo), [
    'spec.containers[0].securityContext.appArmorProfile.localhostProfile: Required value: must be set when type is Localhost',
  ]);
  assert.deepEqual(await validateObject(sc({ type: 'RuntimeDefault', localhostProfile: 'x' }), podInfo), [
    'spec.containers[0].securityContext.appArmorProfile.localhostProfile: Invalid value: may only be set when type is Localhost',
  ]);
  const podLevel = {
    ...pod({}),
    spec: { securityContext: { appArmorProfile: { type: 'Localhost' } }, containers: [{ name: 'c', image: 'x:1' }] },
  };
  assert.deepEqual(await validateObject(podLevel as K8sObject, podInfo), [
    'spec.securityContext.appArmorProfile.localhostProfile: Required value: must be set when type is Localhost',
  ]);
  const misplaced = {
    ...pod({}),
    spec: { appArmorProfile: { type: 'Unconfined' }, containers: [{ name: 'c', image: 'x:1' }] },
  } as K8sObject;
  assert.deepEqual(
    await validateObject(misplaced, podInfo),
    ['spec.appArmorProfile: unknown field'],
    'only under a securityContext',
  );
});
