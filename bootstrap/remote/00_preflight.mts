#!/opt/codex-k8s-bootstrap/node/bin/node --
// 00_preflight: is this a server we can bootstrap? Changes nothing.
// Each check gives ok / warn / fail with a reason and, when not ok, a fix. Any fail stops the run here,
// before a single change; warnings are printed and the run goes on.
import { readFileSync, statfsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { runStep } from '../lib/step.mts';
import type { StepContext } from '../lib/step.mts';
import { OperationError } from '../lib/errors.mts';

export interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  reason: string;
  fix?: string;
}

export interface Facts {
  osRelease: string;
  uid: number;
  arch: string;
  cpus: number;
  memoryMiB: number;
  varLibFreeGiB: number;
}

export interface Thresholds {
  minMemoryMiB: number;
  warnMemoryMiB: number;
  minDiskGiB: number;
}

function osField(osRelease: string, key: string): string {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(osRelease);
  return (m?.[1] ?? '').replace(/^["']|["']$/g, '');
}

/** Pure: facts in, table out. */
export function evaluate(f: Facts, t: Thresholds): Check[] {
  const out: Check[] = [];
  const id = osField(f.osRelease, 'ID');
  const version = osField(f.osRelease, 'VERSION_ID');
  const pretty = osField(f.osRelease, 'PRETTY_NAME') || `${id} ${version}`;
  if (id === 'ubuntu' && version === '24.04') out.push({ name: 'os', status: 'ok', reason: `${pretty} (supported)` });
  else if (id === 'debian' && version === '12') out.push({ name: 'os', status: 'ok', reason: `${pretty} (accepted: the test sandbox runs Debian 12)` });
  else out.push({ name: 'os', status: 'fail', reason: `found ${pretty || 'an unknown OS'}`, fix: 'use Ubuntu 24.04 LTS (Debian 12 is accepted for tests)' });

  out.push(f.uid === 0 ? { name: 'root', status: 'ok', reason: 'running as root' } : { name: 'root', status: 'fail', reason: `running as uid ${f.uid}`, fix: 'run the step with sudo, or set TARGET_ROOT_USER=root' });

  if (f.arch === 'x64' || f.arch === 'arm64') out.push({ name: 'arch', status: 'ok', reason: f.arch === 'x64' ? 'amd64' : 'arm64' });
  else out.push({ name: 'arch', status: 'fail', reason: `CPU architecture ${f.arch}`, fix: 'use an amd64 or arm64 server' });

  out.push(f.cpus >= 2 ? { name: 'cpus', status: 'ok', reason: `${f.cpus} CPUs` } : { name: 'cpus', status: 'warn', reason: `${f.cpus} CPU`, fix: 'k3s, builds and PostgreSQL share it: 2 or more CPUs are recommended' });

  const mem = `${Math.round(f.memoryMiB)} MiB`;
  if (f.memoryMiB < t.minMemoryMiB) out.push({ name: 'memory', status: 'fail', reason: `${mem}, below the minimum ${t.minMemoryMiB} MiB`, fix: 'resize the server (or lower CODEXK8S_MIN_MEMORY_MIB at your own risk)' });
  else if (f.memoryMiB < t.warnMemoryMiB) out.push({ name: 'memory', status: 'warn', reason: `${mem}, below the recommended ${t.warnMemoryMiB} MiB`, fix: 'expect slow image builds; 4 GiB or more is recommended' });
  else out.push({ name: 'memory', status: 'ok', reason: mem });

  const disk = `${f.varLibFreeGiB.toFixed(1)} GiB free under /var/lib`;
  if (f.varLibFreeGiB < t.minDiskGiB) out.push({ name: 'disk', status: 'fail', reason: `${disk}, below the minimum ${t.minDiskGiB} GiB`, fix: 'grow the disk or free space under /var/lib (images, volumes and k3s live there)' });
  else out.push({ name: 'disk', status: 'ok', reason: disk });
  return out;
}

export function gatherFacts(): Facts {
  const fs = statfsSync('/var/lib');
  return {
    osRelease: readFileSync('/etc/os-release', 'utf8'),
    uid: process.getuid?.() ?? -1,
    arch: process.arch,
    cpus: cpus().length,
    memoryMiB: totalmem() / 1024 / 1024,
    varLibFreeGiB: (fs.bavail * fs.bsize) / 1024 ** 3,
  };
}

export function formatTable(checks: readonly Check[]): string[] {
  const w = Math.max(...checks.map((c) => c.name.length));
  return checks.map((c) => `  ${c.status.padEnd(4)}  ${c.name.padEnd(w)}  ${c.reason}${c.fix && c.status !== 'ok' ? `  -> ${c.fix}` : ''}`);
}

function thresholds(ctx: StepContext): Thresholds {
  return {
    minMemoryMiB: ctx.cfg.get<number>('CODEXK8S_MIN_MEMORY_MIB'),
    warnMemoryMiB: ctx.cfg.get<number>('CODEXK8S_WARN_MEMORY_MIB'),
    minDiskGiB: ctx.cfg.get<number>('CODEXK8S_MIN_DISK_GIB'),
  };
}

async function check(ctx: StepContext): Promise<string[]> {
  const checks = evaluate(gatherFacts(), thresholds(ctx));
  for (const line of formatTable(checks)) ctx.log.info(line);
  return checks.filter((c) => c.status === 'fail').map((c) => `${c.name}: ${c.reason}${c.fix ? ` (fix: ${c.fix})` : ''}`);
}

async function apply(_ctx: StepContext, drift: readonly string[]): Promise<string[]> {
  // Preflight cannot fix the server; a failed check stops the run before anything changes.
  throw new OperationError(`preflight failed (${drift.length} check(s)); nothing was changed`, { hint: 'fix the checks marked fail above, then run again' });
}

if (import.meta.filename === process.argv[1]) await runStep('00_preflight', { check, apply });
