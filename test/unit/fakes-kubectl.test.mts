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
function cluster(): { dir: string; k: (args: string[], stdin?: string | Buffer) => RunResult } {
  const dir = newStateDir();
  const kubeconfig = seedCluster(dir);
  return {
    dir,
    k: (args, stdin) =>
      runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], stdin === undefined ? { dir } : { dir, stdin }),
  };
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
  assert.equal(
    second.stdout,
    'namespace/staging unchanged\ndeployment.apps/web unchanged\nconfigmap/web-config unchanged\n',
  );

  fs.writeFileSync(file, STACK('registry.local/web:2'));
  const third = k(['apply', '-f', '-'], fs.readFileSync(file, 'utf8'));
  assert.equal(third.code, 0, third.stderr);
  assert.equal(
    third.stdout,
    'namespace/staging unchanged\ndeployment.apps/web configured\nconfigmap/web-config unchanged\n',
  );
  const updated = getJson(k, ['-n', 'staging', 'get', 'deployment/web']);
  assert.equal(updated['metadata']['generation'], 2, 'a spec change bumps generation');
  assert.equal(updated['metadata']['uid'], created['metadata']['uid'], 'uid survives updates');
  assert.notEqual(updated['metadata']['resourceVersion'], created['metadata']['resourceVersion']);

  const applies = readCalls(dir).filter((c) => c.argv.includes('apply'));
  assert.deepEqual(
    applies.map((c) => c.mutating),
    [true, false, true],
  );
  assert.deepEqual(applies[2]?.changes, ['deployment.apps/web configured']);
  assert.equal(applies[2]?.stdinSha256, sha256(fs.readFileSync(file)), 'stdin is recorded by hash');
  assert.equal(applies[0]?.stdinSha256, undefined, 'no stdin read, no hash');
  assert.ok(
    readCalls(dir)
      .filter((c) => c.argv.includes('get'))
      .every((c) => !c.mutating),
    'get never mutates',
  );
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
  assert.match(
    r.stderr,
    /Deployment "web" is invalid:\n\* spec\.template\.spec\.containers\[0\]\.imagePullPolicyy: unknown field/,
  );
  assert.match(r.stderr, /Deployment "api" is invalid:/);
  assert.match(r.stderr, /\* spec\.replicas: Invalid value: must be integer/);
  assert.match(r.stderr, /\* spec\.template\.spec\.containers\[0\]\.name: Required value/);
  const ns = k(['get', 'namespace', 'staging']);
  assert.equal(ns.code, 1, 'the valid Namespace in the same file was not applied either');
  assert.equal(ns.stderr.trim(), 'Error from server (NotFound): namespaces "staging" not found');
  const rec = readCalls(dir).find((c) => c.argv.includes('apply'));
  assert.equal(rec?.mutating, false);
  assert.equal(rec?.exitCode, 1);

  const selector = k(
    ['apply', '-f', '-'],
    `apiVersion: v1
kind: Namespace
metadata: {name: staging}
---
${deployment('registry.local/web:1').replace('labels: {app: web}\n    spec', 'labels: {app: webb}\n    spec')}`,
  );
  assert.equal(selector.code, 1);
  assert.match(
    selector.stderr,
    /spec\.template\.metadata\.labels: Invalid value: selector does not match template labels/,
  );
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
  assert.ok(
    crd['status']['conditions'].some(
      (c: Record<string, string>) => c['type'] === 'Established' && c['status'] === 'True',
    ),
  );
  const widget = k(
    ['apply', '-f', '-'],
    'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: staging}\nspec: {size: 2}\n',
  );
  assert.equal(widget.code, 1, 'a CRD kind without a row in EXTENSION_KINDS is refused');
  assert.match(
    widget.stderr,
    /no matches for kind "Widget" in version "example\.com\/v1"[\s\S]*add it to EXTENSION_KINDS/,
  );
});

test('unknown kinds and CR kinds whose CRD is not installed: "resource mapping not found", exit 1', () => {
  const { dir, k } = cluster();
  const r = k([
    'apply',
    '-f',
    writeFile(dir, 'x.yaml', 'apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: web}\nspec: {}\n'),
  ]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr.split('\n')[0],
    `error: resource mapping not found for name: "web" namespace: "" from "${path.join(dir, 'x.yaml')}": no matches for kind "Deploymnt" in version "apps/v1"`,
  );
  assert.match(r.stderr, /ensure CRDs are installed first/);
  const issuer = k(
    ['apply', '-f', '-'],
    'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: le}\nspec: {selfSigned: {}}\n',
  );
  assert.equal(issuer.code, 1);
  assert.match(
    issuer.stderr,
    /no matches for kind "ClusterIssuer" in version "cert-manager\.io\/v1"[\s\S]*no deployed helm release of chart cert-manager/,
  );
  const hcc = k(
    ['apply', '-f', '-'],
    'apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik, namespace: kube-system}\nspec: {valuesContent: "ports: {}"}\n',
  );
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
  assert.equal(
    r.stderr.trim(),
    `Error from server (NotFound): error when creating "${file}": namespaces "staging" not found`,
  );
  assert.equal(readCalls(dir).at(-1)?.mutating, false);
  assert.equal(k(['create', 'namespace', 'staging']).stdout, 'namespace/staging created\n');
  const again = k(['create', 'namespace', 'staging']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /AlreadyExists\): namespaces "staging" already exists/);
  const mismatch = k(['apply', '-n', 'other', '-f', file]);
  assert.equal(mismatch.code, 1);
  assert.match(
    mismatch.stderr,
    /the namespace from the provided object "staging" does not match the namespace "other"/,
  );
  const cm = k(['apply', '-f', '-'], 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n');
  assert.equal(cm.code, 0, cm.stderr);
  assert.equal(
    k(['get', 'configmap', 'c', '-o', 'jsonpath={.metadata.namespace}']).stdout,
    'default',
    'no namespace anywhere: default',
  );
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
  assert.equal(
    k(['get', 'deploy', '-A', '-l', 'app.kubernetes.io/name=web', '-o', 'jsonpath={.items[*].metadata.name}']).stdout,
    'web',
  );
  assert.equal(
    k(['get', 'nodes', '-o', 'jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}']).stdout,
    'True',
  );
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
  assert.deepEqual(
    readCalls(dir)
      .slice(before)
      .map((c) => c.mutating),
    [true, false, false],
  );
  const nsDel = k(['delete', 'namespace', 'staging']);
  assert.equal(nsDel.stdout, 'namespace "staging" deleted\n');
  assert.equal(
    k(['get', 'configmap', 'web-config', '-n', 'staging']).code,
    1,
    'deleting a namespace deletes what is in it',
  );
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

  writeFaults(dir, {
    'kubectl rollout status deployment/web': {
      exitCode: 1,
      stderr: 'error: deployment "web" exceeded its progress deadline',
      times: 1,
    },
  });
  const faulted = k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=60s']);
  assert.deepEqual(
    [faulted.code, faulted.stdout, faulted.stderr],
    [1, '', 'error: deployment "web" exceeded its progress deadline\n'],
  );
  const afterFault = k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=60s']);
  assert.equal(afterFault.code, 0, 'times: 1 means the next call runs normally');
  const statusCalls = readCalls(dir).filter((c) => c.argv.includes('status') && c.argv.includes('--timeout=60s'));
  assert.deepEqual(
    statusCalls.map((c) => c.fault),
    [undefined, 'kubectl rollout status deployment/web', undefined],
  );

  const undo = k(['-n', 'staging', 'rollout', 'undo', 'deployment/web']);
  assert.deepEqual([undo.code, undo.stdout], [0, 'deployment.apps/web rolled back\n']);
  assert.equal(
    k(['-n', 'staging', 'get', 'deploy', 'web', '-o', 'jsonpath={.spec.template.spec.containers[0].image}']).stdout,
    'registry.local/web:1',
  );
  const undone = getJson(k, ['-n', 'staging', 'get', 'deploy', 'web']);
  assert.equal(
    undone['metadata']['annotations']['deployment.kubernetes.io/revision'],
    '3',
    'rolling back makes the old template the newest revision',
  );
  assert.equal(undone['metadata']['generation'], 3);
  const undoCall = readCalls(dir).find((c) => c.argv.includes('undo'));
  assert.equal(undoCall?.mutating, true, 'undo is recorded as a change');
  assert.deepEqual(undoCall?.changes, ['deployment.apps/web rolled back to revision 1']);

  const restart = k(['-n', 'staging', 'rollout', 'restart', 'deployment/web']);
  assert.equal(restart.stdout, 'deployment.apps/web restarted\n');
  fs.writeFileSync(file, STACK('registry.local/web:1'));
  const reapply = k(['apply', '-f', file]);
  assert.match(
    reapply.stdout,
    /deployment\.apps\/web unchanged/,
    'the restartedAt annotation survives an apply of the same manifest',
  );

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
  assert.equal(
    k(['apply', '-f', '-'], secret).stdout,
    'secret/db unchanged\n',
    'stringData folded into data compares equal',
  );
  const table = k(['get', 'secret', 'db', '-n', 'staging']);
  assert.match(table.stdout, /^NAME\s+TYPE\s+DATA\s+AGE\ndb\s+Opaque\s+2\s+/);
  const stored = getJson(k, ['get', 'secret', 'db', '-n', 'staging']);
  assert.equal(Buffer.from(stored['data']['password'], 'base64').toString(), value);
  assert.equal(stored['stringData'], undefined);
  const b64 = Buffer.from(value).toString('base64');
  for (const c of readCalls(dir))
    assert.ok(
      !JSON.stringify(c).includes(value) && !JSON.stringify(c).includes(b64),
      'the value is not in calls.jsonl',
    );
  const bad = k(
    ['apply', '-f', '-'],
    'apiVersion: v1\nkind: Secret\nmetadata: {name: bad, namespace: staging}\ndata: {token: "not base64!"}\n',
  );
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
    const { status: _written, ...userView } = obj as Record<string, unknown>; // status is the controllers', not validated
    assert.deepEqual(await validateObject(userView as never, info), [], `${obj.kind}/${obj.metadata.name} is valid`);
  }

  const dir = newStateDir();
  writeFaults(dir, {
    'kubectl rollout status deployment/web': { exitCode: 3, times: 2 },
    'kubectl rollout status': { exitCode: 4 },
  });
  const argv = (s: string): string[][] => [s.split(' ')];
  assert.equal(
    takeFault(dir, 'kubectl', argv('rollout status deployment/web-2 --timeout=1s'))?.fault.exitCode,
    4,
    'web is not a prefix of web-2',
  );
  assert.equal(
    takeFault(dir, 'kubectl', argv('rollout status deployment/web --timeout=1s'))?.fault.exitCode,
    3,
    'longest key wins',
  );
  assert.equal(
    takeFault(dir, 'kubectl', argv('rollout status deployment/web'))?.key,
    'kubectl rollout status deployment/web',
  );
  assert.equal(
    takeFault(dir, 'kubectl', argv('rollout status deployment/web'))?.fault.exitCode,
    4,
    'after times: 2 the shorter key applies',
  );
  assert.equal(
    takeFault(dir, 'helm', argv('rollout status deployment/web')),
    undefined,
    'the tool name is part of the key',
  );
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
  assert.deepEqual(
    headers.map((h) => h.split('/').pop()),
    ['apps.v1.Deployment.staging.web', 'v1.ConfigMap.staging.web-config'],
    'the namespace is unchanged: no section',
  );
  assert.match(
    before.stdout,
    /^diff -u -N \/tmp\/LIVE-\d+\/apps\.v1\.Deployment\.staging\.web \/tmp\/MERGED-\d+\/apps\.v1\.Deployment\.staging\.web$/m,
  );
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
  assert.doesNotMatch(
    changed.stdout,
    /^[-+]\s+(uid|resourceVersion|generation|creationTimestamp):/m,
    'server fields are not differences',
  );
  assert.equal(
    getJson(k, ['-n', 'staging', 'get', 'deployment', 'web'])['spec']['template']['spec']['containers'][0]['image'],
    'registry.local/web:1',
    'diff changes nothing',
  );

  // A restart annotation set by `rollout restart` survives apply, so diff does not report it either.
  assert.equal(k(['-n', 'staging', 'rollout', 'restart', 'deployment/web']).code, 0);
  assert.equal(k(['diff', '-f', '-'], stack).code, 0);

  const diffs = readCalls(dir).filter((c) => c.argv.includes('diff'));
  assert.deepEqual(
    diffs.map((c) => [c.exitCode, c.mutating]),
    [
      [1, false],
      [0, false],
      [1, false],
      [0, false],
    ],
  );
});

test('diff: errors exit above 1 (invalid object, unknown CRD kind, missing namespace, no -f); Secret values never shown', () => {
  const { k } = cluster();
  const bad = k(['diff', '-f', '-'], deployment('x:1').replace('replicas: 2', 'replicas: two'));
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /spec\.replicas: Invalid value/);
  const noNs = k(['diff', '-f', '-'], deployment('x:1'));
  assert.equal(noNs.code, 2);
  assert.match(noNs.stderr, /namespaces "staging" not found/);
  const crd = k(
    ['diff', '-f', '-'],
    'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: le}\nspec: {selfSigned: {}}\n',
  );
  assert.equal(crd.code, 2);
  assert.match(crd.stderr, /no matches for kind "ClusterIssuer"/);
  assert.equal(k(['diff']).code, 2);

  const secret = (v: string): string =>
    `apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: default}\nstringData: {password: ${v}, user: codex}\n`;
  assert.equal(k(['apply', '-f', '-'], secret('first-password')).code, 0);
  assert.equal(k(['diff', '-f', '-'], secret('first-password')).code, 0, 'stringData compares like apply stores it');
  const d = k(['diff', '-f', '-'], secret('second-password'));
  assert.equal(d.code, 1);
  for (const v of [
    'first-password',
    'second-password',
    Buffer.from('first-password').toString('base64'),
    Buffer.from('second-password').toString('base64'),
  ])
    assert.ok(!d.stdout.includes(v), 'no secret value in the diff');
  assert.match(d.stdout, /^-\s+password: ["']?\*\*\* \(before\)["']?$/m);
  assert.match(d.stdout, /^\+\s+password: ["']?\*\*\* \(after\)["']?$/m);
  assert.match(d.stdout, /^ \s+user: ["']?\*\*\*["']?$/m, 'an unchanged value is masked too');
});

// ---------------------------------------------------------------------------------------------------------------
// The deploy loop: exec into buildkitd-0 (build.sh), the registry, set image, rollouts of internal images.

const BUILD = [
  '-n',
  'codex-k8s-system',
  'exec',
  '-i',
  'buildkitd-0',
  '-c',
  'buildkitd',
  '--',
  '/opt/codex-k8s-build/build.sh',
];
const SHA = '0123456789abcdef0123456789abcdef01234567';
const TAG = 'sha-0123456789ab';
const REF = `registry.codex-k8s-system.svc.cluster.local:5000/codex-k8s:${TAG}`;
const PULL = (port: number, tag = TAG): string => `registry.codex-k8s.internal:${port}/codex-k8s:${tag}`;

/** What manifests/registry and manifests/buildkit put in the cluster, cut down to what the double looks at. */
const BUILDKIT_STACK = (mode = '0755'): string => `apiVersion: v1
kind: Namespace
metadata: {name: codex-k8s-system}
---
apiVersion: v1
kind: Service
metadata: {name: registry, namespace: codex-k8s-system}
spec:
  selector: {app: registry}
  ports: [{name: http, port: 5000, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: registry, namespace: codex-k8s-system}
spec:
  selector: {matchLabels: {app: registry}}
  template:
    metadata: {labels: {app: registry}}
    spec:
      containers: [{name: registry, image: "registry:3.0.0", ports: [{name: http, containerPort: 5000, hostPort: 5000}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: buildkit-scripts, namespace: codex-k8s-system}
data:
  build.sh: |
    #!/bin/sh
    exit 0
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: buildkitd, namespace: codex-k8s-system}
spec:
  serviceName: buildkitd
  replicas: 1
  selector: {matchLabels: {app: buildkitd}}
  template:
    metadata: {labels: {app: buildkitd}}
    spec:
      containers:
      - name: buildkitd
        image: moby/buildkit:v0.23.2-rootless
        volumeMounts: [{name: scripts, mountPath: /opt/codex-k8s-build, readOnly: true}]
      volumes:
      - name: scripts
        configMap: {name: buildkit-scripts, defaultMode: ${mode}}
`;

const DOCKERFILE = `# syntax=docker/dockerfile:1
ARG NODE_IMAGE=node:24.4.1-bookworm-slim
FROM \${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
FROM node:24.4.1-bookworm-slim
ARG GIT_SHA
ENV CODEXK8S_VERSION=\${GIT_SHA}
COPY --from=build /app/node_modules ./node_modules
COPY src/ ./src/
USER node
CMD ["node", "src/server.mts"]
`;

async function context(files: Record<string, string> = {}, dockerfileName = 'Dockerfile'): Promise<Buffer> {
  const { makeTar } = await import('../fakes/lib/tar.mts');
  const all = {
    [dockerfileName]: DOCKERFILE,
    'package.json': '{}\n',
    'package-lock.json': '{}\n',
    'src/server.mts': 'export {};\n',
    ...files,
  };
  return makeTar(Object.entries(all).map(([name, content]) => ({ name, content })));
}

/** A cluster with the registry and BuildKit applied. */
function buildCluster(mode = '0755'): { dir: string; k: (args: string[], stdin?: string | Buffer) => RunResult } {
  const dir = newStateDir();
  const kubeconfig = seedCluster(dir);
  const k = (args: string[], stdin?: string | Buffer): RunResult =>
    runDouble('kubectl', ['--kubeconfig', kubeconfig, ...args], stdin === undefined ? { dir } : { dir, stdin });
  const r = k(['apply', '-f', '-'], BUILDKIT_STACK(mode));
  assert.equal(r.code, 0, r.stderr);
  return { dir, k };
}

test('exec build.sh: absent (exit 3), build pushes (mutating, registry keeps git sha + context sha256), present, unchanged', async () => {
  const { readRegistry } = await import('../fakes/lib/registry.mts');
  const { dir, k } = buildCluster();
  const before = readCalls(dir).length;
  const absent = k([...BUILD, 'exists', TAG]);
  assert.deepEqual(
    [absent.code, absent.stdout, absent.stderr],
    [3, `absent ${REF}\n`, 'command terminated with exit code 3\n'],
  );

  const tar = await context();
  const built = k([...BUILD, 'build', TAG, SHA], tar);
  assert.equal(built.code, 0, built.stderr);
  assert.equal(built.stdout, `pushed ${REF}\n`);
  assert.match(
    built.stderr,
    /^#1 \[internal\] load build definition from Dockerfile$/m,
    'buildctl-like progress on stderr',
  );
  assert.match(built.stderr, /load metadata for docker\.io\/library\/node:24\.4\.1-bookworm-slim/);
  assert.match(built.stderr, new RegExp(`pushing manifest for ${REF.replace(/\./g, '\\.')}@sha256:[0-9a-f]{64} done`));
  const pushed = readRegistry(dir);
  assert.equal(pushed.length, 1);
  assert.deepEqual(
    {
      ref: pushed[0]?.ref,
      repository: pushed[0]?.repository,
      tag: pushed[0]?.tag,
      gitSha: pushed[0]?.gitSha,
      contextSha256: pushed[0]?.contextSha256,
    },
    { ref: REF, repository: 'codex-k8s', tag: TAG, gitSha: SHA, contextSha256: sha256(tar) },
  );

  const podJson = getJson(k, ['-n', 'codex-k8s-system', 'get', 'pod', 'buildkitd-0']);
  assert.deepEqual(
    [podJson['status']['phase'], podJson['metadata']['ownerReferences'][0]['name']],
    ['Running', 'buildkitd'],
    'the exec target is a pod get can see',
  );
  const present = k([...BUILD, 'exists', TAG]);
  assert.deepEqual([present.code, present.stdout, present.stderr], [0, `present ${REF}\n`, '']);
  const again = k([...BUILD, 'build', TAG, SHA], 'not even a tar: the script drains stdin and stops');
  assert.deepEqual([again.code, again.stdout], [0, `unchanged ${REF}\n`]);
  assert.equal(readRegistry(dir).length, 1);

  const calls = readCalls(dir)
    .slice(before)
    .filter((c) => c.argv.includes('exec'));
  assert.deepEqual(
    calls.map((c) => [c.exitCode, c.mutating]),
    [
      [3, false],
      [0, true],
      [0, false],
      [0, false],
    ],
  );
  assert.equal(calls[0]?.stdinSha256, undefined, 'exists does not read stdin (an open stdin must not hang it)');
  assert.deepEqual(calls[1]?.detail, {
    exec: {
      namespace: 'codex-k8s-system',
      pod: 'buildkitd-0',
      container: 'buildkitd',
      stdin: true,
      command: ['/opt/codex-k8s-build/build.sh', 'build', TAG, SHA],
    },
  });
  assert.equal(calls[1]?.stdinSha256, sha256(tar), 'stdin is recorded by hash only');
  assert.deepEqual(calls[1]?.changes, [`pushed ${REF} (git ${SHA}, context sha256 ${sha256(tar)})`]);
  assert.ok(!JSON.stringify(calls).includes('npm ci'), 'no stdin content in calls.jsonl');
});

test('exec build.sh: stdin must be a complete tar with a Dockerfile at its root, and COPY sources must be in it', async () => {
  const { readRegistry } = await import('../fakes/lib/registry.mts');
  const { dir, k } = buildCluster();
  const good = await context();
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['short text', 'FROM node:24\n', /not a tar archive \(fake: no tar header at the start \(13 bytes/],
    [
      'text',
      'FROM node:24\n'.repeat(100),
      /not a tar archive \(fake: no tar header at the start \(bad header checksum\)/,
    ],
    ['empty', '', /not a tar archive \(fake: empty input\)/],
    ['gzip', Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(600)]), /gzip-compressed data/],
    ['truncated', good.subarray(0, 700), /unexpected end of archive/],
    [
      'no Dockerfile',
      await context({}, 'app/Dockerfile'),
      /failed to read dockerfile: open Dockerfile: no such file or directory/,
    ],
    [
      'missing COPY source',
      (await import('../fakes/lib/tar.mts')).makeTar([
        { name: 'Dockerfile', content: DOCKERFILE },
        { name: 'package.json', content: '{}' },
      ]),
      /failed to calculate checksum of ref: "\/package-lock\.json": not found \(Dockerfile line 5/,
    ],
    [
      'unknown instruction',
      await context({ Dockerfile: 'FROM node:24\nRUNN npm ci\n' }),
      /dockerfile parse error on line 2: unknown instruction: RUNN/,
    ],
    ['no FROM', await context({ Dockerfile: 'ARG X=1\nRUN true\n' }), /no build stage in current context/],
  ];
  for (const [name, stdin, want] of cases) {
    const r = k([...BUILD, 'build', TAG, SHA], stdin);
    assert.equal(r.code, 1, `${name}: ${r.stderr}`);
    assert.equal(r.stdout, '', name);
    assert.match(r.stderr, want, name);
    assert.match(r.stderr, /command terminated with exit code 1\n$/, name);
  }
  assert.deepEqual(readRegistry(dir), [], 'nothing pushed');
  assert.ok(
    readCalls(dir).every((c) => !c.mutating || c.argv.includes('apply')),
    'failed builds are not mutating',
  );
  const dotSlash = k([...BUILD, 'build', TAG, SHA], await context({}, './Dockerfile'));
  assert.equal(dotSlash.code, 0, `./Dockerfile is the root Dockerfile too: ${dotSlash.stderr}`);
});

test('exec build.sh: bad arguments exit 2 with the usage, before anything is built', async () => {
  const { dir, k } = buildCluster();
  const tar = await context();
  const bad: Array<[string[], RegExp]> = [
    [[], /missing command/],
    [['push', TAG], /unknown command "push"/],
    [['exists'], /exists takes 1 argument, got 0/],
    [['exists', 'sha-0123'], /bad TAG "sha-0123"/],
    [['exists', 'latest'], /bad TAG "latest"/],
    [['build', TAG], /build takes 2 arguments, got 1/],
    [['build', TAG, SHA, 'extra'], /build takes 2 arguments, got 3/],
    [['build', TAG, SHA.toUpperCase()], /bad GIT_SHA/],
    [['build', 'sha-ffffffffffff', SHA], /TAG sha-ffffffffffff does not match GIT_SHA .* \(want sha-0123456789ab\)/],
  ];
  for (const [args, want] of bad) {
    const r = k([...BUILD, ...args], tar);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.match(r.stderr, /usage: build\.sh exists TAG \| build\.sh build TAG GIT_SHA/);
    assert.match(r.stderr, /command terminated with exit code 2\n$/);
  }
  assert.ok(
    readCalls(dir)
      .filter((c) => c.argv.includes('exec'))
      .every((c) => !c.mutating),
  );
});

test('exec: only build.sh in buildkitd-0/buildkitd; NotFound without the StatefulSet; the script must be mounted executable', async () => {
  const { dir, k } = cluster();
  const notYet = k([...BUILD, 'exists', TAG]);
  assert.equal(notYet.code, 1);
  assert.match(notYet.stderr, /^Error from server \(NotFound\): pods "buildkitd-0" not found\n/);
  assert.equal(k(['apply', '-f', '-'], BUILDKIT_STACK()).code, 0);
  const refusals: Array<[string[], RegExp]> = [
    [
      [
        '-n',
        'codex-k8s-system',
        'exec',
        '-i',
        'web-0',
        '-c',
        'buildkitd',
        '--',
        '/opt/codex-k8s-build/build.sh',
        'exists',
        TAG,
      ],
      /pods "web-0" not found\n\(fake kubectl: the exec targets are codex-k8s-system\/buildkitd-0 and postgres-0 of a StatefulSet postgres; it supports exactly: kubectl -n codex-k8s-system exec/,
    ],
    [
      ['exec', '-i', 'buildkitd-0', '-c', 'buildkitd', '--', '/opt/codex-k8s-build/build.sh', 'exists', TAG],
      /pods "buildkitd-0" not found/,
    ],
    [
      ['-n', 'codex-k8s-system', 'exec', '-i', 'buildkitd-0', '-c', 'sidecar', '--', '/opt/codex-k8s-build/build.sh'],
      /\(BadRequest\): container sidecar is not valid for pod buildkitd-0/,
    ],
    [
      ['-n', 'codex-k8s-system', 'exec', 'buildkitd-0', '-c', 'buildkitd', '--', 'sh', '-c', 'buildctl du'],
      /cannot run "sh -c buildctl du" in buildkitd-0/,
    ],
    [
      ['-n', 'codex-k8s-system', 'exec', 'buildkitd-0', '-c', 'buildkitd', '/opt/codex-k8s-build/build.sh'],
      /Use exec \[POD\] -- \[COMMAND\] instead/,
    ],
    [
      ['-n', 'codex-k8s-system', 'exec', 'buildkitd-0', '--', '/opt/codex-k8s-build/build.sh'],
      /requires -c\/--container/,
    ],
    [
      [
        '-n',
        'codex-k8s-system',
        'exec',
        '-it',
        'buildkitd-0',
        '-c',
        'buildkitd',
        '--',
        '/opt/codex-k8s-build/build.sh',
      ],
      /invalid argument "t" for "-i"/,
    ],
    [
      [
        '-n',
        'codex-k8s-system',
        'exec',
        '-i',
        '-t',
        'buildkitd-0',
        '-c',
        'buildkitd',
        '--',
        '/opt/codex-k8s-build/build.sh',
      ],
      /does not support exec -t/,
    ],
  ];
  const registryPod = k([
    '-n',
    'codex-k8s-system',
    'get',
    'pods',
    '-l',
    'app=registry',
    '-o',
    'jsonpath={.items[0].metadata.name}',
  ]).stdout;
  assert.match(registryPod, /^registry-[a-z0-9]{10}-[a-z0-9]{5}$/);
  refusals.push([
    ['-n', 'codex-k8s-system', 'exec', registryPod, '-c', 'registry', '--', 'ls'],
    /^error: the fake kubectl cannot exec into pod codex-k8s-system\/registry-/,
  ]);
  for (const [args, want] of refusals) {
    const r = k(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, want);
  }

  const { k: k644 } = buildCluster('0644');
  const notExec = k644([...BUILD, 'exists', TAG]);
  assert.equal(notExec.code, 126);
  assert.match(
    notExec.stderr,
    /exec: "\/opt\/codex-k8s-build\/build\.sh": permission denied: unknown\ncommand terminated with exit code 126\n\(fake kubectl: the script is mounted with mode 0644/,
  );

  assert.equal(k(['-n', 'codex-k8s-system', 'delete', 'configmap', 'buildkit-scripts']).code, 0);
  const noCm = k([...BUILD, 'exists', TAG]);
  assert.equal(noCm.code, 1);
  assert.match(
    noCm.stderr,
    /unable to upgrade connection: container not found \("buildkitd"\)\n\(fake kubectl: the pod cannot start: configmap "buildkit-scripts" not found/,
  );
  assert.equal(k(['apply', '-f', '-'], BUILDKIT_STACK()).code, 0);
  assert.equal(k(['-n', 'codex-k8s-system', 'delete', 'service', 'registry']).code, 0);
  const noRegistry = k([...BUILD, 'build', TAG, SHA], await context());
  assert.equal(noRegistry.code, 1);
  assert.match(
    noRegistry.stderr,
    /no such host\n\(fake build\.sh: the in-cluster registry is not deployed \(missing Service codex-k8s-system\/registry/,
  );
  assert.ok(
    readCalls(dir)
      .filter((c) => c.argv.includes('exec'))
      .every((c) => !c.mutating),
  );
});

test('set image: image updated (new revision, generation bump), unchanged prints nothing; rollout undo restores the previous image', () => {
  const { dir, k } = cluster();
  assert.equal(k(['apply', '-f', '-'], STACK('registry.local/web:1')).code, 0);
  const image = (): string =>
    k(['-n', 'staging', 'get', 'deploy', 'web', '-o', 'jsonpath={.spec.template.spec.containers[0].image}']).stdout;
  const before = readCalls(dir).length;

  const set = k(['-n', 'staging', 'set', 'image', 'deployment/web', 'web=registry.local/web:2']);
  assert.deepEqual([set.code, set.stdout, set.stderr], [0, 'deployment.apps/web image updated\n', '']);
  assert.equal(image(), 'registry.local/web:2');
  const d = getJson(k, ['-n', 'staging', 'get', 'deployment', 'web']);
  assert.equal(d['metadata']['generation'], 2);
  assert.equal(d['metadata']['annotations']['deployment.kubernetes.io/revision'], '2');
  const same = k(['-n', 'staging', 'set', 'image', 'deployment', 'web', 'web=registry.local/web:2']);
  assert.deepEqual([same.code, same.stdout, same.stderr], [0, '', ''], 'kubectl sends no patch and prints nothing');
  const history = k(['-n', 'staging', 'rollout', 'history', 'deployment/web']);
  assert.match(history.stdout, /^REVISION  CHANGE-CAUSE\n1 +<none>\n2 +<none>\n/m);

  const undo = k(['-n', 'staging', 'rollout', 'undo', 'deployment/web']);
  assert.deepEqual([undo.code, undo.stdout], [0, 'deployment.apps/web rolled back\n']);
  assert.equal(image(), 'registry.local/web:1', 'undo after set image restores the previous image');
  const undoAgain = k(['-n', 'staging', 'rollout', 'undo', 'deployment/web']);
  assert.equal(image(), 'registry.local/web:2', 'a second undo goes forward again, like kubectl');
  assert.equal(undoAgain.code, 0);

  const missing = k(['-n', 'staging', 'set', 'image', 'deployment/web', 'app=registry.local/web:3']);
  assert.deepEqual([missing.code, missing.stderr], [1, 'error: unable to find container named "app"\n']);
  const nf = k(['-n', 'staging', 'set', 'image', 'deployment/api', 'web=x:1']);
  assert.deepEqual([nf.code, nf.stderr.trim()], [1, 'Error from server (NotFound): deployments.apps "api" not found']);
  const record = k(['-n', 'staging', 'set', 'image', 'deployment/web', 'web=x:1', '--record']);
  assert.equal(record.code, 1);
  assert.match(record.stderr, /refuses --record/);
  assert.equal(
    k(['-n', 'staging', 'set', 'image', 'deployment/web']).stderr,
    'error: at least one image update is required\n',
  );
  assert.equal(image(), 'registry.local/web:2', 'failed calls changed nothing');

  const calls = readCalls(dir)
    .slice(before)
    .filter((c) => !c.argv.includes('get'));
  assert.deepEqual(
    calls.map((c) => c.mutating),
    [true, false, false, true, true, false, false, false, false],
  );
  assert.deepEqual(calls[0]?.changes, ['deployment.apps/web image updated (web=registry.local/web:2)']);
});

test('internal images: rollout status times out until the tag is pushed, then succeeds; a bad new tag keeps the old pods', async () => {
  const { dir, k } = buildCluster();
  assert.equal(k(['create', 'namespace', 'staging']).code, 0);
  const app = (image: string): string => deployment(image).replace('replicas: 2', 'replicas: 1');
  assert.equal(k(['apply', '-f', '-'], app(PULL(5000))).code, 0);
  const status = (): RunResult => k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=120s']);
  const stuck = status();
  assert.equal(stuck.code, 1);
  assert.equal(
    stuck.stdout,
    'Waiting for deployment "web" rollout to finish: 0 of 1 updated replicas are available...\n',
  );
  assert.match(
    stuck.stderr,
    /^error: timed out waiting for the condition\n\(fake kubectl: the new pods cannot pull their image: registry\.codex-k8s\.internal:5000\/codex-k8s:sha-0123456789ab: codex-k8s:sha-0123456789ab was never pushed/,
  );
  const wait = k(['-n', 'staging', 'wait', '--for=condition=Available', 'deployment/web', '--timeout=5s']);
  assert.equal(wait.code, 1, 'the Available condition is False');
  assert.match(k(['-n', 'staging', 'get', 'deployments']).stdout, /^web\s+0\/1\s+1\s+0\s+/m);
  const pods = (): Array<Record<string, any>> => getJson(k, ['-n', 'staging', 'get', 'pods', '-l', 'app=web'])['items'];
  assert.deepEqual(
    pods().map((p) => [
      p['spec']['containers'][0]['image'],
      p['status']['phase'],
      p['status']['containerStatuses'][0]['state']['waiting']?.['reason'],
    ]),
    [[PULL(5000), 'Pending', 'ImagePullBackOff']],
    'the pods the Deployment would have, derived at read time',
  );
  assert.match(
    k(['-n', 'staging', 'get', 'pods']).stdout,
    /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb-[a-z0-9]{10}-[a-z0-9]{5}\s+0\/1\s+ImagePullBackOff\s+0\s+/,
  );

  const before = readCalls(dir).length;
  const built = k([...BUILD, 'build', TAG, SHA], await context());
  assert.equal(built.code, 0, built.stderr);
  assert.deepEqual(readCalls(dir).at(-1)?.changes?.slice(1), [
    'deployment.apps/web in staging rolled out (its image is in the registry now)',
  ]);
  const ok = status();
  assert.deepEqual([ok.code, ok.stdout], [0, 'deployment "web" successfully rolled out\n']);
  assert.equal(k(['-n', 'staging', 'rollout', 'status', 'deployment/web', '--timeout=1s']).code, 0);

  // 127.0.0.1:<port> is the same registry; a tag nobody pushed leaves the old pod serving.
  assert.equal(k(['-n', 'staging', 'set', 'image', 'deployment/web', `web=127.0.0.1:5000/codex-k8s:${TAG}`]).code, 0);
  assert.equal(status().code, 0, '127.0.0.1:<port> maps to the same store');
  assert.equal(k(['-n', 'staging', 'set', 'image', 'deployment/web', `web=${PULL(5000, 'sha-ffffffffffff')}`]).code, 0);
  const bad = status();
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stdout,
    'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...\n',
  );
  const d = getJson(k, ['-n', 'staging', 'get', 'deployment', 'web']);
  assert.equal(d['status']['availableReplicas'], 1, 'the old pod still serves');
  assert.deepEqual(
    pods()
      .map((p) => [p['spec']['containers'][0]['image'], p['status']['phase']])
      .sort(),
    [
      [`127.0.0.1:5000/codex-k8s:${TAG}`, 'Running'],
      [PULL(5000, 'sha-ffffffffffff'), 'Pending'],
    ],
    'the old pod runs the last image that pulled',
  );
  const podName = pods()[0]?.['metadata']['name'] as string;
  const del = k(['-n', 'staging', 'delete', 'pod', podName]);
  assert.equal(del.code, 1);
  assert.match(del.stderr, /cannot delete pod .*derived from ReplicaSet web-[a-z0-9]{10}/);
  assert.equal(k(['-n', 'staging', 'rollout', 'undo', 'deployment/web']).code, 0);
  assert.equal(status().code, 0, 'rolling back to a pushed image completes');

  // The cluster DNS name is where BuildKit pushes; the node cannot resolve it, so pods never pull from it.
  assert.equal(k(['-n', 'staging', 'set', 'image', 'deployment/web', `web=${REF}`]).code, 0);
  assert.match(status().stderr, /containerd resolves names with the host's DNS/);
  // Other registries are not simulated: available at once, as before.
  assert.equal(k(['-n', 'staging', 'set', 'image', 'deployment/web', 'web=docker.io/library/nginx:1.27']).code, 0);
  assert.equal(status().code, 0);
  assert.ok(
    readCalls(dir)
      .slice(before)
      .filter((c) => c.argv.includes('status'))
      .every((c) => !c.mutating),
  );
});

test('faults.json: an exec is matched by its command words too', async () => {
  const { dir, k } = buildCluster();
  writeFaults(dir, {
    'kubectl exec /opt/codex-k8s-build/build.sh build': {
      exitCode: 1,
      stderr: 'error: failed to solve: rpc error: code = Unavailable',
      times: 1,
    },
  });
  assert.equal(k([...BUILD, 'exists', TAG]).code, 3, 'exists is not faulted');
  const tar = await context();
  const faulted = k([...BUILD, 'build', TAG, SHA], tar);
  assert.deepEqual([faulted.code, faulted.stderr], [1, 'error: failed to solve: rpc error: code = Unavailable\n']);
  assert.equal(k([...BUILD, 'build', TAG, SHA], tar).code, 0, 'times: 1');
  const execs = readCalls(dir).filter((c) => c.argv.includes('exec'));
  assert.deepEqual(
    execs.map((c) => [c.fault, c.mutating]),
    [
      [undefined, false],
      ['kubectl exec /opt/codex-k8s-build/build.sh build', false],
      [undefined, true],
    ],
  );
});

test("in-process: the double's names match bootstrap NAMES; tar reader and image references", async () => {
  const { NAMES } = await import('../../bootstrap/lib/manifests.mts');
  const { BUILDKIT } = await import('../fakes/lib/buildkit.mts');
  const { REGISTRY_IN_CLUSTER, parseImageRef } = await import('../fakes/lib/registry.mts');
  const { makeTar, readTar, normalizeTarPath } = await import('../fakes/lib/tar.mts');
  assert.equal(REGISTRY_IN_CLUSTER, NAMES.registryInCluster);
  assert.deepEqual(
    [
      BUILDKIT.namespace,
      BUILDKIT.statefulSet,
      BUILDKIT.pod,
      BUILDKIT.container,
      BUILDKIT.script,
      BUILDKIT.scriptsConfigMap,
      BUILDKIT.repository,
      BUILDKIT.registryName,
    ],
    [
      NAMES.systemNamespace,
      NAMES.buildkitStatefulSet,
      NAMES.buildkitPod,
      NAMES.buildkitContainer,
      NAMES.buildkitScriptPath,
      NAMES.buildkitScripts,
      NAMES.appImageRepo,
      NAMES.registryService,
    ],
  );

  const entries = readTar(
    makeTar([
      { name: './Dockerfile', content: 'FROM x\n' },
      { name: 'src/a.mts', content: Buffer.alloc(1025, 0x61) },
    ]),
  );
  assert.deepEqual(
    entries.map((e) => [normalizeTarPath(e.name), e.type, e.size]),
    [
      ['Dockerfile', '0', 7],
      ['src/a.mts', '0', 1025],
    ],
  );
  assert.deepEqual(parseImageRef('registry.codex-k8s.internal:5000/codex-k8s:sha-0123456789ab'), {
    host: 'registry.codex-k8s.internal:5000',
    repository: 'codex-k8s',
    tag: 'sha-0123456789ab',
    digest: undefined,
  });
  assert.deepEqual(parseImageRef('nginx'), { host: undefined, repository: 'nginx', tag: undefined, digest: undefined });
  assert.deepEqual(parseImageRef('localhost:5000/a/b@sha256:ab'), {
    host: 'localhost:5000',
    repository: 'a/b',
    tag: undefined,
    digest: 'sha256:ab',
  });
});

test("k3s' helm-controller: an applied HelmChartConfig re-runs helm-install-<chart>; the chart's schema decides; logs show helm", async () => {
  const { dir, k } = cluster();
  const hcc = (values: string): string =>
    `apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik, namespace: kube-system}\nspec:\n  valuesContent: |\n${values.replace(/^/gm, '    ')}\n`;
  const seeded = getJson(k, ['get', '-n', 'kube-system', 'job', 'helm-install-traefik']);
  assert.equal(seeded['status'].conditions[0].type, 'Complete', 'a fresh k3s has installed Traefik once');
  assert.equal(
    getJson(k, ['get', '-n', 'kube-system', 'secret', 'chart-values-traefik'])['data'].HelmChartConfigValuesContent,
    undefined,
  );

  // Traefik chart >= v39: entry-point options under `http` (the old ports.web.redirections is refused).
  const good =
    'ports:\n  web:\n    http:\n      redirections:\n        entryPoint: {to: websecure, scheme: https, permanent: true}';
  await new Promise((r) => setTimeout(r, 1100)); // creationTimestamp has second resolution
  assert.equal(k(['apply', '-f', '-'], hcc(good)).code, 0);
  const secret = getJson(k, ['get', '-n', 'kube-system', 'secret', 'chart-values-traefik']);
  assert.equal(Buffer.from(secret['data'].HelmChartConfigValuesContent, 'base64').toString(), good + '\n');
  const rerun = getJson(k, ['get', '-n', 'kube-system', 'job', 'helm-install-traefik']);
  assert.ok(rerun['metadata'].creationTimestamp > seeded['metadata'].creationTimestamp, 'the Job was recreated');
  assert.equal(rerun['status'].conditions[0].type, 'Complete');
  assert.match(
    k(['-n', 'kube-system', 'logs', 'job/helm-install-traefik', '--tail=1']).stdout,
    /^Release "traefik" has been upgraded/,
  );
  assert.deepEqual(readCalls(dir).find((c) => c.mutating)?.changes, [
    'helmchartconfig.helm.cattle.io/traefik created',
    'secret/chart-values-traefik in kube-system updated',
    'job.batch/helm-install-traefik in kube-system re-run and completed',
  ]);

  const old = 'ports:\n  web:\n    redirections:\n      entryPoint: {to: websecure, scheme: https, permanent: true}';
  assert.equal(k(['apply', '-f', '-'], hcc(old)).code, 0, 'the API server accepts it: only the chart refuses');
  const failed = getJson(k, ['get', '-n', 'kube-system', 'job', 'helm-install-traefik']);
  assert.equal(failed['status'].conditions[0].type, 'Failed');
  const log = k(['-n', 'kube-system', 'logs', 'job/helm-install-traefik', '--tail=20']);
  assert.equal(log.code, 0, log.stderr);
  assert.match(
    log.stdout,
    /values don't meet the specifications of the schema[\s\S]*ports\.web[.\w]*redirections: additional property not allowed/,
  );
  // The CRD's own schema (helm-controller v0.17.7): unknown fields, wrong types and enums are refused by the API server.
  const bad = (spec: string): RunResult =>
    k(
      ['apply', '-f', '-'],
      `apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik, namespace: kube-system}\nspec: ${spec}\n`,
    );
  assert.match(bad('{valuesContent: "a: 1", valuesContnet: x}').stderr, /unknown field "spec\.valuesContnet"/);
  assert.match(bad('{valuesContent: {a: 1}}').stderr, /spec\.valuesContent in body must be of type string/);
  assert.match(
    bad('{failurePolicy: never}').stderr,
    /spec\.failurePolicy: Unsupported value: "never": supported values: "abort", "reinstall", "retry"/,
  );
  assert.equal(
    bad('{failurePolicy: abort, values: {any: {thing: 1}}}').code,
    0,
    'spec.values preserves unknown fields upstream',
  );
  assert.equal(k(['-n', 'kube-system', 'logs', 'job/nope']).code, 1);
  assert.match(k(['-n', 'kube-system', 'logs', 'pod/x']).stderr, /error from server \(NotFound\): pods "x" not found/);
});
