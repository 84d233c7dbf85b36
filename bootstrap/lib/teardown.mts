// What the teardowns of the cluster steps (30..60) share: is the cluster there to ask, is a helm release installed,
// uninstall it, remove a file of ours. The builders are in lib/kube.mts; this module runs them (lib/exec.mts).
//
// A teardown runs last step first, and step 20 takes k3s (and everything in it) away: a step after it in the
// run order finds no cluster on a re-run of a teardown that stopped half-way, and then has nothing in-cluster left.
import { existsSync, lstatSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { OperationError } from './errors.mts';
import { run } from './exec.mts';
import { getJsonArgv, helmListArgv, helmUninstallArgv, parseHelmList, KUBECONFIG } from './kube.mts';
import type { Logger } from './log.mts';
import { mask } from './redact.mts';
import type { ChartPin } from './versions.mts';

/** A missing command: the shell's "command not found". */
const NOT_FOUND = 127;

/**
 * Whether the cluster answers at all: no kubeconfig, no kubectl (k3s ships it) or no API server means k3s is gone
 * (or down), and nothing in it can be listed.
 */
export async function clusterAnswers(log?: Logger): Promise<boolean> {
  const r = await run(getJsonArgv('namespace', 'kube-system'), { allowFail: true, timeoutSeconds: 30, log });
  return r.exitCode === 0;
}

/**
 * Whether the release is installed (`helm list --all`, as the steps' check reads it); undefined when helm itself is
 * gone: 30_cluster_deps removes it only after the later steps' teardowns succeeded, so their releases are gone too.
 */
export async function helmReleaseInstalled(
  pin: Pick<ChartPin, 'release' | 'namespace'>,
  log?: Logger,
): Promise<boolean | undefined> {
  const r = await run(helmListArgv(pin as ChartPin), { allowFail: true, timeoutSeconds: 60, log });
  if (r.exitCode === NOT_FOUND) return undefined;
  if (r.exitCode !== 0)
    throw new OperationError(
      `cannot list helm releases in ${pin.namespace}: ${mask(r.argv.join(' '))} exited ${r.exitCode}`,
      {
        detail: mask((r.stderr || r.stdout).trim().split('\n').slice(-10).join('\n')),
        hint: `is k3s running? systemctl status k3s; helm --kubeconfig ${KUBECONFIG} list -A`,
      },
    );
  return parseHelmList(r.stdout, pin.release) !== undefined;
}

/** `helm uninstall --wait`, bounded by `timeoutSeconds`; fails loudly with helm's words. */
export async function helmUninstall(
  pin: Pick<ChartPin, 'release' | 'namespace'>,
  timeoutSeconds: number,
  log: Logger,
): Promise<void> {
  const r = await run(helmUninstallArgv(pin, timeoutSeconds), {
    allowFail: true,
    timeoutSeconds: timeoutSeconds + 60,
    log,
    progress: `helm uninstall ${pin.namespace}/${pin.release} (--wait)`,
  });
  if (r.exitCode !== 0)
    throw new OperationError(`helm could not uninstall the release ${pin.namespace}/${pin.release}`, {
      detail: mask((r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n')),
      hint: `helm --kubeconfig ${KUBECONFIG} -n ${pin.namespace} status ${pin.release}; kubectl --kubeconfig ${KUBECONFIG} -n ${pin.namespace} get pods; then --uninstall again`,
    });
}

/** Removes a file (or symlink) when it is there; true when it was. */
export function removeFile(path: string): boolean {
  if (!existsSync(path) && !isDanglingLink(path)) return false;
  rmSync(path, { force: true });
  return true;
}

/** Removes a directory only when it is empty (someone else's files in it stay, and so does the directory). */
export function removeDirIfEmpty(path: string): boolean {
  try {
    if (readdirSync(path).length > 0) return false;
    rmdirSync(path);
    return true;
  } catch {
    return false;
  }
}

function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
