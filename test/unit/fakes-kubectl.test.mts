// The kubectl double (test/fakes/kubectl.mts), driven as a real process: apply semantics, strict validation,
// namespaces, get/delete, rollout + faults, Secrets, and what it records in calls.jsonl.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { newStateDir, runDouble, seedCluster, writeFaults, writeFile } from '../fakes/testkit.mts';
import type { RunResult } from '../fakes/testkit.mts';
import { readCalls, sha256 } from '../fakes/lib/recorder.mts';

/** A state dir with a running fake cluster; `k(...)` runs the double against it. */
function cluster(): { dir: string; k: (args: string[], stdin?: string) => RunResult } {
  const dir = newStateDir();
  const kubeconfig = seedCluster(dir);
  return { dir, k: (args, stdin) => runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], stdin === undefined ? { dir } : { dir, stdin }) };
}

const deployment = (image: string, extra = ''): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: staging
  labels: {app.kubernetes.io/name: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ${image}
        ports: [{containerPort: 8080, name: http}]${extra}
`;

const STACK = (image: string): string => `apiVersion: v1
kind: Namespace
metadata: {name: staging}
---
${deployment(image)}---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: staging}
data: {LOG_LEVEL: info}
`;

function getJson(k: (args: string[]) => RunResult, args: string[]): Record<string, any> {
  const r = k([...args, '-o', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, any>;
}

test('apply: created, then unchanged (not mutating), then configured; server fields maintained', () => {
  const { dir, k } = cluster();
  const file = writeFile(dir, 'stack.yaml', STACK('registry.local/web:1'));

  const first = k(['apply', '-f', file]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, 'namespace/staging created\ndeployment.apps/web created\nconfigmap/web-config created\n');
  const created = getJson(k, ['-n', 'staging', 'get', 'deployment', 'web']);
  assert.equal(created['metadata']['generation'], 1);
  assert.match(created['metadata']['uid'], /^[0-9a-f-]{36}$/);
  assert.equal(created['status']['availableReplicas'], 2);

  const second = k(['apply', '-f', file]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout, 'namespace/staging unchanged\ndeployment.apps/web unchanged\nconfigmap/web-config unchanged\n');

  fs.writeFileSync(file, STACK('registry.local/web:2'));
  const third = k(['apply', '-f', '-'], fs.readFileSync(file, 'utf8'));
  assert.equal(third.code, 0, third.stderr);
  assert.equal(third.stdout, 'namespace/staging unchanged\ndeployment.apps/web configured\nconfigmap/web-config unchanged\n');
  const updated = getJson(k, ['-n', 'staging', 'get', 'deployment/web']);
  assert.equal(updated['metadata']['generation'], 2, 'a spec change bumps generation');
  assert.equal(updated['metadata']['uid'], created['metadata']['uid'], 'uid survives updates');
  assert.notEqual(updated['metadata']['resourceVersion'], created['metadata']['resourceVersion']);

  const applies = readCalls(dir).filter((c) => c.argv.includes('apply'));
  assert.deepEqual(applies.map((c) => c.mutating), [true, false, true]);
  assert.deepEqual(applies[2]?.changes, ['deployment.apps/web configured']);
  assert.equal(applies[2]?.stdinSha256, sha256(fs.readFileSync(file)), 'stdin is recorded by hash');
  assert.equal(applies[0]?.stdinSha256, undefined, 'no stdin read, no hash');
  assert.ok(readCalls(dir).filter((c) => c.argv.includes('get')).every((c) => !c.mutating), 'get never mutates');
});

test('apply rejects invalid objects with paths (wrong type, unknown field deep inside, missing required) and applies nothing', () => {
  const { dir, k } = cluster();
  const bad = `apiVersion: v1
kind: Namespace
metadata: {name: staging}
---
${deployment('registry.local/web:1', '\n        imagePullPolicyy: Always')}---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: staging}
spec:
  replicas: "two"
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - image: registry.local/api:1
`;
  const r = k(['apply', '-f', writeFile(dir, 'bad.yaml', bad)]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /Deployment "web" is invalid:\n\* spec\.template\.spec\.containers\[0\]\.imagePullPolicyy: unknown field/);
  assert.match(r.stderr, /Deployment "api" is invalid:/);
  assert.match(r.stderr, /\* spec\.replicas: Invalid value: must be integer/);
  assert.match(r.stderr, /\* spec\.template\.spec\.containers\[0\]\.name: Required value/);
  const ns = k(['get', 'namespace', 'staging']);
  assert.equal(ns.code, 1, 'the valid Namespace in the same file was not applied either');
  assert.equal(ns.stderr.trim(), 'Error from server (NotFound): namespaces "staging" not found');
  const rec = readCalls(dir).find((c) => c.argv.includes('apply'));
  assert.equal(rec?.mutating, false);
  assert.equal(rec?.exitCode, 1);

  const selector = k(['apply', '-f', '-'], `apiVersion: v1
kind: Namespace
metadata: {name: staging}
---
${deployment('registry.local/web:1').replace('labels: {app: web}\n    spec', 'labels: {app: webb}\n    spec')}`);
  assert.equal(selector.code, 1);
  assert.match(selector.stderr, /spec\.template\.metadata\.labels: Invalid value: selector does not match template labels/);
});

test('valid manifests of many kinds pass strict validation (no false "unknown field")', () => {
  const { dir, k } = cluster();
  const manifests = `apiVersion: v1
kind: Namespace
metadata: {name: staging, labels: {pod-security.kubernetes.io/enforce: baseline}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: staging}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: staging
  annotations: {cert-manager.io/cluster-issuer: letsencrypt}
spec:
  ingressClassName: traefik
  tls: [{hosts: [staging.example.com], secretName: web-tls}]
  rules:
  - host: staging.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres, namespace: staging}
spec:
  serviceName: postgres
  replicas: 1
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      securityContext: {fsGroup: 999, runAsNonRoot: true}
      containers:
      - name: postgres
        image: postgres:17.2
        env:
        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: postgres, key: password}}
        resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {memory: 1Gi}}
        readinessProbe: {exec: {command: [pg_isready]}, periodSeconds: 5}
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local-path
      resources: {requests: {storage: 5Gi}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: staging}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: staging}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: staging}
rules:
- {apiGroups: [apps], resources: [deployments], verbs: [get, list, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer, namespace: staging}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: deployer, namespace: staging}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: staging}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: staging}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: staging}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: backup, image: postgres:17.2, command: [pg_dumpall]}]
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: staging-high}
value: 1000
description: keeps the deploy loop alive
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns: [{name: Size, type: integer, jsonPath: .spec.size, description: how big}]
    schema:
      openAPIV3Schema:
        type: object
        description: A widget.
        properties:
          spec:
            type: object
            description: Desired state.
            x-kubernetes-preserve-unknown-fields: true
            properties:
              size: {type: integer, default: 1, description: Size.}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items: {type: object, required: [name], properties: {name: {type: string}}}
---
apiVersion: v1
kind: Secret
metadata: {name: postgres, namespace: staging}
type: Opaque
data: {password: c2VjcmV0LXZhbHVl}
`;
  const r = k(['apply', '-f', writeFile(dir, 'all.yaml', manifests)]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split('\n').filter((l) => l.endsWith(' created')).length, 14, r.stdout);
  assert.match(r.stdout, /^customresourcedefinition\.apiextensions\.k8s\.io\/widgets\.example\.com created$/m);
  const crd = getJson(k, ['get', 'crd', 'widgets.example.com']);
  assert.ok(crd['status']['conditions'].some((c: Record<string, string>) => c['type'] === 'Established' && c['status'] === 'True'));
  const widget = k(['apply', '-f', '-'], 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: staging}\nspec: {size: 2}\n');
  assert.equal(widget.code, 1, 'a CRD kind without a row in EXTENSION_KINDS is refused');
  assert.match(widget.stderr, /no matches for kind "Widget" in version "example\.com\/v1"[\s\S]*add it to EXTENSION_KINDS/);
});

test('unknown kinds and CR kinds whose CRD is not installed: "resource mapping not found", exit 1', () => {
  const { dir, k } = cluster();
  const r = k(['apply', '-f', writeFile(dir, 'x.yaml', 'apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: web}\nspec: {}\n')]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.split('\n')[0], `error: resource mapping not found for name: "web" namespace: "" from "${path.join(dir, 'x.yaml')}": no matches for kind "Deploymnt" in version "apps/v1"`);
  assert.match(r.stderr, /ensure CRDs are installed first/);
  const issuer = k(['apply', '-f', '-'], 'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: le}\nspec: {selfSigned: {}}\n');
  assert.equal(issuer.code, 1);
  assert.match(issuer.stderr, /no matches for kind "ClusterIssuer" in version "cert-manager\.io\/v1"[\s\S]*no deployed helm release of chart cert-manager/);
  const hcc = k(['apply', '-f', '-'], 'apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik, namespace: kube-system}\nspec: {valuesContent: "ports: {}"}\n');
  assert.equal(hcc.code, 0, hcc.stderr);
  assert.equal(hcc.stdout, 'helmchartconfig.helm.cattle.io/traefik created\n');
  const getUnknown = k(['get', 'widgets']);
  assert.equal(getUnknown.code, 1);
  assert.equal(getUnknown.stderr.trim(), 'error: the server doesn\'t have a resource type "widgets"');
});

test('namespaces: a missing namespace is an error; object vs -n mismatch is an error', () => {
  const { dir, k } = cluster();
  const file = writeFile(dir, 'web.yaml', deployment('registry.local/web:1'));
  const r = k(['apply', '-f', file]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `Error from server (NotFound): error when creating "${file}": namespaces "staging" not found`);
  assert.equal(readCalls(dir).at(-1)?.mutating, false);
  assert.equal(k(['create', 'namespace', 'staging']).stdout, 'namespace/staging created\n');
  const again = k(['create', 'namespace', 'staging']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /AlreadyExists\): namespaces "staging" already exists/);
  const mismatch = k(['apply', '-n', 'other', '-f', file]);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stderr, /the namespace from the provided object "staging" does not match the namespace "other"/);
  const cm = k(['apply', '-f', '-'], 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n');
  assert.equal(cm.code, 0, cm.stderr);
  assert.equal(k(['get', 'configmap', 'c', '-o', 'jsonpath={.metadata.namespace}']).stdout, 'default', 'no namespace anywhere: default');
});

test('get and delete: not found, --ignore-not-found, selectors, output formats', () => {
  const { dir, k } = cluster();
  assert.equal(k(['apply', '-f', writeFile(dir, 's.yaml', STACK('registry.local/web:1'))]).code, 0);
  const missing = k(['-n', 'staging', 'get', 'deployment', 'nope']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr.trim(), 'Error from server (NotFound): deployments.apps "nope" not found');
  const ignored = k(['-n', 'staging', 'get', 'deployment', 'nope', '--ignore-not-found']);
  assert.deepEqual([ignored.code, ignored.stdout, ignored.stderr], [0, '', '']);
  assert.equal(k(['get', 'deploy', '-n', 'staging', '-o', 'name']).stdout, 'deployment.apps/web\n');
  assert.equal(k(['get', 'deploy', '-A', '-l', 'app.kubernetes.io/name=web', '-o', 'jsonpath={.items[*].metadata.name}']).stdout, 'web');
  assert.equal(k(['get', 'nodes', '-o', 'jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}']).stdout, 'True');
  const table = k(['get', 'deployments', '-n', 'staging']);
  assert.match(table.stdout, /^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\nweb\s+2\/2\s+2\s+2\s+\d+s\n$/);
  assert.equal(k(['get', 'secrets', '-n', 'staging']).stderr.trim(), 'No resources found in staging namespace.');

  const before = readCalls(dir).length;
  const del = k(['delete', 'deployment', 'web', '-n', 'staging']);
  assert.equal(del.code, 0, del.stderr);
  assert.equal(del.stdout, 'deployment.apps "web" deleted\n');
  const delAgain = k(['delete', 'deployment/web', '-n', 'staging']);
  assert.equal(delAgain.code, 1);
  assert.equal(delAgain.stderr.trim(), 'Error from server (NotFound): deployments.apps "web" not found');
  assert.equal(k(['delete', 'deployment', 'web', '-n', 'staging', '--ignore-not-found']).code, 0);
  assert.deepEqual(readCalls(dir).slice(before).map((c) => c.mutating), [true, false, false]);
  const nsDel = k(['delete', 'namespace', 'staging']);
  assert.equal(nsDel.stdout, 'namespace "staging" deleted\n');
  assert.equal(k(['get', 'configmap', 'web-config', '-n', 'staging']).code, 1, 'deleting a namespace deletes what is in it');
});

test('rollout: status, fault injection (times), restart and undo to the previous pod template', () => {
  const { dir, k } = cluster();
  const file = writeFile(dir, 's.yaml', STACK('registry.local/web:1'));
  assert.equal(k(['apply', '-f', file]).code, 0);
  fs.writeFileSync(file, STACK('registry.local/web:2'));
  assert.equal(k(['apply', '-f', file]).code, 0);

  const ok = k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=60s']);
  assert.deepEqual([ok.code, ok.stdout], [0, 'deployment "web" successfully rolled out\n']);
  const unbounded = k(['-n', 'staging', 'rollout', 'status', 'deployment/web']);
  assert.equal(unbounded.code, 1);
  assert.match(unbounded.stderr, /requires --timeout/);

  writeFaults(dir, { 'kubectl rollout status deployment/web': { exitCode: 1, stderr: 'error: deployment "web" exceeded its progress deadline', times: 1 } });
  const faulted = k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=60s']);
  assert.deepEqual([faulted.code, faulted.stdout, faulted.stderr], [1, '', 'error: deployment "web" exceeded its progress deadline\n']);
  const afterFault = k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=60s']);
  assert.equal(afterFault.code, 0, 'times: 1 means the next call runs normally');
  const statusCalls = readCalls(dir).filter((c) => c.argv.includes('status') && c.argv.includes('--timeout=60s'));
  assert.deepEqual(statusCalls.map((c) => c.fault), [undefined, 'kubectl rollout status deployment/web', undefined]);

  const undo = k(['-n', 'staging', 'rollout', 'undo', 'deployment/web']);
  assert.deepEqual([undo.code, undo.stdout], [0, 'deployment.apps/web rolled back\n']);
  assert.equal(k(['-n', 'staging', 'get', 'deploy', 'web', '-o', 'jsonpath={.spec.template.spec.containers[0].image}']).stdout, 'registry.local/web:1');
  const undone = getJson(k, ['-n', 'staging', 'get', 'deploy', 'web']);
  assert.equal(undone['metadata']['annotations']['deployment.kubernetes.io/revision'], '3', 'rolling back makes the old template the newest revision');
  assert.equal(undone['metadata']['generation'], 3);
  const undoCall = readCalls(dir).find((c) => c.argv.includes('undo'));
  assert.equal(undoCall?.mutating, true, 'undo is recorded as a change');
  assert.deepEqual(undoCall?.changes, ['deployment.apps/web rolled back to revision 1']);

  const restart = k(['-n', 'staging', 'rollout', 'restart', 'deployment/web']);
  assert.equal(restart.stdout, 'deployment.apps/web restarted\n');
  fs.writeFileSync(file, STACK('registry.local/web:1'));
  const reapply = k(['apply', '-f', file]);
  assert.match(reapply.stdout, /deployment\.apps\/web unchanged/, 'the restartedAt annotation survives an apply of the same manifest');

  const waitOk = k(['-n', 'staging', 'wait', '--for=condition=Available', 'deployment/web', '--timeout=30s']);
  assert.deepEqual([waitOk.code, waitOk.stdout], [0, 'deployment.apps/web condition met\n']);
});

test('Secrets: stringData is merged into data; values never appear outside get -o json|yaml; bad base64 refused', () => {
  const { dir, k } = cluster();
  const value = 'S3cr3t-value-for-tests';
  assert.equal(k(['create', 'namespace', 'staging']).code, 0);
  const secret = `apiVersion: v1
kind: Secret
metadata: {name: db, namespace: staging}
data: {user: ${Buffer.from('app').toString('base64')}}
stringData: {password: ${value}}
`;
  const r = k(['apply', '-f', '-'], secret);
  assert.deepEqual([r.code, r.stdout], [0, 'secret/db created\n']);
  assert.equal(k(['apply', '-f', '-'], secret).stdout, 'secret/db unchanged\n', 'stringData folded into data compares equal');
  const table = k(['get', 'secret', 'db', '-n', 'staging']);
  assert.match(table.stdout, /^NAME\s+TYPE\s+DATA\s+AGE\ndb\s+Opaque\s+2\s+/);
  const stored = getJson(k, ['get', 'secret', 'db', '-n', 'staging']);
  assert.equal(Buffer.from(stored['data']['password'], 'base64').toString(), value);
  assert.equal(stored['stringData'], undefined);
  const b64 = Buffer.from(value).toString('base64');
  for (const c of readCalls(dir)) assert.ok(!JSON.stringify(c).includes(value) && !JSON.stringify(c).includes(b64), 'the value is not in calls.jsonl');
  const bad = k(['apply', '-f', '-'], 'apiVersion: v1\nkind: Secret\nmetadata: {name: bad, namespace: staging}\ndata: {token: "not base64!"}\n');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /data\["token"\]: illegal base64 data/);
  assert.ok(!bad.stderr.includes('not base64!'), 'the invalid value is not echoed');
});

test('refusals: no cluster, unknown verb/flag, --prune, -k', () => {
  const dir = newStateDir();
  const down = runDouble('kubectl', ['get', 'nodes'], { dir });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /The connection to the server localhost:8080 was refused/);
  const kubeconfig = seedCluster(dir);
  const k = (args: string[]): RunResult => runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], { dir });
  const missingKc = runDouble('kubectl', ['--kubeconfig', '/nonexistent/kc', 'get', 'nodes'], { dir });
  assert.equal(missingKc.stderr.trim(), 'error: stat /nonexistent/kc: no such file or directory');
  assert.match(k(['frobnicate']).stderr, /^error: unknown command "frobnicate" for "kubectl"/);
  const flag = k(['get', 'pods', '--bogus']);
  assert.equal(flag.code, 1);
  assert.match(flag.stderr, /^error: unknown flag: --bogus/);
  assert.match(k(['apply', '--prune', '-f', kubeconfig]).stderr, /does not support apply --prune/);
  assert.match(k(['apply', '-k', '.']).stderr, /does not support -k/);
  const version = k(['version', '--client', '-o', 'json']);
  assert.equal(JSON.parse(version.stdout)['clientVersion']['gitVersion'], 'v1.31.4+k3s1');
  assert.ok(readCalls(dir).every((c) => !c.mutating));
});

test('in-process: the objects a fresh k3s has are valid; faults match on word boundaries, longest key first', async () => {
  const { seedObjects } = await import('../fakes/lib/store.mts');
  const { validateObject } = await import('../fakes/lib/validate.mts');
  const { kindByApiVersion } = await import('../fakes/lib/kinds.mts');
  const { takeFault, readFaults } = await import('../fakes/lib/recorder.mts');
  for (const obj of seedObjects({ version: 'v1.31.4+k3s1', nodeName: 'n1', disabled: [] })) {
    const info = kindByApiVersion(obj.apiVersion, obj.kind);
    assert.ok(info !== undefined, `${obj.kind} has a row`);
    assert.deepEqual(await validateObject({ ...obj, status: undefined } as never, info), [], `${obj.kind}/${obj.metadata.name} is valid`);
  }

  const dir = newStateDir();
  writeFaults(dir, {
    'kubectl rollout status deployment/web': { exitCode: 3, times: 2 },
    'kubectl rollout status': { exitCode: 4 },
  });
  const argv = (s: string): string[][] => [s.split(' ')];
  assert.equal(takeFault(dir, 'kubectl', argv('rollout status deployment/web-2 --timeout=1s'))?.fault.exitCode, 4, 'web is not a prefix of web-2');
  assert.equal(takeFault(dir, 'kubectl', argv('rollout status deployment/web --timeout=1s'))?.fault.exitCode, 3, 'longest key wins');
  assert.equal(takeFault(dir, 'kubectl', argv('rollout status deployment/web'))?.key, 'kubectl rollout status deployment/web');
  assert.equal(takeFault(dir, 'kubectl', argv('rollout status deployment/web'))?.fault.exitCode, 4, 'after times: 2 the shorter key applies');
  assert.equal(takeFault(dir, 'helm', argv('rollout status deployment/web')), undefined, 'the tool name is part of the key');
  writeFaults(dir, { 'kubectl get': { exitCode: 1, stderrr: 'typo' } as never });
  assert.throws(() => readFaults(dir), /"kubectl get"\.stderrr: unknown field/);
});

test('diff: exit 1 with a section per object that would change, exit 0 once applied; never mutating', () => {
  const { dir, k } = cluster();
  const stack = STACK('registry.local/web:1');
  const ns = k(['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata: {name: staging}\n');
  assert.equal(ns.code, 0, ns.stderr);

  const before = k(['diff', '-f', '-'], stack);
  assert.equal(before.code, 1, before.stderr);
  const headers = before.stdout.split('\n').filter((l) => l.startsWith('diff -u -N '));
  assert.deepEqual(headers.map((h) => h.split('/').pop()), ['apps.v1.Deployment.staging.web', 'v1.ConfigMap.staging.web-config'], 'the namespace is unchanged: no section');
  assert.match(before.stdout, /^diff -u -N \/tmp\/LIVE-\d+\/apps\.v1\.Deployment\.staging\.web \/tmp\/MERGED-\d+\/apps\.v1\.Deployment\.staging\.web$/m);
  assert.match(before.stdout, /^@@ -0,0 \+1,\d+ @@$/m, 'a new object: empty live side');
  assert.match(before.stdout, /^\+  name: web$/m);

  assert.equal(k(['apply', '-f', '-'], stack).code, 0);
  const after = k(['diff', '-f', '-'], stack);
  assert.equal(after.code, 0, after.stdout + after.stderr);
  assert.equal(after.stdout, '');

  const changed = k(['diff', '-f', '-'], STACK('registry.local/web:2'));
  assert.equal(changed.code, 1);
  assert.match(changed.stdout, /^-\s+image: registry\.local\/web:1$/m);
  assert.match(changed.stdout, /^\+\s+image: registry\.local\/web:2$/m);
  assert.doesNotMatch(changed.stdout, /^[-+]\s+(uid|resourceVersion|generation|creationTimestamp):/m, 'server fields are not differences');
  assert.equal(getJson(k, ['-n', 'staging', 'get', 'deployment', 'web'])['spec']['template']['spec']['containers'][0]['image'], 'registry.local/web:1', 'diff changes nothing');

  // A restart annotation set by `rollout restart` survives apply, so diff does not report it either.
  assert.equal(k(['-n', 'staging', 'rollout', 'restart', 'deployment/web']).code, 0);
  assert.equal(k(['diff', '-f', '-'], stack).code, 0);

  const diffs = readCalls(dir).filter((c) => c.argv.includes('diff'));
  assert.deepEqual(diffs.map((c) => [c.exitCode, c.mutating]), [[1, false], [0, false], [1, false], [0, false]]);
});

test('diff: errors exit above 1 (invalid object, unknown CRD kind, missing namespace, no -f); Secret values never shown', () => {
  const { k } = cluster();
  const bad = k(['diff', '-f', '-'], deployment('x:1').replace('replicas: 2', 'replicas: two'));
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /spec\.replicas: Invalid value/);
  const noNs = k(['diff', '-f', '-'], deployment('x:1'));
  assert.equal(noNs.code, 2);
  assert.match(noNs.stderr, /namespaces "staging" not found/);
  const crd = k(['diff', '-f', '-'], 'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: le}\nspec: {selfSigned: {}}\n');
  assert.equal(crd.code, 2);
  assert.match(crd.stderr, /no matches for kind "ClusterIssuer"/);
  assert.equal(k(['diff']).code, 2);

  const secret = (v: string): string => `apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: default}\nstringData: {password: ${v}, user: codex}\n`;
  assert.equal(k(['apply', '-f', '-'], secret('first-password')).code, 0);
  assert.equal(k(['diff', '-f', '-'], secret('first-password')).code, 0, 'stringData compares like apply stores it');
  const d = k(['diff', '-f', '-'], secret('second-password'));
  assert.equal(d.code, 1);
  for (const v of ['first-password', 'second-password', Buffer.from('first-password').toString('base64'), Buffer.from('second-password').toString('base64')]) assert.ok(!d.stdout.includes(v), 'no secret value in the diff');
  assert.match(d.stdout, /^-\s+password: ["']?\*\*\* \(before\)["']?$/m);
  assert.match(d.stdout, /^\+\s+password: ["']?\*\*\* \(after\)["']?$/m);
  assert.match(d.stdout, /^ \s+user: ["']?\*\*\*["']?$/m, 'an unchanged value is masked too');
});
