// unattended-upgrades: security updates every day; reboots only when CODEXK8S_AUTO_REBOOT says so (a reboot
// restarts k3s and every pod). apt.conf.d files are read in name order and the last value wins, so ours is
// named after 20auto-upgrades and 50unattended-upgrades; the check reads the effective values (apt-config dump).
import { existsSync, rmSync } from 'node:fs';
import type { StepContext, Teardown } from '../step.mts';
import { run } from '../exec.mts';
import {
  checkFile,
  disableRecorded,
  enableRecorded,
  ensureFile,
  succeeds,
  systemctl,
  unitsEnabledByUs,
} from './part.mts';
import type { HostPart, ManagedFile } from './part.mts';

export const UPGRADES_FILE = '/etc/apt/apt.conf.d/52codex-k8s-unattended-upgrades';
export const APT_TIMERS = ['apt-daily.timer', 'apt-daily-upgrade.timer'];

export function wantedAptValues(autoReboot: boolean): Record<string, string> {
  return {
    'APT::Periodic::Update-Package-Lists': '1',
    'APT::Periodic::Unattended-Upgrade': '1',
    'Unattended-Upgrade::Automatic-Reboot': autoReboot ? 'true' : 'false',
  };
}

export function renderUpgrades(autoReboot: boolean): string {
  return [
    '// Managed by codex-k8s bootstrap (10_harden_host). Edits are overwritten on the next run.',
    "// Security updates come from the origins of 50unattended-upgrades (the distribution's security pocket).",
    ...Object.entries(wantedAptValues(autoReboot)).map(([k, v]) => `${k} "${v}";`),
    '',
  ].join('\n');
}

/** `apt-config dump` lines (`Key "value";`) -> key -> value (the last one wins, as for apt). */
export function parseAptConfig(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const r = /^(\S+) "(.*)";$/.exec(line.trim());
    if (r) m.set(r[1] as string, r[2] as string);
  }
  return m;
}

export function aptDrift(values: Map<string, string>, autoReboot: boolean): string[] {
  const drift: string[] = [];
  for (const [k, v] of Object.entries(wantedAptValues(autoReboot))) {
    const got = values.get(k);
    const norm = (x: string | undefined) =>
      x === 'yes' || x === 'on' ? 'true' : x === 'no' || x === 'off' ? 'false' : x;
    if (norm(got) !== v) drift.push(`${k} is ${got === undefined ? 'unset' : `"${got}"`}, want "${v}" (apt-config)`);
  }
  return drift;
}

function file(ctx: StepContext): ManagedFile {
  return { path: UPGRADES_FILE, content: renderUpgrades(ctx.cfg.get('CODEXK8S_AUTO_REBOOT')), mode: 0o644 };
}

async function check(ctx: StepContext): Promise<string[]> {
  const drift: string[] = [];
  const f = checkFile(file(ctx));
  if (f) drift.push(f);
  const dump = await run(['apt-config', 'dump'], { allowFail: true });
  drift.push(...aptDrift(parseAptConfig(dump.stdout), ctx.cfg.get('CODEXK8S_AUTO_REBOOT')).filter(() => !f));
  for (const t of APT_TIMERS)
    if (!(await succeeds(systemctl.isEnabled(t))))
      drift.push(`${t} is not enabled (unattended-upgrades never runs without it)`);
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const changes: string[] = [];
  if (await ensureFile(file(ctx)))
    changes.push(`${UPGRADES_FILE}: daily security updates, Automatic-Reboot ${ctx.cfg.get('CODEXK8S_AUTO_REBOOT')}`);
  for (const t of APT_TIMERS) {
    if (!(await succeeds(systemctl.isEnabled(t)))) {
      await enableRecorded(t, true, ctx.log);
      changes.push(`${t} enabled`);
    }
  }
  return changes;
}

// Teardown: our file goes; the apt timers stay as Ubuntu enables them, unless this tool was what enabled them.
const upgradesTeardown: Teardown = {
  async check() {
    const ours = unitsEnabledByUs();
    return [
      ...(existsSync(UPGRADES_FILE) ? [`file ${UPGRADES_FILE}`] : []),
      ...APT_TIMERS.filter((t) => ours.includes(t)).map((t) => `unit ${t} (enabled by this tool)`),
    ];
  },
  async apply(ctx) {
    const changes: string[] = [];
    const ours = unitsEnabledByUs();
    for (const t of APT_TIMERS) if (ours.includes(t)) changes.push(await disableRecorded(t, ctx.log));
    if (existsSync(UPGRADES_FILE)) {
      rmSync(UPGRADES_FILE, { force: true });
      changes.push(`removed ${UPGRADES_FILE} (the distribution's unattended-upgrades settings stay)`);
    }
    return changes;
  },
};

export const upgradesPart: HostPart = { name: 'upgrades', check, apply, teardown: upgradesTeardown };
