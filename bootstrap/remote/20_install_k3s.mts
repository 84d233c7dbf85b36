#!/opt/codex-k8s-bootstrap/node/bin/node --
// 20_install_k3s: a single-node k3s at the pinned version, with what k3s ships (Traefik, ServiceLB, local-path)
// kept, the in-cluster registry reachable by containerd over plain HTTP on the node's loopback, and a kubeconfig
// for the operator.
//
// The install script is downloaded from a commit URL and sha256-checked (lib/download.mts), then the LOCAL file
// is run with INSTALL_K3S_VERSION pinned; it verifies the k3s binary against the release checksums itself.
// registries.yaml is written before the first start, so containerd's hosts.toml files are generated right away;
// k3s reads registries.yaml only when it starts, so a change to it restarts k3s. After every (re)start the step
// reads the generated hosts.toml back: some k3s versions wrote an https endpoint for an http mirror (k3s #12551),
// which would make every pull from the in-cluster registry fail much later, far from the cause.
import { mkdirSync, chmodSync, chownSync, mkdtempSync, rmSync, readFileSync, existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runStep, changeList } from '../lib/step.mts';
import { pollUntil } from '../lib/poll.mts';
import type { StepContext, Teardown } from '../lib/step.mts';
import { run } from '../lib/exec.mts';
import { OperationError } from '../lib/errors.mts';
import { moved } from '../lib/log.mts';
import { writeFileAtomic, readIfExists, facts, octal } from '../lib/fsx.mts';
import { removeDirIfEmpty, removeFile } from '../lib/teardown.mts';
import { downloadVerified, resolveForServer } from '../lib/download.mts';
import { K3S_INSTALL, K3S_VERSION, comparePinVersions } from '../lib/versions.mts';
import { REMOTE } from '../lib/paths.mts';
import { account } from '../lib/harden/operator.mts';
import type { Account } from '../lib/harden/operator.mts';
import {
  CERTS_D,
  HOSTS_TOML_ATTEMPTS,
  HOSTS_TOML_PAUSE_MS,
  K3S_BIN,
  K3S_CONFIG_DIR,
  K3S_KUBECONFIG,
  K3S_UNINSTALL,
  K3S_UNIT,
  NODE_READY_TIMEOUT_SECONDS,
  REGISTRIES_FILE,
  execStartDrift,
  hostsTomlProblems,
  installArgv,
  isOurKubeconfigCopy,
  uninstallArgv,
  installEnv,
  kubeconfigPath,
  mirrorNames,
  networkChangeProblem,
  nodeReadyArgv,
  parseExecStart,
  parseK3sVersion,
  registriesYaml,
  registryEndpoint,
} from '../lib/k3s.mts';
import type { Networks } from '../lib/k3s.mts';

// ---- check / apply --------------------------------------------------------------------------------------------------

async function check(ctx: StepContext): Promise<string[]> {
  const port = ctx.cfg.get('CODEXK8S_INTERNAL_REGISTRY_PORT');
  const drift = await installDrift(networks(ctx));
  if (readIfExists(REGISTRIES_FILE) !== registriesYaml(port))
    drift.push(`${REGISTRIES_FILE} ${existsSync(REGISTRIES_FILE) ? 'differs from the managed content' : 'is missing'}`);
  else {
    const f = facts(REGISTRIES_FILE);
    if (f && (f.mode !== 0o600 || f.uid !== 0))
      drift.push(`${REGISTRIES_FILE} is ${octal(f.mode)} uid ${f.uid}, want 0600 uid 0`);
  }
  if (drift.length > 0) return drift; // the rest depends on a k3s that runs with our settings
  if (!(await serviceActive())) return [`k3s.service is not active`];
  drift.push(...hostsProblems(port));
  const ready = await nodeReady(10);
  if (!ready.ok) drift.push(`the node is not Ready: ${ready.detail.split('\n').pop() ?? ''}`);
  const op = await operator(ctx);
  if (!op) drift.push(`user ${ctx.cfg.get('OPERATOR_USER')} does not exist (10_harden_host creates it)`);
  else drift.push(...kubeconfigDrift(op));
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const port = ctx.cfg.get('CODEXK8S_INTERNAL_REGISTRY_PORT');
  const changes = changeList(ctx);
  let registriesChanged = false;
  const op = await operator(ctx);
  if (!op)
    throw new OperationError(`user ${ctx.cfg.get('OPERATOR_USER')} does not exist; it gets the kubeconfig`, {
      hint: 'run step 10 first: --from 10',
    });

  // 0. Never re-install an existing cluster onto other networks.
  const unit = readIfExists(K3S_UNIT);
  const netProblem = networkChangeProblem(unit === undefined ? undefined : parseExecStart(unit), networks(ctx));
  if (netProblem) {
    throw new OperationError(netProblem, {
      hint: 'set CODEXK8S_POD_CIDR / CODEXK8S_SERVICE_CIDR back to the installed values in .env; new networks need a new cluster (docs/runbook.md "Restoring staging onto a new server")',
    });
  }

  // 1. Never downgrade: an older checkout against a newer server stops here, with nothing changed.
  const refusal = downgradeRefusal(await installedVersion());
  if (refusal) throw refusal;

  // 2. When k3s must be (re)installed, fetch and verify the script first: a bad download changes nothing at all.
  const drift = await installDrift(networks(ctx));
  if (drift.length > 0) mkdirSync(REMOTE.stateDir, { recursive: true, mode: 0o700 });
  const workDir = drift.length > 0 ? mkdtempSync(join(REMOTE.stateDir, 'k3s-install-')) : undefined;
  let restarted = false;
  let since: number | undefined;
  try {
    const script = workDir !== undefined ? await downloadInstallScript(ctx, workDir) : undefined;

    // 3. registries.yaml before k3s (first) starts: then no restart is needed for it on a fresh server.
    const wanted = registriesYaml(port);
    const regFacts = facts(REGISTRIES_FILE);
    registriesChanged = readIfExists(REGISTRIES_FILE) !== wanted;
    if (registriesChanged || regFacts?.mode !== 0o600 || regFacts.uid !== 0) {
      mkdirSync('/etc/rancher/k3s', { recursive: true, mode: 0o755 });
      await writeFileAtomic(REGISTRIES_FILE, wanted, { mode: 0o600, uid: 0, gid: 0 });
      changes.push(`${REGISTRIES_FILE}: ${mirrorNames(port).join(' and ')} -> ${registryEndpoint(port)}`);
    }

    // 4. k3s itself, only when the version or the flags differ: the LOCAL, verified copy of the script.
    if (script !== undefined) {
      // Read before the script replaces the binary: afterwards only the new version answers.
      const from = await installedVersion();
      since = Date.now();
      const r = await run(installArgv(script, networks(ctx)), {
        env: installEnv(registriesChanged),
        log: ctx.log,
        timeoutSeconds: 900,
        allowFail: true,
        progress: `the k3s ${K3S_VERSION} install script`,
        onStdoutLine: (l) => ctx.log.detail(l),
      });
      if (r.exitCode !== 0) {
        throw new OperationError(`the k3s install script failed (exit ${r.exitCode})`, {
          detail: (r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n'),
          hint: 'journalctl -u k3s --since -10min; the script is re-downloaded and re-run on the next run',
        });
      }
      // An upgrade's from/to line says the version already; the rest of the drift stays as the reason.
      changes.push(
        from !== undefined && from !== K3S_VERSION
          ? moved(
              'k3s',
              from,
              K3S_VERSION,
              ['upgraded by the install script', ...drift.filter((d) => d !== versionDrift(from))].join('; '),
            )
          : `k3s ${K3S_VERSION} installed (${drift.join('; ')})`,
      );
      restarted = true;
    }
  } finally {
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  }

  // 5. A running k3s that has not read the current registries.yaml, or wrote bad hosts.toml: restart it once.
  if (!restarted && (registriesChanged || !(await serviceActive()) || hostsProblems(port).length > 0)) {
    since = Date.now();
    await run(['systemctl', 'restart', 'k3s'], { log: ctx.log, timeoutSeconds: 300 });
    changes.push(registriesChanged ? 'restarted k3s to load registries.yaml' : 'restarted k3s');
  }

  // 6. Verify what the (re)start produced, bounded, loudly.
  await waitForHostsToml(port, since);
  const ready = await nodeReady(NODE_READY_TIMEOUT_SECONDS, ctx.log);
  if (!ready.ok) {
    throw new OperationError(`the node did not become Ready within ${NODE_READY_TIMEOUT_SECONDS}s`, {
      detail: ready.detail,
      hint: 'journalctl -u k3s --since -10min; k3s kubectl describe nodes',
    });
  }

  // 7. The operator's kubeconfig: a copy of k3s.yaml, 0600, in a 0700 ~/.kube.
  if (kubeconfigDrift(op).length > 0) {
    const content = readFileSync(K3S_KUBECONFIG, 'utf8');
    const kube = join(op.home, '.kube');
    mkdirSync(kube, { recursive: true, mode: 0o700 });
    chmodSync(kube, 0o700);
    chownSync(kube, op.uid, op.gid);
    await writeFileAtomic(kubeconfigPath(op.home), content, { mode: 0o600, uid: op.uid, gid: op.gid });
    changes.push(`${kubeconfigPath(op.home)}: kubeconfig for ${op.name} (0600)`);
  }
  return changes;
}

// ---- --uninstall: k3s by its own uninstall script (it takes every object and volume in the cluster with it) -------

const teardown: Teardown = {
  async check(ctx) {
    const left: string[] = [];
    const copy = await kubeconfigCopy(ctx);
    if (copy) left.push(`file ${copy} (the operator's copy of ${K3S_KUBECONFIG})`);
    if (k3sPresent()) {
      const version = await installedVersion();
      left.push(
        `k3s${version ? ` ${version}` : ''} (${K3S_BIN}, ${K3S_UNIT}, ${K3S_CONFIG_DIR}, /var/lib/rancher/k3s: every object and volume in the cluster)`,
      );
    } else if (existsSync(REGISTRIES_FILE)) left.push(`file ${REGISTRIES_FILE}`);
    return left;
  },
  async apply(ctx) {
    const changes = changeList(ctx);
    // The copy first, while k3s.yaml is there to prove it is a copy: later nothing could.
    const copy = await kubeconfigCopy(ctx);
    if (copy && removeFile(copy)) {
      changes.push(`removed ${copy} (the operator's copy of ${K3S_KUBECONFIG})`);
      if (removeDirIfEmpty(dirname(copy))) changes.push(`removed ${dirname(copy)} (empty)`);
    }
    if (k3sPresent()) {
      if (!existsSync(K3S_UNINSTALL))
        throw new OperationError(
          `k3s is installed (${K3S_BIN} or ${K3S_UNIT}) but its uninstall script ${K3S_UNINSTALL} is missing`,
          {
            hint: `get the script back by installing k3s again (the launcher with --only 20_install_k3s), then --uninstall again; or remove k3s by hand: systemctl disable --now k3s; /usr/local/bin/k3s-killall.sh; rm -rf ${K3S_BIN} ${K3S_UNIT} ${K3S_CONFIG_DIR} /var/lib/rancher/k3s`,
          },
        );
      const version = await installedVersion();
      const r = await run(uninstallArgv(), {
        allowFail: true,
        timeoutSeconds: 600,
        log: ctx.log,
        progress: `${K3S_UNINSTALL}`,
        onStdoutLine: (l) => ctx.log.detail(l),
      });
      if (r.exitCode !== 0)
        throw new OperationError(`${K3S_UNINSTALL} failed (exit ${r.exitCode})`, {
          detail: (r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n'),
          hint: `run it again by hand (sudo ${K3S_UNINSTALL}) and read its output, then --uninstall again`,
        });
      changes.push(
        `k3s${version ? ` ${version}` : ''} uninstalled by ${K3S_UNINSTALL} (binaries, unit, ${K3S_CONFIG_DIR}, /var/lib/rancher/k3s)`,
      );
    }
    // What the step wrote itself, when the script did not take it (a k3s that never got installed).
    if (removeFile(REGISTRIES_FILE)) changes.push(`removed ${REGISTRIES_FILE}`);
    // The parents the step's registries.yaml made (the uninstall script leaves them), when nothing else is in them.
    for (const dir of [K3S_CONFIG_DIR, dirname(K3S_CONFIG_DIR), '/var/lib/rancher'])
      if (removeDirIfEmpty(dir)) changes.push(`removed ${dir} (empty)`);
    return changes;
  },
};

function k3sPresent(): boolean {
  return existsSync(K3S_BIN) || existsSync(K3S_UNIT);
}

/** The operator's kubeconfig when it is the copy this step made (identical to k3s.yaml); else undefined. */
async function kubeconfigCopy(ctx: StepContext): Promise<string | undefined> {
  const op = await operator(ctx);
  if (!op) return undefined;
  const file = kubeconfigPath(op.home);
  const copy = readIfExists(file);
  if (copy === undefined) return undefined;
  if (isOurKubeconfigCopy(copy, readIfExists(K3S_KUBECONFIG))) return file;
  ctx.log.detail(`${file} is not a copy of ${K3S_KUBECONFIG} (any more): it is left alone`);
  return undefined;
}

// ---- how they read and change the server ---------------------------------------------------------------------------

const RUNBOOK = 'docs/runbook.md, "k3s pulls from the in-cluster registry over https"';

// ---- reading the server -------------------------------------------------------------------------------------------

/** The operator account (step 10 made it), which gets the kubeconfig. */
function operator(ctx: StepContext): Promise<Account | undefined> {
  return account(ctx.cfg.get('OPERATOR_USER'));
}

async function installedVersion(): Promise<string | undefined> {
  if (!existsSync(K3S_BIN)) return undefined;
  const r = await run([K3S_BIN, '--version'], { allowFail: true, timeoutSeconds: 30 });
  return r.exitCode === 0 ? parseK3sVersion(r.stdout) : undefined;
}

async function serviceActive(): Promise<boolean> {
  const r = await run(['systemctl', 'is-active', 'k3s'], { allowFail: true });
  return r.stdout.trim() === 'active';
}

function hostsProblems(port: number): string[] {
  return mirrorNames(port).flatMap((m) => hostsTomlProblems(m, readIfExists(join(CERTS_D, m, 'hosts.toml')), port));
}

async function nodeReady(timeoutSeconds: number, log?: StepContext['log']): Promise<{ ok: boolean; detail: string }> {
  const r = await run(nodeReadyArgv(timeoutSeconds), {
    allowFail: true,
    timeoutSeconds: timeoutSeconds + 30,
    log,
    progress: 'the node to be Ready',
  });
  return { ok: r.exitCode === 0, detail: (r.stdout + r.stderr).trim() };
}

/** Drift in what the install script decides: binary version, unit flags, service running. */
async function installDrift(n: Networks): Promise<string[]> {
  const drift: string[] = [];
  const version = await installedVersion();
  if (version === undefined) return [`k3s is not installed (${K3S_BIN} missing or not answering --version)`];
  if (version !== K3S_VERSION) drift.push(versionDrift(version));
  const unit = readIfExists(K3S_UNIT);
  drift.push(...(unit === undefined ? [`${K3S_UNIT} is missing`] : execStartDrift(parseExecStart(unit), n)));
  return drift;
}

function versionDrift(version: string): string {
  return (comparePinVersions(version, K3S_VERSION) ?? 0) > 0
    ? `k3s is ${version}, newer than this checkout's pin ${K3S_VERSION}: k3s cannot be downgraded (an older checkout of this tool?)`
    : `k3s is ${version}, want ${K3S_VERSION}`;
}

/** The refusal of a downgrade, before anything is downloaded or changed. */
function downgradeRefusal(version: string | undefined): OperationError | undefined {
  if (version === undefined || (comparePinVersions(version, K3S_VERSION) ?? 0) <= 0) return undefined;
  return new OperationError(
    `k3s on the server is ${version}, newer than ${K3S_VERSION}, the pin of this checkout: k3s does not support downgrades, so nothing was changed`,
    {
      hint: 'run the launcher from a checkout at least as new as the one that installed the server (git pull); docs/runbook.md "Upgrades"',
    },
  );
}

function kubeconfigDrift(op: Account): string[] {
  const want = readIfExists(K3S_KUBECONFIG);
  if (want === undefined) return [`${K3S_KUBECONFIG} is missing (k3s writes it when the server starts)`];
  const file = kubeconfigPath(op.home);
  const dir = facts(join(op.home, '.kube'));
  const f = facts(file);
  const drift: string[] = [];
  if (!dir?.isDir) drift.push(`${join(op.home, '.kube')} does not exist`);
  else if (dir.uid !== op.uid || dir.mode !== 0o700)
    drift.push(`${join(op.home, '.kube')} is ${octal(dir.mode)} uid ${dir.uid}, want 0700 uid ${op.uid}`);
  if (readIfExists(file) !== want) drift.push(`${file} ${f ? 'differs from' : 'is not a copy of'} ${K3S_KUBECONFIG}`);
  else if (f && (f.mode !== 0o600 || f.uid !== op.uid))
    drift.push(`${file} is ${octal(f.mode)} uid ${f.uid}, want 0600 uid ${op.uid}`);
  return drift;
}

function networks(ctx: StepContext): Networks {
  return { podCidr: ctx.cfg.get('CODEXK8S_POD_CIDR'), serviceCidr: ctx.cfg.get('CODEXK8S_SERVICE_CIDR') };
}

async function downloadInstallScript(ctx: StepContext, dir: string): Promise<string> {
  const r = resolveForServer(ctx.cfg, K3S_INSTALL);
  if (r.overriddenFrom)
    ctx.log.warn(`k3s install script: checksum override in force (${r.sha256}, pinned ${r.overriddenFrom})`);
  const path = join(dir, 'install.sh');
  await downloadVerified(r, path, {
    mode: 0o700,
    mirror: ctx.cfg.maybe('CODEXK8S_ARTIFACT_MIRROR'),
    log: ctx.log,
    timeoutSeconds: 60,
  });
  return path;
}

/**
 * After a (re)start at `since` (epoch ms), k3s rewrites every hosts.toml it manages: wait for the required one to be
 * newer than the restart, so a stale file from before it is never taken for the result.
 */
async function waitForHostsToml(port: number, since: number | undefined): Promise<void> {
  const required = join(CERTS_D, mirrorNames(port)[0] as string, 'hosts.toml');
  await pollUntil(
    async () => {
      const fresh = since === undefined || (existsSync(required) && statSync(required).mtimeMs >= since - 1);
      const problems = fresh ? hostsProblems(port) : [`${required} was not rewritten since the k3s (re)start`];
      if (fresh && problems.length === 0) return { done: true };
      // A present but https file will not fix itself: that is the k3s bug, not a slow start.
      const wrongScheme = fresh ? problems.filter((p) => p.includes('#12551')) : [];
      if (wrongScheme.length > 0) {
        throw new OperationError(
          `k3s generated an https endpoint for the http in-cluster registry: ${wrongScheme.join('; ')}`,
          {
            detail: mirrorNames(port)
              .map(
                (m) =>
                  `${join(CERTS_D, m, 'hosts.toml')}:\n${readIfExists(join(CERTS_D, m, 'hosts.toml')) ?? '(missing)'}`,
              )
              .join('\n'),
            hint: `pulls from the in-cluster registry would fail; see ${RUNBOOK} (pin a k3s version without issue #12551 in bootstrap/lib/versions.mts, then re-run)`,
          },
        );
      }
      return { waiting: problems.join('; ') };
    },
    {
      attempts: HOSTS_TOML_ATTEMPTS,
      intervalSeconds: HOSTS_TOML_PAUSE_MS / 1000,
      what: "containerd's hosts.toml files",
      onTimeout: (problems) =>
        new OperationError(
          `containerd's hosts.toml files did not appear after the k3s (re)start (attempt ${HOSTS_TOML_ATTEMPTS}/${HOSTS_TOML_ATTEMPTS}): ${problems}`,
          {
            hint: `look at the k3s log: journalctl -u k3s --since -10min; see ${RUNBOOK}`,
          },
        ),
    },
  );
}

if (import.meta.filename === process.argv[1]) await runStep('20_install_k3s', { check, apply, teardown });
