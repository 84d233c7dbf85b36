// fail2ban: an sshd jail that reads the systemd journal (Ubuntu 24.04 and Debian 12 have no /var/log/auth.log
// without rsyslog) and bans through nftables (its own table, inet f2b-table). Our jail.d/*.local is read after
// the distribution's jail.d/*.conf, so it wins. The candidate is tested with `fail2ban-client -t` on a copy of
// /etc/fail2ban before it is moved in.
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StepContext, Teardown } from '../step.mts';
import { run } from '../exec.mts';
import { OperationError } from '../errors.mts';
import { pollUntil } from '../poll.mts';
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

export const JAIL_FILE = '/etc/fail2ban/jail.d/codex-k8s.local';

export function renderJail(sshPort: number): string {
  return [
    '# Managed by codex-k8s bootstrap (10_harden_host). Edits are overwritten on the next run.',
    '[sshd]',
    'enabled = true',
    'backend = systemd',
    `port = ${sshPort}`,
    'banaction = nftables',
    'banaction_allports = nftables[type=allports]',
    'maxretry = 5',
    'findtime = 10m',
    'bantime = 1h',
    '',
  ].join('\n');
}

export const fail2banCommands = {
  test: (confDir: string) => ['fail2ban-client', '-c', confDir, '-t'],
  status: () => ['fail2ban-client', 'status', 'sshd'],
};

function jail(ctx: StepContext): ManagedFile {
  return { path: JAIL_FILE, content: renderJail(ctx.cfg.get('CODEXK8S_SSH_PORT')), mode: 0o644 };
}

async function check(ctx: StepContext): Promise<string[]> {
  const drift: string[] = [];
  const f = checkFile(jail(ctx));
  if (f) drift.push(f);
  if (!(await succeeds(systemctl.isEnabled('fail2ban.service')))) drift.push('fail2ban.service is not enabled');
  if (!(await succeeds(systemctl.isActive('fail2ban.service')))) drift.push('fail2ban.service is not running');
  else if (!(await succeeds(fail2banCommands.status())))
    drift.push('fail2ban has no running sshd jail (fail2ban-client status sshd)');
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const changes: string[] = [];
  const changed = await ensureFile(jail(ctx), async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ck8s-fail2ban-'));
    try {
      cpSync('/etc/fail2ban', dir, { recursive: true });
      writeFileSync(join(dir, 'jail.d', 'codex-k8s.local'), jail(ctx).content);
      // writeFileAtomic's temp file is in jail.d already; fail2ban ignores dot-files, the copy may too.
      rmSync(join(dir, 'jail.d', '.codex-k8s.local.codex-k8s-tmp'), { force: true });
      const r = await run(fail2banCommands.test(dir), { allowFail: true, log: ctx.log });
      if (r.exitCode !== 0)
        throw new OperationError(`fail2ban-client -t refused the jail; ${JAIL_FILE} was left as it was`, {
          detail: (r.stderr + r.stdout).trim(),
        });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  if (changed) changes.push(`${JAIL_FILE}: sshd jail (journal, nftables bans)`);
  if (!(await succeeds(systemctl.isEnabled('fail2ban.service')))) {
    await enableRecorded('fail2ban.service', false, ctx.log);
    changes.push('fail2ban.service enabled');
  }
  if (!(await succeeds(systemctl.isActive('fail2ban.service')))) {
    await run(systemctl.start('fail2ban.service'), { log: ctx.log });
    changes.push('fail2ban.service started');
  } else if (changed) {
    await run(systemctl.reload('fail2ban.service'), { log: ctx.log });
    changes.push('fail2ban reloaded');
  }
  // The server answers on its socket a moment after systemd reports it started.
  const attempts = 20;
  await pollUntil(
    async () => {
      const r = await run(fail2banCommands.status(), { allowFail: true, log: ctx.log });
      return r.exitCode === 0 ? { done: true } : { waiting: (r.stderr + r.stdout).trim() };
    },
    {
      attempts,
      intervalSeconds: 0.5,
      what: "fail2ban's sshd jail",
      onWait: (i) => ctx.log.detail(`fail2ban not answering yet, attempt ${i}/${attempts}`),
      onTimeout: (last) =>
        new OperationError(`fail2ban's sshd jail is not running after ${attempts} attempts`, {
          detail: last,
          hint: 'see journalctl -u fail2ban',
        }),
    },
  );
  return changes;
}

// Teardown: our jail goes, the package and the distribution's jail.d/*.conf stay. A failed reload does not put the
// file back: it is reported in the change line (the distribution's own sshd jail may want /var/log/auth.log).
const UNIT = 'fail2ban.service';
const fail2banTeardown: Teardown = {
  async check() {
    return [
      ...(existsSync(JAIL_FILE) ? [`file ${JAIL_FILE}`] : []),
      ...(unitsEnabledByUs().includes(UNIT) ? [`unit ${UNIT} (enabled by this tool)`] : []),
    ];
  },
  async apply(ctx) {
    const changes: string[] = [];
    if (unitsEnabledByUs().includes(UNIT)) changes.push(await disableRecorded(UNIT, ctx.log));
    if (!existsSync(JAIL_FILE)) return changes;
    rmSync(JAIL_FILE, { force: true });
    if (!(await succeeds(systemctl.isActive(UNIT)))) return [...changes, `removed ${JAIL_FILE}`];
    const r = await run(systemctl.reload(UNIT), { allowFail: true, log: ctx.log });
    return [
      ...changes,
      r.exitCode === 0
        ? `removed ${JAIL_FILE}; fail2ban reloaded`
        : `removed ${JAIL_FILE}; the fail2ban reload failed (${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}): see journalctl -u fail2ban`,
    ];
  },
};

export const fail2banPart: HostPart = { name: 'fail2ban', check, apply, teardown: fail2banTeardown };
