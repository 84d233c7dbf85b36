// Every manifest, rendered for both modes with the values the steps really pass, validated against the
// Kubernetes 1.36 schemas (kubernetes-models) with unknown-field strictness (test/fakes/lib/validate.mts), the
// ClusterIssuer against @kubernetes-models/cert-manager; plus the house rules: recommended labels everywhere,
// resources on every container, pinned images only, placeholders all used, and what each mode must contain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { chartValuesProblems } from '../fakes/lib/chart-values.mts';
import { ClusterIssuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/ClusterIssuer';
import {
  render,
  substitute,
  componentFiles,
  placeholdersIn,
  MANIFESTS_DIR,
  NAMES,
  ACME_SERVERS,
  parseObjects,
} from '../../bootstrap/lib/manifests.mts';
import type { KubeObject, Mode } from '../../bootstrap/lib/manifests.mts';
import { clusterValues, registryValues, clusterObjects } from '../../bootstrap/remote/30_cluster_deps.mts';
import type { ClusterSettings } from '../../bootstrap/remote/30_cluster_deps.mts';
import {
  postgresValues,
  postgresObjects,
  credentialsSecret,
  secretProblems,
  databaseUrl,
  generatePassword,
  postgresMajor,
  majorVersionRefusal,
} from '../../bootstrap/remote/40_postgres.mts';
import type { PostgresSettings } from '../../bootstrap/remote/40_postgres.mts';
import { buildkitValues, buildkitObjects } from '../../bootstrap/lib/buildkit.mts';
import { appValues, appObjects, runtimeSecret } from '../../bootstrap/lib/service.mts';
import type { DeploySettings } from '../../bootstrap/lib/service.mts';
import { buildScriptText, internalTag, pullRef } from '../../bootstrap/lib/build.mts';
import { IMAGES } from '../../bootstrap/lib/versions.mts';
import { validateObject, runModel } from '../fakes/lib/validate.mts';
import type { ModelClass } from '../fakes/lib/validate.mts';
import { kindByApiVersion } from '../fakes/lib/kinds.mts';
import type { K8sObject } from '../fakes/lib/kinds.mts';

const ROOT = join(import.meta.dirname, '..', '..');
const MODES: Mode[] = ['local', 'server'];
const COMPONENTS = ['cluster', 'registry', 'postgres', 'buildkit', 'app'];

function clusterSettings(mode: Mode): ClusterSettings {
  return {
    mode,
    stagingNamespace: 'codex-k8s-staging',
    runnerNamespace: 'arc-runners',
    registryPort: 5000,
    letsencryptServer: 'staging',
    ...(mode === 'server' ? { letsencryptEmail: 'ops@example.com' } : {}),
  };
}
const pgSettings = (mode: Mode): PostgresSettings => ({
  mode,
  namespace: 'codex-k8s-staging',
  backupSchedule: '17 3 * * *',
  backupKeep: 7,
});
const deploySettings = (mode: Mode): DeploySettings => ({
  mode,
  stagingNamespace: 'codex-k8s-staging',
  runnerNamespace: 'arc-runners',
  registryPort: 5000,
  rolloutTimeout: 300,
  buildTimeout: 900,
  ...(mode === 'server' ? { domain: 'staging.example.com' } : {}),
});
/** The service's image: built in the cluster and tagged by commit, so it is pinned by its tag, not in versions.mts. */
const APP_IMAGE = pullRef(5000, 'sha-0123456789ab');
/**
 * Containers that cannot drop privileges, and why: rootless BuildKit's newuidmap/newgidmap are setuid binaries, so
 * no_new_privs (allowPrivilegeEscalation: false) or a bounding set without SETUID/SETGID stops it (manifests/buildkit).
 */
const MAY_ESCALATE = new Set(['StatefulSet/buildkitd template container buildkitd']);

/** Everything the steps apply in a mode, as they build it. */
function allObjects(mode: Mode): KubeObject[] {
  return [
    ...clusterObjects(clusterSettings(mode)),
    ...postgresObjects(pgSettings(mode)),
    credentialsSecret('codex-k8s-staging', { user: 'codex', password: 'pw-for-tests-only', db: 'codex_k8s' }),
    ...buildkitObjects(deploySettings(mode), buildScriptText()),
    ...appObjects(deploySettings(mode), APP_IMAGE),
    runtimeSecret('codex-k8s-staging', 'x'.repeat(64)),
  ];
}

/** cert-manager's 4.4 models predate `ingressClassName` on the HTTP-01 ingress solver (cert-manager >= 1.12 has it). */
const NEWER_THAN_CERT_MANAGER_MODELS = /^spec\.acme\.solvers\[\d+\]\.http01\.ingress\.ingressClassName: unknown field$/;

interface PodSpecAt {
  where: string;
  spec: Record<string, any>;
  labels: Record<string, string> | undefined;
}

function podSpecs(o: KubeObject): PodSpecAt[] {
  const s = o['spec'] as Record<string, any> | undefined;
  if (o.kind === 'CronJob')
    return [
      {
        where: `${o.kind}/${o.metadata.name} jobTemplate`,
        spec: s?.['jobTemplate']?.spec?.template?.spec,
        labels: s?.['jobTemplate']?.spec?.template?.metadata?.labels,
      },
    ];
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(o.kind))
    return [
      {
        where: `${o.kind}/${o.metadata.name} template`,
        spec: s?.['template']?.spec,
        labels: s?.['template']?.metadata?.labels,
      },
    ];
  return [];
}

function checkLabels(where: string, labels: Record<string, string> | undefined): void {
  for (const k of ['name', 'instance', 'component', 'part-of', 'managed-by'])
    assert.ok(labels?.[`app.kubernetes.io/${k}`], `${where}: label app.kubernetes.io/${k} is missing`);
  assert.equal(labels?.['app.kubernetes.io/part-of'], 'codex-k8s', where);
  assert.equal(labels?.['app.kubernetes.io/managed-by'], 'codex-k8s-bootstrap', where);
}

for (const mode of MODES) {
  test(`${mode} mode: every object passes the Kubernetes schema with unknown-field strictness`, async () => {
    for (const o of allObjects(mode)) {
      const info = kindByApiVersion(o.apiVersion, o.kind);
      assert.ok(info, `${o.apiVersion} ${o.kind} is not a kind the cluster serves`);
      const problems = await validateObject(o as K8sObject, info);
      assert.deepEqual(problems, [], `${o.kind}/${o.metadata.name}:\n${problems.join('\n')}`);
      if (o.kind === 'ClusterIssuer') {
        const strict = runModel(ClusterIssuer as unknown as ModelClass, o, '').filter(
          (p) => !NEWER_THAN_CERT_MANAGER_MODELS.test(p),
        );
        assert.deepEqual(strict, [], `ClusterIssuer against @kubernetes-models/cert-manager:\n${strict.join('\n')}`);
      }
      if (o.kind === 'HelmChartConfig') {
        const values = parseYaml((o['spec'] as { valuesContent: string }).valuesContent) as unknown;
        assert.ok(
          values !== null && typeof values === 'object' && !Array.isArray(values),
          'valuesContent is a YAML map',
        );
        // k3s' helm-install job hands these values to the bundled Traefik chart, which enforces its schema.
        assert.deepEqual(
          chartValuesProblems('traefik', values),
          [],
          'valuesContent meets the vendored Traefik chart values.schema.json',
        );
      }
    }
  });

  test(`${mode} mode: labels, namespaces, resources and pinned images on everything`, () => {
    for (const o of allObjects(mode)) {
      const id = `${o.kind}/${o.metadata.name}`;
      checkLabels(id, o.metadata.labels);
      const clusterScoped = ['Namespace', 'ClusterIssuer'].includes(o.kind);
      assert.equal(
        o.metadata.namespace === undefined,
        clusterScoped,
        `${id}: metadata.namespace ${clusterScoped ? 'must not be' : 'must be'} set`,
      );
      for (const vct of ((o['spec'] as any)?.volumeClaimTemplates ?? []) as KubeObject[])
        checkLabels(`${id} volumeClaimTemplate ${vct.metadata.name}`, vct.metadata.labels);
      for (const p of podSpecs(o)) {
        checkLabels(p.where, p.labels);
        for (const c of [...(p.spec['initContainers'] ?? []), ...p.spec['containers']] as Array<Record<string, any>>) {
          const cid = `${p.where} container ${c['name']}`;
          assert.ok(
            c['resources']?.requests?.cpu && c['resources']?.requests?.memory && c['resources']?.limits?.memory,
            `${cid}: resources.requests.{cpu,memory} and limits.memory`,
          );
          if (internalTag(c['image']) !== undefined)
            assert.equal(c['image'], APP_IMAGE, `${cid}: the service's image as the step sets it`);
          else {
            assert.match(
              c['image'],
              /^[a-z0-9.-]+(\/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$/,
              `${cid}: a fully qualified image with a tag`,
            );
            assert.doesNotMatch(c['image'], /:latest$/, `${cid}: no latest tag`);
            assert.ok(
              (Object.values(IMAGES) as string[]).includes(c['image']),
              `${cid}: ${c['image']} is not pinned in versions.mts IMAGES`,
            );
          }
          if (MAY_ESCALATE.has(cid)) {
            assert.equal(c['securityContext']?.allowPrivilegeEscalation, true, `${cid}: says so explicitly`);
            continue;
          }
          assert.equal(c['securityContext']?.allowPrivilegeEscalation, false, `${cid}: allowPrivilegeEscalation false`);
          assert.deepEqual(c['securityContext']?.capabilities?.drop, ['ALL'], `${cid}: drops all capabilities`);
        }
        assert.equal(p.spec['securityContext']?.runAsNonRoot, true, `${p.where}: runs as non-root`);
      }
    }
  });
}

test('the mode decides the Traefik redirect and the ClusterIssuer', () => {
  const local = allObjects('local');
  const server = allObjects('server');
  const traefik = (objs: KubeObject[]) =>
    parseYaml(
      (objs.find((o) => o.kind === 'HelmChartConfig')?.['spec'] as { valuesContent: string }).valuesContent,
    ) as Record<string, any>;
  assert.deepEqual(
    traefik(server)['ports']?.web?.http?.redirections?.entryPoint,
    { to: 'websecure', scheme: 'https', permanent: true },
    'Traefik chart >= 39 shape (http nesting)',
  );
  assert.deepEqual(traefik(local), {}, 'local mode: no redirect');
  for (const objs of [local, server]) {
    const cfg = objs.find((o) => o.kind === 'HelmChartConfig');
    assert.equal(
      `${cfg?.metadata.namespace}/${cfg?.metadata.name}`,
      'kube-system/traefik',
      "k3s' helm-controller reads kube-system/traefik",
    );
  }
  assert.equal(
    local.some((o) => o.kind === 'ClusterIssuer'),
    false,
  );
  const issuer = server.find((o) => o.kind === 'ClusterIssuer') as Record<string, any>;
  assert.equal(issuer['metadata'].name, NAMES.clusterIssuer);
  assert.equal(issuer['spec'].acme.email, 'ops@example.com');
  assert.equal(issuer['spec'].acme.server, ACME_SERVERS.staging);
  assert.equal(issuer['spec'].acme.privateKeySecretRef.name, 'letsencrypt-staging-account');
  assert.deepEqual(issuer['spec'].acme.solvers, [{ http01: { ingress: { ingressClassName: 'traefik' } } }]);
  const prod = clusterObjects({ ...clusterSettings('server'), letsencryptServer: 'production' }).find(
    (o) => o.kind === 'ClusterIssuer',
  ) as Record<string, any>;
  assert.equal(prod['spec'].acme.server, 'https://acme-v02.api.letsencrypt.org/directory');
  assert.throws(
    () => clusterValues({ ...clusterSettings('server'), letsencryptEmail: undefined }),
    /LETSENCRYPT_EMAIL/,
  );
});

test('namespaces, the NetworkPolicy baseline and the registry', () => {
  const objs = allObjects('local');
  assert.deepEqual(
    objs.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name),
    ['codex-k8s-system', 'codex-k8s-staging', 'arc-runners'],
  );
  assert.equal(clusterObjects(clusterSettings('local'))[0]?.kind, 'Namespace', 'namespaces are applied first');
  const np = objs.find((o) => o.kind === 'NetworkPolicy') as Record<string, any>;
  assert.equal(np['metadata'].namespace, 'codex-k8s-staging');
  assert.deepEqual(np['spec'].podSelector, {});
  assert.deepEqual(np['spec'].policyTypes, ['Ingress'], 'egress stays open');
  assert.deepEqual(np['spec'].ingress, [
    {
      from: [
        { podSelector: {} },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'arc-runners' } } },
      ],
    },
  ]);

  const dep = clusterObjects({ ...clusterSettings('local'), registryPort: 5123 }).find(
    (o) => o.kind === 'Deployment',
  ) as Record<string, any>;
  assert.equal(dep['metadata'].namespace, NAMES.systemNamespace);
  assert.equal(dep['spec'].replicas, 1);
  assert.equal(dep['spec'].strategy.type, 'Recreate', 'the hostPort and the RWO volume allow one pod at a time');
  const c = dep['spec'].template.spec.containers[0];
  assert.equal(c.image, IMAGES.registry);
  assert.deepEqual(c.ports, [
    { name: 'http', containerPort: 5000, hostPort: 5123, hostIP: '127.0.0.1', protocol: 'TCP' },
  ]);
  const svc = objs.find((o) => o.kind === 'Service' && o.metadata.name === NAMES.registryService) as Record<
    string,
    any
  >;
  assert.equal(
    `${svc['metadata'].name}.${svc['metadata'].namespace}.svc.cluster.local:${svc['spec'].ports[0].port}`,
    NAMES.registryInCluster,
  );
  const pvc = objs.find((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === 'registry-data') as Record<
    string,
    any
  >;
  assert.equal(pvc['spec'].storageClassName, 'local-path');
});

test('PostgreSQL: non-root, PGDATA in a subdirectory, pg_isready, retained PVC, backups on schedule', () => {
  const objs = postgresObjects({ ...pgSettings('local'), backupSchedule: '5 1 * * 0', backupKeep: 3 });
  const sts = objs.find((o) => o.kind === 'StatefulSet') as Record<string, any>;
  assert.equal(sts['metadata'].name, NAMES.postgresStatefulSet);
  const pod = sts['spec'].template.spec;
  assert.deepEqual(
    [pod.securityContext.runAsUser, pod.securityContext.runAsGroup, pod.securityContext.fsGroup],
    [999, 999, 999],
  );
  const c = pod.containers[0];
  assert.equal(c.image, IMAGES.postgres);
  assert.match(c.image, /pgvector/);
  assert.equal(c.env.find((e: any) => e.name === 'PGDATA').value, '/var/lib/postgresql/data/pgdata');
  assert.ok(c.volumeMounts.some((m: any) => m.name === 'data' && m.mountPath === '/var/lib/postgresql/data'));
  assert.ok(c.volumeMounts.some((m: any) => m.name === 'backups' && m.mountPath === '/backups' && m.readOnly === true));
  assert.match(c.readinessProbe.exec.command.join(' '), /pg_isready/);
  for (const e of c.env.filter((x: any) => x.valueFrom))
    assert.equal(e.valueFrom.secretKeyRef.name, NAMES.postgresSecret);
  assert.deepEqual(sts['spec'].persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Retain' });
  const vct = sts['spec'].volumeClaimTemplates[0];
  assert.equal(`${vct.metadata.name}-${sts['metadata'].name}-0`, NAMES.postgresDataPvc);
  assert.equal(vct.spec.storageClassName, 'local-path');
  assert.deepEqual(
    objs.filter((o) => o.kind === 'Service').map((o) => [o.metadata.name, (o['spec'] as any).clusterIP ?? 'ClusterIP']),
    [
      ['postgres-headless', 'None'],
      ['postgres', 'ClusterIP'],
    ],
  );
  assert.equal(sts['spec'].serviceName, 'postgres-headless');

  const cj = objs.find((o) => o.kind === 'CronJob') as Record<string, any>;
  assert.equal(cj['metadata'].name, NAMES.postgresBackupCronJob);
  assert.equal(cj['spec'].schedule, '5 1 * * 0');
  assert.equal(cj['spec'].concurrencyPolicy, 'Forbid');
  const job = cj['spec'].jobTemplate.spec.template.spec;
  const dump = job.containers[0];
  assert.equal(dump.env.find((e: any) => e.name === 'BACKUP_KEEP').value, '3');
  assert.equal(dump.env.find((e: any) => e.name === 'PGHOST').value, NAMES.postgresService);
  assert.match(dump.command.join(' '), /pg_dump -Fc /);
  assert.equal(job.volumes[0].persistentVolumeClaim.claimName, NAMES.postgresBackupPvc);
  assert.ok(objs.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === NAMES.postgresBackupPvc));
});

test('the backup script keeps exactly BACKUP_KEEP dumps and never touches a dump in progress', async () => {
  // Run the CronJob's own shell script against a temp dir standing in for /backups, with pg_dump stubbed.
  const cj = postgresObjects(pgSettings('local')).find((o) => o.kind === 'CronJob') as Record<string, any>;
  const script = String(cj['spec'].jobTemplate.spec.template.spec.containers[0].command[2]);
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-backup-'));
  const backups = join(dir, 'backups');
  const bin = join(dir, 'bin');
  mkdirSync(backups);
  mkdirSync(bin);
  writeFileSync(join(bin, 'pg_dump'), '#!/bin/sh\n[ "$1" = -Fc ] && [ "$2" = -f ] || exit 9\necho dump > "$3"\n', {
    mode: 0o755,
  });
  const { execFileSync } = await import('node:child_process');
  for (let i = 0; i < 5; i++) writeFileSync(join(backups, `codex_k8s-2026010${i}T000000Z.dump`), 'old');
  execFileSync('sh', ['-c', 'touch -d "2026-01-01" ' + join(backups, '*.dump')]);
  writeFileSync(join(backups, 'leftover.dump.partial'), 'half');
  const out = execFileSync('sh', ['-c', script.replaceAll('/backups', backups)], {
    env: { PATH: `${bin}:/usr/bin:/bin`, PGDATABASE: 'codex_k8s', BACKUP_KEEP: '3' },
    encoding: 'utf8',
  });
  const { readdirSync } = await import('node:fs');
  const left = readdirSync(backups).sort();
  assert.equal(left.length, 3, `${left.join(', ')}\n${out}`);
  assert.ok(
    left.some((f) => /^codex_k8s-\d{8}T\d{6}Z\.dump$/.test(f) && readFileSync(join(backups, f), 'utf8') === 'dump\n'),
    'the new dump is kept',
  );
  assert.ok(!left.some((f) => f.endsWith('.partial')));
});

test('the credentials Secret: base64 data, a matching DATABASE_URL, problems named, never a password in a message', () => {
  const pw = generatePassword();
  assert.match(pw, /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(generatePassword(), pw);
  const s = credentialsSecret('ns1', { user: 'codex', password: pw, db: 'codex_k8s' }) as Record<string, any>;
  const data = Object.fromEntries(
    Object.entries(s['data'] as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
  assert.equal(data['POSTGRES_PASSWORD'], pw);
  assert.equal(data['DATABASE_URL'], `postgresql://codex:${pw}@postgres.ns1.svc.cluster.local:5432/codex_k8s`);
  assert.equal(databaseUrl('n', 'u', 'p@ss/', 'd'), 'postgresql://u:p%40ss%2F@postgres.n.svc.cluster.local:5432/d');
  assert.deepEqual(secretProblems('ns1', data), { fatal: [], fixable: [] });
  assert.deepEqual(secretProblems('ns2', data).fixable, ['DATABASE_URL does not match the other keys']);
  const { POSTGRES_PASSWORD: _, ...noPw } = data;
  const p = secretProblems('ns1', noPw);
  assert.deepEqual(p.fatal, ['key POSTGRES_PASSWORD is missing or empty']);
  assert.ok(!JSON.stringify(secretProblems('ns2', data)).includes(pw));
});

test('placeholders: every one used, none missing, whole values only, values quoted', () => {
  // The steps' values cover exactly what the templates use (render refuses both extra and missing ones).
  for (const mode of MODES) {
    const used = (c: string) =>
      new Set(componentFiles(c, mode).flatMap((f) => placeholdersIn(readFileSync(join(MANIFESTS_DIR, f), 'utf8'))));
    assert.deepEqual(
      [...used('cluster')].sort(),
      Object.keys(clusterValues(clusterSettings(mode))).sort(),
      `cluster ${mode}`,
    );
    assert.deepEqual([...used('registry')].sort(), Object.keys(registryValues(clusterSettings(mode))).sort());
    assert.deepEqual([...used('postgres')].sort(), Object.keys(postgresValues(pgSettings(mode))).sort());
    assert.deepEqual(
      [...used('buildkit')].sort(),
      Object.keys(buildkitValues(deploySettings(mode), buildScriptText())).sort(),
    );
    assert.deepEqual(
      [...used('app')].sort(),
      Object.keys(appValues(deploySettings(mode), APP_IMAGE)).sort(),
      `app ${mode}`,
    );
  }
  assert.throws(
    () => render('registry', 'local', { ...registryValues(clusterSettings('local')), EXTRA: 'x' }),
    /uses no placeholder \$\{EXTRA\}/,
  );
  assert.throws(
    () => render('registry', 'local', { REGISTRY_IMAGE: IMAGES.registry }),
    /\$\{REGISTRY_PORT\} has no value/,
  );
  assert.throws(
    () => substitute('image: foo-${TAG}\n', { TAG: '1' }, 't.yaml'),
    /t\.yaml:1: \$\{TAG\} must be a whole YAML value/,
  );
  assert.equal(
    substitute('a: ${X}\nb: [${N}, ${X}]\n', { X: 'yes: no # not a comment', N: 5 }, 't'),
    'a: "yes: no # not a comment"\nb: [5, "yes: no # not a comment"]\n',
  );
  const [o] = parseObjects(
    substitute(
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  v: ${V}\n',
      { V: 'on\nkind: Secret' },
      't',
    ),
    't',
  );
  assert.deepEqual(o?.['data'], { v: 'on\nkind: Secret' }, 'a value cannot inject keys or change a type');
  assert.equal(o?.kind, 'ConfigMap');
});

test('mode files: *.server.yaml only in server mode, *.local.yaml only in local mode, components in name order', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck8s-manifests-'));
  mkdirSync(join(dir, 'c'));
  for (const f of ['b.yaml', 'a.server.yaml', 'a.local.yaml', 'notes.txt']) writeFileSync(join(dir, 'c', f), '');
  assert.deepEqual(componentFiles('c', 'server', dir), ['c/a.server.yaml', 'c/b.yaml']);
  assert.deepEqual(componentFiles('c', 'local', dir), ['c/a.local.yaml', 'c/b.yaml']);
  const valuesOf = (c: string, mode: Mode) =>
    (
      ({
        cluster: () => clusterValues(clusterSettings(mode)),
        registry: () => registryValues(clusterSettings(mode)),
        postgres: () => postgresValues(pgSettings(mode)),
        buildkit: () => buildkitValues(deploySettings(mode), buildScriptText()),
        app: () => appValues(deploySettings(mode), APP_IMAGE),
      }) as Record<string, () => Record<string, string | number | boolean>>
    )[c]?.() ?? {};
  for (const c of COMPONENTS)
    for (const mode of MODES) assert.ok(render(c, mode, valuesOf(c, mode)).objects.length > 0, `${c} ${mode}`);
  assert.throws(() => componentFiles('nope', 'local'), /no manifests for component "nope"/);
});

test('runbook: the PostgreSQL restore section uses the names the manifests define', () => {
  const runbook = readFileSync(join(ROOT, 'docs/runbook.md'), 'utf8');
  const start = runbook.indexOf('## Restore PostgreSQL from a backup');
  assert.ok(start >= 0, 'docs/runbook.md has a section "Restore PostgreSQL from a backup"');
  const section = runbook.slice(
    start,
    runbook.indexOf('\n## ', start + 5) === -1 ? undefined : runbook.indexOf('\n## ', start + 5),
  );
  const code = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]).join('\n');
  assert.match(code, new RegExp(`exec ${NAMES.postgresStatefulSet}-0 `), 'runs in the postgres pod');
  assert.match(code, /ls -l[a-z]* \/backups/, 'lists the dumps where the pod mounts them');
  assert.match(code, /pg_restore .*--clean .*--if-exists/);
  assert.match(code, /"\$POSTGRES_USER"/);
  assert.match(code, /"\$POSTGRES_DB"/);
  assert.match(
    code,
    new RegExp(`create job [a-z0-9-]+ --from=cronjob/${NAMES.postgresBackupCronJob}`),
    'a fresh dump before restoring',
  );
  assert.match(code, /--kubeconfig \/etc\/rancher\/k3s\/k3s\.yaml|KUBECONFIG=\/etc\/rancher\/k3s\/k3s\.yaml/);
  assert.doesNotMatch(code, /delete (pvc|persistentvolumeclaim)/, 'never deletes the data PVC');
});

test('a PostgreSQL image that moves its major version is refused; a pgvector or minor move is an in-place update', () => {
  assert.equal(postgresMajor(IMAGES.postgres), 17);
  assert.equal(postgresMajor('docker.io/pgvector/pgvector:0.8.6-pg18-trixie'), 18);
  assert.equal(postgresMajor('docker.io/library/postgres:17.6-bookworm'), 17);
  assert.equal(postgresMajor('postgres:16'), 16);
  assert.equal(postgresMajor('docker.io/library/registry:3.1.1'), undefined, 'not a PostgreSQL tag');
  assert.equal(majorVersionRefusal(undefined, IMAGES.postgres), undefined, 'nothing runs yet');
  assert.equal(majorVersionRefusal('docker.io/pgvector/pgvector:0.8.5-pg17-bookworm', IMAGES.postgres), undefined);
  assert.match(
    majorVersionRefusal(IMAGES.postgres, 'docker.io/pgvector/pgvector:0.8.6-pg18-bookworm') ?? '',
    /^PostgreSQL 17 -> 18: the pinned image \S+pg18\S+ is another major version than the running \S+pg17\S+, and it cannot start on the data directory of PostgreSQL 17$/,
  );
  assert.match(
    majorVersionRefusal('docker.io/pgvector/pgvector:0.8.6-pg18-bookworm', IMAGES.postgres) ?? '',
    /^PostgreSQL 18 -> 17:/,
  );
});
