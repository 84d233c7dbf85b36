// Rootless BuildKit on a kernel that restricts unprivileged user namespaces (Ubuntu 24.04,
// kernel.apparmor_restrict_unprivileged_userns=1), simulated with a fake /proc, /sys and /etc under a temp root:
//   - what 00_preflight reports and when it refuses (exit 2, naming CODEXK8S_BUILDKIT_USERNS and both fixes);
//   - the two remedies, check -> apply -> check, idempotent, with a runner standing in for sysctl / apparmor_parser;
//   - the BuildKit pod under our Localhost AppArmor profile, valid for the Kubernetes schema;
//   - 50_deploy_codex_k8s's wait for buildkitd-0 against the kubectl double, whose pod crash-loops on that kernel:
//     it fails fast with rootlesskit's own log line and the fix, and succeeds once the kernel allows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  APPARMOR_PROFILE,
  RUNBOOK_SECTION,
  USERNS_SYSCTL,
  applyUsernsRemedy,
  evaluateUserns,
  parseApparmorProfiles,
  readUsernsFacts,
  renderApparmorProfile,
  renderUsernsSysctl,
  usernsDrift,
  usernsPaths,
  usernsRefusal,
} from '../../bootstrap/lib/userns.mts';
import type { Runner, UsernsPaths } from '../../bootstrap/lib/userns.mts';
import { KUBECONFIG, applyObjects, podLogsArgv } from '../../bootstrap/lib/kube.mts';
import { buildkitObjects, buildkitPodProblem, waitForBuildkit } from '../../bootstrap/lib/buildkit.mts';
import type { DeploySettings } from '../../bootstrap/lib/service.mts';
import { buildScriptText } from '../../bootstrap/lib/build.mts';
import { NAMES } from '../../bootstrap/lib/manifests.mts';
import type { KubeObject } from '../../bootstrap/lib/manifests.mts';
import { Logger } from '../../bootstrap/lib/log.mts';
import { OperationError } from '../../bootstrap/lib/errors.mts';
import { usernsPreflight, formatTable } from '../../bootstrap/lib/preflight.mts';
import { validateObject } from '../fakes/lib/validate.mts';
import { kindByApiVersion } from '../fakes/lib/kinds.mts';
import type { K8sObject } from '../fakes/lib/kinds.mts';
import { FAKES_DIR, newStateDir, runDouble, seedCluster, SERVER_NODE_BIN } from '../fakes/testkit.mts';
import { readCalls } from '../fakes/lib/recorder.mts';

const PROFILES_UBUNTU = 'rootlesskit (unconfined)\n/usr/bin/man (enforce)\nunprivileged_userns (enforce)\n';

/** A fake node: `restrict` undefined means the kernel has no such sysctl; `profiles` undefined: AppArmor off. */
function fakeKernel(root: string, k: { restrict?: string; profiles?: string }): UsernsPaths {
  const p = usernsPaths(root);
  if (k.restrict !== undefined) {
    fs.mkdirSync(path.dirname(p.sysctl), { recursive: true });
    fs.writeFileSync(p.sysctl, `${k.restrict}\n`);
  }
  if (k.profiles !== undefined) {
    fs.mkdirSync(path.dirname(p.profiles), { recursive: true });
    fs.writeFileSync(p.profiles, k.profiles);
  }
  return p;
}

/** Stands in for sysctl -p and apparmor_parser --replace: does to the fake kernel what they do to the real one. */
function kernelRunner(p: UsernsPaths, calls: string[][], exitCode = 0): Runner {
  return async (argv) => {
    calls.push(argv);
    if (exitCode === 0 && argv[0] === 'sysctl')
      fs.writeFileSync(p.sysctl, /=\s*0/.test(fs.readFileSync(argv[2] as string, 'utf8')) ? '0\n' : '1\n');
    if (exitCode === 0 && argv[0] === 'apparmor_parser') {
      const name = /^profile (\S+)/m.exec(fs.readFileSync(argv[2] as string, 'utf8'))?.[1] as string;
      if (!fs.readFileSync(p.profiles, 'utf8').includes(`${name} (`))
        fs.appendFileSync(p.profiles, `${name} (unconfined)\n`);
    }
    return {
      argv,
      stdout: '',
      stderr: exitCode === 0 ? '' : 'sysctl: permission denied on key "kernel.apparmor_restrict_unprivileged_userns"',
      exitCode,
      seconds: 0,
    };
  };
}

const tmpRoot = () => fs.mkdtempSync(path.join(newStateDir('ck8s-userns-'), 'root-'));

// ---------------------------------------------------------------------------------------------------------------
// 00_preflight

test('preflight: a kernel without the sysctl, or with it at 0, is fine and says so; AppArmor and rootlesskit are reported', () => {
  const root = tmpRoot();
  const absent = evaluateUserns(readUsernsFacts(usernsPaths(root)), undefined, usernsPaths(root));
  assert.equal(absent[0]?.status, 'ok');
  assert.match(absent[0]?.reason ?? '', /absent \(this kernel does not restrict/);
  assert.match(absent[1]?.reason ?? '', /not enabled/);
  const p = fakeKernel(tmpRoot(), { restrict: '0', profiles: PROFILES_UBUNTU });
  const zero = evaluateUserns(readUsernsFacts(p), undefined, p);
  assert.deepEqual(
    zero.map((c) => c.status),
    ['ok', 'ok'],
  );
  assert.match(zero[0]?.reason ?? '', new RegExp(`${USERNS_SYSCTL}=0`));
  assert.match(zero[1]?.reason ?? '', /rootlesskit profile is loaded/);
  assert.equal(usernsRefusal(readUsernsFacts(p), undefined, p), undefined);
});

test('preflight: a restricting kernel without CODEXK8S_BUILDKIT_USERNS fails, exit 2, naming the setting, both fixes and the rootlesskit profile', () => {
  const p = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  const facts = readUsernsFacts(p);
  assert.deepEqual(facts.profiles, ['rootlesskit', '/usr/bin/man', 'unprivileged_userns']);
  const [u] = evaluateUserns(facts, undefined, p);
  assert.equal(u?.status, 'fail');
  assert.match(
    u?.reason ?? '',
    /apparmor_restrict_unprivileged_userns=1: rootless BuildKit \(buildkitd-0\) cannot create its user namespace/,
  );
  assert.match(u?.reason ?? '', /rootlesskit profile is loaded/);
  assert.match(
    u?.fix ?? '',
    /CODEXK8S_BUILDKIT_USERNS=sysctl .*99-codex-k8s-buildkit-userns\.conf.*CODEXK8S_BUILDKIT_USERNS=apparmor .*codex-k8s-buildkitd/,
  );
  const refusal = usernsRefusal(facts, undefined, p);
  assert.ok(refusal instanceof OperationError);
  assert.equal(refusal.exitCode, 2);
  assert.match(refusal.hint ?? '', /CODEXK8S_BUILDKIT_USERNS=sysctl/);
  // Not loaded: said too.
  const bare = fakeKernel(tmpRoot(), { restrict: '1', profiles: '/usr/bin/man (enforce)\n' });
  assert.match(
    evaluateUserns(readUsernsFacts(bare), undefined, bare)[0]?.reason ?? '',
    /rootlesskit profile is not loaded/,
  );
});

test('preflight step: the table shows both lines; a restricting kernel without a remedy is refused with exit 2, with one it is not', () => {
  const p = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  const bad = usernsPreflight(undefined, p);
  const table = formatTable(bad.checks).join('\n');
  assert.match(
    table,
    /^ {2}fail {2}userns {4}kernel\.apparmor_restrict_unprivileged_userns=1: .* -> set CODEXK8S_BUILDKIT_USERNS=sysctl/m,
  );
  assert.match(table, /^ {2}ok {4}apparmor {2}enabled; Ubuntu's rootlesskit profile is loaded$/m);
  assert.equal(bad.refusal?.exitCode, 2);
  assert.match(bad.refusal?.message ?? '', /^preflight refuses: userns: .*nothing was changed$/);
  assert.match(bad.refusal?.hint ?? '', /CODEXK8S_BUILDKIT_USERNS=apparmor/);
  for (const r of ['sysctl', 'apparmor'] as const) assert.equal(usernsPreflight(r, p).refusal, undefined, r);
  assert.equal(usernsPreflight(undefined, usernsPaths(tmpRoot())).refusal, undefined, 'a kernel without the sysctl');
});

test('preflight: with a remedy chosen the restricting kernel is ok; apparmor without AppArmor is refused (exit 2)', () => {
  const p = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  assert.deepEqual(
    evaluateUserns(readUsernsFacts(p), 'sysctl', p).map((c) => c.status),
    ['ok', 'ok'],
  );
  assert.deepEqual(
    evaluateUserns(readUsernsFacts(p), 'apparmor', p).map((c) => c.status),
    ['ok', 'ok'],
  );
  const noAa = fakeKernel(tmpRoot(), { restrict: '1' });
  const checks = evaluateUserns(readUsernsFacts(noAa), 'apparmor', noAa);
  assert.equal(checks[1]?.status, 'fail');
  assert.match(checks[1]?.fix ?? '', /set it to sysctl/);
  assert.equal(usernsRefusal(readUsernsFacts(noAa), 'apparmor', noAa)?.exitCode, 2);
  assert.deepEqual(parseApparmorProfiles('a (enforce)\n\n/usr/bin/b (complain)\nc (kill)\n'), ['a', '/usr/bin/b', 'c']);
});

// ---------------------------------------------------------------------------------------------------------------
// The remedies (50_deploy_codex_k8s apply)

test('remedy sysctl: writes the drop-in, applies it with sysctl -p, then unchanged; a kernel without the sysctl gets nothing', async () => {
  const log = new Logger();
  const p = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  assert.equal(usernsDrift(readUsernsFacts(p), 'sysctl', p).length, 2);
  const calls: string[][] = [];
  const changes = await applyUsernsRemedy('sysctl', log, p, kernelRunner(p, calls));
  assert.deepEqual(calls, [['sysctl', '-p', p.sysctlFile]]);
  assert.equal(changes.length, 2);
  assert.match(changes.join('\n'), /sysctl kernel\.apparmor_restrict_unprivileged_userns: 1 -> 0/);
  assert.equal(fs.readFileSync(p.sysctlFile, 'utf8'), renderUsernsSysctl());
  assert.match(renderUsernsSysctl(), /^kernel\.apparmor_restrict_unprivileged_userns = 0$/m);
  assert.equal(fs.statSync(p.sysctlFile).mode & 0o777, 0o644);
  assert.deepEqual(await applyUsernsRemedy('sysctl', log, p, kernelRunner(p, calls)), [], 'a second run is unchanged');
  assert.equal(calls.length, 1, 'and runs nothing');
  // Reboot without the file would bring 1 back: the file alone is drift, the value alone too.
  fs.writeFileSync(p.sysctl, '1\n');
  assert.deepEqual(usernsDrift(readUsernsFacts(p), 'sysctl', p), [
    `sysctl ${USERNS_SYSCTL} is 1, want 0 (CODEXK8S_BUILDKIT_USERNS=sysctl)`,
  ]);
  const none = usernsPaths(tmpRoot());
  assert.deepEqual(await applyUsernsRemedy('sysctl', log, none, kernelRunner(none, calls)), []);
  assert.equal(fs.existsSync(none.sysctlFile), false, 'no file for a sysctl the kernel does not have');
});

test('remedy sysctl: a failing sysctl -p is an error with the fix; nothing claims success', async () => {
  const p = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  await assert.rejects(applyUsernsRemedy('sysctl', new Logger(), p, kernelRunner(p, [], 255)), (e: OperationError) => {
    assert.match(e.message, /cannot set kernel\.apparmor_restrict_unprivileged_userns=0: sysctl -p .* exited 255/);
    assert.match(e.detail ?? '', /permission denied/);
    return true;
  });
});

test('remedy apparmor: writes the profile (userns, unconfined), loads it with apparmor_parser --replace, then unchanged', async () => {
  const log = new Logger();
  const p = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  const calls: string[][] = [];
  const changes = await applyUsernsRemedy('apparmor', log, p, kernelRunner(p, calls));
  assert.deepEqual(calls, [['apparmor_parser', '--replace', p.apparmorFile]]);
  assert.deepEqual(changes, [
    `${p.apparmorFile}: AppArmor profile ${APPARMOR_PROFILE} (userns)`,
    `AppArmor profile ${APPARMOR_PROFILE} loaded`,
  ]);
  const text = fs.readFileSync(p.apparmorFile, 'utf8');
  assert.equal(text, renderApparmorProfile());
  assert.match(text, /^abi <abi\/4\.0>,$/m);
  assert.match(text, new RegExp(`^profile ${APPARMOR_PROFILE} flags=\\(unconfined\\) \\{\\n  userns,\\n\\}$`, 'm'));
  assert.equal(fs.readFileSync(p.sysctl, 'utf8').trim(), '1', 'the host-wide sysctl stays as it was');
  assert.deepEqual(await applyUsernsRemedy('apparmor', log, p, kernelRunner(p, calls)), []);
  assert.equal(calls.length, 1);
  // Unset on a restricting kernel: refused before anything is touched.
  const q = fakeKernel(tmpRoot(), { restrict: '1', profiles: PROFILES_UBUNTU });
  await assert.rejects(
    applyUsernsRemedy(undefined, log, q, kernelRunner(q, calls)),
    (e: OperationError) => e.exitCode === 2,
  );
  assert.equal(fs.existsSync(q.sysctlFile) || fs.existsSync(q.apparmorFile), false);
});

// ---------------------------------------------------------------------------------------------------------------
// The BuildKit pod and the crash-loop detection

const settings = (userns?: 'sysctl' | 'apparmor'): DeploySettings => ({
  mode: 'local',
  stagingNamespace: 'codex-k8s-staging',
  runnerNamespace: 'arc-runners',
  registryPort: 5000,
  rolloutTimeout: 60,
  buildTimeout: 900,
  ...(userns ? { userns } : {}),
});
const buildkitContainer = (objs: KubeObject[]): Record<string, any> =>
  (objs.find((o) => o.kind === 'StatefulSet') as any).spec.template.spec.containers.find(
    (c: { name: string }) => c.name === NAMES.buildkitContainer,
  );

test('the refusal and the crash-loop hint point at a runbook section that exists', () => {
  assert.match(RUNBOOK_SECTION, /^docs\/runbook\.md "(.+)"$/);
  const heading = /"(.+)"/.exec(RUNBOOK_SECTION)?.[1] as string;
  assert.ok(
    fs
      .readFileSync(path.join(import.meta.dirname, '..', '..', 'docs', 'runbook.md'), 'utf8')
      .split('\n')
      .includes(`## ${heading}`),
  );
});

test('BuildKit pod: apparmor runs buildkitd under our Localhost profile (valid Kubernetes); otherwise Unconfined as upstream', async () => {
  const aa = buildkitObjects(settings('apparmor'), buildScriptText());
  assert.deepEqual(buildkitContainer(aa)['securityContext'].appArmorProfile, {
    type: 'Localhost',
    localhostProfile: APPARMOR_PROFILE,
  });
  assert.deepEqual(
    buildkitContainer(aa)['securityContext'].seccompProfile,
    { type: 'Unconfined' },
    'the rest of the securityContext is kept',
  );
  for (const o of aa)
    assert.deepEqual(
      await validateObject(o as K8sObject, kindByApiVersion(o.apiVersion, o.kind)!),
      [],
      `${o.kind}/${o.metadata.name}`,
    );
  for (const u of [undefined, 'sysctl'] as const) {
    assert.deepEqual(
      buildkitContainer(buildkitObjects(settings(u), buildScriptText()))['securityContext'].appArmorProfile,
      { type: 'Unconfined' },
    );
  }
});

test('crash-loop detection: CrashLoopBackOff, a create error, an error exit and too many restarts; a starting or ready pod is not', () => {
  const pod = (c: Record<string, unknown>) => ({
    status: { containerStatuses: [{ name: NAMES.buildkitContainer, ...c }] },
  });
  const crash = buildkitPodProblem(
    pod({
      ready: false,
      restartCount: 3,
      state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } },
      lastState: { terminated: { exitCode: 1, reason: 'Error' } },
    }),
  );
  assert.deepEqual(crash, {
    problem: 'is in CrashLoopBackOff (3 restart(s); last exit code 1 (Error)): back-off 40s',
    previous: true,
  });
  assert.equal(
    buildkitPodProblem(
      pod({
        ready: false,
        restartCount: 0,
        state: { waiting: { reason: 'CreateContainerError', message: 'apparmor profile not found x' } },
      }),
    )?.previous,
    false,
  );
  assert.match(
    buildkitPodProblem(pod({ ready: false, restartCount: 0, state: { terminated: { exitCode: 1, reason: 'Error' } } }))
      ?.problem ?? '',
    /terminated with exit code 1/,
  );
  assert.match(
    buildkitPodProblem(
      pod({ ready: false, restartCount: 3, state: { running: {} }, lastState: { terminated: { exitCode: 137 } } }),
    )?.problem ?? '',
    /restarted 3 times/,
  );
  assert.equal(
    buildkitPodProblem(pod({ ready: false, restartCount: 2, state: { running: {} } })),
    undefined,
    'two restarts: still waiting',
  );
  assert.equal(
    buildkitPodProblem(pod({ ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } })),
    undefined,
  );
  assert.equal(
    buildkitPodProblem(pod({ ready: true, restartCount: 9, state: { running: {} } })),
    undefined,
    'old restarts of a ready pod do not count',
  );
  assert.equal(buildkitPodProblem(undefined), undefined, 'not created yet');
  assert.deepEqual(podLogsArgv('codex-k8s-system', 'buildkitd-0', 'buildkitd', 30, true), [
    'kubectl',
    '--kubeconfig',
    KUBECONFIG,
    '--namespace',
    'codex-k8s-system',
    'logs',
    'pod/buildkitd-0',
    '--container',
    'buildkitd',
    '--previous',
    '--tail=30',
  ]);
});

/** A fake server: kubectl on PATH runs the double; CODEXK8S_FAKES_ROOT holds the kubeconfig and the fake kernel. */
function fakeServer(): { dir: string; root: string; restore: () => void } {
  const dir = newStateDir('ck8s-userns-kube-');
  seedCluster(dir);
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'etc/rancher/k3s'), { recursive: true });
  fs.writeFileSync(path.join(root, KUBECONFIG), 'apiVersion: v1\nkind: Config\n', { mode: 0o600 });
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(
    path.join(bin, 'kubectl'),
    `#!/bin/sh\nexec '${SERVER_NODE_BIN}' '${path.join(FAKES_DIR, 'kubectl.mts')}' "$@"\n`,
    { mode: 0o755 },
  );
  const keys = ['PATH', 'CODEXK8S_FAKES_DIR', 'CODEXK8S_FAKES_ROOT', 'HOME', 'KUBECONFIG'];
  const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
  process.env['PATH'] = `${bin}:${process.env['PATH']}`;
  process.env['CODEXK8S_FAKES_DIR'] = dir;
  process.env['CODEXK8S_FAKES_ROOT'] = root;
  process.env['HOME'] = dir;
  delete process.env['KUBECONFIG'];
  return {
    dir,
    root,
    restore: () => {
      for (const k of keys) saved[k] === undefined ? delete process.env[k] : (process.env[k] = saved[k]);
    },
  };
}

async function deployBuildkit(s: DeploySettings): Promise<void> {
  const ns = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await applyObjects([ns(NAMES.systemNamespace), ns('arc-runners')], new Logger());
  await applyObjects(buildkitObjects(s, buildScriptText()), new Logger());
}

test("50 wait: on a restricting kernel buildkitd-0 crash-loops; the step fails fast with rootlesskit's log and the fix, then succeeds once fixed", async () => {
  const srv = fakeServer();
  try {
    const p = fakeKernel(srv.root, { restrict: '1', profiles: PROFILES_UBUNTU });
    await deployBuildkit(settings());
    const started = Date.now();
    await assert.rejects(waitForBuildkit(settings(), new Logger(), false), (e: OperationError) => {
      assert.match(
        e.message,
        /^codex-k8s-system\/buildkitd-0 is in CrashLoopBackOff \(5 restart\(s\); last exit code 1 \(Error\)\)/,
      );
      assert.match(e.detail ?? '', /kubectl logs buildkitd-0 --previous/);
      assert.match(
        e.detail ?? '',
        /\[rootlesskit:parent\] error: failed to setup UID\/GID map: newuidmap .* Operation not permitted/,
      );
      assert.match(e.hint ?? '', /CODEXK8S_BUILDKIT_USERNS=sysctl .* or CODEXK8S_BUILDKIT_USERNS=apparmor/);
      return true;
    });
    assert.ok(Date.now() - started < 20_000, 'fails fast, not after the 60s rollout timeout');
    const logCalls = readCalls(srv.dir).filter((c) => c.argv.includes('logs'));
    assert.deepEqual(
      logCalls.map((c) => c.argv.slice(c.argv.indexOf('logs'))),
      [['logs', 'pod/buildkitd-0', '--container', 'buildkitd', '--previous', '--tail=30']],
    );

    // A remedy that did not help: the pod is restarted once, crash-loops again, and the step fails (no second restart).
    await assert.rejects(waitForBuildkit(settings('sysctl'), new Logger(), true), /buildkitd-0 is in CrashLoopBackOff/);
    const deletes = readCalls(srv.dir).filter((c) => c.argv.includes('delete'));
    assert.deepEqual(
      deletes.map((c) => c.argv.slice(c.argv.indexOf('delete'))),
      [['delete', 'pod', 'buildkitd-0', '--timeout=60s']],
    );

    // The sysctl remedy ran (the test does what sysctl -p does): the crash-looping pod is restarted once and comes up.
    fs.writeFileSync(p.sysctl, '0\n');
    const changes = await waitForBuildkit(settings('sysctl'), new Logger(), true);
    assert.deepEqual(changes, [
      'pod codex-k8s-system/buildkitd-0 deleted: it crash-looped from before (the StatefulSet recreates it)',
    ]);
    assert.deepEqual(await waitForBuildkit(settings('sysctl'), new Logger(), false), [], 'ready: nothing to do');
  } finally {
    srv.restore();
  }
});

test('50 wait: apparmor remedy in the double: Localhost profile not loaded is a create error; loaded with userns, buildkitd-0 is ready', async () => {
  const srv = fakeServer();
  try {
    const p = fakeKernel(srv.root, { restrict: '1', profiles: PROFILES_UBUNTU });
    await deployBuildkit(settings('apparmor'));
    await assert.rejects(
      waitForBuildkit(settings('apparmor'), new Logger(), false),
      /buildkitd-0 is in CreateContainerError .*apparmor profile not found codex-k8s-buildkitd/,
    );
    const calls: string[][] = [];
    await applyUsernsRemedy('apparmor', new Logger(), p, kernelRunner(p, calls));
    assert.equal(calls.length, 1);
    assert.deepEqual(await waitForBuildkit(settings('apparmor'), new Logger(), true), [
      'pod codex-k8s-system/buildkitd-0 deleted: it crash-looped from before (the StatefulSet recreates it)',
    ]);
    // The double stays strict: a healthy pod has no modelled log, and no previous instance.
    const r = runDouble(
      'kubectl',
      [
        '--kubeconfig',
        KUBECONFIG,
        '-n',
        'codex-k8s-system',
        'logs',
        'pod/buildkitd-0',
        '-c',
        'buildkitd',
        '--previous',
      ],
      { dir: srv.dir, env: { CODEXK8S_FAKES_ROOT: srv.root } },
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /previous terminated container "buildkitd" in pod "buildkitd-0" not found/);
  } finally {
    srv.restore();
  }
});
