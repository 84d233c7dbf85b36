// Firewall: one nftables table of our own (inet codex_k8s) with an input chain that drops what it does not
// accept. The distribution's /etc/nftables.conf and the tables k3s and fail2ban create are never touched; a
// packet passes only when every table's input hook accepts it, so ours only ever narrows.
// Persistence: codex-k8s-firewall.service loads the rendered file at boot. Every file is checked with
// `nft -c -f` before it is moved in; loading it replaces our table atomically (one transaction).
// The loaded table carries a marker rule with the hash of the rendered rules: the check compares that marker
// and the rule count, so a flushed or stale table is drift. Right after each load the step also records a
// fingerprint of the table as the kernel holds it (`nft -j`, handles left out); a rule edited by hand, even one
// that keeps the count, changes the fingerprint and is drift too.
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, existsSync, writeFileSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { StepContext, Teardown } from '../step.mts';
import type { Logger } from '../log.mts';
import { run } from '../exec.mts';
import { OperationError } from '../errors.mts';
import { checkFile, ensureFile, succeeds, systemctl } from './part.mts';
import type { HostPart, ManagedFile } from './part.mts';
import { REMOTE } from '../paths.mts';

export const NFT = '/usr/sbin/nft';
export const TABLE = 'codex_k8s';
export const FIREWALL_FILE = '/etc/nftables.d/codex-k8s.nft';
export const FIREWALL_UNIT = 'codex-k8s-firewall.service';
export const FIREWALL_UNIT_FILE = `/etc/systemd/system/${FIREWALL_UNIT}`;
const MARKER = 'codex-k8s sha256=';
/** Fingerprint of the table as loaded by the last apply (see tableFingerprint). */
export const FIREWALL_FINGERPRINT = join(REMOTE.stateDir, 'firewall-loaded.sha256');

export interface FirewallWanted {
  /** Every port sshd may be reached on: the configured one, and the current connection's during a change. */
  sshPorts: number[];
  podCidr: string;
  serviceCidr: string;
  kubeApiAllow: readonly string[];
}

/** The server port of this SSH connection ("client port server port"), when run over SSH. */
export function connectionPort(sshConnection: string | undefined): number | undefined {
  const p = Number(sshConnection?.trim().split(/\s+/)[3]);
  return Number.isInteger(p) && p > 0 && p < 65536 ? p : undefined;
}

export function firewallWanted(ctx: StepContext, env: NodeJS.ProcessEnv = process.env): FirewallWanted {
  const configured = ctx.cfg.get('CODEXK8S_SSH_PORT');
  const current = connectionPort(env['SSH_CONNECTION']);
  return {
    sshPorts: [...new Set([configured, ...(current ? [current] : [])])].sort((a, b) => a - b),
    podCidr: ctx.cfg.get('CODEXK8S_POD_CIDR'),
    serviceCidr: ctx.cfg.get('CODEXK8S_SERVICE_CIDR'),
    kubeApiAllow: ctx.cfg.maybe('CODEXK8S_KUBE_API_ALLOW') ?? [],
  };
}

const v6 = (cidr: string) => cidr.includes(':');
const set = (items: readonly (string | number)[]) =>
  items.length === 1 ? String(items[0]) : `{ ${items.join(', ')} }`;

function saddrRules(cidrs: readonly string[], tail: string): string[] {
  const out: string[] = [];
  const four = cidrs.filter((c) => !v6(c));
  const six = cidrs.filter(v6);
  if (four.length) out.push(`ip saddr ${set(four)} ${tail}`);
  if (six.length) out.push(`ip6 saddr ${set(six)} ${tail}`);
  return out;
}

/** The rules of the input chain, without the marker. */
export function renderRules(w: FirewallWanted): string[] {
  return [
    'ct state established,related accept',
    'ct state invalid drop',
    'iifname "lo" accept',
    // ICMP and ICMPv6 by number: the names need /etc/protocols, which a minimal system may lack.
    'meta l4proto { 1, 58 } accept',
    // DHCP replies to this host's own client (cloud servers get their address this way).
    'udp sport 67 udp dport 68 accept',
    'udp sport 547 udp dport 546 accept',
    // k3s: pods and services must reach the node (CoreDNS, metrics-server, the API from pods), k3s #1280, #8785.
    'iifname { "cni0", "flannel.1" } accept',
    ...saddrRules([w.podCidr, w.serviceCidr], 'accept'),
    `tcp dport ${set([...w.sshPorts, 80, 443])} accept`,
    ...saddrRules(w.kubeApiAllow, 'tcp dport 6443 accept'),
  ];
}

export function rulesHash(rules: readonly string[]): string {
  return createHash('sha256').update(rules.join('\n')).digest('hex').slice(0, 16);
}

export function renderRuleset(w: FirewallWanted): string {
  const rules = renderRules(w);
  return [
    `#!${NFT} -f`,
    '# Managed by codex-k8s bootstrap (10_harden_host); loaded at boot by codex-k8s-firewall.service.',
    "# Only this table is ours: the distribution's /etc/nftables.conf and the tables of k3s and fail2ban are left alone.",
    '# Loading this file replaces the table in one transaction (declare, delete, re-create).',
    `table inet ${TABLE}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    '\tchain input {',
    '\t\ttype filter hook input priority filter; policy drop;',
    `\t\tcounter comment "${MARKER}${rulesHash(rules)}"`,
    ...rules.map((r) => `\t\t${r}`),
    '\t}',
    '}',
    '',
  ].join('\n');
}

export function renderUnit(): string {
  return [
    '# Managed by codex-k8s bootstrap (10_harden_host).',
    '[Unit]',
    `Description=codex-k8s host firewall (nftables table inet ${TABLE})`,
    'Wants=network-pre.target',
    'Before=network-pre.target shutdown.target',
    'Conflicts=shutdown.target',
    'DefaultDependencies=no',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=${NFT} -f ${FIREWALL_FILE}`,
    `ExecReload=${NFT} -f ${FIREWALL_FILE}`,
    `ExecStop=${NFT} delete table inet ${TABLE}`,
    '',
    '[Install]',
    'WantedBy=sysinit.target',
    '',
  ].join('\n');
}

export interface LoadedTable {
  present: boolean;
  marker?: string;
  policy?: string;
  hook?: string;
  rules: number;
}

/** `nft -j list table inet codex_k8s` -> what the check compares. */
export function parseLoadedTable(json: string): LoadedTable {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, Record<string, unknown>>> };
  const out: LoadedTable = { present: false, rules: 0 };
  for (const item of doc.nftables ?? []) {
    if (item['table']?.['name'] === TABLE) out.present = true;
    const chain = item['chain'];
    if (chain && chain['name'] === 'input') {
      out.policy = chain['policy'] as string | undefined;
      out.hook = chain['hook'] as string | undefined;
    }
    const rule = item['rule'];
    if (rule && rule['chain'] === 'input') {
      out.rules++;
      const c = rule['comment'];
      if (typeof c === 'string' && c.startsWith(MARKER)) out.marker = c.slice(MARKER.length);
    }
  }
  return out;
}

/** A copy of an nft JSON value with what changes on its own left out: handles, and counters' packets and bytes. */
function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>)
      .filter(([k]) => k !== 'handle')
      .map(([k, v]) => [k, k === 'counter' ? null : stable(v)]),
  );
}

/**
 * sha256 of `nft -j list table inet codex_k8s` without metainfo, handles and counter values: the same rules in the
 * same order give the same fingerprint, however much traffic they counted; any edit to a rule or chain changes it.
 */
export function tableFingerprint(json: string): string {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, unknown>> };
  const items = (doc.nftables ?? []).filter((item) => !('metainfo' in item)).map(stable);
  return createHash('sha256').update(JSON.stringify(items)).digest('hex');
}

export function tableDrift(t: LoadedTable, w: FirewallWanted): string[] {
  if (!t.present) return [`nftables table inet ${TABLE} is not loaded`];
  const rules = renderRules(w);
  const drift: string[] = [];
  if (t.hook !== 'input' || t.policy !== 'drop')
    drift.push(
      `table inet ${TABLE}: chain input is hook ${t.hook ?? 'none'} policy ${t.policy ?? 'none'}, want hook input policy drop`,
    );
  if (t.marker !== rulesHash(rules) || t.rules !== rules.length + 1)
    drift.push(
      `table inet ${TABLE} holds other rules than ${FIREWALL_FILE} renders (marker ${t.marker ?? 'missing'}, ${t.rules} rules; want ${rulesHash(rules)}, ${rules.length + 1})`,
    );
  return drift;
}

export const nftCommands = {
  check: (file: string) => [NFT, '-c', '-f', file],
  load: (file: string) => [NFT, '-f', file],
  listJson: () => [NFT, '-j', 'list', 'table', 'inet', TABLE],
  list: () => [NFT, 'list', 'table', 'inet', TABLE],
  remove: () => [NFT, 'delete', 'table', 'inet', TABLE],
};

function files(w: FirewallWanted): ManagedFile[] {
  return [
    { path: FIREWALL_FILE, content: renderRuleset(w), mode: 0o644 },
    { path: FIREWALL_UNIT_FILE, content: renderUnit(), mode: 0o644 },
  ];
}

async function loaded(): Promise<LoadedTable & { fingerprint?: string }> {
  const r = await run(nftCommands.listJson(), { allowFail: true });
  return r.exitCode === 0
    ? { ...parseLoadedTable(r.stdout), fingerprint: tableFingerprint(r.stdout) }
    : { present: false, rules: 0 };
}

/** Drift of the loaded table: the marker and count against the rendered rules, the fingerprint against the last load. */
async function loadedDrift(w: FirewallWanted): Promise<string[]> {
  const t = await loaded();
  const drift = tableDrift(t, w);
  if (drift.length === 0) {
    const recorded = existsSync(FIREWALL_FINGERPRINT) ? readFileSync(FIREWALL_FINGERPRINT, 'utf8').trim() : undefined;
    if (recorded !== t.fingerprint)
      drift.push(
        `table inet ${TABLE} differs from what was loaded (${recorded ? 'a rule was changed by hand' : `no fingerprint in ${FIREWALL_FINGERPRINT}`}): it is reloaded from ${FIREWALL_FILE}`,
      );
  }
  return drift;
}

const enabled = (ctx: StepContext) => ctx.cfg.get('CODEXK8S_FIREWALL_ENABLED');

async function check(ctx: StepContext): Promise<string[]> {
  if (!enabled(ctx)) {
    const drift: string[] = [];
    if ((await loaded()).present)
      drift.push(`nftables table inet ${TABLE} is loaded, want none (CODEXK8S_FIREWALL_ENABLED=false)`);
    for (const f of [FIREWALL_FILE, FIREWALL_UNIT_FILE])
      if (existsSync(f)) drift.push(`${f} exists, want none (CODEXK8S_FIREWALL_ENABLED=false)`);
    return drift;
  }
  const w = firewallWanted(ctx);
  const drift = files(w)
    .map(checkFile)
    .filter((d): d is string => d !== undefined);
  if (!(await succeeds(systemctl.isEnabled(FIREWALL_UNIT))))
    drift.push(`${FIREWALL_UNIT} is not enabled (the rules would not survive a reboot)`);
  drift.push(...(await loadedDrift(w)));
  return drift;
}

async function apply(ctx: StepContext): Promise<string[]> {
  const changes: string[] = [];
  if (!enabled(ctx)) {
    if (existsSync(FIREWALL_UNIT_FILE)) {
      await run(systemctl.disableNow(FIREWALL_UNIT), { allowFail: true, log: ctx.log });
      rmSync(FIREWALL_UNIT_FILE, { force: true });
      await run(systemctl.daemonReload(), { log: ctx.log });
      changes.push(`removed ${FIREWALL_UNIT}`);
    }
    if (existsSync(FIREWALL_FILE)) {
      rmSync(FIREWALL_FILE, { force: true });
      changes.push(`removed ${FIREWALL_FILE}`);
    }
    if ((await loaded()).present) {
      await run(nftCommands.remove(), { log: ctx.log });
      changes.push(`removed the nftables table inet ${TABLE}`);
    }
    return changes;
  }
  const w = firewallWanted(ctx);
  const [rules, unit] = files(w) as [ManagedFile, ManagedFile];
  mkdirSync(join(FIREWALL_FILE, '..'), { recursive: true, mode: 0o755 });
  const rulesChanged = await ensureFile(rules, async (tmp) => {
    const r = await run(nftCommands.check(tmp), { allowFail: true, log: ctx.log });
    if (r.exitCode !== 0)
      throw new OperationError(
        `nft -c refused the rendered ruleset; ${FIREWALL_FILE} and the loaded rules were left as they were`,
        { detail: r.stderr },
      );
  });
  if (rulesChanged)
    changes.push(
      `${FIREWALL_FILE}: inbound ${w.sshPorts.map((p) => `${p} (ssh)`).join(', ')}, 80, 443${w.kubeApiAllow.length ? `, 6443 from ${w.kubeApiAllow.join(' ')}` : ''}; pods and services; the rest dropped`,
    );
  if (await ensureFile(unit)) {
    await run(systemctl.daemonReload(), { log: ctx.log });
    changes.push(`${FIREWALL_UNIT_FILE} loads it at boot`);
  }
  if (!(await succeeds(systemctl.isEnabled(FIREWALL_UNIT)))) {
    await run(systemctl.enable(FIREWALL_UNIT), { log: ctx.log });
    changes.push(`${FIREWALL_UNIT} enabled`);
  }
  if ((await loadedDrift(w)).length > 0) {
    // reload runs nft -f: the table is replaced atomically; a stop/start would open a gap.
    const active = await succeeds(systemctl.isActive(FIREWALL_UNIT));
    await run(active ? systemctl.reload(FIREWALL_UNIT) : systemctl.start(FIREWALL_UNIT), { log: ctx.log });
    const now = await loaded();
    if (now.fingerprint) {
      mkdirSync(REMOTE.stateDir, { recursive: true });
      writeFileSync(FIREWALL_FINGERPRINT, `${now.fingerprint}\n`);
    }
    changes.push(`nftables table inet ${TABLE} loaded`);
  }
  return changes;
}

/** The loaded table (as loadable text) and whether our unit was enabled: the files alone do not say. */
async function saveState(dir: string): Promise<void> {
  const r = await run(nftCommands.list(), { allowFail: true });
  if (r.exitCode === 0) writeFileSync(join(dir, 'nft-table.nft'), r.stdout, { mode: 0o600 });
  writeFileSync(
    join(dir, 'firewall-unit-enabled'),
    (await succeeds(systemctl.isEnabled(FIREWALL_UNIT))) ? 'yes\n' : 'no\n',
  );
}

async function afterRestore(dir: string, log: Logger): Promise<string[]> {
  const done: string[] = [];
  await run(systemctl.daemonReload(), { log });
  const previous = join(dir, 'nft-table.nft');
  if ((await loaded()).present) await run(nftCommands.remove(), { log });
  if (existsSync(previous)) {
    await run(nftCommands.load(previous), { log });
    done.push(`nftables table inet ${TABLE} restored`);
  } else done.push(`nftables table inet ${TABLE} removed (there was none before)`);
  // The fingerprint follows the table that is loaded now, so the next check does not call the restore a hand edit.
  const now = await loaded();
  if (now.fingerprint && now.present) writeFileSync(FIREWALL_FINGERPRINT, `${now.fingerprint}\n`);
  else rmSync(FIREWALL_FINGERPRINT, { force: true });
  const wasEnabled =
    existsSync(join(dir, 'firewall-unit-enabled')) &&
    readFileSync(join(dir, 'firewall-unit-enabled'), 'utf8').trim() === 'yes';
  if (existsSync(FIREWALL_UNIT_FILE))
    await run(wasEnabled ? systemctl.enable(FIREWALL_UNIT) : ['systemctl', 'disable', FIREWALL_UNIT], {
      allowFail: true,
      log,
    });
  return done;
}

// --- teardown -------------------------------------------------------------------------------------------
// Only what apply() made: our unit, our table, our two files and the fingerprint. The distribution's nftables
// and the tables of k3s and fail2ban are not ours and stay.

export interface FirewallFacts {
  unitEnabled: boolean;
  unitActive: boolean;
  tableLoaded: boolean;
  /** Which of FIREWALL_FILE, FIREWALL_UNIT_FILE, FIREWALL_FINGERPRINT exist. */
  files: readonly string[];
}

/** Pure: the teardown check's lines, one per thing of ours still there. */
export function firewallTeardownLines(f: FirewallFacts): string[] {
  const lines: string[] = [];
  const state = [f.unitEnabled ? 'enabled' : '', f.unitActive ? 'active' : ''].filter(Boolean).join(', ');
  if (state) lines.push(`unit ${FIREWALL_UNIT} (${state})`);
  if (f.tableLoaded) lines.push(`nftables table inet ${TABLE} (loaded)`);
  for (const p of f.files) lines.push(`file ${p}`);
  return lines;
}

async function firewallFacts(): Promise<FirewallFacts> {
  return {
    unitEnabled: await succeeds(systemctl.isEnabled(FIREWALL_UNIT)),
    unitActive: await succeeds(systemctl.isActive(FIREWALL_UNIT)),
    tableLoaded: (await loaded()).present,
    files: [FIREWALL_FILE, FIREWALL_UNIT_FILE, FIREWALL_FINGERPRINT].filter((p) => existsSync(p)),
  };
}

const firewallTeardown: Teardown = {
  async check() {
    return firewallTeardownLines(await firewallFacts());
  },
  async apply(ctx) {
    const done: string[] = [];
    const f = await firewallFacts();
    if (f.unitEnabled || f.unitActive) {
      // The unit's ExecStop deletes the table; the delete below is for a table loaded without the unit.
      await run(systemctl.disableNow(FIREWALL_UNIT), { log: ctx.log });
      done.push(`disabled and stopped ${FIREWALL_UNIT}`);
    }
    if ((await loaded()).present) {
      await run(nftCommands.remove(), { log: ctx.log });
      done.push(`removed the nftables table inet ${TABLE} (the other tables are untouched)`);
    } else if (f.tableLoaded) done.push(`removed the nftables table inet ${TABLE} (stopping ${FIREWALL_UNIT} did)`);
    for (const p of f.files) {
      rmSync(p, { force: true });
      done.push(`removed ${p}`);
    }
    // apply() made the directory for its file (a rollback makes it again); anyone else's files keep it.
    const dir = dirname(FIREWALL_FILE);
    if (existsSync(dir) && readdirSync(dir).length === 0) {
      rmdirSync(dir);
      done.push(`removed ${dir} (empty)`);
    }
    if (f.files.includes(FIREWALL_UNIT_FILE)) {
      await run(systemctl.daemonReload(), { log: ctx.log });
      done.push('systemd reloaded (daemon-reload)');
    }
    return done;
  },
};

export const firewallPart: HostPart = {
  name: 'firewall',
  guarded: true,
  files: [FIREWALL_FILE, FIREWALL_UNIT_FILE],
  check,
  apply,
  saveState,
  afterRestore,
  teardown: firewallTeardown,
};
