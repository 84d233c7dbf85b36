#!/opt/codex-k8s-bootstrap/node/bin/node --
// 10_harden_host: the server as a staging host should be before k3s arrives. Each part lives in
// bootstrap/lib/harden/ with its own check and apply; this step concatenates their drift and applies only the
// parts that drift, in this order:
//   packages   nftables, fail2ban, python3-systemd, unattended-upgrades (apt only for what is missing)
//   kernel     overlay + br_netfilter, sysctl for Kubernetes, swap off, time sync
//   upgrades   unattended security upgrades, reboot as CODEXK8S_AUTO_REBOOT says
//   fail2ban   sshd jail
//   operator   the operator user, its key, passwordless sudo (visudo-checked); only an account   [guarded]
//              this tool created or OPERATOR_ADOPT_EXISTING adopts, never root or a system account
//   sshd       key-only logins (sshd -T checked), port, reload without dropping sessions      [guarded]
//   firewall   nftables table inet codex_k8s, persisted by codex-k8s-firewall.service          [guarded]
// Guarded parts can lock the operator out (or grant a login nobody proved). Before the first of them changes
// anything, the step snapshots their files and state and schedules `--rollback` on a timer (lib/harden/rollback.mts), and its result asks the launcher to log
// in anew as the operator: that login confirms (--confirm) or rolls back (--rollback). Run by hand, the step
// prints how to confirm from a new session before the timer undoes the change.
// --uninstall (teardown) runs the parts in reverse: firewall, sshd, operator (--remove-operator only), fail2ban,
// upgrades, kernel; packages stay. The same snapshot and timer are armed before the first guarded removal.
import { runStep, changeList } from '../lib/step.mts';
import type { StepContext, StepMode, Teardown, TeardownOptions } from '../lib/step.mts';
import { color } from '../lib/log.mts';
import { REMOTE } from '../lib/paths.mts';
import { readJournal, writeJournal, recordStep } from '../lib/state.mts';
import type { HostPart } from '../lib/harden/part.mts';
import { packagesPart } from '../lib/harden/packages.mts';
import { operatorPart, operatorRemovalRefusal } from '../lib/harden/operator.mts';
import { kernelPart } from '../lib/harden/kernel.mts';
import { upgradesPart } from '../lib/harden/upgrades.mts';
import { fail2banPart } from '../lib/harden/fail2ban.mts';
import { sshdPart, validateRemoval, effectivePort } from '../lib/harden/sshd.mts';
import { firewallPart } from '../lib/harden/firewall.mts';
import { snapshot, schedule, confirm, restore, ROLLBACK_UNIT } from '../lib/harden/rollback.mts';

export const STEP = '10_harden_host';
export const PARTS: readonly HostPart[] = [
  packagesPart,
  kernelPart,
  upgradesPart,
  fail2banPart,
  operatorPart,
  sshdPart,
  firewallPart,
];
const GUARDED = PARTS.filter((p) => p.guarded);

// check() records each part's drift; apply() works from it (converge always checks right before it applies).
const lastDrift = new Map<string, string[]>();

async function check(ctx: StepContext): Promise<string[]> {
  const all: string[] = [];
  for (const part of PARTS) {
    const drift = await part.check(ctx);
    lastDrift.set(part.name, drift);
    all.push(...drift);
  }
  return all;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const changes = changeList(ctx);
  let armed = false;
  for (const part of PARTS) {
    const drift = lastDrift.get(part.name) ?? (await part.check(ctx));
    if (drift.length === 0) continue;
    if (part.guarded && !armed) {
      changes.push(...(await armRollback(ctx)));
      armed = true;
    }
    if (part.guarded && ctx.notes?.loginCheck)
      ctx.notes.loginCheck.reasons.push(
        `${part.name}: ${drift[0]}${drift.length > 1 ? ` (+${drift.length - 1} more)` : ''}`,
      );
    changes.push(...(await part.apply(ctx)));
  }
  return changes;
}

/** The parts in teardown order: the reverse of PARTS, those with a teardown (packages have none: they stay). */
export const TEARDOWN_PARTS: readonly HostPart[] = [...PARTS].reverse().filter((p) => p.teardown);

async function teardownCheck(ctx: StepContext, o: TeardownOptions): Promise<string[]> {
  const all: string[] = [];
  for (const part of TEARDOWN_PARTS) all.push(...((await part.teardown?.check(ctx, o)) ?? []));
  return all;
}

async function teardownApply(ctx: StepContext, o: TeardownOptions): Promise<string[]> {
  const changes = changeList(ctx);
  const present = new Map<string, string[]>();
  for (const part of TEARDOWN_PARTS) present.set(part.name, (await part.teardown?.check(ctx, o)) ?? []);
  // Everything that can refuse does so before anything is removed: the firewall goes first and must not be gone
  // when sshd then refuses the configuration without our drop-in.
  const refused = await operatorRemovalRefusal(ctx, o);
  if (refused) throw refused;
  const port = (present.get('sshd') ?? []).length > 0 ? await validateRemoval(ctx.log) : await effectivePort();
  let armed = false;
  for (const part of TEARDOWN_PARTS) {
    const lines = present.get(part.name) ?? [];
    if (lines.length === 0) continue;
    if (part.guarded && !armed) {
      changes.push(...(await armRollback(ctx, port)));
      armed = true;
    }
    const lc = ctx.notes?.loginCheck;
    if (part.guarded && lc) {
      lc.reasons.push(`${part.name} removed: ${lines[0]}${lines.length > 1 ? ` (+${lines.length - 1} more)` : ''}`);
      if (part.name === 'operator') lc.operatorRemoved = true;
    }
    changes.push(...((await part.teardown?.apply(ctx, o)) ?? []));
    // What sshd says now is the truth for the login check (the candidate said the same, unless a file moved).
    if (part.name === 'sshd' && lc) lc.port = (await effectivePort()) ?? lc.port;
  }
  return changes;
}

export const teardown: Teardown = { check: teardownCheck, apply: teardownApply };

/**
 * Snapshot first, timer second: a timer without a snapshot would have nothing to restore. `port`: where the login
 * check connects when it is not the configured one (a teardown: where sshd listens without our drop-in).
 */
async function armRollback(ctx: StepContext, port?: number): Promise<string[]> {
  const seconds = ctx.cfg.get('CODEXK8S_LOCKOUT_ROLLBACK_AFTER');
  const fresh = await snapshot(STEP, GUARDED, ctx);
  await schedule(seconds, process.execPath, import.meta.filename, ctx.log);
  if (ctx.notes)
    ctx.notes.loginCheck = {
      user: ctx.cfg.get('OPERATOR_USER'),
      port: port ?? ctx.cfg.get('CODEXK8S_SSH_PORT'),
      rollbackSeconds: seconds,
      unit: ROLLBACK_UNIT,
      reasons: [],
    };
  return [
    fresh
      ? `snapshot of the operator account, sshd and firewall in /var/lib/codex-k8s-bootstrap/rollback/${STEP}`
      : 'kept the unconfirmed snapshot of an earlier change (a rollback returns to the last confirmed state)',
    `${ROLLBACK_UNIT}.timer rolls the change back in ${seconds}s unless a new login confirms it`,
  ];
}

const confirmMode: StepMode = async (log) => {
  const done = await confirm(STEP, log);
  log.info(
    done.length ? color.green(`${STEP}: ${done.join('; ')}`) : `${STEP}: nothing to confirm (no pending change)`,
  );
  return 0;
};

const rollbackMode: StepMode = async (log) => {
  let done: string[];
  try {
    done = await restore(STEP, GUARDED, log);
  } catch (e) {
    // Half rolled back is not succeeded either.
    journalRolledBack(`the rollback of the operator/sshd/firewall change did not complete: ${(e as Error).message}`);
    throw e;
  }
  if (done.length === 0) {
    log.info(`${STEP}: nothing to roll back (no pending change)`);
    return 0;
  }
  for (const d of done) log.info(`  - ${d}`);
  journalRolledBack('the operator/sshd/firewall change was rolled back (no confirmed login)');
  log.warn(`${STEP}: rolled back the unconfirmed operator/sshd/firewall change`);
  return 0;
};

/** The journal must not claim the step succeeded: the next run applies it again, and later steps wait for it. */
function journalRolledBack(error: string): void {
  const j = readJournal(REMOTE.journal);
  const prev = j.steps[STEP];
  const now = new Date().toISOString();
  writeJournal(
    REMOTE.journal,
    recordStep(j, STEP, {
      status: 'failed',
      startedAt: now,
      endedAt: now,
      changes: [],
      configHash: prev?.configHash ?? '',
      runId: prev?.runId ?? 'rollback',
      error,
    }),
  );
}

if (import.meta.filename === process.argv[1])
  await runStep(STEP, { check, apply, modes: { confirm: confirmMode, rollback: rollbackMode }, teardown });
