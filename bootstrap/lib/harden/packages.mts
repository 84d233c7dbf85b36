// The packages the other parts configure. apt is called only for what dpkg says is missing: a converged
// server (and the offline test sandbox, which has them all) never touches apt. apt-get itself waits, bounded,
// for the dpkg lock (DPkg::Lock::Timeout), which unattended-upgrades may hold on a fresh server.
import type { StepContext } from '../step.mts';
import { run } from '../exec.mts';
import { OperationError } from '../errors.mts';
import type { HostPart } from './part.mts';

export const PACKAGES = ['nftables', 'fail2ban', 'python3-systemd', 'unattended-upgrades'];
const LOCK_TIMEOUT_SECONDS = 300;

export const aptCommands = {
  status: (pkgs: readonly string[]) => ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Status}\\n', ...pkgs],
  update: () => ['apt-get', '-o', `DPkg::Lock::Timeout=${LOCK_TIMEOUT_SECONDS}`, '-q', 'update'],
  install: (pkgs: readonly string[]) => [
    'apt-get',
    '-o',
    `DPkg::Lock::Timeout=${LOCK_TIMEOUT_SECONDS}`,
    '-q',
    '-y',
    '--no-install-recommends',
    'install',
    ...pkgs,
  ],
};

/** dpkg-query output (and the names it did not know) -> the packages that are not installed. */
export function missingPackages(wanted: readonly string[], dpkgOutput: string): string[] {
  const installed = new Set(
    dpkgOutput
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === 'installed')
      .map((f) => f[0]),
  );
  return wanted.filter((p) => !installed.has(p));
}

async function missing(): Promise<string[]> {
  // Exit 1 for a package dpkg never heard of: that is "missing", not an error.
  const r = await run(aptCommands.status(PACKAGES), { allowFail: true });
  return missingPackages(PACKAGES, r.stdout);
}

async function check(): Promise<string[]> {
  return (await missing()).map((p) => `package ${p} is not installed`);
}

async function apply(ctx: StepContext): Promise<string[]> {
  const todo = await missing();
  if (todo.length === 0) return [];
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const upd = await run(aptCommands.update(), {
    allowFail: true,
    log: ctx.log,
    env,
    timeoutSeconds: LOCK_TIMEOUT_SECONDS + 600,
  });
  if (upd.exitCode !== 0)
    throw new OperationError('apt-get update failed', {
      detail: upd.stderr,
      hint: "check the server's apt sources and its outbound HTTP(S) access",
    });
  await run(aptCommands.install(todo), { log: ctx.log, env, timeoutSeconds: LOCK_TIMEOUT_SECONDS + 900 });
  return [`installed ${todo.join(', ')}`];
}

export const packagesPart: HostPart = { name: 'packages', check, apply };
